package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fileSHA256 asks the admin endpoint for task id's file.
func fileSHA256(t *testing.T, s *server, id int64) FileInfo {
	t.Helper()
	resp, body := get(t, s.url(fmt.Sprintf("/_emulator/tasks/%d/file", id)))
	var info FileInfo
	if err := json.Unmarshal(body, &info); err != nil || resp.StatusCode != 200 {
		t.Fatalf("file of task %d: HTTP %d %s", id, resp.StatusCode, body)
	}
	return info
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// onHost points a download URL at another emulator address, keeping its
// token, expiry and signature.
func onHost(t *testing.T, raw, addr string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

func keywords(values ...string) map[string]any {
	return map[string]any{"Filters": []any{map[string]any{"Name": "Keywords", "Values": values}}}
}

// TestStateSurvivesRestart stops an emulator and starts another on its
// state directory, on a later day: the tasks answer as before for their own
// account only, download URLs given before still download the same bytes,
// and ids continue.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	// The first emulator's data set is anchored two days back; its clock
	// then returns to the present so the SDK's signatures are in time.
	clock := newFakeClock()
	clock.Advance(-48 * time.Hour)
	opts := Options{Now: clock.Now, PendingFor: time.Minute, DownloadTTL: 72 * time.Hour, StateDir: dir}
	s1, stop1 := serve(t, opts)
	t.Cleanup(stop1)
	clock.Advance(48 * time.Hour)
	c := sdkClient(s1, testID, testKey)

	history := map[string]any{"IsHistory": true, "ExportMonth": clock.Now().AddDate(0, -1, 0).Format("2006-01"),
		"Tags": []any{map[string]any{"TagKey": "env", "TagValue": "prod"}}}
	finished := createTask(t, c, history)
	failing := createTask(t, c, keywords("web", failKeyword))
	synthetic := createTask(t, c, keywords(sizeKeywordPrefix+"200000"))
	if err := s1.FinishTask(finished); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute) // failing and synthetic end by their pending time
	pending := []int64{createTask(t, c, map[string]any{"Filters": []any{map[string]any{"Name": "LicenseType", "Values": []any{"1"}}}}), createTask(t, c, nil)}

	want := map[int64]string{finished: statusFinished, failing: statusError, synthetic: statusFinished, pending[0]: statusPending, pending[1]: statusPending}
	urls, sums := map[int64]string{}, map[int64]string{}
	for id, state := range want {
		p := pollTask(t, c, id)
		if p.Status != state {
			t.Fatalf("before the restart task %d is %s, want %s", id, p.Status, state)
		}
		if state == statusFinished {
			urls[id] = p.DownloadUrl
			sums[id] = sum(download(t, p.DownloadUrl))
		}
	}
	stop1()

	// The next run keeps tasks pending until told otherwise: ended tasks
	// must stay ended because the journal says so, not by the clock.
	opts.PendingFor = -1
	s2 := startServer(t, opts)
	c2 := sdkClient(s2, testID, testKey)
	for id, state := range want {
		if p := pollTask(t, c2, id); p.Status != state || (state == statusFinished) != (p.DownloadUrl != "") {
			t.Errorf("after the restart task %d answers %+v, want %s", id, p, state)
		}
		err := sdkCall(t, sdkClient(s2, otherID, otherKey), APIVersion, actionExportTasks, map[string]any{"TaskId": itoa(id)}, nil)
		if code := errCode(t, err); code != codeResourceNotFound {
			t.Errorf("another account sees task %d after the restart: %q", id, code)
		}
	}
	for id, before := range sums {
		// The old URL (signature included) on the new emulator's address.
		if got := sum(download(t, onHost(t, urls[id], s2.addr))); got != before {
			t.Errorf("task %d downloads other bytes after the restart", id)
		}
		if info := fileSHA256(t, s2, id); info.SHA256 != before {
			t.Errorf("task %d file %+v after the restart, want SHA-256 %s", id, info, before)
		}
	}
	// A pending task is still the admin's to end, and ids continue.
	if err := s2.FinishTask(pending[0]); err != nil {
		t.Fatal(err)
	}
	if p := pollTask(t, c2, pending[0]); p.Status != statusFinished {
		t.Errorf("pending task finished after the restart: %+v", p)
	}
	if id := createTask(t, c2, nil); id != pending[1]+1 {
		t.Errorf("first id after the restart %d, want %d", id, pending[1]+1)
	}

	// The control: a data set anchored today gives the history export
	// other bytes, so the equality above proves the anchor was kept.
	fresh := startServer(t, Options{Now: clock.Now, PendingFor: -1})
	fc := sdkClient(fresh, testID, testKey)
	id := createTask(t, fc, history)
	if err := fresh.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	if sum(download(t, pollTask(t, fc, id).DownloadUrl)) == sums[finished] {
		t.Error("a data set anchored on another day gave the same file: the test proves nothing")
	}
}

// TestStateIDFloor: FirstTaskID stays a floor over the recorded ids.
func TestStateIDFloor(t *testing.T) {
	dir := t.TempDir()
	s1, stop := serve(t, Options{StateDir: dir, FirstTaskID: 500})
	if id := createTask(t, sdkClient(s1, testID, testKey), nil); id != 500 {
		t.Fatalf("first id %d, want 500", id)
	}
	stop()
	s2, stop := serve(t, Options{StateDir: dir, FirstTaskID: 100})
	if id := createTask(t, sdkClient(s2, testID, testKey), nil); id != 501 {
		t.Fatalf("id with a lower floor %d, want 501", id)
	}
	stop()
	s3 := startServer(t, Options{StateDir: dir, FirstTaskID: 900})
	if id := createTask(t, sdkClient(s3, testID, testKey), nil); id != 900 {
		t.Fatalf("id with a higher floor %d, want 900", id)
	}
}

// TestStateTornLastLine: a journal whose last line a crash cut short starts
// with a warning, without that line; damage anywhere else refuses to start.
func TestStateTornLastLine(t *testing.T) {
	dir := t.TempDir()
	s1, stop := serve(t, Options{StateDir: dir, PendingFor: -1})
	c := sdkClient(s1, testID, testKey)
	a, b := createTask(t, c, nil), createTask(t, c, nil)
	stop()

	path := filepath.Join(dir, journalName)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := `{"Kind":"task","ID":3,"Owner":"AKIDtest`
	if err := os.WriteFile(path, append(bytes.Clone(whole), torn...), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	e, err := New(Options{Credentials: map[string]string{testID: testKey}, StateDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("New on a journal with a torn last line: %v", err)
	}
	e.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "torn last line") {
		t.Errorf("no warning about the torn line in %q", logs.String())
	}
	s2, stop := serve(t, Options{StateDir: dir, PendingFor: -1})
	c2 := sdkClient(s2, testID, testKey)
	for _, id := range []int64{a, b} {
		if p := pollTask(t, c2, id); p.Status != statusPending {
			t.Errorf("task %d after a torn line: %+v", id, p)
		}
	}
	// The torn creation was never answered: its id is given again, on a
	// line of its own.
	if id := createTask(t, c2, nil); id != b+1 {
		t.Errorf("next id %d, want %d", id, b+1)
	}
	stop()
	s3 := startServer(t, Options{StateDir: dir, PendingFor: -1})
	if p := pollTask(t, sdkClient(s3, testID, testKey), b+1); p.Status != statusPending {
		t.Errorf("task created after the torn line: %+v", p)
	}

	// A damaged line that is not the last is not a crash's doing.
	other := t.TempDir()
	lines := strings.SplitAfter(string(whole), "\n")
	lines[1] = `{"Kind":"task","ID":1,` + "\n"
	if err := os.WriteFile(filepath.Join(other, journalName), []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Credentials: map[string]string{testID: testKey}, StateDir: other})
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("New on a damaged journal: %v, want an error naming line 2", err)
	}
}

// TestStateDirectoryOwnership: one emulator at a time, and the data set a
// directory was started with.
func TestStateDirectoryOwnership(t *testing.T) {
	dir := t.TempDir()
	creds := map[string]string{testID: testKey}
	e, err := New(Options{Credentials: creds, StateDir: dir, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Credentials: creds, StateDir: dir, Seed: 7}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second emulator on the directory: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Credentials: creds, StateDir: dir, Seed: 8}); err == nil || !strings.Contains(err.Error(), "seed 7") {
		t.Errorf("another seed on the directory: %v", err)
	}
	e, err = New(Options{Credentials: creds, StateDir: dir, Seed: 7})
	if err != nil {
		t.Fatalf("the same data set again: %v", err)
	}
	e.Close()
	for _, name := range []string{journalName, stateLockName} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", name, fi.Mode(), err)
		}
	}
}

func TestStateCredential(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "emulator")
	type pair struct{ id, key string }
	got := make([]pair, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			id, key, err := StateCredential(dir)
			if err != nil {
				t.Error(err)
			}
			got[i] = pair{id, key}
		})
	}
	wg.Wait()
	for _, p := range got {
		if p != got[0] || !strings.HasPrefix(p.id, "AKID") || p.key == "" {
			t.Fatalf("concurrent first uses gave %v", got)
		}
	}
	if id, key, err := StateCredential(dir); err != nil || (pair{id, key}) != got[0] {
		t.Errorf("second use: %s %v, want the same pair", id, err)
	}
	fi, err := os.Stat(filepath.Join(dir, CredentialsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v %v, want mode 0600", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state directory holds %d entries, want only %s", len(entries), CredentialsFile)
	}
}

// BenchmarkStateStartUp measures New on a journal of 50000 tasks, half of
// them ended: go test -run '^$' -bench StateStartUp ./server/emulator.
func BenchmarkStateStartUp(b *testing.B) {
	dir := b.TempDir()
	creds := map[string]string{testID: testKey}
	e, err := New(Options{Credentials: creds, StateDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	e.Close()
	const n = 50000
	q := &exportQuery{Filters: []filter{{Name: "LicenseType", Values: []string{"1", "2"}}}, tags: map[string][]string{"env": {"prod"}}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	created := time.Now()
	for i := range int64(n) {
		_ = enc.Encode(journalRecord{Kind: recordTask, ID: i + 1, Owner: testID, Created: created, Token: fmt.Sprintf("%032x", i), Query: q.stored()})
		if i%2 == 0 {
			_ = enc.Encode(journalRecord{Kind: recordEnd, ID: i + 1, Final: statusFinished})
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		b.Fatal(err)
	}
	f.Close()
	for b.Loop() {
		e, err := New(Options{Credentials: creds, StateDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if st, _, ok := e.tasks.status(testID, n-1, time.Now(), -1); !ok || st != statusFinished || len(e.tasks.byID) != n {
			b.Fatalf("task %d: %q %v; %d tasks restored", n-1, st, ok, len(e.tasks.byID))
		}
		e.Close()
	}
	b.ReportMetric(float64(buf.Len()), "journal-bytes")
}
