// Package service implements the LicenseExportService gRPC API: it validates
// requests, starts exports through package exports, and answers reads and
// watches from the shared task tracker. One file per group of RPCs: create,
// read, watch, list, download, budget status; convert.go converts to the
// API's types.
package service

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"sync"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/filefetch"
	"github.com/cwpexport/cwpexport/server/internal/logger"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// Registry is what the service reads of the task registry (see package
// taskstore); package exports writes it.
type Registry interface {
	Get(ctx context.Context, taskID int64) (taskstore.Task, bool, error)
	List(ctx context.Context, q taskstore.Query) ([]taskstore.Task, error)
}

// Options configure a Service. Zero durations take the defaults named.
type Options struct {
	// Saga creates exports and knows what the registry holds of them;
	// required.
	Saga *exports.Saga
	// Tracker polls tasks (the saga's); its Run must be running.
	Tracker *tracker.Tracker
	// Registry lists the recorded tasks; required.
	Registry Registry
	// Heartbeat is the interval of heartbeat messages on watches of pending
	// tasks; default DefaultHeartbeat.
	Heartbeat time.Duration
	// GetTimeout bounds a GetExportTask that must ask the cloud when the
	// caller set no earlier deadline; default 15s.
	GetTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient fetches exported files; nil means filefetch.NewClient's
	// (public HTTPS destinations only).
	HTTPClient *http.Client
	// MaxDownloadBytes bounds an exported file's size; default
	// filefetch.DefaultMaxBytes.
	MaxDownloadBytes int64
	// ChunkSize is the size of DownloadExport's data messages; default
	// 256 KiB.
	ChunkSize int
	// Logger receives download failures; nil discards.
	Logger *slog.Logger
	// Access tells which tasks a caller may see; nil lets every caller
	// see every task (callers are not authenticated).
	Access Authorizer
	// PageTokenKey authenticates ListExportTasks' page tokens; processes
	// that share a registry must share it. Default: a random key, valid
	// for this process only.
	PageTokenKey []byte
	// MaxPageBytes bounds a ListExportTasks page's encoded size; default
	// DefaultMaxPageBytes.
	MaxPageBytes int
	// Budget answers GetBudgetStatus; nil answers Unimplemented.
	Budget *budget.Reporter
}

// DefaultHeartbeat is the interval of heartbeats on watches of pending
// tasks.
const DefaultHeartbeat = 5 * time.Second

// DefaultMaxPageBytes bounds a list page well under gRPC's default 4 MiB
// message limit of clients.
const DefaultMaxPageBytes = 1 << 20

// Service implements cwpexportv1.LicenseExportServiceServer.
type Service struct {
	cwpexportv1.UnimplementedLicenseExportServiceServer
	opts      Options
	draining  chan struct{}
	drainOnce sync.Once
}

// New returns a Service.
func New(opts Options) *Service {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.GetTimeout <= 0 {
		opts.GetTimeout = 15 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = filefetch.NewClient(filefetch.Options{})
	}
	if opts.MaxDownloadBytes <= 0 {
		opts.MaxDownloadBytes = filefetch.DefaultMaxBytes
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 256 << 10
	}
	opts.Logger = logger.OrDiscard(opts.Logger)
	if len(opts.PageTokenKey) == 0 {
		opts.PageTokenKey = make([]byte, 32)
		_, _ = rand.Read(opts.PageTokenKey)
	}
	if opts.MaxPageBytes <= 0 {
		opts.MaxPageBytes = DefaultMaxPageBytes
	}
	return &Service{opts: opts, draining: make(chan struct{})}
}

// Drain ends every watch stream with Unavailable, telling clients to resume
// with WatchExportTask; the server calls it when it shuts down.
func (s *Service) Drain() {
	s.drainOnce.Do(func() { close(s.draining) })
}
