package emulator

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestPerSecondSeries: each second of the emulator clock counts the requests
// the rate limiter saw and the ones it refused, per action, and
// GET /_emulator/stats carries the series.
func TestPerSecondSeries(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, RateLimit: 10})
	c := sdkClient(s, testID, testKey)
	create := func() string {
		return errCode(t, sdkCall(t, c, APIVersion, "ExportLicenseDetail", nil, nil))
	}
	first := clock.Now().Unix()
	refused := 0
	for range 12 {
		if create() == codeRequestLimitExceeded {
			refused++
		}
	}
	if refused != 2 {
		t.Fatalf("12 creations against a limit of 10: %d refused, want 2", refused)
	}
	// Two seconds later the window is free again; the silent second is not
	// listed.
	clock.Advance(2 * time.Second)
	for range 3 {
		if code := create(); code != "" {
			t.Fatalf("creation after 2s: %s", code)
		}
	}
	if code := errCode(t, sdkCall(t, c, APIVersion, "ExportTasks", map[string]any{"TaskId": "1"}, nil)); code != "" {
		t.Fatalf("ExportTasks: %s", code)
	}
	// A request that fails authentication never reaches the limiter.
	if code := errCode(t, sdkCall(t, sdkClient(s, unknownID, testKey), APIVersion, "ExportLicenseDetail", nil, nil)); code == "" {
		t.Fatal("an unknown SecretId was answered")
	}

	want := []SecondCount{{Second: first, Offered: 12, Refused: 2}, {Second: first + 2, Offered: 3}}
	var got Stats
	resp, err := http.Get(s.url("/_emulator/stats"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if ps := got.Actions["ExportLicenseDetail"].PerSecond; !slices.Equal(ps, want) {
		t.Fatalf("ExportLicenseDetail per second %+v, want %+v", ps, want)
	}
	if ps := got.Actions["ExportTasks"].PerSecond; !slices.Equal(ps, []SecondCount{{Second: first + 2, Offered: 1}}) {
		t.Fatalf("ExportTasks per second %+v, want one request at second %d", ps, first+2)
	}
}

// TestPerSecondSeriesOrderAndSpan: a request decided a little out of order
// lands in its own second, and the series keeps only the last SeriesSeconds.
func TestPerSecondSeriesOrderAndSpan(t *testing.T) {
	r := newStatsRecorder()
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	r.offered(actionExportTasks, at(5.2), 1, true)
	r.offered(actionExportTasks, at(3.9), 1, false) // decided after a later one
	r.offered(actionExportTasks, at(5.9), 2, false)
	r.offered(actionExportTasks, at(4.0), 1, true)
	want := []SecondCount{{Second: t0.Unix() + 3, Offered: 1, Refused: 1}, {Second: t0.Unix() + 4, Offered: 1}, {Second: t0.Unix() + 5, Offered: 2, Refused: 1}}
	if got := r.snapshot().Actions[actionExportTasks].PerSecond; !slices.Equal(got, want) {
		t.Fatalf("series %+v, want %+v", got, want)
	}

	// SeriesSeconds later the oldest seconds have left; a request older
	// than the span is not counted in the series.
	r.offered(actionExportTasks, at(4+SeriesSeconds), 1, true)
	r.offered(actionExportTasks, at(2), 1, true)
	got := r.snapshot().Actions[actionExportTasks].PerSecond
	want = []SecondCount{{Second: t0.Unix() + 5, Offered: 2, Refused: 1}, {Second: t0.Unix() + 4 + SeriesSeconds, Offered: 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("series after %d s %+v, want %+v", SeriesSeconds, got, want)
	}
	if peak := r.snapshot().Actions[actionExportTasks].PeakPerSecond; peak != 2 {
		t.Fatalf("PeakPerSecond %d, want 2", peak)
	}
}

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
