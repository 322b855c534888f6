package e2e_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// TestGracefulShutdown: when Serve's context ends, watch streams end with
// Unavailable telling the client how to resume, a unary call in flight
// finishes, Serve returns, and (TestMain) no goroutine is left.
func TestGracefulShutdown(t *testing.T) {
	o := fastApp()
	o.EmulatorPending = time.Hour // the embedded emulator: tasks stay pending
	o.ShutdownGrace = 5 * time.Second
	o.DataDir = t.TempDir()
	srv, err := app.New(o)
	if err != nil {
		t.Fatal(err)
	}
	grpcLis, _ := net.Listen("tcp", "127.0.0.1:0")
	restLis, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, grpcLis, restLis) }()

	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := cwpexportv1.NewLicenseExportServiceClient(conn)
	res, err := client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	watch, err := client.WatchExportTask(context.Background(), &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	restWatch := make(chan string, 1)
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	go func() {
		resp, err := hc.Get("http://" + restLis.Addr().String() + "/v1/export-tasks/" + id + ":watch")
		if err != nil {
			restWatch <- err.Error()
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		restWatch <- b.String()
	}()
	// A unary call still waiting on a slow cloud when shutdown begins.
	if err := srv.Emulator().InjectFault(emulator.Fault{Kind: emulator.FaultLatency, Action: "ExportTasks", Delay: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the REST watch is open
	unary := make(chan error, 1)
	go func() {
		_, err := client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: "999"})
		unary <- err
	}()
	time.Sleep(50 * time.Millisecond)
	stop()

	_, err = watch.Recv()
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "resume with WatchExportTask for task "+id) {
		t.Errorf("gRPC watch ended with %v, want Unavailable with a resume hint", err)
	}
	if got := <-restWatch; !strings.Contains(got, `"code":14`) || !strings.Contains(got, "resume with WatchExportTask") {
		t.Errorf("REST watch ended with %q, want an Unavailable error line with a resume hint", got)
	}
	// The Get ran into the slow cloud and got its answer (the emulator's
	// unknown task), not a cut connection.
	if err := <-unary; status.Code(err) != codes.NotFound {
		t.Errorf("the unary call in flight ended with %v, want its real answer (NotFound)", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
