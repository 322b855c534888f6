package e2e_test

import (
	"context"
	"testing"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestEndedTasksOlderThanTheRetentionArePruned: the server prunes, off the
// hot path, the ended tasks its registry recorded longer ago than
// -retention, and keeps the younger ones.
func TestEndedTasksOlderThanTheRetentionArePruned(t *testing.T) {
	dir := t.TempDir()
	store, err := taskstore.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for id, created := range map[int64]time.Time{515151: now.Add(-31 * 24 * time.Hour), 515152: now.Add(-time.Hour)} {
		if err := store.Insert(context.Background(), taskstore.Task{TaskID: id, Fingerprint: "f", Parameters: "{}", Created: created,
			State: taskstore.StateFinished, Observed: created, Changed: created}); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	o := fastApp()
	o.DataDir, o.Retention = dir, 30*24*time.Hour
	env := testserver.Start(t, testserver.Config{App: o})
	testutil.WaitFor(t, "the old task to be pruned", func() bool {
		page, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return len(page.GetTasks()) == 1 && page.GetTasks()[0].GetTaskId() == "515152"
	})
}
