package e2e_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func TestRequestSizeLimit(t *testing.T) {
	o := fastApp()
	o.MaxRequestBytes = 4 << 10
	env := testserver.Start(t, testserver.Config{App: o})
	big := strings.Repeat("x", 200)
	var values []string
	for range 40 {
		values = append(values, big)
	}
	_, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{
		Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: values}},
	})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "larger than max") {
		t.Errorf("oversized gRPC request: %v, want ResourceExhausted", err)
	}
	body := `{"filters":[{"name":"Keywords","values":["` + strings.Join(values, `","`) + `"]}]}`
	r := env.Do(t, http.MethodPost, "/v1/license-detail:export", body)
	if r.Status < 400 || r.Status >= 500 || !strings.Contains(string(r.Body), "larger than the limit of 4096 bytes") {
		t.Errorf("oversized REST body: HTTP %d %s, want a 4xx google.rpc.Status", r.Status, r.Body)
	}
	if n := env.Emulator.Stats().Actions[cloud.ActionExportLicenseDetail].Requests; n != 0 {
		t.Errorf("oversized requests reached the cloud %d times", n)
	}
}

func TestStreamsPerCaller(t *testing.T) {
	o := fastApp()
	o.Tokens, o.MaxStreamsPerCaller = testTokens(t), 2
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	res, err := env.Client.ExportLicenseDetail(as(aliceToken), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	watch := func(token, id string) (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(as(token))
		s, err := env.Client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
		if err == nil {
			_, err = s.Recv()
		}
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	open := func(token string) (context.CancelFunc, error) { return watch(token, id) }
	for i := range 2 {
		cancel, err := open(aliceToken)
		if err != nil {
			t.Fatalf("alice's stream %d: %v", i+1, err)
		}
		defer cancel()
	}
	_, err = open(aliceToken)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), `caller "alice"`) ||
		errorInfo(st).GetReason() != "CALLER_STREAM_LIMIT_EXCEEDED" {
		t.Fatalf("alice's third stream: %v (%v), want ResourceExhausted naming her, reason CALLER_STREAM_LIMIT_EXCEEDED", err, errorInfo(st))
	}
	req, _ := http.NewRequest(http.MethodGet, env.RESTURL+"/v1/export-tasks/"+id+":watch", nil)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	if r := do(t, env.HTTP, req); !strings.Contains(string(r.Body), `"code":8`) || !strings.Contains(string(r.Body), "CALLER_STREAM_LIMIT_EXCEEDED") {
		t.Errorf("alice's third stream over REST: HTTP %d %s, want ResourceExhausted, reason CALLER_STREAM_LIMIT_EXCEEDED", r.Status, r.Body)
	}
	own, err := env.Client.ExportLicenseDetail(as(bobToken), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cancel, err := watch(bobToken, own.GetTask().GetTaskId())
	if err != nil {
		t.Fatalf("bob is limited by alice's streams: %v", err)
	}
	cancel()
}

func TestCallerShareOfExportBudget(t *testing.T) {
	o := fastApp()
	o.Tokens, o.CreateRate = testTokens(t), 4 // each caller: 2 per second, bursts of 2
	env := testserver.Start(t, testserver.Config{App: o})
	var exhausted error
	for range 3 {
		if _, err := env.Client.ExportLicenseDetail(as(aliceToken), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
			exhausted = err
		}
	}
	st := status.Convert(exhausted)
	if st.Code() != codes.ResourceExhausted || errorInfo(st).GetReason() != "CALLER_SHARE_EXHAUSTED" || !strings.Contains(st.Message(), `caller "alice"`) {
		t.Fatalf("alice's burst: %v, want CALLER_SHARE_EXHAUSTED", exhausted)
	}
	// REST callers are identified by the same tokens.
	req, _ := http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	if r := do(t, env.HTTP, req); r.Status != http.StatusTooManyRequests || !strings.Contains(string(r.Body), "CALLER_SHARE_EXHAUSTED") {
		t.Errorf("alice over REST: HTTP %d %s, want 429", r.Status, r.Body)
	} else if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("alice over REST: Retry-After %q, want whole seconds from the RetryInfo", r.Header.Get("Retry-After"))
	}
	ctx, cancel := context.WithTimeout(as(bobToken), 2*time.Second)
	defer cancel()
	if _, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatalf("bob, after alice's burst: %v", err)
	}
}
