-- An ended task's row leaves the due range (due '9999-12-31 00:00:00+00', the end of the
-- range PostgreSQL and Go both read) until an urgent
-- caller wants it polled again, so that the claim and the next-due reads,
-- which walk the due index from its start, never read the fleet's history.

-- +goose Up
UPDATE fleet_tasks SET due = '9999-12-31 00:00:00+00' WHERE state IN ('FINISHED', 'ERROR') OR refusal_code <> '';

-- +goose Down
UPDATE fleet_tasks SET due = coalesce(last_poll, observed, clock_timestamp()) WHERE due = '9999-12-31 00:00:00+00';
