-- Portable SQL: it runs unchanged on SQLite and PostgreSQL.
--
-- Every creation is recorded before the cloud is called: a row without a
-- task id is a creation whose cloud call is under way (lease_until in the
-- future, end_reason empty) or whose outcome is unknown (end_reason says
-- why, or the lease ran out). request_id is unique per creator: one
-- caller's request id never meets another caller's.

-- +goose Up
CREATE TABLE export_tasks_v2 (
    id                VARCHAR(36) NOT NULL PRIMARY KEY,
    task_id           BIGINT      UNIQUE,
    request_id        VARCHAR(36),
    fingerprint       VARCHAR(64) NOT NULL,
    parameters        TEXT        NOT NULL,
    creator           TEXT        NOT NULL DEFAULT '',
    owner             TEXT        NOT NULL DEFAULT '',
    created_at        BIGINT      NOT NULL,
    state             VARCHAR(16) NOT NULL DEFAULT '',
    download_url      TEXT        NOT NULL DEFAULT '',
    create_request_id TEXT        NOT NULL DEFAULT '',
    last_request_id   TEXT        NOT NULL DEFAULT '',
    observed_at       BIGINT      NOT NULL DEFAULT 0,
    changed_at        BIGINT      NOT NULL DEFAULT 0,
    end_reason        TEXT        NOT NULL DEFAULT '',
    -- Until when the owner's cloud call may still be under way.
    lease_until       BIGINT      NOT NULL DEFAULT 0,
    UNIQUE (creator, request_id)
);
INSERT INTO export_tasks_v2 (id, task_id, request_id, fingerprint, parameters, creator, owner, created_at, state,
    download_url, create_request_id, last_request_id, observed_at, changed_at, end_reason)
SELECT id, task_id, request_id, fingerprint, parameters, creator, owner, created_at, state,
    download_url, create_request_id, last_request_id, observed_at, changed_at,
    -- A reservation left by an earlier version: its process stopped during
    -- the cloud call.
    CASE WHEN task_id IS NULL AND end_reason = '' THEN 'the service stopped while the cloud call was under way' ELSE end_reason END
FROM export_tasks;
DROP TABLE export_tasks;
ALTER TABLE export_tasks_v2 RENAME TO export_tasks;
CREATE INDEX export_tasks_newest ON export_tasks (created_at DESC, task_id DESC);
CREATE INDEX export_tasks_state_newest ON export_tasks (state, created_at DESC, task_id DESC);

-- A row written at every start-up proves that the registry can be written.
CREATE TABLE registry_checks (
    id         INTEGER NOT NULL PRIMARY KEY,
    checked_at BIGINT  NOT NULL
);

-- +goose Down
DROP TABLE registry_checks;
CREATE TABLE export_tasks_v1 (
    id                VARCHAR(36) NOT NULL PRIMARY KEY,
    task_id           BIGINT      UNIQUE,
    request_id        VARCHAR(36) UNIQUE,
    fingerprint       VARCHAR(64) NOT NULL,
    parameters        TEXT        NOT NULL,
    creator           TEXT        NOT NULL DEFAULT '',
    owner             TEXT        NOT NULL DEFAULT '',
    created_at        BIGINT      NOT NULL,
    state             VARCHAR(16) NOT NULL DEFAULT '',
    download_url      TEXT        NOT NULL DEFAULT '',
    create_request_id TEXT        NOT NULL DEFAULT '',
    last_request_id   TEXT        NOT NULL DEFAULT '',
    observed_at       BIGINT      NOT NULL DEFAULT 0,
    changed_at        BIGINT      NOT NULL DEFAULT 0,
    end_reason        TEXT        NOT NULL DEFAULT ''
);
INSERT INTO export_tasks_v1 SELECT id, task_id, request_id, fingerprint, parameters, creator, owner, created_at, state,
    download_url, create_request_id, last_request_id, observed_at, changed_at, end_reason FROM export_tasks;
DROP TABLE export_tasks;
ALTER TABLE export_tasks_v1 RENAME TO export_tasks;
CREATE INDEX export_tasks_newest ON export_tasks (created_at DESC, task_id DESC);
CREATE INDEX export_tasks_state_newest ON export_tasks (state, created_at DESC, task_id DESC);
