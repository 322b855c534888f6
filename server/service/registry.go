package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// Registry records the tasks the service created (see package taskstore).
type Registry interface {
	Reserve(ctx context.Context, r taskstore.Task, lease time.Duration) (taskstore.Task, bool, error)
	GetRequest(ctx context.Context, creator, requestID string) (taskstore.Task, bool, error)
	Complete(ctx context.Context, id, owner string, t taskstore.Task) error
	Release(ctx context.Context, id, owner string) error
	Unknown(ctx context.Context, id, owner, reason string) error
	Get(ctx context.Context, taskID int64) (taskstore.Task, bool, error)
	Observe(ctx context.Context, o taskstore.Observation) error
	Abandon(ctx context.Context, taskID int64, reason string) error
	Lost(ctx context.Context, taskID int64, reason string, at time.Time) error
	Following(ctx context.Context) ([]taskstore.Task, error)
	List(ctx context.Context, q taskstore.Query) ([]taskstore.Task, error)
}

// Page sizes of ListExportTasks.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Metadata values and timings of the registry's and the creation's errors.
const (
	creationOutcomeUnknown        = "unknown"
	retryAfterCreationInProgress  = time.Second
	creationInProgressPollingTime = 200 * time.Millisecond
)

// errExportFailed is the error_message of a task the cloud reports as ERROR.
const errExportFailed = "the cloud reported that the export failed; start a new export"

// registryTimeout bounds registry writes that must happen even when the
// caller has gone (recording a creation's outcome).
const registryTimeout = 10 * time.Second

// createRecorded starts an export, recording it in the registry before the
// cloud is called and its outcome whether or not the caller is still there:
//
//   - every creation is written to the registry first; a registry that
//     cannot be written means no cloud call (Unavailable);
//   - the cloud call runs detached from the caller's cancellation, under
//     its own timeout, and its outcome is recorded when it ends;
//   - a creation the cloud certainly did not perform (never sent, or
//     refused) is released; any other failure leaves it marked as of
//     unknown outcome, for good: the cloud may hold its task.
//
// With a request id (scoped to the caller) the creation is idempotent: a
// retry gets the task once it is known, CREATION_IN_PROGRESS (retryable)
// while the first call is under way, CREATION_OUTCOME_UNKNOWN (Aborted)
// when its outcome is unknown — never a second cloud task — and
// REQUEST_ID_REUSED for other parameters. Concurrent calls in this process
// share one flight.
func (s *Service) createRecorded(ctx context.Context, req exportRequest, params cloud.ExportParams) (*cwpexportv1.ExportTask, string, error) {
	creator := callerauth.Caller(ctx)
	enc, fp := encodeParameters(toParameters(req), creator)
	row := taskstore.Task{RequestID: req.GetRequestId(), Fingerprint: fp, Parameters: enc, Creator: creator}
	if row.RequestID == "" {
		got, err := s.createOnce(ctx, row, params)
		if err != nil {
			return nil, "", err
		}
		return s.rowTask(got), got.CreateRequestID, nil
	}
	key := creator + "\x00" + row.RequestID
	for {
		// The flight runs on its first caller's context; later callers
		// wait for it with their own.
		var res singleflight.Result
		select {
		case res = <-s.flights.DoChan(key, func() (any, error) { return s.createIdempotent(ctx, row, params) }):
		case <-ctx.Done():
			return nil, "", creationCutShort(ctx, row.RequestID)
		}
		if res.Err != nil {
			if code := status.Code(res.Err); res.Shared && (code == codes.Canceled || code == codes.DeadlineExceeded) && ctx.Err() == nil {
				continue // the flight's first caller gave up; this one has not
			}
			return nil, "", res.Err
		}
		got := res.Val.(taskstore.Task)
		if got.Fingerprint != fp {
			return nil, "", requestIDReused(row.RequestID, got.TaskID)
		}
		return s.rowTask(got), got.CreateRequestID, nil
	}
}

// createIdempotent is one flight of a creation with a request id.
func (s *Service) createIdempotent(ctx context.Context, row taskstore.Task, params cloud.ExportParams) (taskstore.Task, error) {
	for {
		got, found, err := s.opts.Registry.GetRequest(ctx, row.Creator, row.RequestID)
		if err != nil {
			return taskstore.Task{}, registryError(ctx, err)
		}
		if !found {
			return s.createOnce(ctx, row, params)
		}
		got, again, err := s.resolve(ctx, got)
		if !again {
			return got, err
		}
	}
}

// resolve answers a creation that found its request id recorded: the task,
// a mismatch for the caller to reject, or the first creation's fate. While
// the first creation's cloud call is under way it waits for its outcome,
// answering CREATION_IN_PROGRESS shortly before the caller's deadline. again
// means the first creation was released (the cloud created nothing) and
// this one may start afresh.
func (s *Service) resolve(ctx context.Context, got taskstore.Task) (_ taskstore.Task, again bool, _ error) {
	wctx, cancel := answerBefore(ctx, s.opts.CreateTimeout+registryTimeout)
	defer cancel()
	for {
		switch {
		case got.TaskID != 0:
			return got, false, nil
		case !got.InFlight: // by the registry's clock, which every process shares
			return taskstore.Task{}, false, outcomeUnknown(got)
		}
		// This process's call tells when it is recorded; another process's
		// is read again shortly.
		done := s.creating(got.ID)
		poll := time.NewTimer(creationInProgressPollingTime)
		if done != nil {
			poll.Stop()
		}
		select {
		case <-done:
		case <-poll.C:
		case <-wctx.Done():
			poll.Stop()
			if ctx.Err() != nil {
				return taskstore.Task{}, false, creationCutShort(ctx, got.RequestID)
			}
			return taskstore.Task{}, false, creationInProgress(got.RequestID)
		}
		var found bool
		var err error
		if got, found, err = s.opts.Registry.GetRequest(ctx, got.Creator, got.RequestID); err != nil {
			return taskstore.Task{}, false, registryError(ctx, err)
		} else if !found {
			return taskstore.Task{}, true, nil
		}
	}
}

// createOnce records a creation and makes its cloud call within the export
// budget. When the cloud answers RequestLimitExceeded (other programs share
// the account's quota) it backs off with jitter and tries again while the
// caller's deadline allows: the cloud refused before doing anything.
func (s *Service) createOnce(ctx context.Context, row taskstore.Task, params cloud.ExportParams) (taskstore.Task, error) {
	retry := backoff.ExponentialBackOff{InitialInterval: 200 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 5 * time.Second}
	retry.Reset()
	giveUp := s.opts.Now().Add(s.opts.MaxQueueWait)
	again := false
	for {
		// The creation is recorded before it waits for the budget: the
		// slot is taken right before the cloud call, so that no write
		// comes between them to bunch calls the budget spaced. Its lease
		// covers the wait, the call and the recording of its outcome.
		row.ID, row.Owner, row.Created = "", s.opts.Instance, s.opts.Now()
		waitAtMost := giveUp.Sub(s.opts.Now())
		if d, ok := ctx.Deadline(); ok {
			waitAtMost = min(waitAtMost, time.Until(d))
		}
		lease := max(waitAtMost, 0) + s.opts.CreateTimeout + 2*registryTimeout
		got, fresh, err := s.opts.Registry.Reserve(ctx, row, lease)
		switch {
		case errors.Is(err, taskstore.ErrLostReservation):
			continue
		case err != nil:
			s.opts.Logger.ErrorContext(ctx, "record a creation before calling the cloud", "request_id", row.RequestID, "err", err)
			return taskstore.Task{}, registryError(ctx, err)
		case !fresh:
			// Another process recorded the request id first.
			got, again, err := s.resolve(ctx, got)
			if again {
				continue
			}
			return got, err
		}
		if err := s.admit(ctx, giveUp, again); err != nil {
			// Nothing was sent: the request id may be tried again.
			s.release(got)
			return taskstore.Task{}, err
		}
		created, err := s.call(ctx, got, params)
		switch {
		case err == nil:
			return created, nil
		case cloud.KindOf(err) != cloud.KindThrottled:
			return taskstore.Task{}, cloudStatus(ctx, 0, err)
		}
		wait := retry.NextBackOff()
		end := giveUp
		if d, ok := ctx.Deadline(); ok && d.Before(end) {
			end = d
		}
		if s.opts.Now().Add(wait + s.opts.CreateCallTime).After(end) {
			return taskstore.Task{}, cloudStatus(ctx, 0, err)
		}
		again = true
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return taskstore.Task{}, contextStatus(ctx, ctx.Err())
		}
	}
}

// call makes the cloud call of the recorded creation row, detached from the
// caller: it runs under CreateTimeout whether or not the caller waits, and
// its outcome is recorded when it ends. The caller gets the outcome, or
// its own deadline's status if that comes first.
func (s *Service) call(ctx context.Context, row taskstore.Task, params cloud.ExportParams) (taskstore.Task, error) {
	type outcome struct {
		row taskstore.Task
		err error
	}
	done := make(chan outcome, 1)
	notify := make(chan struct{})
	s.inflightMu.Lock()
	s.inflight[row.ID] = notify
	s.inflightMu.Unlock()
	s.detached.Add(1)
	go func() {
		defer s.detached.Done()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.CreateTimeout)
		created, err := s.opts.Cloud.ExportLicenseDetail(cctx, params)
		if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			err = &cloud.Error{Action: cloud.ActionExportLicenseDetail, Code: cloud.CodeTimeout,
				Message: fmt.Sprintf("the cloud did not answer within %s", s.opts.CreateTimeout)}
		}
		cancel()
		if cloud.KindOf(err) == cloud.KindThrottled {
			s.opts.CreateBudget.Throttled()
		}
		r, err := s.recordOutcome(row, created, err)
		done <- outcome{r, err}
		s.inflightMu.Lock()
		delete(s.inflight, row.ID)
		s.inflightMu.Unlock()
		close(notify)
	}()
	wctx, cancel := answerBefore(ctx, s.opts.CreateTimeout+registryTimeout)
	defer cancel()
	select {
	case o := <-done:
		return o.row, o.err
	case <-wctx.Done():
		return taskstore.Task{}, creationCutShort(ctx, row.RequestID)
	}
}

// creating returns a channel closed when this process has recorded the
// outcome of creation id, or nil when no call of this process makes it.
func (s *Service) creating(id string) <-chan struct{} {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if ch, ok := s.inflight[id]; ok {
		return ch
	}
	return nil
}

// WaitCreations waits for the cloud calls of creations under way to end
// and their outcomes to be recorded; the server calls it at shutdown,
// before it closes the registry.
func (s *Service) WaitCreations() { s.detached.Wait() }

// recordOutcome writes the outcome of a creation's cloud call.
func (s *Service) recordOutcome(row taskstore.Task, created cloud.Created, err error) (taskstore.Task, error) {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	switch {
	case err == nil:
		now := s.opts.Now()
		row.TaskID, row.State, row.Created, row.Observed, row.Changed = created.TaskID, taskstore.StatePending, now, now, now
		row.CreateRequestID, row.LastRequestID = created.RequestID, created.RequestID
		if werr := s.opts.Registry.Complete(ctx, row.ID, row.Owner, row); werr != nil {
			s.opts.Logger.Error("record a created task", "task_id", created.TaskID, "request_id", row.RequestID, "err", werr)
			// It can still be watched: the tracker knows it.
			s.opts.Tracker.Created(created.TaskID, created.RequestID)
			return taskstore.Task{}, apierror.New(cwpexportv1.ErrorReason_REGISTRY_FAILED, fmt.Sprintf(
				"export task %d was created but could not be recorded; it can still be watched by its id", created.TaskID)).
				Code(codes.Internal).Meta(apierror.MetadataTaskID, fmt.Sprint(created.TaskID)).Err()
		}
		s.started(row)
		return row, nil
	case cloud.Refused(err):
		s.release(row)
		return taskstore.Task{}, err
	default:
		reason := "the cloud call failed without a clear answer (" + pollErrorText(err) + "), so the cloud may have created a task this service never learned of"
		if werr := s.opts.Registry.Unknown(ctx, row.ID, row.Owner, reason); werr != nil {
			s.opts.Logger.Error("record a creation's unknown outcome", "request_id", row.RequestID, "err", werr)
		}
		s.opts.Logger.Warn("a creation's outcome is unknown; the cloud may hold an unreported task", "request_id", row.RequestID, "err", err)
		return taskstore.Task{}, outcomeUnknownNow(err, row.RequestID)
	}
}

// release drops a recorded creation the cloud certainly did not act on,
// even when the caller has gone.
func (s *Service) release(row taskstore.Task) {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if err := s.opts.Registry.Release(ctx, row.ID, row.Owner); err != nil {
		s.opts.Logger.Error("release a creation the cloud did not act on", "request_id", row.RequestID, "err", err)
	}
}

// started tells the tracker about a task just created and recorded: it is
// pending, and the registry's interest keeps it polled until it ends.
func (s *Service) started(row taskstore.Task) {
	s.opts.Tracker.Created(row.TaskID, row.CreateRequestID)
	s.opts.Tracker.Follow(row.TaskID, row.Created)
	s.remember(row)
}

// outcomeUnknownNow is the status of a creation whose cloud call just failed
// without a clear answer: the cloud failure's own status, saying that the
// outcome is unknown.
func outcomeUnknownNow(err error, rid string) error {
	cloudErr := cloudStatus(context.Background(), 0, err)
	msg := status.Convert(cloudErr).Message() + "; the export may have been created in the cloud"
	if rid != "" {
		msg += fmt.Sprintf(": a retry with request_id %s answers %s rather than create a second one", rid, cwpexportv1.ErrorReason_CREATION_OUTCOME_UNKNOWN)
	}
	return apierror.From(cloudErr).Message(msg).Meta(apierror.MetadataCreationOutcome, creationOutcomeUnknown).Err()
}

// outcomeUnknown answers a retry of a creation whose outcome is unknown.
func outcomeUnknown(row taskstore.Task) error {
	why := row.EndReason
	if why == "" {
		why = "the service stopped while the cloud call was under way"
	}
	return apierror.New(cwpexportv1.ErrorReason_CREATION_OUTCOME_UNKNOWN, fmt.Sprintf(
		"the export first requested with request_id %s has an unknown outcome: %s. The request_id will not create another one; to export anyway, send a new request_id (the cloud may then hold two exports)",
		row.RequestID, why)).Meta(apierror.MetadataRequestID, row.RequestID).Err()
}

// creationInProgress answers a retry while the first creation's cloud call
// is under way.
func creationInProgress(rid string) error {
	return apierror.New(cwpexportv1.ErrorReason_CREATION_IN_PROGRESS, fmt.Sprintf(
		"the export with request_id %s is being created and the cloud has not answered yet; retry with the same request_id to get its task", rid)).
		Meta(apierror.MetadataRequestID, rid).RetryAfter(retryAfterCreationInProgress).Err()
}

// creationCutShort is the status of a caller whose context ends (or is
// about to: its deadline) while its creation's cloud call is under way: the
// call goes on and is recorded.
func creationCutShort(ctx context.Context, rid string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return contextStatus(ctx, ctx.Err())
	}
	msg := "the call's deadline passed before the cloud answered; the export may still be created, and is recorded either way"
	if rid != "" {
		msg += fmt.Sprintf(": retry with request_id %s to get its task", rid)
	} else {
		msg += ": it will be listed by ListExportTasks (send a request_id to make retries safe)"
	}
	return apierror.Error(cwpexportv1.ErrorReason_DEADLINE_EXCEEDED, msg)
}

func requestIDReused(rid string, taskID int64) error {
	v := violations{}
	v.add("request_id", "request_id %s was already used for an export with other parameters; use a new request_id for a different export", rid)
	b := apierror.New(cwpexportv1.ErrorReason_REQUEST_ID_REUSED, "invalid request: request_id: "+v[0].Description).Meta(apierror.MetadataRequestID, rid)
	if taskID > 0 {
		b.Meta(apierror.MetadataTaskID, fmt.Sprint(taskID))
	}
	return b.Violations(v...).Err()
}

func registryError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return contextStatus(ctx, ctx.Err())
	}
	return apierror.Error(cwpexportv1.ErrorReason_REGISTRY_FAILED, "the task registry is unavailable; retry later")
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
	case r.State == taskstore.StateError && r.EndReason != "":
		t.ErrorMessage = "the export cannot be followed: " + r.EndReason
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
	now := s.opts.Now()
	if info, ok := s.records.Get(id); ok && (info.recorded || now.Sub(info.absentSince) < absentFor) {
		return info, nil
	}
	row, found, err := s.opts.Registry.Get(ctx, id)
	if err != nil {
		return recordInfo{}, err
	}
	if !found {
		s.records.AddAbsent(id, now) // not created through this service, yet
		return recordInfo{}, nil
	}
	return s.remember(row), nil
}

// absentFor is how long the registry's answer that it does not know a task
// stands: another replica sharing the registry may record the task in the
// meantime.
const absentFor = time.Second

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
	// final is the task as recorded once it ended (FINISHED or ERROR,
	// which never change again); nil before.
	final *cwpexportv1.ExportTask
	// absentSince is when the registry said it does not know the task
	// (recorded false).
	absentSince time.Time
}

// remember caches the unchanging part of a registry row.
func (s *Service) remember(row taskstore.Task) recordInfo {
	rec := s.rowTask(row)
	info := recordInfo{recorded: true, params: rec.GetParameters(), requestID: rec.GetRequestId(), creator: rec.GetCreator(), created: rec.GetCreateTime()}
	if row.Terminal() {
		info.final = rec
	}
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
		resp.NextPageToken = s.encodePageToken(caller, taskstore.Cursor{Seq: last.Seq}, state)
	}
	return resp, nil
}

// Observed records a poll's outcome in the registry (the tracker's observer
// calls it). A task that ended is no longer followed; a task the cloud no
// longer knows ends in ERROR.
func (s *Service) Observed(snap tracker.Snapshot) {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	var err error
	switch {
	case snap.Err != nil && cloud.KindOf(snap.Err) == cloud.KindNotFound:
		err = s.opts.Registry.Lost(ctx, snap.TaskID, lostReason(snap.Err), snap.LastPoll)
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
	if snap.Terminal() {
		// The record's final state is read again from the registry.
		s.records.Remove(snap.TaskID)
	}
	if err != nil {
		s.opts.Logger.Error("record an observation in the registry", "task_id", snap.TaskID, "err", err)
	}
}

// lostReason is why a task the cloud answers ResourceNotFound for ended.
func lostReason(err error) string {
	return "the cloud no longer knows the task (" + pollErrorText(err) + ")"
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
