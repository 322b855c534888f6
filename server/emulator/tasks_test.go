package emulator

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
)

var downloadURLPattern = regexp.MustCompile(`^http://([^/]+)/downloads/[0-9a-f]{32}\.csv$`)

// download fetches url and returns the raw body, checking the headers a
// pre-signed object URL answers with.
func download(t *testing.T, url string) []byte {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/csv" {
		t.Errorf("Content-Type %q", ct)
	}
	if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %q, body %d bytes", cl, len(body))
	}
	if cd := res.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment; filename=") || !strings.HasSuffix(cd, `.csv"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	return body
}

// row is one CSV record keyed by column name.
type row map[string]string

func parseCSV(t *testing.T, body []byte) []row {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v", err)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], []string{
		"LicenseId", "LicenseType", "LicenseStatus", "DeadlineStatus", "Deadline",
		"ResourceId", "MachineName", "MachineIp", "Tags", "BindTime", "UnbindTime",
	}) {
		t.Fatalf("CSV header %v", recs[:min(1, len(recs))])
	}
	rows := make([]row, 0, len(recs)-1)
	for _, rec := range recs[1:] {
		r := row{}
		for i, name := range recs[0] {
			r[name] = rec[i]
		}
		rows = append(rows, r)
	}
	return rows
}

// exportAndFetch runs a whole export with the SDK and returns its rows.
func exportAndFetch(t *testing.T, s *server, clock *fakeClock, params map[string]any) []row {
	t.Helper()
	c := sdkClient(s, testID, testKey)
	id := createTask(t, c, params)
	// Keep the clock near real time: the SDK signs with time.Now.
	clock.Advance(DefaultPendingFor)
	defer clock.Advance(-DefaultPendingFor)
	p := pollTask(t, c, id)
	if p.Status != statusFinished || !downloadURLPattern.MatchString(p.DownloadUrl) {
		t.Fatalf("task %d: %+v", id, p)
	}
	return parseCSV(t, download(t, p.DownloadUrl))
}

func TestTaskLifecycle(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, PendingFor: 3 * time.Second})
	c := sdkClient(s, testID, testKey)

	id := createTask(t, c, map[string]any{"Filters": []any{map[string]any{"Name": "LicenseType", "Values": []any{"1"}}}})
	if id2 := createTask(t, c, nil); id2 != id+1 {
		t.Fatalf("task ids %d then %d: want sequential", id, id2)
	}
	if p := pollTask(t, c, id); p.Status != statusPending || p.DownloadUrl != "" {
		t.Fatalf("new task: %+v", p)
	}
	clock.Advance(2999 * time.Millisecond)
	if p := pollTask(t, c, id); p.Status != statusPending {
		t.Fatalf("after 2.999s: %+v", p)
	}
	clock.Advance(time.Millisecond)
	p := pollTask(t, c, id)
	m := downloadURLPattern.FindStringSubmatch(p.DownloadUrl)
	if p.Status != statusFinished || m == nil || m[1] != s.addr {
		t.Fatalf("after 3s: %+v (want URL on %s)", p, s.addr)
	}
	// Finished is final, and the URL stays the same.
	clock.Advance(-time.Minute)
	if again := pollTask(t, c, id); again.Status != statusFinished || again.DownloadUrl != p.DownloadUrl {
		t.Fatalf("clock went back: %+v", again)
	}

	rows := parseCSV(t, download(t, p.DownloadUrl))
	if len(rows) == 0 {
		t.Fatal("no rows")
	}
	for _, r := range rows {
		if r["LicenseType"] != "1" || r["UnbindTime"] != "" {
			t.Fatalf("row does not match LicenseType=1 current export: %v", r)
		}
	}

	st := s.Stats()
	if got := st.TaskPolls(id); got != 4 {
		t.Errorf("TaskPolls(%d) = %d, want 4", id, got)
	}
	if got := st.TaskPolls(id + 1); got != 0 {
		t.Errorf("TaskPolls(%d) = %d, want 0", id+1, got)
	}
	if st.Actions["ExportLicenseDetail"].TasksCreated != 2 || st.Downloads != 1 {
		t.Errorf("stats %+v", st)
	}

	// The URL follows the host the client used.
	lc := sdkClient(&server{addr: strings.Replace(s.addr, "127.0.0.1", "localhost", 1)}, testID, testKey)
	if p := pollTask(t, lc, id); !strings.HasPrefix(p.DownloadUrl, "http://localhost:") {
		t.Errorf("via localhost: %q", p.DownloadUrl)
	}
}

func TestEmulatorFailKeyword(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, PendingFor: time.Second})
	c := sdkClient(s, testID, testKey)
	id := createTask(t, c, map[string]any{"Filters": []any{
		map[string]any{"Name": "Keywords", "Values": []any{"web", failKeyword}},
	}})
	if p := pollTask(t, c, id); p.Status != statusPending {
		t.Fatalf("new task: %+v", p)
	}
	clock.Advance(time.Second)
	if p := pollTask(t, c, id); p.Status != statusError || p.DownloadUrl != "" {
		t.Fatalf("after PendingFor: %+v", p)
	}
	// The keyword only fails tasks as an exact Keywords value.
	ok := createTask(t, c, map[string]any{"Filters": []any{
		map[string]any{"Name": "ResourceId", "Values": []any{failKeyword}},
	}})
	clock.Advance(time.Second)
	if p := pollTask(t, c, ok); p.Status != statusFinished {
		t.Fatalf("ResourceId=EMULATOR_FAIL: %+v", p)
	}
}

func TestFinishAndFailTask(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, PendingFor: -1})
	c := sdkClient(s, testID, testKey)
	a, b := createTask(t, c, nil), createTask(t, c, nil)
	clock.Advance(4 * time.Minute) // as far as signatures allow
	if p := pollTask(t, c, a); p.Status != statusPending {
		t.Fatalf("negative PendingFor: %+v", p)
	}
	if err := s.FinishTask(a); err != nil {
		t.Fatal(err)
	}
	if err := s.FailTask(b); err != nil {
		t.Fatal(err)
	}
	if p := pollTask(t, c, a); p.Status != statusFinished || p.DownloadUrl == "" {
		t.Fatalf("finished task: %+v", p)
	}
	if p := pollTask(t, c, b); p.Status != statusError || p.DownloadUrl != "" {
		t.Fatalf("failed task: %+v", p)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"finish finished", s.FinishTask(a), ErrTaskNotPending},
		{"fail finished", s.FailTask(a), ErrTaskNotPending},
		{"finish failed", s.FinishTask(b), ErrTaskNotPending},
		{"finish unknown", s.FinishTask(999), ErrTaskNotFound},
		{"fail unknown", s.FailTask(0), ErrTaskNotFound},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	// With a positive PendingFor an elapsed task is already over.
	s2 := startServer(t, Options{Now: clock.Now, PendingFor: time.Second})
	id := createTask(t, sdkClient(s2, testID, testKey), nil)
	clock.Advance(time.Second)
	if err := s2.FailTask(id); !errors.Is(err, ErrTaskNotPending) {
		t.Errorf("FailTask after PendingFor: %v", err)
	}
}

func TestResourceNotFound(t *testing.T) {
	s := startServer(t, Options{})
	c := sdkClient(s, testID, testKey)
	id := createTask(t, c, nil)
	other := sdkClient(s, otherID, otherKey)
	for _, tc := range []struct {
		name   string
		client *common.Client
		taskID string
	}{
		{"unknown id", c, "12345"},
		{"zero", c, "0"},
		{"negative", c, "-1"},
		{"other account's task", other, strconv.FormatInt(id, 10)},
	} {
		err := sdkCall(t, tc.client, APIVersion, "ExportTasks", map[string]any{"TaskId": tc.taskID}, nil)
		if code := errCode(t, err); code != codeResourceNotFound {
			t.Errorf("%s: code %q", tc.name, code)
		}
	}
	if n := s.Stats().Actions["ExportTasks"].Errors[codeResourceNotFound]; n != 4 {
		t.Errorf("ResourceNotFound count %d", n)
	}
	if n := s.Stats().TaskPolls(id); n != 0 {
		t.Errorf("failed lookups counted as polls: %d", n)
	}
}

func TestAdminEndpoints(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, PendingFor: -1})
	c := sdkClient(s, testID, testKey)
	a, b := createTask(t, c, nil), createTask(t, c, nil)
	pollTask(t, c, a)
	pollTask(t, c, a)

	post := func(path string) (int, adminResult) {
		t.Helper()
		res, err := http.Post(s.url(path), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var r adminResult
		if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return res.StatusCode, r
	}
	for _, tc := range []struct {
		path       string
		wantStatus int
		wantTask   string
	}{
		{fmt.Sprintf("/_emulator/tasks/%d/finish", a), http.StatusOK, statusFinished},
		{fmt.Sprintf("/_emulator/tasks/%d/fail", b), http.StatusOK, statusError},
		{fmt.Sprintf("/_emulator/tasks/%d/finish", a), http.StatusConflict, statusFinished},
		{fmt.Sprintf("/_emulator/tasks/%d/fail", a), http.StatusConflict, statusFinished},
		{"/_emulator/tasks/77/finish", http.StatusNotFound, ""},
		{"/_emulator/tasks/x/fail", http.StatusBadRequest, ""},
	} {
		code, r := post(tc.path)
		if code != tc.wantStatus {
			t.Errorf("POST %s: %d %+v, want %d", tc.path, code, r, tc.wantStatus)
		}
		if code >= 400 && r.Error == "" {
			t.Errorf("POST %s: no error text", tc.path)
		}
	}
	if p := pollTask(t, c, a); p.Status != statusFinished {
		t.Errorf("task %d after admin finish: %+v", a, p)
	}
	if p := pollTask(t, c, b); p.Status != statusError {
		t.Errorf("task %d after admin fail: %+v", b, p)
	}
	res, err := http.Get(s.url(fmt.Sprintf("/_emulator/tasks/%d/finish", a)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET finish: %d", res.StatusCode)
	}

	res, err = http.Get(s.url("/_emulator/stats"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st Stats
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("stats Content-Type %q", res.Header.Get("Content-Type"))
	}
	if st.TaskPolls(a) != 3 || st.TaskPolls(b) != 1 ||
		st.Actions["ExportLicenseDetail"].TasksCreated != 2 || st.Actions["ExportTasks"].Requests != 4 {
		t.Errorf("stats over HTTP %+v", st)
	}
}

// rowsWhere is the test's own reading of the documented filter semantics.
func rowsWhere(rows []row, keep func(row) bool) []row {
	var out []row
	for _, r := range rows {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func hasTag(r row, key string, values ...string) bool {
	for _, kv := range strings.Split(r["Tags"], ";") {
		k, v, _ := strings.Cut(kv, ":")
		if k == key && (slices.Contains(values, v) || slices.Contains(values, "")) {
			return true
		}
	}
	return false
}

func TestExportFilters(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, RateLimit: -1, Seed: 42})
	all := exportAndFetch(t, s, clock, map[string]any{"IsHistory": true})
	if len(all) != DefaultRecords {
		t.Fatalf("history export has %d rows, want %d", len(all), DefaultRecords)
	}
	current := rowsWhere(all, func(r row) bool { return r["UnbindTime"] == "" })
	if len(current) == len(all) || len(current) == 0 {
		t.Fatalf("%d of %d rows current: the data set needs both kinds", len(current), len(all))
	}
	sample := all[len(all)/2]
	lower := strings.ToLower
	month := clock.Now().UTC().AddDate(0, -6, 0)
	monthStart := time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, time.UTC)
	monthEnd := monthStart.AddDate(0, 1, 0)
	f := func(name string, exact bool, values ...any) map[string]any {
		return map[string]any{"Name": name, "Values": values, "ExactMatch": exact}
	}

	tests := []struct {
		name   string
		params map[string]any
		from   []row
		keep   func(row) bool
	}{
		{"current only", nil, all, func(r row) bool { return r["UnbindTime"] == "" }},
		{"LicenseType OR", map[string]any{"Filters": []any{f("LicenseType", false, "0", "2")}}, current,
			func(r row) bool { return r["LicenseType"] == "0" || r["LicenseType"] == "2" }},
		{"filters AND", map[string]any{"IsHistory": true, "Filters": []any{f("LicenseType", false, "1"), f("DeadlineStatus", false, "NotExpired")}}, all,
			func(r row) bool { return r["LicenseType"] == "1" && r["DeadlineStatus"] == "NotExpired" }},
		{"LicenseStatus", map[string]any{"Filters": []any{f("LicenseStatus", false, "2", "4")}}, current,
			func(r row) bool { return r["LicenseStatus"] == "2" || r["LicenseStatus"] == "4" }},
		{"DeadlineStatus case-insensitive", map[string]any{"Filters": []any{f("DeadlineStatus", false, "nearexpiry")}}, current,
			func(r row) bool { return r["DeadlineStatus"] == "NearExpiry" }},
		{"Keywords substring", map[string]any{"Filters": []any{f("Keywords", false, "WEB-PROD")}}, current,
			func(r row) bool { return strings.Contains(r["MachineName"], "web-prod") }},
		{"Keywords exact IP", map[string]any{"IsHistory": true, "Filters": []any{f("Keywords", true, sample["MachineIp"])}}, all,
			func(r row) bool { return r["MachineIp"] == sample["MachineIp"] }},
		{"Keywords exact partial IP", map[string]any{"IsHistory": true, "Filters": []any{f("Keywords", true, sample["MachineIp"][:5])}}, all,
			func(r row) bool { return false }},
		{"Keywords over resource id", map[string]any{"IsHistory": true, "Filters": []any{f("Keywords", false, sample["ResourceId"][4:8])}}, all,
			func(r row) bool {
				k := lower(sample["ResourceId"][4:8])
				return strings.Contains(r["ResourceId"], k) || strings.Contains(r["MachineName"], k) || strings.Contains(r["MachineIp"], k)
			}},
		{"ResourceId exact", map[string]any{"IsHistory": true, "Filters": []any{f("ResourceId", true, sample["ResourceId"])}}, all,
			func(r row) bool { return r["ResourceId"] == sample["ResourceId"] }},
		{"ResourceId substring", map[string]any{"IsHistory": true, "Filters": []any{f("ResourceId", false, "CWP-A")}}, all,
			func(r row) bool { return strings.HasPrefix(r["ResourceId"], "cwp-a") }},
		{"tag", map[string]any{"Tags": []any{map[string]any{"TagKey": "env", "TagValue": "prod"}}}, current,
			func(r row) bool { return hasTag(r, "env", "prod") }},
		{"tag values OR", map[string]any{"Tags": []any{
			map[string]any{"TagKey": "env", "TagValue": "prod"}, map[string]any{"TagKey": "env", "TagValue": "dev"},
		}}, current, func(r row) bool { return hasTag(r, "env", "prod", "dev") }},
		{"tag keys AND", map[string]any{"IsHistory": true, "Tags": []any{
			map[string]any{"TagKey": "env", "TagValue": "staging"}, map[string]any{"TagKey": "team", "TagValue": "payments"},
		}}, all, func(r row) bool { return hasTag(r, "env", "staging") && hasTag(r, "team", "payments") }},
		{"tag any value", map[string]any{"Tags": []any{map[string]any{"TagKey": "team"}}}, current,
			func(r row) bool { return hasTag(r, "team", "") }},
		{"export month", map[string]any{"IsHistory": true, "ExportMonth": monthStart.Format("2006-01")}, all,
			func(r row) bool {
				bind, _ := time.Parse(time.DateTime, r["BindTime"])
				if !bind.Before(monthEnd) {
					return false
				}
				unbind, err := time.Parse(time.DateTime, r["UnbindTime"])
				return err != nil || !unbind.Before(monthStart)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := rowsWhere(tt.from, tt.keep)
			got := exportAndFetch(t, s, clock, tt.params)
			if len(got) != len(want) {
				t.Fatalf("%d rows, want %d", len(got), len(want))
			}
			for i := range got {
				if !maps.Equal(got[i], want[i]) {
					t.Fatalf("row %d: %v, want %v", i, got[i], want[i])
				}
			}
			t.Logf("%d of %d rows", len(got), len(tt.from))
			if tt.name != "Keywords exact partial IP" && len(got) == 0 {
				t.Fatal("filter matched nothing: the case proves little")
			}
		})
	}
}

func TestDataDeterminism(t *testing.T) {
	clock := newFakeClock()
	fetch := func(seed int64, records int) []byte {
		s := startServer(t, Options{Now: clock.Now, Seed: seed, Records: records})
		c := sdkClient(s, testID, testKey)
		id := createTask(t, c, map[string]any{"IsHistory": true})
		if err := s.FinishTask(id); err != nil {
			t.Fatal(err)
		}
		return download(t, pollTask(t, c, id).DownloadUrl)
	}
	a, b, other := fetch(7, 0), fetch(7, 0), fetch(8, 0)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different data")
	}
	if bytes.Equal(a, other) {
		t.Fatal("different seeds gave the same data")
	}
	if n := len(parseCSV(t, fetch(7, 10))); n != 10 {
		t.Fatalf("Records=10 gave %d rows", n)
	}
	// A smaller data set is a prefix of a larger one with the same seed
	// (records depend only on seed and index; the license pool size differs,
	// so compare only the machine columns).
	small, big := parseCSV(t, fetch(7, 10)), parseCSV(t, a)
	for i := range small {
		if small[i]["MachineIp"] != big[i]["MachineIp"] || small[i]["BindTime"] != big[i]["BindTime"] {
			t.Fatalf("row %d differs: %v vs %v", i, small[i], big[i])
		}
	}
}

func TestDownloadEdgeCases(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, PendingFor: -1})
	c := sdkClient(s, testID, testKey)
	id := createTask(t, c, nil)

	s.tasks.mu.Lock()
	token := s.tasks.byID[id].token
	s.tasks.mu.Unlock()
	get := func(method, path string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, s.url(path), nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	if res, _ := get(http.MethodGet, "/downloads/"+token+".csv"); res.StatusCode != http.StatusNotFound {
		t.Errorf("pending task's file: %d", res.StatusCode)
	}
	for _, p := range []string{"/downloads/" + strings.Repeat("0", 32) + ".csv", "/downloads/" + token, "/downloads/x.csv"} {
		if res, _ := get(http.MethodGet, p); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, res.StatusCode)
		}
	}
	if err := s.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	full := download(t, pollTask(t, c, id).DownloadUrl)
	res, body := get(http.MethodHead, "/downloads/"+token+".csv")
	if res.StatusCode != http.StatusOK || len(body) != 0 || res.ContentLength != int64(len(full)) {
		t.Errorf("HEAD: %d, %d body bytes, Content-Length %d (file %d)", res.StatusCode, len(body), res.ContentLength, len(full))
	}
	if res, _ := get(http.MethodPost, "/downloads/"+token+".csv"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST download: %d", res.StatusCode)
	}
}

// Many SDK clients at once: ids stay unique and counters add up (run with -race).
func TestConcurrentClients(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1, PendingFor: time.Millisecond})
	const workers, perWorker = 8, 10
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			id, key := testID, testKey
			if w%2 == 1 {
				id, key = otherID, otherKey
			}
			c := sdkClient(s, id, key)
			for range perWorker {
				// t.Fatal must not be called off the test goroutine.
				var r createResp
				if err := sdkCall(t, c, APIVersion, "ExportLicenseDetail", nil, &r); err != nil {
					t.Errorf("create: %v", err)
					return
				}
				if err := sdkCall(t, c, APIVersion, "ExportTasks", map[string]any{"TaskId": itoa(r.TaskId)}, nil); err != nil {
					t.Errorf("poll %d: %v", r.TaskId, err)
					return
				}
				task := r.TaskId
				mu.Lock()
				if seen[task] {
					t.Errorf("duplicate task id %d", task)
				}
				seen[task] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Actions["ExportLicenseDetail"].TasksCreated != workers*perWorker || st.Actions["ExportTasks"].Requests != workers*perWorker {
		t.Fatalf("stats %+v", st.Actions)
	}
}
