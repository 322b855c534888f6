-- Portable SQL: it runs unchanged on SQLite and PostgreSQL. Times are
-- integer Unix microseconds; the empty string stands for "not set".

-- +goose Up
CREATE TABLE export_tasks (
    id                VARCHAR(36) NOT NULL PRIMARY KEY,
    -- NULL while a request_id reservation waits for the cloud's answer.
    task_id           BIGINT      UNIQUE,
    request_id        VARCHAR(36) UNIQUE,
    fingerprint       VARCHAR(64) NOT NULL,
    parameters        TEXT        NOT NULL,
    creator           TEXT        NOT NULL DEFAULT '',
    -- Process instance holding a reservation.
    owner             TEXT        NOT NULL DEFAULT '',
    created_at        BIGINT      NOT NULL,
    state             VARCHAR(16) NOT NULL DEFAULT '',
    download_url      TEXT        NOT NULL DEFAULT '',
    create_request_id TEXT        NOT NULL DEFAULT '',
    last_request_id   TEXT        NOT NULL DEFAULT '',
    observed_at       BIGINT      NOT NULL DEFAULT 0,
    changed_at        BIGINT      NOT NULL DEFAULT 0,
    -- Why the service stopped following a task that is not terminal.
    end_reason        TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX export_tasks_newest ON export_tasks (created_at DESC, task_id DESC);
CREATE INDEX export_tasks_state_newest ON export_tasks (state, created_at DESC, task_id DESC);

-- +goose Down
DROP TABLE export_tasks;
