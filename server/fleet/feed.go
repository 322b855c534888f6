package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// listen follows the feed until ctx ends: each notification names a task
// whose row is read again if this replica wants it. After (re)connecting,
// every wanted task's row is read again: notifications sent while the
// listener was away are lost to it.
func (s *Schedule) listen(ctx context.Context) {
	cfg := s.f.pool.Config().ConnConfig.Copy()
	l := &pgxlisten.Listener{
		Connect:        func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg) },
		ReconnectDelay: retryPause,
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				s.opts.Logger.Warn("fleet: the feed's listener failed; reconnecting", "err", err)
			}
		},
	}
	l.Handle(Channel, feedHandler{s})
	l.Handle(PingChannel, pingHandler{s})
	_ = l.Listen(ctx)
}

type feedHandler struct{ s *Schedule }

// HandleNotification takes the row a notification carries, or, when it
// names only the task (a row too large for a notification), marks the row
// to be read.
func (h feedHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	var (
		r   taskRow
		err error
	)
	if strings.HasPrefix(n.Payload, "{") {
		err = r.decode(n.Payload)
	} else {
		r.id, err = strconv.ParseInt(n.Payload, 10, 64)
	}
	if err != nil {
		return fmt.Errorf("notification %.100q: %w", n.Payload, err)
	}
	h.s.mu.Lock()
	if _, wanted := h.s.want[r.id]; wanted {
		if r.carried {
			h.s.notified[r.id] = r
		} else {
			h.s.reads[r.id] = true
		}
		wake(h.s.readWake)
	}
	h.s.mu.Unlock()
	return nil
}

func (h feedHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.s.mu.Lock()
	for id := range h.s.want {
		h.s.reads[id] = true
	}
	h.s.mu.Unlock()
	wake(h.s.readWake)
	return nil
}

// readCoalesce is how long the feed's reader gathers task ids before it
// reads their rows.
const readCoalesce = 10 * time.Millisecond

// readLoop reports the rows notifications carried, reads the rows of the
// tasks named by other notifications and new interest, and reports them.
func (s *Schedule) readLoop(ctx context.Context, report func(tracker.Poll)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.readWake:
		}
		s.mu.Lock()
		carried := s.notified
		s.notified = map[int64]taskRow{}
		toRead := len(s.reads) > 0
		s.mu.Unlock()
		if len(carried) > 0 {
			s.deliver(slices.Collect(maps.Values(carried)), report)
		}
		if !toRead {
			continue
		}
		// Reads come in bursts (new interest, a listener's reconnect): one
		// read serves those of a few milliseconds.
		if budget.Sleep(ctx, readCoalesce) != nil {
			return
		}
		s.mu.Lock()
		ids := make([]int64, 0, len(s.reads))
		for id := range s.reads {
			if _, wanted := s.want[id]; wanted {
				ids = append(ids, id)
			}
		}
		s.reads = map[int64]bool{}
		s.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		rows, err := s.f.pool.Query(ctx, `SELECT `+taskColumns+` FROM fleet_tasks t WHERE t.task_id = ANY($1::bigint[])`, ids)
		var got []taskRow
		if err == nil {
			for rows.Next() {
				var r taskRow
				if err = r.scan(rows); err != nil {
					break
				}
				got = append(got, r)
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		if err := s.f.check(ctx, err); err != nil {
			s.mu.Lock()
			for _, id := range ids {
				s.reads[id] = true
			}
			s.mu.Unlock()
			s.pause(ctx, "read the feed's tasks", err)
			wake(s.readWake)
			continue
		}
		s.deliver(got, report)
	}
}

// deliver keeps the rows' schedules and reports what they observed.
func (s *Schedule) deliver(got []taskRow, report func(tracker.Poll)) {
	s.mu.Lock()
	pending := s.pending
	for _, r := range got {
		s.rows[r.id] = rowSchedule{due: r.due, leased: r.leased}
	}
	s.mu.Unlock()
	for i := range got {
		if got[i].observedAny() {
			report(got[i].poll(pending, s.f.Now()))
		}
	}
}

// Lookup implements tracker.Scheduler: the task's row answers a read when
// it is fresh — observed within Freshness, ended, refused within
// Freshness, or watched by some replica (then it is as fresh as the
// fleet's budget allows).
func (s *Schedule) Lookup(ctx context.Context, id int64) (tracker.Poll, bool) {
	var (
		r       taskRow
		watched bool
		now     time.Time
	)
	err := r.scan(s.f.pool.QueryRow(ctx, `SELECT `+taskColumns+`,
		EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id AND i.tier <= 1 AND i.until > clock_timestamp()),
		clock_timestamp() FROM fleet_tasks t WHERE t.task_id = $1`, id), &watched, &now)
	if errors.Is(err, pgx.ErrNoRows) {
		return tracker.Poll{}, false
	}
	if s.f.check(ctx, err) != nil {
		return tracker.Poll{}, false
	}
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	p := r.poll(pending, s.f.Now())
	fresh := func(t *time.Time) bool { return t != nil && now.Sub(*t) < s.opts.Freshness }
	switch {
	case r.refusalCode != "":
		return p, fresh(r.lastPoll)
	case r.state == string(cloud.StatusFinished) || r.state == string(cloud.StatusError):
		return p, true
	case r.state != "":
		return p, watched || fresh(r.observed)
	}
	return tracker.Poll{}, false
}
