-- Portable SQL: it runs unchanged on SQLite and PostgreSQL.

-- +goose Up
-- Lists of the tasks a caller may see filter on their creators, and
-- perhaps on a state.
CREATE INDEX export_tasks_creator_newest ON export_tasks (creator, created_at DESC, task_id DESC);
CREATE INDEX export_tasks_creator_state_newest ON export_tasks (creator, state, created_at DESC, task_id DESC);
-- Keys the service generates once and every process sharing the registry
-- uses (the page-token key): hex-encoded, never changed once written.
CREATE TABLE service_secrets (
    name  VARCHAR(64) NOT NULL PRIMARY KEY,
    value TEXT        NOT NULL
);

-- +goose Down
DROP TABLE service_secrets;
DROP INDEX export_tasks_creator_state_newest;
DROP INDEX export_tasks_creator_newest;
