// Package app wires the service together: the cloud client (or the embedded
// emulator when no credentials are given), the tracker, the gRPC server and
// the REST gateway.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/access"
	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/filefetch"
	"github.com/cwpexport/cwpexport/server/gateway"
	"github.com/cwpexport/cwpexport/server/internal/lifecycle"
	"github.com/cwpexport/cwpexport/server/internal/logger"
	"github.com/cwpexport/cwpexport/server/internal/protocodec"
	"github.com/cwpexport/cwpexport/server/limits"
	"github.com/cwpexport/cwpexport/server/metrics"
	"github.com/cwpexport/cwpexport/server/service"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/telemetry"
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
	// AllowPrivateCloud lets the cloud be reached over plain HTTP with
	// credentials, and exported files be downloaded from loopback,
	// private and link-local addresses (an emulator, a private network);
	// the embedded emulator turns it on for itself.
	AllowPrivateCloud bool
	// MaxDownloadBytes bounds an exported file's size; default
	// filefetch.DefaultMaxBytes.
	MaxDownloadBytes int64
	// EmulatorPending is how long emulated exports stay pending; default 3s.
	EmulatorPending time.Duration
	// ReadRate and CreateRate are the budgets, in requests per second, for
	// ExportTasks and ExportLicenseDetail; default budget.DefaultRate each,
	// under the cloud's budget.CloudQuota per action.
	ReadRate   float64
	CreateRate float64
	// MinPollInterval is the floor between polls of one task; default 1s.
	MinPollInterval time.Duration
	// MaxPollBackoff caps the delay between polls of a task whose polls
	// fail; default 30s.
	MaxPollBackoff time.Duration
	// PollTimeout bounds one ExportTasks call; a poll that takes longer is
	// a transient failure. Default 10s.
	PollTimeout time.Duration
	// CreateTimeout bounds one ExportLicenseDetail call, which runs whether
	// or not its caller waits; default 20s.
	CreateTimeout time.Duration
	// Freshness is how old an observation GetExportTask answers with
	// without asking the cloud; default 1s.
	Freshness time.Duration
	// Heartbeat is the interval of watch heartbeats; default 5s.
	Heartbeat time.Duration
	// DataDir holds the task registry (registry.db) when Database is
	// empty, and the embedded emulator's state; default DefaultDataDir.
	DataDir string
	// Database is the task registry's PostgreSQL connection string
	// (postgres://… or key=value; see ResolveDatabase for the flag and
	// environment); empty means SQLite in DataDir.
	Database string
	// MaxFollowAge is how long after creation a registry task is followed
	// before the service gives up on it; default 24h.
	MaxFollowAge time.Duration
	// Retention is how long ended tasks stay in the registry after their
	// creation; default taskstore.DefaultRetention (395 days).
	Retention time.Duration
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
	// default budget.DefaultCallerShare, 1 turns the share off.
	CallerShare float64
	// AllowUnauthenticatedRemote lets the server listen on a non-loopback
	// address with neither Tokens nor ClientCAFile; without it Serve
	// refuses to start.
	AllowUnauthenticatedRemote bool
	// AllowCleartextTokens lets the server accept bearer tokens on a
	// non-loopback address without TLS; without it Serve refuses to start.
	AllowCleartextTokens bool
	// CertIdentity is what names a caller in its client certificate under
	// mutual TLS (ClientCAFile); default callerauth.CertCN.
	CertIdentity callerauth.CertIdentity
	// ReadsPerCaller and ReadBurst bound each authenticated caller's
	// GetExportTask and ListExportTasks calls per second; defaults
	// limits.DefaultReadsPerCaller and limits.DefaultReadBurst.
	ReadsPerCaller float64
	ReadBurst      int
	// GRPC transport bounds of the gRPC port; zero values take the
	// defaults named (see grpcTransport).
	GRPCMaxConcurrentStreams  uint32
	GRPCMaxConnectionAge      time.Duration
	GRPCMaxConnectionAgeGrace time.Duration
	GRPCKeepaliveMinTime      time.Duration
	// Edge bounds what anyone who can reach the ports may cost before
	// authentication (see edge.go).
	Edge EdgeOptions
	// RESTMaxConns bounds the REST port's open connections; default
	// DefaultRESTMaxConns.
	RESTMaxConns int
	// RESTBodyTimeout bounds the time to receive a REST request body;
	// default gateway.DefaultBodyTimeout.
	RESTBodyTimeout time.Duration
	// AllowedHosts are the host names, besides loopback names, that the
	// REST port answers to. When it listens on loopback, or when names are
	// given, other Host headers and Origins are refused (DNS rebinding,
	// cross-site requests).
	AllowedHosts []string
	// AuditLogger receives one line per export started and per download
	// (who, which task, outcome); nil discards.
	AuditLogger *slog.Logger
	// MaxPageBytes and RecordCacheBytes bound list pages and the records
	// cache (see service.Options); zero takes the defaults.
	MaxPageBytes     int
	RecordCacheBytes int
	// MetricsListener, when set, serves GET /metrics (every caller's
	// calls counted) on its own address, apart from the API's ports;
	// nil serves no metrics over HTTP.
	MetricsListener net.Listener
	// TracerProvider, when set, traces the service (see tracing.go): a
	// span per gRPC and REST call continuing the caller's W3C trace
	// context, child spans for budget waits and cloud calls, a span per
	// poll. Nil turns tracing off: no instrumentation is installed.
	TracerProvider trace.TracerProvider
}

// DefaultDataDir is the directory of the SQLite registry and the embedded
// emulator's state, relative to the working directory.
const DefaultDataDir = "data"

// Defaults of the transports' bounds.
const (
	DefaultRESTMaxConns              = 4096
	DefaultGRPCMaxConcurrentStreams  = 1000
	DefaultGRPCMaxConnectionAge      = time.Hour
	DefaultGRPCMaxConnectionAgeGrace = 10 * time.Minute
	DefaultGRPCKeepaliveMinTime      = 10 * time.Second
)

// DefaultRetention is how long ended tasks stay in the registry after
// their creation (-retention): a year and a month.
const DefaultRetention = taskstore.DefaultRetention

// Server is a configured service, ready to Serve.
type Server struct {
	opts     Options
	log      *slog.Logger
	cloud    *cloud.Client
	tracker  *tracker.Tracker
	saga     *exports.Saga
	service  *service.Service
	registry *taskstore.Store
	pool     *pgxpool.Pool // the registry's PostgreSQL pool; nil on SQLite
	emu      *emulator.Emulator
	emuLis   net.Listener
	metrics  *metrics.Metrics
	streams  *limits.Streams
	reads    *limits.Reads
	auth     *callerauth.Authenticator
	access   *access.Live
	codec    *protocodec.Codec
	// instance names this process in creations' leases and in the fleet.
	instance string
	engines  engines
}

// New builds a server. Without credentials it starts the embedded emulator
// on a loopback port and points the cloud client at it.
func New(opts Options) (*Server, error) {
	if opts.ReadRate <= 0 {
		opts.ReadRate = budget.DefaultRate
	}
	if opts.CreateRate <= 0 {
		opts.CreateRate = budget.DefaultRate
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	opts.Logger = logger.OrDiscard(opts.Logger)
	if opts.DataDir == "" {
		opts.DataDir = DefaultDataDir
	}
	opts.AuditLogger = logger.OrDiscard(opts.AuditLogger)
	// Lines logged within a traced call carry its trace and span ids.
	opts.Logger = slog.New(telemetry.LogHandler(opts.Logger.Handler()))
	opts.AuditLogger = slog.New(telemetry.LogHandler(opts.AuditLogger.Handler()))
	if opts.ClientCAFile != "" && opts.CertIdentity == callerauth.CertNone {
		opts.CertIdentity = callerauth.CertCN
	}
	if opts.ClientCAFile == "" {
		opts.CertIdentity = callerauth.CertNone
	}
	if opts.Tokens != nil {
		if err := opts.checkCallers(opts.Tokens); err != nil {
			return nil, err
		}
	}
	s := &Server{opts: opts, log: opts.Logger, codec: protocodec.New()}
	s.auth = callerauth.NewAuthenticator(opts.Tokens, opts.CertIdentity)
	var authz service.Authorizer
	if s.auth.Enabled() {
		policy, _ := access.NewPolicy(nil, nil)
		if opts.Tokens != nil {
			policy = opts.Tokens.Policy()
		}
		s.access = access.NewLive(policy)
		authz = s.access
	}
	cfg := cloud.Config{Region: opts.Region, Endpoint: opts.Endpoint, Scheme: opts.Scheme, TracerProvider: s.tracerProvider()}
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
	if err := opts.checkCloudScheme(); err != nil {
		s.closeEmulator()
		return nil, err
	}
	s.cloud = cloud.New(cfg)
	if opts.Database != "" && s.emu != nil {
		s.log.Warn("the registry is on PostgreSQL but the cloud is this process's embedded emulator: other replicas cannot see its tasks; a fleet needs one cloud (credentials, and -cloud-endpoint for a shared cwp-emulator)")
	}
	if err := s.openRegistry(context.Background()); err != nil {
		s.closeEmulator()
		return nil, fmt.Errorf("open the task registry: %w", err)
	}
	reg := s.registry
	fail := func(err error) (*Server, error) {
		s.closeRegistry()
		s.closeEmulator()
		return nil, err
	}
	// The page-token key lives in the registry: every process sharing it
	// accepts the others' tokens, across restarts.
	pageKey, err := reg.Secret(context.Background(), "page_token_key", func() []byte { return randomBytes(32) })
	if err != nil {
		return fail(fmt.Errorf("read the page-token key: %w", err))
	}
	s.metrics = metrics.New()
	upstream := s.metrics.InstrumentCloud(s.cloud)
	s.instance = uuid.NewString()
	s.engines, err = s.openEngines(context.Background(), upstream)
	if err != nil {
		return fail(err)
	}
	reads, creates := s.engines.reads, s.engines.creates
	s.metrics.TrackBudget(metrics.BudgetRead, reads)
	s.metrics.TrackBudget(metrics.BudgetCreate, creates)
	s.saga, s.tracker = exports.New(exports.Options{
		Cloud:            upstream,
		Registry:         reg,
		CreateBudget:     creates,
		CallerShare:      opts.CallerShare,
		CreateTimeout:    opts.CreateTimeout,
		BudgetWaited:     s.metrics.CreateBudgetWaited,
		Instance:         s.instance,
		MaxFollowAge:     opts.MaxFollowAge,
		RecordCacheBytes: opts.RecordCacheBytes,
		Logger:           s.log,
	}, tracker.Options{
		Scheduler: s.engines.schedule,
		Freshness: opts.Freshness,
		Logger:    s.log,
		Observer:  s.metrics,
	})
	s.metrics.TrackStats(s.tracker)
	s.service = service.New(service.Options{
		Saga:             s.saga,
		Tracker:          s.tracker,
		Registry:         reg,
		Heartbeat:        opts.Heartbeat,
		Logger:           s.log,
		Access:           authz,
		PageTokenKey:     pageKey,
		MaxPageBytes:     opts.MaxPageBytes,
		HTTPClient:       filefetch.NewClient(s.downloadClient()),
		MaxDownloadBytes: opts.MaxDownloadBytes,
		Budget:           &budget.Reporter{Calls: s.metrics, Read: reads, Create: creates, Tasks: func() int { return s.tracker.Stats().Scheduled }},
	})
	s.streams = limits.NewStreams(opts.MaxStreamsPerCaller)
	s.reads = limits.NewReads(opts.ReadsPerCaller, opts.ReadBurst)
	if s.opts.MaxRequestBytes <= 0 {
		s.opts.MaxRequestBytes = gateway.DefaultMaxBodyBytes
	}
	return s, nil
}

// Metrics returns the server's metrics (served at /metrics on
// Options.MetricsListener).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Tracker returns the task tracker (for metrics and tests).
func (s *Server) Tracker() *tracker.Tracker { return s.tracker }

// Serve serves gRPC on grpcLis and REST on restLis until ctx ends, then
// shuts down gracefully. It closes the listeners and the registry.
func (s *Server) Serve(ctx context.Context, grpcLis, restLis net.Listener) error {
	defer s.closeRegistry()
	defer s.closeEmulator()
	if l := s.opts.MetricsListener; l != nil {
		defer l.Close()
	}
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
	checkHost := isLoopback(restLis.Addr()) || len(s.opts.AllowedHosts) > 0
	// The cap counts connections still in their TLS handshake too.
	restLis = netutil.LimitListener(restLis, s.opts.restMaxConns())
	edge := s.newEdge(grpcLis)
	defer edge.close()
	grpcLis = edge.conns
	gsOpts := append(s.opts.grpcTransport(), edge.grpcOptions(s.opts.Edge)...)
	if tlsCfg != nil {
		gsOpts = append(gsOpts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		restLis = tls.NewListener(restLis, restTLS(tlsCfg))
	}
	gs := s.grpcServer(hs, false, gsOpts...)
	// The gateway reaches the service in-process, through a server of its
	// own without TLS: the REST port does the transport security, and the
	// interceptors (authentication, limits) run for REST calls as for any.
	// Only that server trusts what the gateway forwards (the client's
	// address and certificate identity).
	inproc := inProcessListener{bufconn.Listen(1 << 20)}
	igs := s.grpcServer(hs, true)
	dialOpts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	if h := s.clientStatsHandler(); h != nil {
		// A REST call's trace continues into its gRPC handling.
		dialOpts = append(dialOpts, grpc.WithStatsHandler(h))
	}
	conn, err := grpc.NewClient("passthrough:///in-process", dialOpts...)
	if err != nil {
		return fmt.Errorf("dial the gRPC server for the gateway: %w", err)
	}
	defer conn.Close()
	gwOpts := gateway.Options{MaxBodyBytes: int64(s.opts.MaxRequestBytes), BodyTimeout: s.opts.RESTBodyTimeout, UI: webui.Handler(),
		CheckHost: checkHost, AllowedHosts: s.opts.AllowedHosts, Logger: s.log, Failures: edge.failures,
		TracerProvider: s.opts.TracerProvider, Propagator: telemetry.Propagator()}
	if s.auth.Enabled() {
		gwOpts.Auth = s.auth
	}
	handler, err := gateway.New(ctx, conn, gwOpts)
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

	// The background parts outlive the servers' shutdown: calls in their
	// grace period still need them.
	bg, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	parts := lifecycle.NewGroup(cancel)
	parts.Go(bg, s.backgroundParts(hs)...)
	parts.Go(ctx,
		lifecycle.Part{Name: "grpc", Run: func(context.Context) error { return gs.Serve(grpcLis) }},
		lifecycle.Part{Name: "grpc-in-process", Run: func(context.Context) error { return igs.Serve(inproc) }},
		lifecycle.Part{Name: "rest", Run: func(context.Context) error {
			if err := hsrv.Serve(restLis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}},
	)
	msrv := s.metricsServer()
	if lis := s.opts.MetricsListener; lis != nil {
		parts.Go(ctx, lifecycle.Part{Name: "metrics", Run: func(context.Context) error {
			if err := msrv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}})
	}

	<-ctx.Done()
	s.log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
	defer scancel()
	lifecycle.Shutdown(s.log,
		lifecycle.Step{Name: "health: not serving", Do: hs.Shutdown},
		lifecycle.Step{Name: "watches: told to resume elsewhere", Do: s.service.Drain},
		lifecycle.Step{Name: "rest: calls in flight, within the grace", Do: func() { _ = hsrv.Shutdown(sctx) }},
		lifecycle.Step{Name: "metrics", Do: func() { _ = msrv.Shutdown(sctx) }},
		lifecycle.Step{Name: "grpc: calls in flight, within the grace", Do: func() {
			stopped := make(chan struct{})
			go func() { gs.GracefulStop(); igs.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-sctx.Done():
				gs.Stop()
				igs.Stop()
				<-stopped
			}
		}},
		// A creation's cloud call outlives its caller: its outcome is
		// recorded before the registry closes.
		lifecycle.Step{Name: "creations: outcomes recorded", Do: s.saga.WaitCreations},
		lifecycle.Step{Name: "background parts", Do: stopBackground},
	)
	return parts.Wait()
}

// backgroundParts are the parts that run as long as the server: started
// before the servers, stopped after their shutdown (see Serve).
func (s *Server) backgroundParts(hs *health.Server) []lifecycle.Part {
	var parts []lifecycle.Part
	if s.emu != nil {
		parts = append(parts, lifecycle.Part{Name: "emulator", Run: func(ctx context.Context) error { return s.emu.Serve(ctx, s.emuLis) }})
	}
	parts = append(parts,
		lifecycle.Loop("tracker", s.tracker.Run),
		lifecycle.Loop("registry", s.saga.Run),
		lifecycle.Loop("retention", func(ctx context.Context) {
			s.registry.RunRetention(ctx, taskstore.RetentionOptions{Age: s.opts.Retention, Holder: s.instance, Logger: s.log, Pruned: s.metrics.Pruned})
		}),
		lifecycle.Loop("readiness", func(ctx context.Context) { s.readiness(ctx, hs) }),
	)
	return append(parts, s.engines.refresh...)
}

// readiness keeps the health service's status (gRPC health, REST /healthz)
// in step with the engines until ctx ends: NOT_SERVING while a fleet's
// database has been unreachable for a while, so that load balancers send
// callers to replicas that can serve them. Liveness (/livez) does not
// depend on it.
func (s *Server) readiness(ctx context.Context, hs *health.Server) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	serving := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ok := s.engines.healthy(); ok != serving {
			serving = ok
			st := grpc_health_v1.HealthCheckResponse_SERVING
			if !ok {
				st = grpc_health_v1.HealthCheckResponse_NOT_SERVING
				s.log.Error("not ready: the fleet's database cannot be reached, or its feed is silent (the fleet's log says which); callers are sent to other replicas until it recovers")
			} else {
				s.log.Info("ready again: the fleet's database answers and its feed is live")
			}
			hs.SetServingStatus("", st)
			hs.SetServingStatus(cwpexportv1.LicenseExportService_ServiceDesc.ServiceName, st)
			s.metrics.SetReady(ok)
		}
	}
}
