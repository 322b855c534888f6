-- A task's row gets a generation that never goes back: a row deleted (no
-- poll nor interest for an hour) and made again counts its polls from 0,
-- and its generation tells every replica still holding the old row's
-- observations that the new one's are news.

-- +goose Up
CREATE SEQUENCE fleet_tasks_generation;
ALTER TABLE fleet_tasks ADD COLUMN generation BIGINT NOT NULL DEFAULT nextval('fleet_tasks_generation');

-- +goose Down
ALTER TABLE fleet_tasks DROP COLUMN generation;
DROP SEQUENCE fleet_tasks_generation;
