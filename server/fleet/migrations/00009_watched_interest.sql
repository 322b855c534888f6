-- The interest of urgent and watched callers, few beside the background
-- interest of every followed task: the claim reads its candidates of those
-- tiers from here, in a backlog too.

-- +goose Up
CREATE INDEX fleet_interest_watched ON fleet_interest (tier, task_id) WHERE tier <= 1;

-- +goose Down
DROP INDEX fleet_interest_watched;
