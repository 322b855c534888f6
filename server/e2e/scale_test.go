package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// watchREST follows a task over REST and returns the last task and
// progress the stream carried.
func watchREST(ctx context.Context, restURL, id string) (task, progress map[string]any, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, restURL+"/v1/export-tasks/"+id+":watch", nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Result map[string]any `json:"result"`
			Error  map[string]any `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, nil, err
		}
		if line.Error != nil {
			return nil, nil, fmt.Errorf("stream error %v", line.Error)
		}
		task, _ = line.Result["task"].(map[string]any)
		progress, _ = line.Result["progress"].(map[string]any)
	}
	return task, progress, sc.Err()
}

// TestWatchersShareOnePollerOverGRPCAndREST: many gRPC and REST watchers and
// readers of one task cost the cloud one call per poll of the task, all of
// them see the same observation, and polling stops when they are done.
func TestWatchersShareOnePollerOverGRPCAndREST(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	idText := res.GetTask().GetTaskId()
	var id int64
	fmt.Sscan(idText, &id)

	const grpcWatchers, restWatchers = 200, 20
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts []int64 // final poll counts the watchers were told
	)
	report := func(polls int64, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Error(err)
			return
		}
		counts = append(counts, polls)
	}
	for range grpcWatchers {
		stream, err := env.Client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: idText})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last *cwpexportv1.WatchExportTaskResponse
			for {
				m, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					report(0, err)
					return
				}
				last = m
			}
			if last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
				report(0, fmt.Errorf("gRPC watch ended with %v", last))
				return
			}
			report(last.GetProgress().GetPollCount(), nil)
		}()
	}
	for range restWatchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			task, progress, err := watchREST(ctx, env.RESTURL, idText)
			if err == nil && task["state"] != stateFinished {
				err = fmt.Errorf("REST watch ended with %v", task)
			}
			var polls int64
			if err == nil {
				_, err = fmt.Sscan(fmt.Sprint(progress["pollCount"]), &polls)
			}
			report(polls, err)
		}()
	}
	testutil.WaitFor(t, "every watcher", func() bool { return env.Server.Tracker().Stats().Watchers == grpcWatchers+restWatchers })
	testutil.WaitFor(t, "three polls", func() bool { return env.Emulator.Stats().TaskPolls(id) >= 3 })
	// Reads of the watched task come from the shared observation.
	for i := range 100 {
		if i%2 == 0 {
			if _, err := env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: idText}); err != nil {
				t.Fatal(err)
			}
		} else if r := env.Do(t, http.MethodGet, "/v1/export-tasks/"+idText, ""); r.Status != http.StatusOK {
			t.Fatalf("REST get: HTTP %d", r.Status)
		}
	}
	if err := env.Emulator.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	upstream := env.Emulator.Stats().TaskPolls(id)
	for _, n := range counts {
		if n != upstream {
			t.Fatalf("a watcher was told of %d polls; the cloud answered %d for %d watchers", n, upstream, grpcWatchers+restWatchers)
		}
	}
	if len(counts) != grpcWatchers+restWatchers {
		t.Fatalf("%d of %d watchers saw FINISHED", len(counts), grpcWatchers+restWatchers)
	}
	testutil.WaitFor(t, "the poller to stop", func() bool {
		s := env.Server.Tracker().Stats()
		return s.Watchers == 0 && s.Scheduled == 0
	})
}

// TestCreationBurstOverBudget: more creations than the budget lets through
// before their deadline get ResourceExhausted with a retry hint at once;
// the others are created, and the cloud is never pushed over its limit.
func TestCreationBurstOverBudget(t *testing.T) {
	const rate, burst = 4, 30
	o := fastApp()
	o.CreateRate = rate
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		created   int
		exhausted int
	)
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var (
				err   error
				retry time.Duration
			)
			if i%3 == 0 {
				retry, err = restCreate(env.RESTURL)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, err = env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
				retry = retryDelay(status.Convert(err))
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case status.Code(err) == codes.ResourceExhausted && retry > 0:
				exhausted++
			default:
				t.Errorf("creation %d: %v (retry hint %v), want success or ResourceExhausted with a retry hint", i, err, retry)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d created, %d told to retry", created, exhausted)
	// 2s deadlines less the time kept for the call let about 1.5s of the
	// budget through; REST callers have no deadline but MaxQueueWait.
	if created < 2 || exhausted == 0 {
		t.Errorf("%d created, %d told to retry", created, exhausted)
	}
	st := env.Emulator.Stats().Actions[cloud.ActionExportLicenseDetail]
	if st.TasksCreated != int64(created) || st.Requests != int64(created) {
		t.Errorf("the cloud saw %d creations (%d tasks) for %d successes", st.Requests, st.TasksCreated, created)
	}
	if st.PeakPerSecond > rate+1 {
		t.Errorf("the cloud saw %d creations within one second; the budget is %d", st.PeakPerSecond, rate)
	}
}

// restCreate starts an export over REST with a 2s gRPC deadline header.
func restCreate(restURL string) (time.Duration, error) {
	req, _ := http.NewRequest(http.MethodPost, restURL+"/v1/license-detail:export", strings.NewReader(`{}`))
	req.Header.Set("Grpc-Timeout", "2S")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Code    int32
		Details []map[string]any
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	switch resp.StatusCode {
	case http.StatusOK:
		return 0, nil
	case http.StatusTooManyRequests:
		for _, d := range body.Details {
			if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo" {
				delay, _ := time.ParseDuration(fmt.Sprint(d["retryDelay"]))
				return delay, status.Error(codes.Code(body.Code), "REST")
			}
		}
		return 0, status.Error(codes.Code(body.Code), "REST without RetryInfo")
	}
	return 0, fmt.Errorf("REST: HTTP %d", resp.StatusCode)
}

func retryDelay(st *status.Status) time.Duration {
	d, _ := apierror.RetryDelay(st.Err())
	return d
}
