package cli

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// watchMessage is a message of WatchExportTask or ExportLicenseDetailAndWatch.
type watchMessage interface {
	proto.Message
	GetKind() cwpexportv1.WatchEventKind
	GetTask() *cwpexportv1.ExportTask
	GetProgress() *cwpexportv1.Progress
}

// redrawEvery is how often the live line is redrawn between messages, so
// that the elapsed time and the countdown to the next poll move.
const redrawEvery = 200 * time.Millisecond

// recvFunc receives the next message of a watch stream.
type recvFunc func() (watchMessage, error)

// openFunc opens a stream that creates a task and watches it, on ctx.
type openFunc func(ctx context.Context) (recvFunc, error)

// followTask follows a task to its end and returns the last task seen:
// each message shown as a line redrawn in place on a terminal, one line per
// message otherwise, or one JSON object per message with --output json.
//
// When a stream ends with Unavailable (the service or its replica went
// away, or drained) or ends before FINISHED or ERROR, the watch is opened
// again by task id after a jittered backoff, for up to --reconnect-timeout
// since the last message; the progress line says so meanwhile. The
// service keeps no event log: a resumed stream begins with a SNAPSHOT of
// the current state. With create set and taskID empty, the first stream is
// create's, opened again until it names the task; create must carry a
// request id, so that opening it again never starts a second export.
func (a *app) followTask(ctx context.Context, taskID string, create openFunc) (*cwpexportv1.ExportTask, error) {
	var live *liveLine
	if a.tty && a.output == "text" {
		live = newLiveLine(a)
		defer live.stop()
	}
	r := a.newRetrier()
	var last *cwpexportv1.ExportTask
	for {
		sctx, cancel := context.WithCancel(ctx)
		var (
			recv recvFunc
			err  error
		)
		if taskID == "" {
			recv, err = create(sctx)
		} else {
			recv, err = a.openWatch(sctx, taskID)
		}
		if err == nil {
			err = a.show(recv, live, func(t *cwpexportv1.ExportTask) {
				last, taskID = t, t.GetTaskId()
				r.progress()
			})
		}
		cancel()
		if err == nil {
			if terminal(last) {
				return last, nil
			}
			err = endedEarly{taskID: taskID}
		}
		if ctx.Err() != nil {
			return last, err
		}
		wait, ok := r.next(err)
		if !ok {
			a.gaveUp(live, r, "reconnecting to task "+orUnknown(taskID))
			return last, err
		}
		a.reconnecting(live, taskID, err, wait, r.attempt)
		if err := sleep(ctx, wait); err != nil {
			return last, err
		}
	}
}

// openWatch opens WatchExportTask for the task.
func (a *app) openWatch(ctx context.Context, taskID string) (recvFunc, error) {
	stream, err := a.client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: taskID})
	if err != nil {
		return nil, err
	}
	return func() (watchMessage, error) { return stream.Recv() }, nil
}

// show reads one stream to its end, showing each message and handing its
// task to seen. It returns nil at the stream's clean end.
func (a *app) show(recv recvFunc, live *liveLine, seen func(*cwpexportv1.ExportTask)) error {
	for {
		msg, err := recv()
		if endOfStream(err) {
			return nil
		}
		if err != nil {
			return err
		}
		t := msg.GetTask()
		seen(t)
		switch {
		case a.output == "json":
			if err := a.printJSON(msg); err != nil {
				return err
			}
		case live != nil:
			live.update(msg)
		default:
			fmt.Fprintf(a.io.Stdout, "%s %-14s task %s  %s  %s\n", time.Now().Format("15:04:05"),
				strings.TrimPrefix(msg.GetKind().String(), "WATCH_EVENT_KIND_"), t.GetTaskId(), stateName(t.GetState()),
				progressText(t, msg.GetProgress(), 0))
		}
		if u := t.GetDownloadUrl(); u != "" && a.output == "text" {
			if live != nil {
				live.stop()
			}
			fmt.Fprintf(a.io.Stdout, "download: %s\n", u)
		}
	}
}

// reconnecting tells the user that the watch broke and when it is opened
// again: on the live line, as a line of its own, or on stderr beside JSON.
func (a *app) reconnecting(live *liveLine, taskID string, err error, wait time.Duration, attempt int) {
	what := fmt.Sprintf("reconnecting in %s (attempt %d) after %s", wait.Round(10*time.Millisecond), attempt, briefly(err))
	switch {
	case live != nil:
		// The line stays up while the attempt runs (gRPC may retry it): no
		// countdown that would go stale.
		live.note(fmt.Sprintf("reconnecting (attempt %d) after %s", attempt, briefly(err)))
	case a.output == "json":
		fmt.Fprintf(a.io.Stderr, "cwpexport: task %s: %s\n", orUnknown(taskID), what)
	default:
		fmt.Fprintf(a.io.Stdout, "%s %-14s task %s  %s\n", time.Now().Format("15:04:05"), "RECONNECTING", orUnknown(taskID), what)
	}
}

// notice prints a line about the command's own progress: on stdout in
// text, on stderr beside JSON (whose stdout holds only messages).
func (a *app) notice(format string, args ...any) {
	w := a.io.Stdout
	if a.output == "json" {
		w = a.io.Stderr
	}
	fmt.Fprintf(w, format+"\n", args...)
}

// gaveUp says on stderr, before the error itself, why the retries of r
// stopped, when there were any.
func (a *app) gaveUp(live *liveLine, r *retrier, what string) {
	why := r.gaveUp()
	if why == "" {
		return
	}
	if live != nil {
		live.stop()
	}
	fmt.Fprintf(a.io.Stderr, "cwpexport: stopped %s: %s\n", what, why)
}

func orUnknown(taskID string) string {
	if taskID == "" {
		return "(not yet known)"
	}
	return taskID
}

// terminal reports whether t has reached a state it never leaves.
func terminal(t *cwpexportv1.ExportTask) bool {
	switch t.GetState() {
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED, cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR:
		return true
	}
	return false
}

// progressText describes the progress the service observed of t; since is
// the time passed since the message was received, added to the elapsed
// time while t is pending. It claims nothing the CLI does not know: an
// ended task has no next poll, and once the announced poll time has passed
// the poll count is shown with its age until the service's next message
// (a heartbeat) says what came of the poll.
func progressText(t *cwpexportv1.ExportTask, p *cwpexportv1.Progress, since time.Duration) string {
	if terminal(t) {
		since = 0 // the task is over: its elapsed time no longer grows
	}
	polls := fmt.Sprintf("polls %d", p.GetPollCount())
	if next := p.GetNextPollTime(); next != nil && !terminal(t) && since >= redrawEvery && !time.Now().Before(next.AsTime()) {
		polls += " as of " + since.Round(100*time.Millisecond).String() + " ago"
	}
	parts := []string{polls}
	if p.GetTaskElapsed() != nil {
		parts = append(parts, "elapsed "+(p.GetTaskElapsed().AsDuration()+since).Round(100*time.Millisecond).String())
	}
	if p.GetNextPollTime() != nil && !terminal(t) {
		if d := time.Until(p.GetNextPollTime().AsTime()); d > 0 {
			parts = append(parts, "next poll in "+d.Round(100*time.Millisecond).String())
		}
	}
	if p.GetPendingTasks() > 1 {
		parts = append(parts, fmt.Sprintf("%d tasks share the budget", p.GetPendingTasks()))
	}
	if e := p.GetLastPollError(); e != "" {
		parts = append(parts, fmt.Sprintf("last poll failed (%d in a row): %s", p.GetConsecutivePollFailures(), e))
	}
	return strings.Join(parts, "  ")
}

// fit cuts line to fit in width columns, ending it with "…" when cut: a
// line as wide as the terminal would wrap, and each redraw scroll the
// screen. Columns are counted as runes, which the line's text is.
func fit(line string, width int) string {
	if width < 2 || utf8.RuneCountInString(line) < width {
		return line
	}
	r := []rune(line)
	return string(r[:width-2]) + "…"
}

// liveLine is one status line rewritten in place on a terminal.
type liveLine struct {
	a   *app
	mu  sync.Mutex
	msg watchMessage
	at  time.Time
	// status says what the CLI is doing while no message arrives
	// (reconnecting); the next message clears it.
	status  string
	done    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

func newLiveLine(a *app) *liveLine {
	l := &liveLine{a: a, done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(redrawEvery)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
				l.mu.Lock()
				l.drawLocked()
				l.mu.Unlock()
			}
		}
	}()
	return l
}

func (l *liveLine) update(msg watchMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msg, l.at, l.status = msg, time.Now(), ""
	l.drawLocked()
}

// note shows status after the last message until the next one arrives.
func (l *liveLine) note(status string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status = status
	l.drawLocked()
}

func (l *liveLine) drawLocked() {
	if l.msg == nil {
		if l.status != "" {
			fmt.Fprint(l.a.io.Stdout, "\r\x1b[K"+fit(l.status, terminalWidth(l.a.io.Stdout)))
		}
		return
	}
	t := l.msg.GetTask()
	text := progressText(t, l.msg.GetProgress(), time.Since(l.at))
	if l.status != "" {
		// What was observed before the break, and what happens now; the
		// next poll is unknown until the watch is back.
		text = fmt.Sprintf("polls %d  %s", l.msg.GetProgress().GetPollCount(), l.status)
	}
	// \r and "erase line" rewrite the line in place.
	fmt.Fprint(l.a.io.Stdout, "\r\x1b[K"+fit(fmt.Sprintf("task %s  %s  %s", t.GetTaskId(), stateName(t.GetState()), text), terminalWidth(l.a.io.Stdout)))
}

// stop ends the redraws and moves past the live line.
func (l *liveLine) stop() {
	l.stopped.Do(func() {
		close(l.done)
		l.wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.msg != nil || l.status != "" {
			l.drawLocked()
			fmt.Fprintln(l.a.io.Stdout)
		}
	})
}
