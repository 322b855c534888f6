package emulator

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// The poll times of each task are kept, oldest first, bounded per task, and
// survive the stats endpoint's JSON; a lookup of an unknown task is not
// recorded.
func TestStatsPollTimes(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, PendingFor: -1})
	c := sdkClient(s, testID, testKey)
	a, b := createTask(t, c, nil), createTask(t, c, nil)

	var want []time.Time
	for range PollTimesKept + 3 {
		clock.Advance(100 * time.Millisecond) // within the rate limit
		want = append(want, clock.Now())
		pollTask(t, c, a)
	}
	want = want[3:]
	clock.Advance(time.Second)
	bAt := clock.Now()
	pollTask(t, c, b)
	var r pollResp
	if err := sdkCall(t, c, APIVersion, "ExportTasks", map[string]any{"TaskId": "999999"}, &r); err == nil {
		t.Fatal("an unknown task was found")
	}

	resp, err := http.Get(s.url("/_emulator/stats"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	got := st.Actions[actionExportTasks].PollTimes
	if len(got) != 2 {
		t.Fatalf("poll times of %d tasks, want 2: %v", len(got), got)
	}
	if len(got[a]) != PollTimesKept || st.TaskPolls(a) != PollTimesKept+3 {
		t.Fatalf("task %d: %d times kept of %d polls, want %d of %d", a, len(got[a]), st.TaskPolls(a), PollTimesKept, PollTimesKept+3)
	}
	for i, at := range got[a] {
		if !at.Equal(want[i]) {
			t.Fatalf("task %d poll time %d = %v, want %v", a, i, at, want[i])
		}
	}
	if len(got[b]) != 1 || !got[b][0].Equal(bAt) {
		t.Errorf("task %d poll times %v, want [%v]", b, got[b], bAt)
	}
	if n := len(st.Actions[actionExportLicenseDetail].PollTimes); n != 0 {
		t.Errorf("ExportLicenseDetail has poll times of %d tasks", n)
	}
}
