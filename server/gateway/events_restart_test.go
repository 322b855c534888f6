package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestEventStreamAcrossARestart stops the service while an event stream
// follows a pending export, starts it again on the same port and data
// directory, and resumes the stream with the Last-Event-ID it received;
// the cloud (an emulator outside the service) keeps the task meanwhile.
func TestEventStreamAcrossARestart(t *testing.T) {
	emu, err := emulator.New(emulator.Options{Credentials: map[string]string{testserver.SecretID: testserver.SecretKey}, PendingFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	emuCtx, stopEmu := context.WithCancel(context.Background())
	emuLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emuDone := make(chan error, 1)
	go func() { emuDone <- emu.Serve(emuCtx, emuLis) }()
	t.Cleanup(func() { stopEmu(); <-emuDone })

	dataDir := t.TempDir()
	restAddr := "127.0.0.1:0"
	// serve starts the service on restAddr and returns its REST URL and a
	// function that stops it and waits for Serve to return.
	serve := func() (string, func()) {
		t.Helper()
		srv, err := app.New(app.Options{
			SecretID: testserver.SecretID, SecretKey: testserver.SecretKey,
			Endpoint: emuLis.Addr().String(), Scheme: "HTTP", AllowPrivateCloud: true, DataDir: dataDir,
			MinPollInterval: 100 * time.Millisecond, Heartbeat: 200 * time.Millisecond, ShutdownGrace: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// The port was just given up by the first run: bind it again,
		// allowing for a moment of delay on a busy machine.
		var restLis net.Listener
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if restLis, err = net.Listen("tcp", restAddr); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("listen on %s again: %v", restAddr, err)
		}
		restAddr = restLis.Addr().String()
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, grpcLis, restLis) }()
		return "http://" + restAddr, func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	url, stop := serve()
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	open := func(method, path, lastID string) eventReader {
		t.Helper()
		var resp *http.Response
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader(`{}`)
			}
			req, _ := http.NewRequest(method, url+path, body)
			req.Header.Set("Accept", "text/event-stream")
			if method == "POST" {
				req.Header.Set("Content-Type", "application/json")
			}
			if lastID != "" {
				req.Header.Set("Last-Event-ID", lastID)
			}
			if resp, err = hc.Do(req); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s answered %d", method, path, resp.StatusCode)
		}
		return eventReader{bufio.NewReader(resp.Body)}
	}

	er := open("POST", "/v1/license-detail:exportAndWatch", "")
	first, err := er.next()
	if err != nil {
		t.Fatal(err)
	}
	taskID := decode[message](t, first.Data).Task.TaskID

	stop()
	stopped = true
	// Shutting down, the service ends the stream with an error event
	// telling the client to resume, under the last message's id.
	evs := append([]sseEvent{first}, readAll(t, er)...)
	last := evs[len(evs)-1]
	type status struct {
		Code    int
		Message string
	}
	st := decode[status](t, last.Data)
	if last.Event != "error" || st.Code != 14 || last.ID != evs[len(evs)-2].ID {
		t.Fatalf("at shutdown the stream ended with %+v", last)
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(last.ID, taskID+":"))

	url, stop = serve()
	stopped = false
	er = open("GET", "/v1/export-tasks/"+taskID+":watch", last.ID)
	resumed, err := er.next()
	if err != nil {
		t.Fatal(err)
	}
	if m := decode[message](t, resumed.Data); resumed.Event != "snapshot" || resumed.ID != taskID+":"+strconv.Itoa(n+1) || m.Task.State != "EXPORT_TASK_STATE_PENDING" {
		t.Fatalf("resumed with %+v, want a snapshot of the pending task numbered %d", resumed, n+1)
	}
	id, _ := strconv.ParseInt(taskID, 10, 64)
	if err := emu.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	evs = append([]sseEvent{resumed}, readAll(t, er)...)
	checkStream(t, evs, taskID, n+1, "EXPORT_TASK_STATE_FINISHED")
	if c := emu.Stats().Actions["ExportLicenseDetail"].TasksCreated; c != 1 {
		t.Errorf("the cloud created %d tasks, want 1", c)
	}
}
