// Package exports carries an export from its creation to its end: the
// creation (recorded in the registry before the cloud is called, within the
// export budget, its outcome recorded whether or not the caller waits), the
// following of recorded tasks until they end (it is the tracker's observer:
// every poll's outcome is recorded), and the cache of what the registry
// holds of a task.
//
// "Follow" means one thing here, as in package tracker: to keep a recorded
// task polled in the background, whether or not anyone watches it, until
// it ends (Run and its passes over the registry's unfinished tasks); a
// caller's watch is a stream (package service).
//
// Package service answers the API with it; package tracker polls the tasks.
package exports

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/internal/logger"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// Registry records the tasks the service created (see package taskstore).
type Registry interface {
	Reserve(ctx context.Context, r taskstore.Task, lease time.Duration) (taskstore.Task, bool, error)
	GetRequest(ctx context.Context, creator, requestID string) (taskstore.Task, bool, error)
	Complete(ctx context.Context, id, owner string, t taskstore.Task) error
	CallStarting(ctx context.Context, id, owner string, lease time.Duration) error
	ReleaseUnstarted(ctx context.Context, id string) (bool, error)
	Release(ctx context.Context, id, owner string) error
	Unknown(ctx context.Context, id, owner, reason string) error
	Get(ctx context.Context, taskID int64) (taskstore.Task, bool, error)
	Observe(ctx context.Context, o taskstore.Observation) error
	Abandon(ctx context.Context, taskID int64, reason string) error
	Lost(ctx context.Context, taskID int64, reason string, at time.Time) error
	Following(ctx context.Context) ([]taskstore.Task, error)
}

// Creator starts exports in the cloud.
type Creator interface {
	ExportLicenseDetail(ctx context.Context, p cloud.ExportParams) (cloud.Created, error)
}

// Tracker is what the saga tells the tracker (see package tracker): the
// tasks it created, and which tasks to keep polled while nobody watches.
type Tracker interface {
	// Now is the tracker's clock: the database's in a fleet.
	Now() time.Time
	Created(id int64, requestID string) tracker.Snapshot
	Follow(id int64, created time.Time)
	Unfollow(id int64)
}

// Defaults of the operator's bounds (cwpexportd's flags read them).
const (
	// DefaultCreateTimeout bounds a creation's cloud call.
	DefaultCreateTimeout = 20 * time.Second
	// DefaultMaxFollowAge is how long a task is followed after its
	// creation.
	DefaultMaxFollowAge = 24 * time.Hour
)

// Options configure a Saga. Zero durations take the defaults named.
type Options struct {
	// Cloud starts exports; required.
	Cloud Creator
	// Registry records created tasks and makes creation with a request_id
	// idempotent; required.
	Registry Registry
	// CreateBudget paces ExportLicenseDetail calls to the cloud; nil means
	// a budget.Local at budget.DefaultRate.
	CreateBudget budget.Engine
	// CallerShare is the fraction of CreateBudget's rate one
	// authenticated caller (callerauth.Caller) may use; 0 means
	// budget.DefaultCallerShare, 1 or more turns the per-caller share off.
	CallerShare float64
	// CreateTimeout bounds a creation's cloud call, which runs whether or
	// not its caller waits; default DefaultCreateTimeout.
	CreateTimeout time.Duration
	// MaxQueueWait bounds how long a creation waits for the budget when the
	// caller set no earlier deadline; default 30s.
	MaxQueueWait time.Duration
	// CreateCallTime is the time a creation keeps for the cloud call after
	// its wait for the budget: a caller whose deadline leaves less is told
	// ResourceExhausted rather than risk a task created after it gave up;
	// default 500ms.
	CreateCallTime time.Duration
	// BudgetWaited, when set, is told how long each admitted creation
	// waited for the export budget (for metrics).
	BudgetWaited func(time.Duration)
	// Instance names this process in request_id reservations; it must
	// differ between runs. Default: a random UUID.
	Instance string
	// MaxFollowAge is how long after its creation a registry task is
	// followed before the service gives up on it; default
	// DefaultMaxFollowAge.
	MaxFollowAge time.Duration
	// FollowPass is the interval of the registry's follow pass; default 1m.
	FollowPass time.Duration
	// RecordCacheBytes bounds the estimated memory of the registry records
	// reads keep at hand; default DefaultRecordCacheBytes.
	RecordCacheBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives registry failures; nil discards.
	Logger *slog.Logger
}

// Saga creates exports and follows them to their end.
type Saga struct {
	opts    Options
	tracker Tracker
	// next is told of every poll before the saga (the metrics).
	next tracker.Observer
	// shares and admission admit creations into the export budget.
	shares    *budget.Shares
	admission budget.Admission
	// flights collapses concurrent creations with one request_id.
	flights singleflight.Group
	// inflight holds, per creation whose cloud call this process makes, a
	// channel closed once its outcome is recorded; detached counts those
	// calls.
	inflightMu sync.Mutex
	inflight   map[string]chan struct{}
	detached   sync.WaitGroup
	// records caches what the registry holds of a task and never changes
	// (its parameters, request id, creator, creation time, and its final
	// state once it ended), so that reads of a task do not query the
	// registry each time.
	records *recordCache
}

// New returns a saga and the tracker that polls its tasks. The tracker
// tells the saga of every poll (Polled), after track.Observer if any; its
// Run must be running.
func New(opts Options, track tracker.Options) (*Saga, *tracker.Tracker) {
	s := newSaga(opts)
	s.next, track.Observer = track.Observer, s
	t := tracker.New(track)
	s.tracker = t
	return s, t
}

// newSaga returns a saga without its tracker.
func newSaga(opts Options) *Saga {
	if opts.CreateBudget == nil {
		opts.CreateBudget = budget.MustNew(budget.Options{Rate: budget.DefaultRate})
	}
	if opts.CreateTimeout <= 0 {
		opts.CreateTimeout = DefaultCreateTimeout
	}
	if opts.MaxQueueWait <= 0 {
		opts.MaxQueueWait = 30 * time.Second
	}
	if opts.CreateCallTime <= 0 {
		opts.CreateCallTime = 500 * time.Millisecond
	}
	if opts.CallerShare <= 0 {
		opts.CallerShare = budget.DefaultCallerShare
	}
	if opts.Instance == "" {
		opts.Instance = uuid.NewString()
	}
	if opts.MaxFollowAge <= 0 {
		opts.MaxFollowAge = DefaultMaxFollowAge
	}
	if opts.FollowPass <= 0 {
		opts.FollowPass = time.Minute
	}
	if opts.RecordCacheBytes <= 0 {
		opts.RecordCacheBytes = DefaultRecordCacheBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Logger = logger.OrDiscard(opts.Logger)
	s := &Saga{opts: opts, records: newRecordCache(opts.RecordCacheBytes), inflight: map[string]chan struct{}{},
		admission: budget.Admission{Engine: opts.CreateBudget, CallTime: opts.CreateCallTime, QueueWait: opts.MaxQueueWait, Waited: opts.BudgetWaited}}
	if opts.CallerShare < 1 {
		s.shares = budget.NewShares(rate.Limit(opts.CreateBudget.Configured()), opts.CallerShare)
	}
	return s
}
