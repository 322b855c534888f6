-- When a replica last recorded new interest in a task: the cleanup of rows
-- nobody wants checks it, so that interest committed while the cleanup
-- runs always keeps its row.

-- +goose Up
ALTER TABLE fleet_tasks ADD COLUMN wanted TIMESTAMPTZ;

-- +goose Down
ALTER TABLE fleet_tasks DROP COLUMN wanted;
