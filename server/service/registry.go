package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// Registry records the tasks the service created (see package taskstore).
type Registry interface {
	Insert(ctx context.Context, t taskstore.Task) error
	Reserve(ctx context.Context, r taskstore.Task) (taskstore.Task, bool, error)
	TakeOver(ctx context.Context, requestID, from, to string, now time.Time) (bool, error)
	Complete(ctx context.Context, requestID, owner string, t taskstore.Task) error
	Release(ctx context.Context, requestID, owner string) error
	Get(ctx context.Context, taskID int64) (taskstore.Task, bool, error)
	Observe(ctx context.Context, o taskstore.Observation) error
	SetDownloadURL(ctx context.Context, taskID int64, url, requestID string, now time.Time) error
	Abandon(ctx context.Context, taskID int64, reason string) error
	Following(ctx context.Context) ([]taskstore.Task, error)
	List(ctx context.Context, q taskstore.Query) ([]taskstore.Task, error)
}

// Page sizes of ListExportTasks.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Reasons of the registry's errors.
const (
	ReasonRequestIDReused = "REQUEST_ID_REUSED"
	ReasonRegistryFailed  = "REGISTRY_FAILED"
)

// errExportFailed is the error_message of a task the cloud reports as ERROR.
const errExportFailed = "the cloud reported that the export failed; start a new export"

// registryTimeout bounds registry writes that must happen even when the
// caller has gone (recording a created task, releasing a reservation).
const registryTimeout = 10 * time.Second

// createRecorded starts an export and records it in the registry before
// answering. With a request id the creation is idempotent:
//
//   - the request id is reserved in the registry before the cloud is called;
//     concurrent calls with the same id in this process share one flight;
//   - a request id bound to a task returns that task, without a cloud call;
//   - a request id bound to other parameters is rejected (InvalidArgument);
//   - if the cloud call fails the reservation is released and a retry calls
//     the cloud again; a reservation left by a process that died before the
//     cloud answered is taken over by the retry.
func (s *Service) createRecorded(ctx context.Context, req exportRequest, params cloud.ExportParams) (*cwpexportv1.ExportTask, string, error) {
	ep := toParameters(req)
	enc, fp := encodeParameters(ep, callerauth.Caller(ctx))
	rid := req.GetRequestId()
	if rid == "" {
		created, err := s.createThrottled(ctx, params)
		if err != nil {
			return nil, "", err
		}
		now := s.opts.Now()
		row := taskstore.Task{TaskID: created.TaskID, Fingerprint: fp, Parameters: enc, Creator: callerauth.Caller(ctx), Created: now, State: taskstore.StatePending,
			CreateRequestID: created.RequestID, LastRequestID: created.RequestID, Observed: now, Changed: now}
		if err := s.persist(ctx, created.TaskID, func(c context.Context) error { return s.opts.Registry.Insert(c, row) }); err != nil {
			return nil, "", err
		}
		return s.started(row), created.RequestID, nil
	}
	for {
		v, err, _ := s.flights.Do(rid, func() (any, error) { return s.createOnce(ctx, rid, fp, enc, params) })
		if err != nil {
			if code := status.Code(err); (code == codes.Canceled || code == codes.DeadlineExceeded) && ctx.Err() == nil {
				continue // the flight's leader gave up; this caller has not
			}
			return nil, "", err
		}
		row := v.(taskstore.Task)
		if row.Fingerprint != fp {
			return nil, "", requestIDReused(rid, row.TaskID)
		}
		return s.rowTask(row), row.CreateRequestID, nil
	}
}

// createOnce is one flight of an idempotent creation.
func (s *Service) createOnce(ctx context.Context, rid, fp, enc string, params cloud.ExportParams) (taskstore.Task, error) {
	for {
		now := s.opts.Now()
		row, fresh, err := s.opts.Registry.Reserve(ctx, taskstore.Task{RequestID: rid, Fingerprint: fp, Parameters: enc, Creator: callerauth.Caller(ctx), Owner: s.opts.Instance, Created: now})
		switch {
		case errors.Is(err, taskstore.ErrLostReservation):
			continue
		case err != nil:
			return taskstore.Task{}, registryError(ctx, err)
		case !fresh && row.Fingerprint != fp:
			return row, nil // the caller rejects the reuse
		case !fresh && row.TaskID != 0:
			return row, nil // a retry: the first task, no cloud call
		case !fresh:
			// Reserved by a process that is gone (one process holds a data
			// directory at a time), or by an earlier flight of this one
			// that could not release it: the outcome of its cloud call is
			// unknown, and this retry makes the call again.
			ok, err := s.opts.Registry.TakeOver(ctx, rid, row.Owner, s.opts.Instance, now)
			if err != nil {
				return taskstore.Task{}, registryError(ctx, err)
			}
			if !ok {
				continue
			}
			s.opts.Logger.Warn("taking over an unfinished request_id reservation; the earlier attempt may have left an unreported task in the cloud", "request_id", rid)
		}
		created, err := s.createThrottled(ctx, params)
		if err != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registryTimeout)
			if rerr := s.opts.Registry.Release(rctx, rid, s.opts.Instance); rerr != nil {
				s.opts.Logger.Error("release request_id reservation", "request_id", rid, "err", rerr)
			}
			cancel()
			return taskstore.Task{}, err
		}
		now = s.opts.Now()
		row = taskstore.Task{TaskID: created.TaskID, RequestID: rid, Fingerprint: fp, Parameters: enc, Creator: callerauth.Caller(ctx), Created: now, State: taskstore.StatePending,
			CreateRequestID: created.RequestID, LastRequestID: created.RequestID, Observed: now, Changed: now}
		if err := s.persist(ctx, created.TaskID, func(c context.Context) error { return s.opts.Registry.Complete(c, rid, s.opts.Instance, row) }); err != nil {
			return taskstore.Task{}, err
		}
		s.started(row)
		return row, nil
	}
}

// persist records a task the cloud has created, even if the caller has
// gone meanwhile: the task exists and must not be lost.
func (s *Service) persist(ctx context.Context, taskID int64, write func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registryTimeout)
	defer cancel()
	if err := write(ctx); err != nil {
		s.opts.Logger.Error("record a created task", "task_id", taskID, "err", err)
		return withInfo(codes.Internal, ReasonRegistryFailed, fmt.Sprintf(
			"export task %d was created but could not be recorded; it can still be watched by its id", taskID),
			map[string]string{metadataTaskID: fmt.Sprint(taskID)})
	}
	return nil
}

// started tells the tracker about a task just created and recorded: it is
// pending, and the registry's interest keeps it polled until it ends.
func (s *Service) started(row taskstore.Task) *cwpexportv1.ExportTask {
	snap := s.opts.Tracker.Created(row.TaskID, row.CreateRequestID)
	s.opts.Tracker.Follow(row.TaskID, row.Created)
	task := toTask(snap)
	info := s.remember(row)
	task.Parameters, task.RequestId, task.Creator = info.params, info.requestID, info.creator
	return task
}

func requestIDReused(rid string, taskID int64) error {
	v := violations{}
	v.add("request_id", "request_id %s was already used for another export (different parameters, or another caller); use a new request_id for a different export", rid)
	st := status.New(codes.InvalidArgument, "invalid request: request_id: "+v[0].Description)
	md := map[string]string{"request_id": rid}
	if taskID > 0 {
		md[metadataTaskID] = fmt.Sprint(taskID)
	}
	st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonRequestIDReused, Domain: Domain, Metadata: md}, &errdetails.BadRequest{FieldViolations: v})
	return st.Err()
}

func registryError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return contextStatus(ctx, ctx.Err())
	}
	return withInfo(codes.Unavailable, ReasonRegistryFailed, "the task registry is unavailable; retry later", nil)
}

// encodeParameters returns the stored form of an export's parameters and
// their fingerprint.
//
// The fingerprint also covers the caller, so one caller's request_id never
// answers another caller with the first one's task.
func encodeParameters(p *cwpexportv1.ExportParameters, caller string) (string, string) {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if caller != "" {
		b = append([]byte(caller+"\x00"), b...)
	}
	sum := sha256.Sum256(b)
	j, _ := protojson.Marshal(p)
	return string(j), hex.EncodeToString(sum[:])
}

// rowTask converts a registry row to the API's task.
func (s *Service) rowTask(r taskstore.Task) *cwpexportv1.ExportTask {
	t := &cwpexportv1.ExportTask{
		TaskId:                fmt.Sprint(r.TaskID),
		State:                 toState(cloud.Status(r.State)),
		DownloadUrl:           r.DownloadURL,
		CreateTime:            ts(r.Created),
		UpdateTime:            ts(r.Changed),
		ObserveTime:           ts(r.Observed),
		LastUpstreamRequestId: r.LastRequestID,
		RequestId:             r.RequestID,
		Creator:               r.Creator,
	}
	if r.Parameters != "" {
		p := &cwpexportv1.ExportParameters{}
		if protojson.Unmarshal([]byte(r.Parameters), p) == nil {
			t.Parameters = p
		}
	}
	switch {
	case r.State == taskstore.StateError:
		t.ErrorMessage = errExportFailed
	case r.EndReason != "":
		t.ErrorMessage = "the service stopped following this task: " + r.EndReason
	}
	return t
}

// record returns what the registry holds of a task, from the cache when it
// can; a task the registry does not know has recorded false.
func (s *Service) record(ctx context.Context, id int64) (recordInfo, error) {
	if info, ok := s.records.Get(id); ok {
		return info, nil
	}
	row, found, err := s.opts.Registry.Get(ctx, id)
	if err != nil {
		return recordInfo{}, err
	}
	if !found {
		s.records.AddAbsent(id) // not created through this service
		return recordInfo{}, nil
	}
	return s.remember(row), nil
}

// apply adds what the registry knows of a task (its parameters, request id,
// creator and creation time) to an answer built from the tracker.
func (r recordInfo) apply(t *cwpexportv1.ExportTask) *cwpexportv1.ExportTask {
	if r.recorded {
		t.Parameters, t.RequestId, t.Creator, t.CreateTime = r.params, r.requestID, r.creator, r.created
	}
	return t
}

// recordInfo is what the registry holds of a task and never changes.
type recordInfo struct {
	recorded  bool // false: the registry does not know the task
	params    *cwpexportv1.ExportParameters
	requestID string
	creator   string
	created   *timestamppb.Timestamp
}

// remember caches the unchanging part of a registry row.
func (s *Service) remember(row taskstore.Task) recordInfo {
	rec := s.rowTask(row)
	info := recordInfo{recorded: true, params: rec.GetParameters(), requestID: rec.GetRequestId(), creator: rec.GetCreator(), created: rec.GetCreateTime()}
	s.records.Add(row.TaskID, info)
	return info
}

// ListExportTasks lists the tasks this service created that the caller may
// see, newest first, in pages bounded by count and by size.
func (s *Service) ListExportTasks(ctx context.Context, req *cwpexportv1.ListExportTasksRequest) (*cwpexportv1.ListExportTasksResponse, error) {
	var v fieldErrors
	caller := callerauth.Caller(ctx)
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = DefaultPageSize
	case size < 0 || size > MaxPageSize:
		v.add("page_size", "must be between 1 and %d (0 means %d), got %d", MaxPageSize, DefaultPageSize, size)
	}
	state := ""
	switch req.GetState() {
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_UNSPECIFIED:
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING:
		state = taskstore.StatePending
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED:
		state = taskstore.StateFinished
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR:
		state = taskstore.StateError
	default:
		v.add("state", "must be one of EXPORT_TASK_STATE_PENDING, EXPORT_TASK_STATE_FINISHED, EXPORT_TASK_STATE_ERROR or unspecified, got %d", req.GetState())
	}
	var after *taskstore.Cursor
	if tok := req.GetPageToken(); tok != "" {
		c, tokState, err := s.decodePageToken(caller, tok)
		switch {
		case err != nil:
			v.add("page_token", "is not a token this service issued to this caller; pass next_page_token from the previous page unchanged")
		case tokState != state:
			v.add("page_token", "was issued for a different state filter; use the same state on every page")
		default:
			after = &c
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	q := taskstore.Query{State: state, After: after, Limit: size + 1}
	if scope := s.scope(ctx); !scope.All() {
		q.Creators = scope.Owners()
		if q.Creators == nil {
			q.Creators = []string{} // sees nothing
		}
	}
	rows, err := s.opts.Registry.List(ctx, q)
	if err != nil {
		return nil, registryError(ctx, err)
	}
	resp := &cwpexportv1.ListExportTasksResponse{}
	bytes := 0
	for i, r := range rows {
		if i == size {
			break
		}
		t := s.rowTask(r)
		// Bounded in bytes as well as rows, so that a page always fits in
		// a gRPC message; one task always fits (MaxParametersBytes).
		bytes += proto.Size(t)
		if i > 0 && bytes > s.opts.MaxPageBytes {
			break
		}
		resp.Tasks = append(resp.Tasks, t)
	}
	if n := len(resp.Tasks); n < len(rows) {
		last := rows[n-1]
		resp.NextPageToken = s.encodePageToken(caller, taskstore.Cursor{Created: last.Created, TaskID: last.TaskID}, state)
	}
	return resp, nil
}

// Observed records a poll's outcome in the registry (the tracker's observer
// calls it). A task that ended is no longer followed.
func (s *Service) Observed(snap tracker.Snapshot) {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	var err error
	switch {
	case snap.Err != nil && cloud.KindOf(snap.Err) == cloud.KindNotFound:
		err = s.opts.Registry.Abandon(ctx, snap.TaskID, "the cloud no longer knows the task ("+pollErrorText(snap.Err)+")")
		s.opts.Tracker.Unfollow(snap.TaskID)
	case snap.Err != nil:
		// The service's own trouble (credentials, permissions): the task
		// is followed again by the next registry pass.
	default:
		err = s.opts.Registry.Observe(ctx, taskstore.Observation{TaskID: snap.TaskID, State: string(snap.State), DownloadURL: snap.DownloadURL,
			RequestID: snap.RequestID, Observed: snap.Observed, Changed: snap.Changed})
		if snap.Terminal() {
			s.opts.Tracker.Unfollow(snap.TaskID)
		}
	}
	if err != nil {
		s.opts.Logger.Error("record an observation in the registry", "task_id", snap.TaskID, "err", err)
	}
}

// RunRegistry keeps the registry's unfinished tasks followed until ctx ends:
// at once (resuming after a restart) and then every FollowPass. A task still
// not terminal MaxFollowAge after its creation is abandoned, with the reason
// recorded.
func (s *Service) RunRegistry(ctx context.Context) {
	t := time.NewTicker(s.opts.FollowPass)
	defer t.Stop()
	for {
		s.followPass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) followPass(ctx context.Context) {
	rows, err := s.opts.Registry.Following(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Logger.Error("read the registry's unfinished tasks", "err", err)
		}
		return
	}
	now := s.opts.Now()
	for _, r := range rows {
		if age := now.Sub(r.Created); age > s.opts.MaxFollowAge {
			reason := fmt.Sprintf("still %s after %s, longer than the service follows a task (%s)",
				orDefault(r.State, "unobserved"), age.Round(time.Second), s.opts.MaxFollowAge)
			if err := s.opts.Registry.Abandon(ctx, r.TaskID, reason); err != nil {
				s.opts.Logger.Error("abandon a task", "task_id", r.TaskID, "err", err)
				continue
			}
			s.opts.Tracker.Unfollow(r.TaskID)
			s.opts.Logger.Warn("no longer following a task", "task_id", r.TaskID, "reason", reason)
			continue
		}
		s.opts.Tracker.Follow(r.TaskID, r.Created)
	}
}
