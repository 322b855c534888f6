-- The state a fleet of replicas shares on PostgreSQL: the budget of each
-- cloud action, the schedule of the tasks' polls with their leases and latest
-- observations, and which replica wants which task polled. Times come from
-- the database's clock, never a replica's.

-- +goose Up
-- One row per cloud action: start slots are handed out from next_slot, one
-- round trip per call; cut_at, base and ceiling are the adaptation after the
-- cloud's last RequestLimitExceeded (see package budget).
CREATE TABLE fleet_budget (
    action     TEXT             NOT NULL PRIMARY KEY,
    next_slot  TIMESTAMPTZ      NOT NULL DEFAULT '-infinity',
    cut_at     TIMESTAMPTZ,
    base       DOUBLE PRECISION NOT NULL DEFAULT 0,
    ceiling    DOUBLE PRECISION NOT NULL DEFAULT 0,
    throttles  BIGINT           NOT NULL DEFAULT 0
);
INSERT INTO fleet_budget (action) VALUES ('ExportLicenseDetail'), ('ExportTasks');

-- The rate a budget allows at time at: the configured rate, or after a cut
-- CUBIC's curve from base through ceiling (reached recovery seconds after
-- the cut), never under floor_rate nor over the configured rate.
-- +goose StatementBegin
CREATE FUNCTION fleet_budget_rate(cut_at TIMESTAMPTZ, base DOUBLE PRECISION, ceiling DOUBLE PRECISION,
    configured DOUBLE PRECISION, floor_rate DOUBLE PRECISION, backoff DOUBLE PRECISION, recovery DOUBLE PRECISION,
    at TIMESTAMPTZ) RETURNS DOUBLE PRECISION LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN cut_at IS NULL THEN configured ELSE
    least(configured, greatest(floor_rate,
      ceiling + greatest(ceiling - base, ceiling * (1 - backoff)) / (recovery ^ 3)
              * ((extract(epoch FROM at - cut_at)::double precision - recovery) ^ 3)))
  END
$$;
-- +goose StatementEnd

-- One row per task the fleet polls. A poll holds the row's lease (owner,
-- epoch, lease_until); its result is written only under the epoch it was
-- taken with, so a poller that lost its lease cannot overwrite newer state.
CREATE TABLE fleet_tasks (
    task_id      BIGINT      NOT NULL PRIMARY KEY,
    due          TIMESTAMPTZ NOT NULL,
    cadence      TIMESTAMPTZ,
    asked        TIMESTAMPTZ,
    retry_at     TIMESTAMPTZ,
    owner        TEXT        NOT NULL DEFAULT '',
    epoch        BIGINT      NOT NULL DEFAULT 0,
    lease_until  TIMESTAMPTZ,
    state        TEXT        NOT NULL DEFAULT '',
    download_url TEXT        NOT NULL DEFAULT '',
    request_id   TEXT        NOT NULL DEFAULT '',
    -- A refusal ends the task for its watchers; an error is the last
    -- transient failure, retried.
    refusal_code TEXT        NOT NULL DEFAULT '',
    refusal      TEXT        NOT NULL DEFAULT '',
    error_code   TEXT        NOT NULL DEFAULT '',
    error        TEXT        NOT NULL DEFAULT '',
    polls        BIGINT      NOT NULL DEFAULT 0,
    failures     INTEGER     NOT NULL DEFAULT 0,
    -- The trace and span ids of the latest poll's span (hex), for the
    -- watches on every replica that report what it observed.
    poll_span    TEXT        NOT NULL DEFAULT '',
    last_poll    TIMESTAMPTZ,
    observed     TIMESTAMPTZ,
    changed      TIMESTAMPTZ
);
CREATE INDEX fleet_tasks_due ON fleet_tasks (due);

-- How strongly each replica wants each task polled (0 urgent, 1 watched,
-- 2 background), until when: a replica that dies stops renewing its rows.
CREATE TABLE fleet_interest (
    task_id BIGINT      NOT NULL,
    replica TEXT        NOT NULL,
    tier    SMALLINT    NOT NULL,
    until   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (task_id, replica)
);
CREATE INDEX fleet_interest_replica ON fleet_interest (replica);

-- +goose Down
DROP FUNCTION fleet_budget_rate;
DROP TABLE fleet_interest;
DROP TABLE fleet_tasks;
DROP TABLE fleet_budget;
