-- Portable SQL: it runs unchanged on SQLite and PostgreSQL.
--
-- call_started marks, durably and just before it, that a creation's cloud
-- call may have started. A reservation without the mark whose lease ran out
-- never reached the cloud (its process stopped while it waited for the
-- budget): its request id is free to run again. Only a marked one has an
-- unknown outcome.
--
-- Expand only: rows written before this column (or, during a rolling
-- upgrade, by replicas of the previous release, which do not know it) take
-- the default 1, the cautious reading: their call may have started.

-- +goose Up
ALTER TABLE export_tasks ADD COLUMN call_started SMALLINT NOT NULL DEFAULT 1;

-- +goose Down
ALTER TABLE export_tasks DROP COLUMN call_started;
