// Package baseline is the yardstick of the benchmarks: a minimal grpc-go
// server of the same API that does no work. GetExportTask answers a canned
// message (captured from the real service, so of the same size), and
// WatchExportTask sends one canned message and then holds the stream idle
// until the client leaves. A plain net/http server answers the canned
// message's JSON for the REST comparison.
package baseline

import (
	"context"
	"errors"
	"net"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// Server answers every call with the same message.
type Server struct {
	cwpexportv1.UnimplementedLicenseExportServiceServer
	get   *cwpexportv1.GetExportTaskResponse
	watch *cwpexportv1.WatchExportTaskResponse
}

// New returns a server answering get to every GetExportTask.
func New(get *cwpexportv1.GetExportTaskResponse) *Server {
	return &Server{get: get, watch: &cwpexportv1.WatchExportTaskResponse{
		Kind: cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT, Task: get.GetTask(), Progress: get.GetProgress(),
	}}
}

// GetExportTask answers the canned message.
func (s *Server) GetExportTask(context.Context, *cwpexportv1.GetExportTaskRequest) (*cwpexportv1.GetExportTaskResponse, error) {
	return s.get, nil
}

// WatchExportTask sends the canned message and holds the stream open.
func (s *Server) WatchExportTask(_ *cwpexportv1.WatchExportTaskRequest, stream cwpexportv1.LicenseExportService_WatchExportTaskServer) error {
	if err := stream.Send(s.watch); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// Serve serves gRPC on grpcLis and the canned JSON over HTTP on httpLis
// until ctx ends.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	gs := grpc.NewServer()
	cwpexportv1.RegisterLicenseExportServiceServer(gs, s)
	reflection.Register(gs)
	body, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(s.get)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})}
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(grpcLis) }()
	go func() { errc <- hs.Serve(httpLis) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	gs.Stop()
	_ = hs.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
