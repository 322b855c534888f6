// Package service implements the LicenseExportService gRPC API: it validates
// requests, starts exports in the cloud within the export budget, and answers
// reads and watches from the shared task tracker.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// Creator starts exports in the cloud.
type Creator interface {
	ExportLicenseDetail(ctx context.Context, p cloud.ExportParams) (cloud.Created, error)
}

// CreateBudget paces ExportLicenseDetail calls (see package budget).
type CreateBudget interface {
	// Admit waits until a call may start and returns how long it waited;
	// a call that could not start by latest fails at once with a
	// *budget.LateError.
	Admit(ctx context.Context, latest time.Time) (time.Duration, error)
	// Again is Admit for a call the cloud refused for its rate limit, which
	// keeps its place in the queue where the budget can.
	Again(ctx context.Context, latest time.Time) (time.Duration, error)
	// Throttled reports a call the cloud refused for its rate limit.
	Throttled()
	// Configured is the configured rate, in calls per second.
	Configured() float64
}

// Options configure a Service. Zero durations take the defaults named.
type Options struct {
	// Cloud starts exports.
	Cloud Creator
	// Tracker follows tasks; its Run must be running.
	Tracker *tracker.Tracker
	// CreateBudget paces ExportLicenseDetail calls to the cloud; nil means
	// budget.New at 18 per second.
	CreateBudget CreateBudget
	// CreateTimeout bounds a creation's cloud call, which runs whether or
	// not its caller waits; default 20s.
	CreateTimeout time.Duration
	// Heartbeat is the interval of heartbeat messages on watches of pending
	// tasks; default 5s.
	Heartbeat time.Duration
	// MaxQueueWait bounds how long a creation waits for the budget when the
	// caller set no earlier deadline; default 30s.
	MaxQueueWait time.Duration
	// CreateCallTime is the time a creation keeps for the cloud call after
	// its wait for the budget: a caller whose deadline leaves less is told
	// ResourceExhausted rather than risk a task created after it gave up;
	// default 500ms.
	CreateCallTime time.Duration
	// GetTimeout bounds a GetExportTask that must ask the cloud when the
	// caller set no earlier deadline; default 15s.
	GetTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BudgetWaited, when set, is told how long each admitted creation
	// waited for the export budget (for metrics).
	BudgetWaited func(time.Duration)
	// CallerShare is the fraction of CreateBudget's rate one
	// authenticated caller (callerauth.Caller) may use; 0 means
	// DefaultCallerShare, 1 or more turns the per-caller share off.
	CallerShare float64
	// Registry records created tasks and makes creation with a request_id
	// idempotent; required.
	Registry Registry
	// Instance names this process in request_id reservations; it must
	// differ between runs. Default: a random UUID.
	Instance string
	// MaxFollowAge is how long after its creation a registry task is
	// followed before the service gives up on it; default 24h.
	MaxFollowAge time.Duration
	// FollowPass is the interval of the registry's follow pass; default 1m.
	FollowPass time.Duration
	// HTTPClient fetches exported files; nil means a client whose
	// transport waits at most 30s for response headers.
	HTTPClient *http.Client
	// ChunkSize is the size of DownloadExport's data messages; default
	// 256 KiB.
	ChunkSize int
	// Logger receives registry and download failures; nil discards.
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
	// RecordCacheBytes bounds the estimated memory of the registry records
	// reads keep at hand; default DefaultRecordCacheBytes.
	RecordCacheBytes int
	// Budget answers GetBudgetStatus (see budget.go).
	Budget BudgetOptions
}

// DefaultMaxPageBytes bounds a list page well under gRPC's default 4 MiB
// message limit of clients.
const DefaultMaxPageBytes = 1 << 20

// Service implements cwpexportv1.LicenseExportServiceServer.
type Service struct {
	cwpexportv1.UnimplementedLicenseExportServiceServer
	opts      Options
	shares    *callerShares
	draining  chan struct{}
	drainOnce sync.Once
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

// New returns a Service.
func New(opts Options) *Service {
	if opts.CreateBudget == nil {
		opts.CreateBudget = budget.MustNew(budget.Options{Rate: 18})
	}
	if opts.CreateTimeout <= 0 {
		opts.CreateTimeout = 20 * time.Second
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 5 * time.Second
	}
	if opts.MaxQueueWait <= 0 {
		opts.MaxQueueWait = 30 * time.Second
	}
	if opts.CreateCallTime <= 0 {
		opts.CreateCallTime = 500 * time.Millisecond
	}
	if opts.GetTimeout <= 0 {
		opts.GetTimeout = 15 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CallerShare <= 0 {
		opts.CallerShare = DefaultCallerShare
	}
	if opts.Instance == "" {
		opts.Instance = uuid.NewString()
	}
	if opts.MaxFollowAge <= 0 {
		opts.MaxFollowAge = 24 * time.Hour
	}
	if opts.FollowPass <= 0 {
		opts.FollowPass = time.Minute
	}
	if opts.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 30 * time.Second
		opts.HTTPClient = &http.Client{Transport: tr}
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 256 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.PageTokenKey) == 0 {
		opts.PageTokenKey = make([]byte, 32)
		_, _ = rand.Read(opts.PageTokenKey)
	}
	if opts.MaxPageBytes <= 0 {
		opts.MaxPageBytes = DefaultMaxPageBytes
	}
	if opts.RecordCacheBytes <= 0 {
		opts.RecordCacheBytes = DefaultRecordCacheBytes
	}
	svc := &Service{opts: opts, draining: make(chan struct{}), records: newRecordCache(opts.RecordCacheBytes), inflight: map[string]chan struct{}{}}
	if opts.CallerShare < 1 {
		svc.shares = newCallerShares(rate.Limit(opts.CreateBudget.Configured()), opts.CallerShare)
	}
	return svc
}

// Drain ends every watch stream with Unavailable, telling clients to resume
// with WatchExportTask; the server calls it when it shuts down.
func (s *Service) Drain() {
	s.drainOnce.Do(func() { close(s.draining) })
}

// ExportLicenseDetail starts an export.
func (s *Service) ExportLicenseDetail(ctx context.Context, req *cwpexportv1.ExportLicenseDetailRequest) (*cwpexportv1.ExportLicenseDetailResponse, error) {
	task, rid, err := s.create(ctx, req)
	if err != nil {
		return nil, err
	}
	return &cwpexportv1.ExportLicenseDetailResponse{Task: task, UpstreamRequestId: rid}, nil
}

// ExportLicenseDetailAndWatch starts an export and follows it.
func (s *Service) ExportLicenseDetailAndWatch(req *cwpexportv1.ExportLicenseDetailAndWatchRequest, stream cwpexportv1.LicenseExportService_ExportLicenseDetailAndWatchServer) error {
	ctx := stream.Context()
	task, rid, err := s.create(ctx, req)
	if err != nil {
		return err
	}
	id, _ := parseTaskID(task.GetTaskId())
	info, _ := s.record(ctx, id) // cached by the creation; a task ends only later
	first := true
	return s.follow(ctx, id, info, func(kind cwpexportv1.WatchEventKind, t *cwpexportv1.ExportTask, p *cwpexportv1.Progress) error {
		msg := &cwpexportv1.ExportLicenseDetailAndWatchResponse{Kind: kind, Task: t, Progress: p}
		if first {
			msg.UpstreamRequestId, first = rid, false
			t.Parameters = task.GetParameters()
			t.RequestId = task.GetRequestId()
		}
		return stream.Send(msg)
	})
}

// GetExportTask returns a task's current state. A task the registry
// records as ended is answered from the registry, without asking the cloud.
func (s *Service) GetExportTask(ctx context.Context, req *cwpexportv1.GetExportTaskRequest) (*cwpexportv1.GetExportTaskResponse, error) {
	id, err := parseTaskID(req.GetTaskId())
	if err != nil {
		return nil, err
	}
	info, err := s.visible(ctx, id)
	if err != nil {
		return nil, err
	}
	if info.final != nil {
		return &cwpexportv1.GetExportTaskResponse{Task: proto.CloneOf(info.final), Progress: s.progress(s.opts.Tracker.Peek(id), time.Time{})}, nil
	}
	ctx, cancel := answerBefore(ctx, s.opts.GetTimeout)
	defer cancel()
	snap, err := s.opts.Tracker.Get(ctx, id)
	if err != nil {
		if t := s.lostTask(info, snap, err); t != nil {
			return &cwpexportv1.GetExportTaskResponse{Task: t, Progress: s.progress(snap, time.Time{})}, nil
		}
		return nil, cloudStatus(ctx, id, err)
	}
	if snap.Terminal() {
		s.records.Remove(id) // its final state is being recorded
	}
	return &cwpexportv1.GetExportTaskResponse{Task: info.apply(toTask(snap)), Progress: s.progress(snap, time.Time{})}, nil
}

// lostTask is the answer about a task this service created that the cloud
// no longer knows (err): it ended in ERROR. It is nil for other errors and
// for tasks the registry does not know, which are answered NotFound.
func (s *Service) lostTask(info recordInfo, snap tracker.Snapshot, err error) *cwpexportv1.ExportTask {
	if !info.recorded || cloud.KindOf(err) != cloud.KindNotFound {
		return nil
	}
	t := info.apply(toTask(snap))
	t.State = cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR
	t.ErrorMessage = "the export cannot be followed: " + lostReason(err)
	return t
}

// WatchExportTask follows a task to its end. It also resumes an
// ExportLicenseDetailAndWatch stream, under the same authorization.
func (s *Service) WatchExportTask(req *cwpexportv1.WatchExportTaskRequest, stream cwpexportv1.LicenseExportService_WatchExportTaskServer) error {
	id, err := parseTaskID(req.GetTaskId())
	if err != nil {
		return err
	}
	info, err := s.visible(stream.Context(), id)
	if err != nil {
		return err
	}
	return s.follow(stream.Context(), id, info, func(kind cwpexportv1.WatchEventKind, t *cwpexportv1.ExportTask, p *cwpexportv1.Progress) error {
		return stream.Send(&cwpexportv1.WatchExportTaskResponse{Kind: kind, Task: t, Progress: p})
	})
}

// sendFunc sends one watch message.
type sendFunc func(kind cwpexportv1.WatchEventKind, t *cwpexportv1.ExportTask, p *cwpexportv1.Progress) error

// follow streams a task's observations: a snapshot as soon as the task's
// state is known, a message on every change, heartbeats while pending; it
// returns after the terminal message, or when ctx ends (closing the
// caller's interest, so polling stops when nobody else is watching).
func (s *Service) follow(ctx context.Context, id int64, info recordInfo, send sendFunc) error {
	start := s.opts.Now()
	if info.final != nil {
		return send(cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT, proto.CloneOf(info.final), s.progress(s.opts.Tracker.Peek(id), start))
	}
	w := s.opts.Tracker.Watch(id)
	defer w.Close()
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	var (
		sent      bool
		lastState cloud.Status
		beat      bool
		linked    trace.SpanContext
	)
	for {
		snap, changed := w.Current()
		if snap.Err != nil {
			if t := s.lostTask(info, snap, snap.Err); t != nil {
				kind := cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_STATE_CHANGED
				if !sent {
					kind = cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT
				}
				linkPoll(ctx, linked, snap, kind)
				return send(kind, t, s.progress(snap, start))
			}
			// The stream ends with the refusal that poll received.
			linkPoll(ctx, linked, snap, cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_UNSPECIFIED)
			return cloudStatus(ctx, id, snap.Err)
		}
		var kind cwpexportv1.WatchEventKind
		switch {
		case !sent && (snap.State != "" || beat):
			// The first message waits for the task's state, but no longer
			// than one heartbeat: a cloud in trouble shows in its progress.
			kind = cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT
		case sent && snap.State != lastState:
			kind = cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_STATE_CHANGED
		case sent && beat:
			kind = cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_HEARTBEAT
		}
		beat = false
		if kind != cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_UNSPECIFIED {
			linked = linkPoll(ctx, linked, snap, kind)
			if err := send(kind, info.apply(toTask(snap)), s.progress(snap, start)); err != nil {
				return err
			}
			sent, lastState = true, snap.State
			if snap.Terminal() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return contextStatus(ctx, ctx.Err())
		case <-s.draining:
			return apierror.New(cwpexportv1.ErrorReason_SHUTTING_DOWN, fmt.Sprintf(
				"the server is shutting down; resume with WatchExportTask for task %d", id)).Meta(apierror.MetadataTaskID, fmt.Sprint(id)).Err()
		case <-changed:
		case <-heartbeat.C:
			beat = true
		}
	}
}

// linkPoll links the watch's span to the poll that observed what a message
// reports (kind; unspecified for the refusal that ends the stream), once
// per poll: the poll is a trace of its own, made for every watcher of the
// task. It returns the poll linked last.
func linkPoll(ctx context.Context, linked trace.SpanContext, snap tracker.Snapshot, kind cwpexportv1.WatchEventKind) trace.SpanContext {
	if !snap.ChangeSpan.IsValid() || snap.ChangeSpan.Equal(linked) {
		return linked
	}
	attrs := []attribute.KeyValue{attribute.String(cloud.AttrTaskStatus, string(snap.State))}
	if kind != cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_UNSPECIFIED {
		attrs = append(attrs, attribute.String("cwpexport.watch.kind", kind.String()))
	}
	trace.SpanFromContext(ctx).AddLink(trace.Link{SpanContext: snap.ChangeSpan, Attributes: attrs})
	return snap.ChangeSpan
}

// create validates an export request, waits for the export budget and
// starts the export.
func (s *Service) create(ctx context.Context, req exportRequest) (*cwpexportv1.ExportTask, string, error) {
	params, err := validateExport(req)
	if err != nil {
		return nil, "", err
	}
	// Unauthenticated callers cannot be told apart: they share the budget
	// as before.
	if caller := callerauth.Caller(ctx); s.shares != nil && caller != "" {
		if err := s.shares.admit(caller, s.opts.Now()); err != nil {
			return nil, "", err
		}
	}
	return s.createRecorded(ctx, req, params)
}

// admit waits for the export budget, again for a call the cloud refused
// for its rate. A caller whose deadline (or giveUp, the end of the
// service's queue) would pass first, leaving less than CreateCallTime for
// the cloud call, gets ResourceExhausted at once with a retry hint, rather
// than a wait that cannot succeed.
func (s *Service) admit(ctx context.Context, giveUp time.Time, again bool) error {
	latest, deadline := giveUp, false
	if d, ok := ctx.Deadline(); ok && d.Add(-s.opts.CreateCallTime).Before(latest) {
		latest, deadline = d.Add(-s.opts.CreateCallTime), true
	}
	wait := s.opts.CreateBudget.Admit
	if again {
		wait = s.opts.CreateBudget.Again
	}
	waited, err := wait(ctx, latest)
	var late *budget.LateError
	switch {
	case errors.As(err, &late):
		return budgetExhausted(late.Delay, deadline, s.opts.MaxQueueWait)
	case err != nil && ctx.Err() != nil:
		return contextStatus(ctx, ctx.Err())
	case err != nil:
		return apierror.New(cwpexportv1.ErrorReason_EXPORT_BUDGET_EXHAUSTED, "the export budget cannot be reached; retry later").Code(codes.Unavailable).Err()
	}
	s.budgetWaited(waited)
	return nil
}

func (s *Service) budgetWaited(d time.Duration) {
	if s.opts.BudgetWaited != nil {
		s.opts.BudgetWaited(d)
	}
}

func budgetExhausted(retry time.Duration, deadline bool, queue time.Duration) error {
	msg := fmt.Sprintf("too many exports are queued for the cloud's request budget to start this one before the call's deadline; retry in %s or with a longer deadline", retry.Round(time.Millisecond))
	if !deadline {
		msg = fmt.Sprintf("too many exports are queued for the cloud's request budget to start this one within the %s an export may wait; retry in %s", queue, retry.Round(time.Millisecond))
	}
	return apierror.New(cwpexportv1.ErrorReason_EXPORT_BUDGET_EXHAUSTED, msg).RetryAfter(retry).Err()
}

// toTask converts a tracker snapshot to the API's task.
func toTask(s tracker.Snapshot) *cwpexportv1.ExportTask {
	t := &cwpexportv1.ExportTask{
		TaskId:                fmt.Sprint(s.TaskID),
		State:                 toState(s.State),
		DownloadUrl:           s.DownloadURL,
		CreateTime:            ts(s.Created),
		UpdateTime:            ts(s.Changed),
		ObserveTime:           ts(s.Observed),
		LastUpstreamRequestId: s.RequestID,
	}
	if s.State == cloud.StatusError {
		t.ErrorMessage = errExportFailed
	}
	return t
}

func toState(s cloud.Status) cwpexportv1.ExportTaskState {
	switch s {
	case cloud.StatusPending:
		return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING
	case cloud.StatusFinished:
		return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED
	case cloud.StatusError:
		return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR
	}
	return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_UNSPECIFIED
}

// progress reports what the service observed; watchStart is zero outside a
// watch.
func (s *Service) progress(snap tracker.Snapshot, watchStart time.Time) *cwpexportv1.Progress {
	now := s.opts.Now()
	p := &cwpexportv1.Progress{
		PollCount:               snap.Polls,
		LastPollTime:            ts(snap.LastPoll),
		NextPollTime:            ts(snap.NextPoll),
		ConsecutivePollFailures: int32(snap.Failures),
		PendingTasks:            int32(snap.Pending),
		ReadBudgetRate:          snap.Rate,
	}
	if !snap.Created.IsZero() {
		p.TaskElapsed = durationpb.New(now.Sub(snap.Created))
	}
	if !watchStart.IsZero() {
		p.WatchElapsed = durationpb.New(now.Sub(watchStart))
	}
	if snap.LastErr != nil {
		p.LastPollError = pollErrorText(snap.LastErr)
	}
	return p
}

// pollErrorText describes a failed poll to watchers without internals: the
// message of the status a Get would have returned.
func pollErrorText(err error) string {
	st, _ := status.FromError(cloudStatus(context.Background(), 0, err))
	return st.Message()
}

func toParameters(r exportRequest) *cwpexportv1.ExportParameters {
	return &cwpexportv1.ExportParameters{Filters: r.GetFilters(), IsHistory: r.GetIsHistory(), Tags: r.GetTags(), ExportMonth: r.GetExportMonth()}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	// In microseconds, as the registry keeps times: an answer from this
	// process's observation and one from the registry tell the same time.
	return timestamppb.New(t.Truncate(time.Microsecond))
}
