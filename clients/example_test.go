package clients_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cwpexport/cwpexport/clients"
	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
)

// A Go client dials the service with ServiceConfig (retries of reads
// across replicas), starts an export and watches it to its end. The
// service here is a real one on a loopback port, on its embedded cloud
// emulator.
func ExampleServiceConfig() {
	addr, stop := startService()
	defer stop()

	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(clients.ServiceConfig))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := cwpexportv1.NewLicenseExportServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{})
	if err != nil {
		panic(err)
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(msg.GetKind(), msg.GetTask().GetState())
	}
	// Output:
	// WATCH_EVENT_KIND_SNAPSHOT EXPORT_TASK_STATE_PENDING
	// WATCH_EVENT_KIND_STATE_CHANGED EXPORT_TASK_STATE_FINISHED
}

// startService serves on loopback ports until stop is called.
func startService() (grpcAddr string, stop func()) {
	dir, err := os.MkdirTemp("", "cwpexport-example-")
	if err != nil {
		panic(err)
	}
	srv, err := app.New(app.Options{DataDir: dir, EmulatorPending: 300 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	restLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, grpcLis, restLis) }()
	return grpcLis.Addr().String(), func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}
}
