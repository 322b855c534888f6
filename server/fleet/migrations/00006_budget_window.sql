-- One rate per action for the whole fleet, and slots that hold the rate
-- whatever the time a replica's answers take to arrive.
--
-- A replica learns its slot from the database's clock, read in the slot's
-- statement; the answer reaches it some time later, unknown but at most the
-- round trip. It starts its call when the latest moment the slot may have
-- been reached by its own clock, so its start falls anywhere in a window
-- [slot, slot + width] where width is the lateness it allows plus its round
-- trip. ends keeps the end of that window for the latest slots: a slot is
-- never placed less than 1 s + jitter after the end of the window of the
-- slot ceil(rate) before it, so that no 1-second window at the cloud holds
-- more than the rate's calls, however wide each replica's windows are.

-- +goose Up
ALTER TABLE fleet_budget ADD COLUMN rate DOUBLE PRECISION;
ALTER TABLE fleet_budget ADD COLUMN ends TIMESTAMPTZ[] NOT NULL DEFAULT '{}';

-- fleet_take_slot hands out the action's next slot, unless it is more than
-- max_wait seconds away (max_wait < 0: any), and returns it with the
-- database's clock read after the row's lock, the effective rate, the
-- fleet's count of refusals and its configured rate; no row when refused or when the fleet's rate
-- is not set. floor_rate < 0 means an eighth of the fleet's rate.
-- +goose StatementBegin
CREATE FUNCTION fleet_take_slot(p_action TEXT, floor_rate DOUBLE PRECISION, backoff DOUBLE PRECISION,
    recovery DOUBLE PRECISION, margin DOUBLE PRECISION, jitter DOUBLE PRECISION, width DOUBLE PRECISION,
    max_wait DOUBLE PRECISION)
RETURNS TABLE (slot TIMESTAMPTZ, db_now TIMESTAMPTZ, rate DOUBLE PRECISION, throttles BIGINT, configured DOUBLE PRECISION)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  b   fleet_budget%ROWTYPE;
  t   TIMESTAMPTZ;
  r   DOUBLE PRECISION;
  n   INTEGER;
  s   TIMESTAMPTZ;
  len INTEGER;
BEGIN
  SELECT * INTO b FROM fleet_budget f WHERE f.action = p_action FOR UPDATE;
  IF NOT FOUND OR b.rate IS NULL THEN
    RETURN;
  END IF;
  t := clock_timestamp();
  r := fleet_budget_rate(b.cut_at, b.base, b.ceiling, b.rate,
         CASE WHEN floor_rate < 0 THEN b.rate / 8 ELSE least(floor_rate, b.rate) END, backoff, recovery, t);
  n := greatest(1, ceil(r))::INTEGER;
  s := greatest(t, b.next_slot);
  len := coalesce(array_length(b.ends, 1), 0);
  IF len >= n THEN
    s := greatest(s, b.ends[len - n + 1] + make_interval(secs => 1 + jitter));
  END IF;
  IF max_wait >= 0 AND s > t + make_interval(secs => max_wait) THEN
    RETURN;
  END IF;
  b.ends := b.ends || (s + make_interval(secs => width));
  len := array_length(b.ends, 1);
  -- Keep as many ends as the fleet's configured rate may need.
  b.ends := b.ends[greatest(1, len - greatest(1, ceil(b.rate))::INTEGER + 1):len];
  UPDATE fleet_budget f SET next_slot = s + make_interval(secs => (1 + margin) / r), last_gap = (1 + margin) / r,
    ends = b.ends WHERE f.action = p_action;
  slot := s;
  db_now := clock_timestamp();
  rate := r;
  throttles := b.throttles;
  configured := b.rate;
  RETURN NEXT;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION fleet_take_slot;
ALTER TABLE fleet_budget DROP COLUMN ends;
ALTER TABLE fleet_budget DROP COLUMN rate;
