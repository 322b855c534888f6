-- Portable SQL: it runs unchanged on SQLite and PostgreSQL.
--
-- Lists are ordered by seq, the number the database gives a task when it
-- is recorded (one more than the highest, unique), rather than by the
-- creation time a process read on its own clock: processes sharing the
-- registry may disagree about the time, never about seq. Creations without
-- a task have none. The tasks already recorded are numbered in the order
-- lists showed them.

-- +goose Up
ALTER TABLE export_tasks ADD COLUMN seq BIGINT;
UPDATE export_tasks SET seq = ordered.n
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, task_id) AS n FROM export_tasks WHERE task_id IS NOT NULL) AS ordered
WHERE export_tasks.id = ordered.id;
CREATE UNIQUE INDEX export_tasks_seq ON export_tasks (seq);
CREATE INDEX export_tasks_state_seq ON export_tasks (state, seq);
CREATE INDEX export_tasks_creator_seq ON export_tasks (creator, seq);
CREATE INDEX export_tasks_creator_state_seq ON export_tasks (creator, state, seq);
DROP INDEX export_tasks_newest;
DROP INDEX export_tasks_state_newest;
DROP INDEX export_tasks_creator_newest;
DROP INDEX export_tasks_creator_state_newest;

-- +goose Down
CREATE INDEX export_tasks_newest ON export_tasks (created_at DESC, task_id DESC);
CREATE INDEX export_tasks_state_newest ON export_tasks (state, created_at DESC, task_id DESC);
CREATE INDEX export_tasks_creator_newest ON export_tasks (creator, created_at DESC, task_id DESC);
CREATE INDEX export_tasks_creator_state_newest ON export_tasks (creator, state, created_at DESC, task_id DESC);
DROP INDEX export_tasks_creator_state_seq;
DROP INDEX export_tasks_creator_seq;
DROP INDEX export_tasks_state_seq;
DROP INDEX export_tasks_seq;
ALTER TABLE export_tasks DROP COLUMN seq;
