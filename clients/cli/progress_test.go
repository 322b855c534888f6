package cli

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// TestProgressTextClaimsOnlyWhatIsKnown: the line announces a next poll only
// while it is ahead and the task is pending, gives the poll count its age
// once a poll was due since, and shows an ended task's elapsed time as the
// service sent it, however long ago the message came.
func TestProgressTextClaimsOnlyWhatIsKnown(t *testing.T) {
	pending := &cwpexportv1.ExportTask{State: cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING}
	finished := &cwpexportv1.ExportTask{State: cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED}
	at := func(d time.Duration) *cwpexportv1.Progress {
		return &cwpexportv1.Progress{TaskElapsed: durationpb.New(3 * time.Second), NextPollTime: timestamppb.New(time.Now().Add(d))}
	}
	for _, c := range []struct {
		name  string
		task  *cwpexportv1.ExportTask
		p     *cwpexportv1.Progress
		since time.Duration
		want  string
		never string
	}{
		{"pending, poll ahead", pending, at(time.Hour), 2 * time.Second, "elapsed 5s  next poll in 1h0m0s", ""},
		{"pending, poll time passed", pending, at(-time.Second), 0, "polls 0  elapsed 3s", "next poll"},
		{"pending, poll time passed 2s ago", pending, at(-time.Second), 2 * time.Second, "polls 0 as of 2s ago  elapsed 5s", "next poll"},
		{"finished", finished, at(time.Hour), 2 * time.Second, "polls 0  elapsed 3s", "next poll"},
	} {
		got := progressText(c.task, c.p, c.since)
		if !strings.Contains(got, c.want) || (c.never != "" && strings.Contains(got, c.never)) {
			t.Errorf("%s: %q, want %q without %q", c.name, got, c.want, c.never)
		}
	}
}

func TestFitCutsToTheWidth(t *testing.T) {
	long := strings.Repeat("é", 200)
	if got := fit(long, 80); len([]rune(got)) != 79 || !strings.HasSuffix(got, "…") {
		t.Errorf("fit of 200 runes into 80 columns gave %d runes: %q", len([]rune(got)), got)
	}
	if got := fit("short", 80); got != "short" {
		t.Errorf("fit changed a short line: %q", got)
	}
}
