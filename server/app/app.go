// Package app wires the service together: the cloud client (or the embedded
// emulator when no credentials are given), the tracker, the gRPC server and
// the REST gateway.
package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/calllog"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/gateway"
	"github.com/cwpexport/cwpexport/server/limits"
	"github.com/cwpexport/cwpexport/server/metrics"
	"github.com/cwpexport/cwpexport/server/service"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
	"github.com/cwpexport/cwpexport/server/webui"
)

// Options configure the server. Zero values take the defaults named.
type Options struct {
	// SecretID, SecretKey and SessionToken are the cloud credentials; with
	// no SecretID the embedded emulator serves as the cloud.
	SecretID     string
	SecretKey    string
	SessionToken string
	// Region is the cloud region (optional for CWP exports).
	Region string
	// Endpoint overrides the cloud API host ("host:port"); Scheme is HTTPS
	// (default) or HTTP.
	Endpoint string
	Scheme   string
	// EmulatorPending is how long emulated exports stay pending; default 3s.
	EmulatorPending time.Duration
	// ReadRate and CreateRate are the budgets, in requests per second, for
	// ExportTasks and ExportLicenseDetail; default 18 each, under the cloud's
	// 20 per action.
	ReadRate   float64
	CreateRate float64
	// MinPollInterval is the floor between polls of one task; default 1s.
	MinPollInterval time.Duration
	// MaxPollBackoff caps the delay between polls of a task whose polls
	// fail; default 30s.
	MaxPollBackoff time.Duration
	// Freshness is how old an observation GetExportTask answers with
	// without asking the cloud; default 1s.
	Freshness time.Duration
	// Heartbeat is the interval of watch heartbeats; default 5s.
	Heartbeat time.Duration
	// DataDir holds the task registry (registry.db); default "data".
	DataDir string
	// MaxFollowAge is how long after creation a registry task is followed
	// before the service gives up on it; default 24h.
	MaxFollowAge time.Duration
	// ShutdownGrace bounds the wait for calls in flight at shutdown;
	// default 10s.
	ShutdownGrace time.Duration
	// Logger receives the server's logs; nil discards.
	Logger *slog.Logger
	// Tokens authenticates callers by bearer token; nil admits every
	// caller (anonymously).
	Tokens *callerauth.Tokens
	// TLSCertFile and TLSKeyFile serve both ports over TLS; ClientCAFile
	// also requires client certificates it signed (mutual TLS).
	TLSCertFile  string
	TLSKeyFile   string
	ClientCAFile string
	// MaxRequestBytes bounds a request message on both ports; default
	// 1 MiB.
	MaxRequestBytes int
	// MaxStreamsPerCaller bounds the watch streams one caller has open;
	// default limits.DefaultStreamsPerCaller.
	MaxStreamsPerCaller int
	// CallerShare is the fraction of CreateRate one caller may use;
	// default service.DefaultCallerShare, 1 turns the share off.
	CallerShare float64
	// AllowUnauthenticatedRemote lets the server listen on a non-loopback
	// address with neither Tokens nor ClientCAFile; without it Serve
	// refuses to start.
	AllowUnauthenticatedRemote bool
}

// Server is a configured service, ready to Serve.
type Server struct {
	opts     Options
	log      *slog.Logger
	cloud    *cloud.Client
	tracker  *tracker.Tracker
	service  *service.Service
	registry *taskstore.SQLite
	emu      *emulator.Emulator
	emuLis   net.Listener
	readRate *rate.Limiter
	metrics  *metrics.Metrics
	streams  *limits.Streams
}

// New builds a server. Without credentials it starts the embedded emulator
// on a loopback port and points the cloud client at it.
func New(opts Options) (*Server, error) {
	if opts.ReadRate <= 0 {
		opts.ReadRate = 18
	}
	if opts.CreateRate <= 0 {
		opts.CreateRate = 18
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DataDir == "" {
		opts.DataDir = "data"
	}
	s := &Server{opts: opts, log: opts.Logger}
	cfg := cloud.Config{Region: opts.Region, Endpoint: opts.Endpoint, Scheme: opts.Scheme}
	switch {
	case opts.SecretID == "" && opts.SecretKey == "":
		if err := s.startEmulator(&cfg); err != nil {
			return nil, err
		}
	case opts.SecretID == "" || opts.SecretKey == "":
		return nil, errors.New("cloud credentials need both a SecretId and a SecretKey (TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY)")
	case opts.SessionToken != "":
		cfg.Credential = common.NewTokenCredential(opts.SecretID, opts.SecretKey, opts.SessionToken)
	default:
		cfg.Credential = common.NewCredential(opts.SecretID, opts.SecretKey)
	}
	s.cloud = cloud.New(cfg)
	reg, err := taskstore.Open(context.Background(), opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("open the task registry: %w", err)
	}
	s.registry = reg
	s.metrics = metrics.New()
	upstream := s.metrics.InstrumentCloud(s.cloud)
	s.readRate = rate.NewLimiter(rate.Limit(opts.ReadRate), 1)
	s.tracker = tracker.New(tracker.Options{
		Cloud:       upstream,
		Budget:      s.readRate,
		MinInterval: opts.MinPollInterval,
		MaxBackoff:  opts.MaxPollBackoff,
		Freshness:   opts.Freshness,
		Logger:      s.log,
		Observer:    trackerObserver{s},
	})
	s.metrics.TrackStats(s.tracker)
	s.service = service.New(service.Options{
		Cloud:        upstream,
		Tracker:      s.tracker,
		CreateBudget: rate.NewLimiter(rate.Limit(opts.CreateRate), 1),
		Heartbeat:    opts.Heartbeat,
		BudgetWaited: s.metrics.CreateBudgetWaited,
		CallerShare:  opts.CallerShare,
		Registry:     reg,
		MaxFollowAge: opts.MaxFollowAge,
		Reader:       upstream,
		ReadBudget:   s.readRate,
		Logger:       s.log,
		Budget:       service.BudgetOptions{Calls: s.metrics, ReadRate: opts.ReadRate, CreateRate: opts.CreateRate},
	})
	s.streams = limits.NewStreams(opts.MaxStreamsPerCaller)
	if s.opts.MaxRequestBytes <= 0 {
		s.opts.MaxRequestBytes = gateway.DefaultMaxBodyBytes
	}
	return s, nil
}

func (s *Server) startEmulator(cfg *cloud.Config) error {
	id, key := "AKIDemulator"+randomHex(8), randomHex(16)
	emu, err := emulator.New(emulator.Options{
		Credentials: map[string]string{id: key},
		PendingFor:  s.opts.EmulatorPending,
		// Ids from the clock: tasks of an earlier run, still in the
		// registry, keep ids this run never gives again.
		FirstTaskID: time.Now().UnixMilli(),
		Logger:      s.log.With("component", "emulator"),
	})
	if err != nil {
		return fmt.Errorf("start the embedded emulator: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the embedded emulator: %w", err)
	}
	s.emu, s.emuLis = emu, lis
	cfg.Credential = common.NewCredential(id, key)
	cfg.Endpoint, cfg.Scheme = lis.Addr().String(), "HTTP"
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Emulator returns the embedded emulator, or nil when a real cloud is used.
func (s *Server) Emulator() *emulator.Emulator { return s.emu }

// EmulatorAddr returns the embedded emulator's address, or "".
func (s *Server) EmulatorAddr() string {
	if s.emuLis == nil {
		return ""
	}
	return s.emuLis.Addr().String()
}

// Metrics returns the server's metrics (served at /metrics on the REST port).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Tracker returns the task tracker (for metrics and tests).
func (s *Server) Tracker() *tracker.Tracker { return s.tracker }

// Serve serves gRPC on grpcLis and REST on restLis until ctx ends, then
// shuts down gracefully. It closes the listeners and the registry.
func (s *Server) Serve(ctx context.Context, grpcLis, restLis net.Listener) error {
	defer s.registry.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.opts.checkExposure(grpcLis.Addr(), restLis.Addr()); err != nil {
		grpcLis.Close()
		restLis.Close()
		return err
	}
	tlsCfg, err := s.opts.tlsConfig()
	if err != nil {
		grpcLis.Close()
		restLis.Close()
		return err
	}

	hs := health.NewServer()
	hs.SetServingStatus(cwpexportv1.LicenseExportService_ServiceDesc.ServiceName, grpc_health_v1.HealthCheckResponse_SERVING)
	if s.opts.Tokens != nil && tlsCfg == nil && (!isLoopback(grpcLis.Addr()) || !isLoopback(restLis.Addr())) {
		s.log.Warn("bearer tokens travel in cleartext: configure TLS (-tls-cert, -tls-key) on addresses other hosts can reach")
	}
	var gsOpts []grpc.ServerOption
	if tlsCfg != nil {
		gsOpts = append(gsOpts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		restLis = tls.NewListener(restLis, tlsCfg)
	}
	gs := s.grpcServer(hs, gsOpts...)
	// The gateway reaches the service in-process, through a server of its
	// own without TLS: the REST port does the transport security, and the
	// interceptors (authentication, limits) run for REST calls as for any.
	inproc := bufconn.Listen(1 << 20)
	igs := s.grpcServer(hs)
	conn, err := grpc.NewClient("passthrough:///in-process",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial the gRPC server for the gateway: %w", err)
	}
	defer conn.Close()
	handler, err := gateway.New(ctx, conn, gateway.Options{MaxBodyBytes: int64(s.opts.MaxRequestBytes), Metrics: s.metrics.Handler(), UI: webui.Handler()})
	if err != nil {
		return err
	}
	hsrv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	// The emulator and the tracker outlive the servers' shutdown: calls in
	// their grace period still need them.
	bg, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	if s.emu != nil {
		run("emulator", func() error { return s.emu.Serve(bg, s.emuLis) })
	}
	run("tracker", func() error { s.tracker.Run(bg); return nil })
	run("registry", func() error { s.service.RunRegistry(bg); return nil })
	run("grpc", func() error { return gs.Serve(grpcLis) })
	run("grpc-in-process", func() error { return igs.Serve(inproc) })
	run("rest", func() error {
		if err := hsrv.Serve(restLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})

	<-ctx.Done()
	s.log.Info("shutting down")
	hs.Shutdown()
	s.service.Drain()
	sctx, scancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
	defer scancel()
	_ = hsrv.Shutdown(sctx)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); igs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		gs.Stop()
		igs.Stop()
		<-stopped
	}
	stopBackground()
	wg.Wait()
	close(errc)
	return <-errc
}

// grpcServer returns a gRPC server of the service with its interceptors:
// panic recovery outermost, then caller authentication.
func (s *Server) grpcServer(hs *health.Server, opts ...grpc.ServerOption) *grpc.Server {
	authn := callerauth.Interceptors{Tokens: s.opts.Tokens}
	opts = append(opts,
		grpc.MaxRecvMsgSize(s.opts.MaxRequestBytes),
		grpc.ChainUnaryInterceptor(
			s.metrics.GRPC().UnaryServerInterceptor(),
			calllog.UnaryServerInterceptor(s.log),
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(s.recovered)),
			authn.Unary(),
		),
		grpc.ChainStreamInterceptor(
			s.metrics.GRPC().StreamServerInterceptor(),
			calllog.StreamServerInterceptor(s.log),
			recovery.StreamServerInterceptor(recovery.WithRecoveryHandler(s.recovered)),
			authn.Stream(),
			s.streams.Interceptor(),
		),
	)
	gs := grpc.NewServer(opts...)
	cwpexportv1.RegisterLicenseExportServiceServer(gs, s.service)
	grpc_health_v1.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	s.metrics.GRPC().InitializeMetrics(gs)
	return gs
}

func (s *Server) recovered(p any) error {
	s.log.Error("panic in handler", "panic", s.redact(fmt.Sprint(p)))
	return status.Error(codes.Internal, "internal error")
}

// trackerObserver tells the metrics and the task registry what the tracker
// did.
type trackerObserver struct{ s *Server }

func (o trackerObserver) BudgetWaited(d time.Duration) { o.s.metrics.BudgetWaited(d) }

func (o trackerObserver) Polled(snap tracker.Snapshot, settled bool) {
	o.s.metrics.Polled(snap, settled)
	o.s.service.Observed(snap)
}
