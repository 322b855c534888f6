package emulator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cwpexport/cwpexport/server/internal/logger"
)

// Defaults applied by New for zero-valued Options fields.
const (
	// DefaultPendingFor is how long a new task stays PENDING.
	DefaultPendingFor = 3 * time.Second
	// DefaultRateLimit is the cloud's documented quota: 20 requests per
	// second per action.
	DefaultRateLimit = 20
	// DefaultRecords is the size of the seeded license data set.
	DefaultRecords = 1000
)

// Identity of the emulated API.
const (
	// Service is the TC3 credential-scope service name.
	Service = "cwp"
	// APIVersion is the only X-TC-Version the emulator accepts.
	APIVersion = "2018-02-28"
)

// Options configures an Emulator.
type Options struct {
	// AdminToken, when set, must be sent as a bearer token on the
	// /_emulator/ admin routes (see adminGuard), which also require a
	// Host that is an IP address or localhost and no cross-origin request.
	AdminToken string
	// Credentials maps SecretId to SecretKey. Required. Each SecretId is a
	// separate account with its own tasks and rate-limit budget.
	Credentials map[string]string
	// PendingFor is how long a new task stays PENDING before it ends
	// (FINISHED, or ERROR for EMULATOR_FAIL). 0 means DefaultPendingFor; a
	// negative value keeps tasks PENDING until FinishTask or FailTask.
	PendingFor time.Duration
	// RateLimit is the number of requests admitted per second per action
	// per SecretId. 0 means DefaultRateLimit; negative means unlimited.
	RateLimit int
	// Records is the size of the seeded data set. 0 means DefaultRecords.
	Records int
	// Seed selects the data set: the same Seed, Records and anchor date
	// always give identical data.
	Seed int64
	// Now is the emulator clock, used for signature expiry, rate limiting,
	// task lifetimes and the data set's anchor date. nil means time.Now.
	Now func() time.Time
	// Logger receives request logs. nil discards them.
	Logger *slog.Logger
	// Faults are injected from the start; see InjectFault.
	Faults []Fault
	// DownloadTTL, when positive, makes download URLs expire this long
	// after the ExportTasks answer that gave them (HTTP 403 afterwards);
	// zero means they never expire. See expiry.go.
	DownloadTTL time.Duration
	// FirstTaskID is the id of the first task created; 0 means 1. An
	// emulator that restarts under a persistent task registry starts
	// above the ids it gave before, as the cloud never reuses one. With a
	// StateDir it is a floor: ids continue above those recorded there.
	FirstTaskID int64
	// StateDir, when set, keeps the emulator's tasks, download-URL signing
	// key and data set there, so an emulator started again on it answers
	// as before: the same tasks for the same SecretIds, the same files,
	// download URLs that still verify, and ids that never repeat (see
	// state.go). Each task is durable before its creation is answered. One
	// emulator at a time uses a directory; Close releases it. Empty keeps
	// everything in memory.
	StateDir string
}

// Emulator is an http.Handler serving the emulated cloud API, the download
// URLs and the /_emulator/ admin endpoints. It is safe for concurrent use.
type Emulator struct {
	creds      map[string]string
	pendingFor time.Duration
	now        func() time.Time
	log        *slog.Logger
	// adminToken, when set, is required of admin requests.
	adminToken string
	// downloadTTL and urlKey sign expiring download URLs.
	downloadTTL time.Duration
	urlKey      []byte

	data    *dataset
	tasks   *taskStore
	limiter *rateLimiter
	stats   *statsRecorder
	faults  *faultSet
	mux     *http.ServeMux

	journal *journal // nil without Options.StateDir
	// closing is closed by Close and when Serve cuts off requests that
	// outlived its shutdown grace: delayed requests are then dropped.
	closing   chan struct{}
	closeOnce sync.Once
}

// New validates opts, applies defaults and returns a ready Emulator.
func New(opts Options) (*Emulator, error) {
	if len(opts.Credentials) == 0 {
		return nil, errors.New("emulator: Options.Credentials is required")
	}
	creds := make(map[string]string, len(opts.Credentials))
	for id, key := range opts.Credentials {
		if id == "" || key == "" {
			return nil, errors.New("emulator: empty SecretId or SecretKey in Options.Credentials")
		}
		creds[id] = key
	}
	if opts.Records < 0 {
		return nil, fmt.Errorf("emulator: Options.Records must not be negative, got %d", opts.Records)
	}
	e := &Emulator{
		creds:      creds,
		pendingFor: opts.PendingFor,
		now:        opts.Now,
		log:        opts.Logger,
		adminToken: opts.AdminToken,
	}
	e.downloadTTL, e.urlKey = opts.DownloadTTL, make([]byte, 32)
	_, _ = rand.Read(e.urlKey) // crypto/rand.Read never fails
	if e.pendingFor == 0 {
		e.pendingFor = DefaultPendingFor
	}
	rate := opts.RateLimit
	if rate == 0 {
		rate = DefaultRateLimit
	}
	records := opts.Records
	if records == 0 {
		records = DefaultRecords
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.log = logger.OrDiscard(e.log)
	data := dataSet{anchor: anchorDate(e.now()), seed: opts.Seed, records: records}
	e.tasks = newTaskStore(opts.FirstTaskID)
	if opts.StateDir != "" {
		j, st, err := openState(opts.StateDir, e.urlKey, data, e.log)
		if err != nil {
			return nil, fmt.Errorf("emulator: %w", err)
		}
		if st.data.seed != data.seed || st.data.records != data.records {
			j.close()
			return nil, fmt.Errorf("emulator: state directory %s holds the data set of seed %d with %d records, not seed %d with %d records",
				opts.StateDir, st.data.seed, st.data.records, data.seed, data.records)
		}
		e.journal, e.urlKey, data = j, st.urlKey, st.data
		e.tasks.restore(st, j)
	}
	e.data = newDataset(data.seed, data.records, data.anchor)
	e.closing = make(chan struct{})
	e.limiter = newRateLimiter(rate)
	e.stats = newStatsRecorder()
	e.faults = newFaultSet()
	for _, f := range opts.Faults {
		if err := e.InjectFault(f); err != nil {
			return nil, err
		}
	}
	e.mux = e.routes()
	return e, nil
}

func (e *Emulator) routes() *http.ServeMux {
	mux := http.NewServeMux()
	// Any method on exactly "/" reaches the API pipeline, which answers
	// wrong methods with a cloud error envelope rather than a bare 405.
	mux.HandleFunc("/{$}", e.serveAPI)
	mux.HandleFunc("GET /downloads/{file}", e.serveDownload)
	admin := http.NewServeMux()
	admin.HandleFunc("GET /_emulator/stats", e.serveStats)
	admin.HandleFunc("POST /_emulator/tasks/{id}/finish", e.serveFinishTask)
	admin.HandleFunc("POST /_emulator/tasks/{id}/fail", e.serveFailTask)
	admin.HandleFunc("/_emulator/faults", e.serveFaults)
	admin.HandleFunc("GET /_emulator/tasks/{id}/file", e.serveTaskFile)
	mux.Handle("/_emulator/", e.adminGuard(admin))
	return mux
}

// ServeHTTP implements http.Handler.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mux.ServeHTTP(w, r)
}

// Server timeouts. Downloads lift the write deadline themselves because a
// large export may legitimately take longer than any API answer.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 5 * time.Second
)

// Serve serves HTTP on lis until ctx is done, then shuts down gracefully,
// giving in-flight requests a few seconds to finish. It returns nil after a
// shutdown caused by ctx, or the error that stopped the server otherwise.
// Serve closes lis.
func (e *Emulator) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// In-flight requests outlived the grace period: cut them off,
		// and drop those still delayed by a latency fault.
		e.stopDelays()
		err = errors.Join(err, srv.Close())
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Close drops requests still delayed by a latency fault and releases the
// state directory. Use it once the emulator serves no more requests.
func (e *Emulator) Close() error {
	e.stopDelays()
	if e.journal == nil {
		return nil
	}
	return e.journal.close()
}

func (e *Emulator) stopDelays() { e.closeOnce.Do(func() { close(e.closing) }) }

// NewDevCredential returns a random SecretId and SecretKey shaped like real
// ones, for an emulator run without given credentials.
func NewDevCredential() (secretID, secretKey string) {
	return "AKIDemu" + rand.Text(), rand.Text()
}
