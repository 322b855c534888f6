-- The gap between the last slot handed out and the next one, so that a
-- slot's statement can return the slot it gave: computed after the row's
-- lock, with the database's clock read then, not before the wait for it.

-- +goose Up
ALTER TABLE fleet_budget ADD COLUMN last_gap DOUBLE PRECISION NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE fleet_budget DROP COLUMN last_gap;
