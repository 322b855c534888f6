package fleet

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// taskColumns are what a row says of a task's latest poll. Their names are
// the keys of a notification that carries the row (see taskRow.decode).
const taskColumns = `t.task_id, t.state, t.download_url, t.request_id, t.refusal_code, t.refusal, t.error_code, t.error,
	t.polls, t.failures, t.last_poll, t.observed, t.changed, t.due,
	coalesce(t.lease_until > clock_timestamp(), false) AS leased, t.poll_span, t.generation`

// taskRow is one row of fleet_tasks as read.
type taskRow struct {
	id                                     int64
	state, url, rid                        string
	refusalCode, refusal, errCode, errText string
	polls                                  int64
	failures                               int
	lastPoll, observed, changed            *time.Time
	due                                    time.Time
	leased                                 bool
	span                                   string
	gen                                    int64
	// carried says that the row came whole in a notification.
	carried bool
}

// notifiedRow is a row as a notification carries it: taskColumns as a
// JSON object (PostgreSQL's to_json of the row).
type notifiedRow struct {
	ID          int64      `json:"task_id"`
	State       string     `json:"state"`
	URL         string     `json:"download_url"`
	RequestID   string     `json:"request_id"`
	RefusalCode string     `json:"refusal_code"`
	Refusal     string     `json:"refusal"`
	ErrCode     string     `json:"error_code"`
	ErrText     string     `json:"error"`
	Polls       int64      `json:"polls"`
	Failures    int        `json:"failures"`
	LastPoll    *time.Time `json:"last_poll"`
	Observed    *time.Time `json:"observed"`
	Changed     *time.Time `json:"changed"`
	Due         time.Time  `json:"due"`
	Leased      bool       `json:"leased"`
	Span        string     `json:"poll_span"`
	Generation  int64      `json:"generation"`
}

// decode reads a row from a notification's payload.
func (r *taskRow) decode(payload string) error {
	var n notifiedRow
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		return err
	}
	if n.ID <= 0 {
		return errors.New("no task id")
	}
	*r = taskRow{id: n.ID, state: n.State, url: n.URL, rid: n.RequestID, refusalCode: n.RefusalCode, refusal: n.Refusal,
		errCode: n.ErrCode, errText: n.ErrText, polls: n.Polls, failures: n.Failures, lastPoll: n.LastPoll,
		observed: n.Observed, changed: n.Changed, due: scheduledDue(n.Due), leased: n.Leased, span: n.Span, gen: n.Generation, carried: true}
	return nil
}

func (r *taskRow) scan(row pgx.Row, extra ...any) error {
	err := row.Scan(append([]any{&r.id, &r.state, &r.url, &r.rid, &r.refusalCode, &r.refusal, &r.errCode, &r.errText,
		&r.polls, &r.failures, &r.lastPoll, &r.observed, &r.changed, &r.due, &r.leased, &r.span, &r.gen}, extra...)...)
	r.due = scheduledDue(r.due)
	return err
}

// observed reports whether the row holds an observation to report.
func (r *taskRow) observedAny() bool { return r.polls > 0 || r.state != "" || r.refusalCode != "" }

// poll is what the row says of the task's latest poll, as the tracker
// reads it; now is the fleet's clock.
func (r *taskRow) poll(pending int, now time.Time) tracker.Poll {
	p := tracker.Poll{TaskID: r.id, Gen: r.gen, Polls: r.polls, Failures: r.failures, Pending: pending, NextPoll: r.due, Span: parseSpan(r.span)}
	if r.leased {
		p.NextPoll = now
	}
	if r.lastPoll != nil {
		p.At = *r.lastPoll
	}
	if r.observed != nil {
		p.Observed = *r.observed
		if p.At.IsZero() {
			p.At = p.Observed // created, not yet polled
		}
	}
	if r.changed != nil {
		p.Changed = *r.changed
	}
	switch {
	case r.refusalCode != "":
		p.Err = &cloud.Error{Action: cloud.ActionExportTasks, Code: r.refusalCode, Message: r.refusal, RequestID: r.rid}
	case r.failures > 0 && r.errCode != "":
		p.Transient = &cloud.Error{Action: cloud.ActionExportTasks, Code: r.errCode, Message: r.errText}
	}
	if p.Err == nil && r.state != "" {
		// Known even when the last poll failed: as observed before.
		p.Status = cloud.TaskStatus{Status: cloud.Status(r.state), DownloadURL: r.url, RequestID: r.rid}
	}
	return p
}
