package cli

import (
	"fmt"
	"strings"
	"sync"
	"time"

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

// follow reads a watch stream to its end and shows each message: a line
// redrawn in place on a terminal, one line per message otherwise, or one
// JSON object per message with --output json. It returns the last task.
func (a *app) follow(recv func() (watchMessage, error)) (*cwpexportv1.ExportTask, error) {
	var live *liveLine
	if a.tty && a.output == "text" {
		live = newLiveLine(a)
		defer live.stop()
	}
	var last *cwpexportv1.ExportTask
	for {
		msg, err := recv()
		if endOfStream(err) {
			if last == nil {
				return nil, exitWith(ExitService, "the watch ended without a message")
			}
			return last, nil
		}
		if err != nil {
			return last, err
		}
		last = msg.GetTask()
		switch {
		case a.output == "json":
			if err := a.printJSON(msg); err != nil {
				return last, err
			}
		case live != nil:
			live.update(msg)
		default:
			fmt.Fprintf(a.io.Stdout, "%s %-14s task %s  %s  %s\n", time.Now().Format("15:04:05"),
				strings.TrimPrefix(msg.GetKind().String(), "WATCH_EVENT_KIND_"), last.GetTaskId(), stateName(last.GetState()),
				progressText(msg.GetProgress(), 0))
		}
		if u := last.GetDownloadUrl(); u != "" && a.output == "text" {
			if live != nil {
				live.stop()
			}
			fmt.Fprintf(a.io.Stdout, "download: %s\n", u)
		}
	}
}

// progressText describes observed progress; since is the time passed since
// the message was received, added to the elapsed time it reported.
func progressText(p *cwpexportv1.Progress, since time.Duration) string {
	parts := []string{fmt.Sprintf("polls %d", p.GetPollCount())}
	if p.GetTaskElapsed() != nil {
		parts = append(parts, "elapsed "+(p.GetTaskElapsed().AsDuration()+since).Round(100*time.Millisecond).String())
	}
	if p.GetNextPollTime() != nil {
		if d := time.Until(p.GetNextPollTime().AsTime()); d > 0 {
			parts = append(parts, "next poll in "+d.Round(100*time.Millisecond).String())
		} else {
			parts = append(parts, "next poll now")
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

// liveLine is one status line rewritten in place on a terminal.
type liveLine struct {
	a       *app
	mu      sync.Mutex
	msg     watchMessage
	at      time.Time
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
	l.msg, l.at = msg, time.Now()
	l.drawLocked()
}

func (l *liveLine) drawLocked() {
	if l.msg == nil {
		return
	}
	t := l.msg.GetTask()
	since := time.Since(l.at)
	if t.GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING {
		since = 0 // the task is over: its elapsed time no longer grows
	}
	// \r and "erase line" rewrite the line in place.
	fmt.Fprintf(l.a.io.Stdout, "\r\x1b[Ktask %s  %s  %s", t.GetTaskId(), stateName(t.GetState()), progressText(l.msg.GetProgress(), since))
}

// stop ends the redraws and moves past the live line.
func (l *liveLine) stop() {
	l.stopped.Do(func() {
		close(l.done)
		l.wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.msg != nil {
			l.drawLocked()
			fmt.Fprintln(l.a.io.Stdout)
		}
	})
}
