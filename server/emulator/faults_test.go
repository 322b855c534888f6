package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
)

// TestFaultKindsThroughSDK checks what the official SDK reports for each
// fault kind, and whether the action ran.
func TestFaultKindsThroughSDK(t *testing.T) {
	cases := []struct {
		fault       Fault
		wantCode    string // SDK error code; "" for success
		wantCreated int64
	}{
		{Fault{Kind: FaultLatency, Delay: 50 * time.Millisecond}, "", 1},
		{Fault{Kind: FaultHTTPError}, codeInternalError, 0},
		{Fault{Kind: FaultHTTPErrorNoBody, Status: 503}, "ClientError.ParseJsonError", 0},
		{Fault{Kind: FaultReset}, "ClientError.NetworkError", 0},
		{Fault{Kind: FaultReset, AfterAction: true}, "ClientError.NetworkError", 1},
		{Fault{Kind: FaultTruncated}, "ClientError.ParseJsonError", 1},
		{Fault{Kind: FaultMalformed}, "ClientError.ParseJsonError", 1},
		{Fault{Kind: FaultInternalError}, codeInternalError, 0},
		{Fault{Kind: FaultServiceUnavailable}, codeServiceUnavailable, 0},
		{Fault{Kind: FaultRequestLimitExceeded}, codeRequestLimitExceeded, 0},
		{Fault{Kind: FaultInternalError, AfterAction: true}, codeInternalError, 1},
		{Fault{Kind: FaultClockSkew}, codeSignatureExpire, 0},
	}
	for _, tc := range cases {
		name := string(tc.fault.Kind)
		if tc.fault.AfterAction {
			name += "/after"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, Options{})
			c := sdkClient(s, testID, testKey)
			f := tc.fault
			f.Action, f.Count = actionExportLicenseDetail, 1
			if err := s.InjectFault(f); err != nil {
				t.Fatal(err)
			}
			err := sdkCall(t, c, APIVersion, actionExportLicenseDetail, nil, nil)
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("code %q (%v), want %q", got, err, tc.wantCode)
			}
			if got := s.Stats().Actions[actionExportLicenseDetail].TasksCreated; got != tc.wantCreated {
				t.Errorf("tasks created %d, want %d", got, tc.wantCreated)
			}
			// Count 1: the next call is healthy, and other actions never
			// were affected.
			if err := sdkCall(t, c, APIVersion, actionExportLicenseDetail, nil, nil); err != nil {
				t.Fatalf("call after the fault: %v", err)
			}
			st := s.Faults()
			if len(st.Active) != 0 || st.Hits[tc.fault.Kind] != 1 {
				t.Errorf("fault status %+v, want none active and one hit", st)
			}
		})
	}
}

func TestFaultSelection(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1})
	c := sdkClient(s, testID, testKey)
	if err := s.InjectFault(Fault{Kind: FaultInternalError, Action: actionExportTasks}); err != nil {
		t.Fatal(err)
	}
	id := createTask(t, c, nil) // another action: unaffected
	for range 3 {
		err := sdkCall(t, c, APIVersion, actionExportTasks, map[string]any{"TaskId": itoa(id)}, nil)
		if got := errCode(t, err); got != codeInternalError {
			t.Fatalf("poll answered %q, want the persistent fault", got)
		}
	}
	s.ClearFaults()
	pollTask(t, c, id)

	// A probability hits some calls and spares others.
	if err := s.InjectFault(Fault{Kind: FaultServiceUnavailable, Action: actionExportTasks, Probability: 0.5}); err != nil {
		t.Fatal(err)
	}
	var hit, spared int
	for range 60 {
		if err := sdkCall(t, c, APIVersion, actionExportTasks, map[string]any{"TaskId": itoa(id)}, nil); err != nil {
			hit++
		} else {
			spared++
		}
	}
	if hit == 0 || spared == 0 {
		t.Errorf("probability 0.5 hit %d and spared %d of 60 calls", hit, spared)
	}
}

func TestFaultsAdminEndpoint(t *testing.T) {
	s := startServer(t, Options{})
	post := func(body string) (int, FaultStatus) {
		resp, err := http.Post(s.url("/_emulator/faults"), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st FaultStatus
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return resp.StatusCode, st
	}
	if code, st := post(`{"Kind":"latency","Action":"ExportTasks","Delay":1000000,"Count":2}`); code != 200 || len(st.Active) != 1 || st.Active[0].Count != 2 {
		t.Fatalf("POST answered %d %+v", code, st)
	}
	for _, bad := range []string{`{"Kind":"nope"}`, `{"Kind":"reset","Action":"Nope"}`, `{"Kind":"reset","Probability":2}`, `{"Kind":"http_error","Status":404}`, `{"Kind":"reset","Bogus":1}`, `not json`} {
		if code, _ := post(bad); code != http.StatusBadRequest {
			t.Errorf("POST %s answered %d, want 400", bad, code)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, s.url("/_emulator/faults"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := len(s.Faults().Active); resp.StatusCode != 200 || n != 0 {
		t.Errorf("DELETE answered %d, %d faults left", resp.StatusCode, n)
	}
}

func TestParseFault(t *testing.T) {
	f, err := ParseFault("latency@ExportTasks,p=0.25,n=3,delay=2s")
	if err != nil {
		t.Fatal(err)
	}
	want := Fault{Kind: FaultLatency, Action: actionExportTasks, Probability: 0.25, Count: 3, Delay: 2 * time.Second}
	if f != want {
		t.Errorf("parsed %+v, want %+v", f, want)
	}
	if f, err := ParseFault("reset,after"); err != nil || !f.AfterAction {
		t.Errorf("reset,after parsed %+v, %v", f, err)
	}
	for _, bad := range []string{"", "nope", "reset,p=x", "reset,what=1", "reset@Other"} {
		if _, err := ParseFault(bad); err == nil {
			t.Errorf("ParseFault(%q) succeeded", bad)
		}
	}
}

// TestLatencyClientGone: the SDK's deadline expires during an injected
// delay; as a real server would, the emulator still creates the task once
// the delay is over, and counts the answer it could not deliver.
func TestLatencyClientGone(t *testing.T) {
	s := startServer(t, Options{PendingFor: -1})
	c := sdkClient(s, testID, testKey)
	if err := s.InjectFault(Fault{Kind: FaultLatency, Action: actionExportLicenseDetail, Delay: time.Second, Count: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req := tchttp.NewCommonRequest("cwp", APIVersion, actionExportLicenseDetail)
	req.SetContext(ctx)
	if err := req.SetActionParameters(map[string]any{}); err != nil {
		t.Fatal(err)
	}
	err := c.Send(req, tchttp.NewCommonResponse())
	if code := errCode(t, err); code != "ClientError.NetworkError" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the create answered %q (%v), want the client's own deadline", code, err)
	}
	// The client is gone; the emulator works on for the rest of the delay.
	var st ActionStats
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st = s.Stats().Actions[actionExportLicenseDetail]
		if st.Errors[codeClientGone] > 0 || time.Now().After(deadline) {
			break
		}
	}
	if st.TasksCreated != 1 || st.Requests != 1 || st.Errors[codeClientGone] != 1 || len(st.Errors) != 1 {
		t.Fatalf("after the client left: %+v, want one task created and one answer lost (ClientGone)", st)
	}
	// The task exists for its account, as the cloud's would.
	if p := pollTask(t, c, 1); p.Status != statusPending {
		t.Errorf("the task created for the departed client: %+v", p)
	}
	if id := createTask(t, c, nil); id != 2 {
		t.Errorf("next task id %d, want 2", id)
	}
}

// TestLatencyDroppedOnClose: a request still delayed when the emulator
// closes is dropped without running.
func TestLatencyDroppedOnClose(t *testing.T) {
	s, stop := serve(t, Options{})
	if err := s.InjectFault(Fault{Kind: FaultLatency, Action: actionExportLicenseDetail, Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- sdkCall(t, sdkClient(s, testID, testKey), APIVersion, actionExportLicenseDetail, nil, nil)
	}()
	for deadline := time.Now().Add(15 * time.Second); s.Faults().Hits[FaultLatency] == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the fault")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if code := errCode(t, <-done); code != "ClientError.NetworkError" {
		t.Errorf("the delayed request answered %q, want a dropped connection", code)
	}
	st := s.Stats().Actions[actionExportLicenseDetail]
	if st.TasksCreated != 0 || st.Errors[codeAborted] != 1 {
		t.Errorf("stats %+v, want no task and one Aborted", st)
	}
	stop()
}
