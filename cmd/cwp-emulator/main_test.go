package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"

	"github.com/cwpexport/cwpexport/server/emulator"
)

// The test binary doubles as cwp-emulator when this variable is set, so a
// test can kill a real process running the real main.
const asEmulator = "CWP_EMULATOR_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asEmulator) == "1" {
		os.Args = append([]string{"cwp-emulator"}, strings.Fields(os.Getenv("CWP_EMULATOR_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	testID  = "AKIDcrashtest000000000000000000000"
	testKey = "crashtest-secret-key-0123456789abc"
)

func sdkCall(t *testing.T, addr, action string, params map[string]any) map[string]any {
	t.Helper()
	prof := profile.NewClientProfile()
	prof.HttpProfile.Endpoint, prof.HttpProfile.Scheme, prof.HttpProfile.ReqTimeout = addr, "HTTP", 10
	c := common.NewCommonClient(common.NewCredential(testID, testKey), "", prof)
	req := tchttp.NewCommonRequest("cwp", emulator.APIVersion, action)
	if err := req.SetActionParameters(params); err != nil {
		t.Fatal(err)
	}
	resp := tchttp.NewCommonResponse()
	if err := c.Send(req, resp); err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	var env struct{ Response map[string]any }
	if err := json.Unmarshal(resp.GetBody(), &env); err != nil {
		t.Fatal(err)
	}
	return env.Response
}

var listening = regexp.MustCompile(`msg="cwp emulator listening" addr=(\S+)`)

// TestTaskSurvivesSIGKILL kills cwp-emulator right after it answered a
// creation; an emulator started on its state directory knows the task.
func TestTaskSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), asEmulator+"=1",
		"CWP_EMULATOR_TEST_ARGS=-listen 127.0.0.1:0 -pending -1s -state-dir "+dir,
		"TENCENTCLOUD_SECRET_ID="+testID, "TENCENTCLOUD_SECRET_KEY="+testKey)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && lines.Scan() {
		if m := listening.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("the emulator never logged its address")
	}
	go func() {
		for lines.Scan() { // drain the rest of the log
		}
	}()

	created := sdkCall(t, addr, "ExportLicenseDetail", map[string]any{"IsHistory": true})
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	id, _ := created["TaskId"].(float64)
	if id <= 0 {
		t.Fatalf("creation answered %v", created)
	}

	emu, err := emulator.New(emulator.Options{Credentials: map[string]string{testID: testKey}, PendingFor: -1, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- emu.Serve(ctx, lis) }()
	defer func() { cancel(); <-served }()

	taskID := strconv.FormatInt(int64(id), 10)
	if got := sdkCall(t, lis.Addr().String(), "ExportTasks", map[string]any{"TaskId": taskID}); got["Status"] != "PENDING" {
		t.Fatalf("after kill -9 task %s answers %v, want PENDING", taskID, got)
	}
	if err := emu.FinishTask(int64(id)); err != nil {
		t.Fatal(err)
	}
	if got := sdkCall(t, lis.Addr().String(), "ExportLicenseDetail", map[string]any{}); got["TaskId"] != id+1 {
		t.Errorf("next task %v, want %v", got["TaskId"], id+1)
	}
}
