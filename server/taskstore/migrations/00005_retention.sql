-- Portable SQL: it runs unchanged on SQLite and PostgreSQL.
--
-- The following pass reads only the tasks still followed, in the order of
-- their numbers, from an index of those alone: its cost is that of the
-- tasks followed, never of the history. Retention prunes the oldest ended
-- records first, from the index of creation times. One row per periodic
-- pass that the replicas sharing the registry take turns at: the replica
-- that moves its time forward runs the pass, the others skip it.

-- +goose Up
CREATE INDEX export_tasks_following ON export_tasks (seq)
    WHERE task_id IS NOT NULL AND state NOT IN ('FINISHED', 'ERROR') AND end_reason = '';
CREATE INDEX export_tasks_created ON export_tasks (created_at);
CREATE TABLE registry_passes (
    name   VARCHAR(64) NOT NULL PRIMARY KEY,
    holder TEXT        NOT NULL DEFAULT '',
    -- When the last pass started, in Unix microseconds by the database's
    -- clock.
    at     BIGINT      NOT NULL DEFAULT 0
);
INSERT INTO registry_passes (name) VALUES ('retention');

-- +goose Down
DROP TABLE registry_passes;
DROP INDEX export_tasks_created;
DROP INDEX export_tasks_following;
