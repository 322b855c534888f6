// Command baselined serves the benchmarks' baseline (package bench/baseline):
// a minimal grpc-go server of the same API answering a canned message.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/cwpexport/cwpexport/bench/baseline"
	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "baselined:", err)
		os.Exit(1)
	}
}

func run() error {
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:9190", "gRPC listen address")
	httpAddr := flag.String("http-addr", "127.0.0.1:9180", "HTTP listen address")
	response := flag.String("response", "", "file holding the binary GetExportTaskResponse to answer")
	flag.Parse()
	b, err := os.ReadFile(*response)
	if err != nil {
		return err
	}
	var get cwpexportv1.GetExportTaskResponse
	if err := proto.Unmarshal(b, &get); err != nil {
		return fmt.Errorf("%s: %w", *response, err)
	}
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return baseline.New(&get).Serve(ctx, gl, hl)
}
