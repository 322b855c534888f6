package exports

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sync/singleflight"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/internal/deadline"
	"github.com/cwpexport/cwpexport/server/taskstore"
)

// Metadata values and timings of the registry's and the creation's errors.
const (
	creationOutcomeUnknown        = "unknown"
	retryAfterCreationInProgress  = time.Second
	creationInProgressPollingTime = 200 * time.Millisecond
)

// errExportFailed is the error_message of a task the cloud reports as ERROR.
const errExportFailed = "the cloud reported that the export failed; start a new export"

// registryTimeout bounds one attempt of a registry write that must happen
// even when the caller has gone (recording a creation's outcome).
const registryTimeout = 10 * time.Second

// recordPatience bounds how long the outcome of a creation's cloud call is
// written again after failed attempts: a task the cloud created must be
// recorded, and a slow or briefly unreachable database is no reason to give
// up on it. Shutdown waits for these writes (see WaitCreations).
const recordPatience = time.Minute

// recordWait bounds how long a caller without a deadline waits for the
// record of a task the cloud created; past it (or shortly before the
// caller's deadline) the caller gets its task while the write goes on.
const recordWait = 30 * time.Second

// Request is an export to start, validated by the caller.
type Request struct {
	// Parameters are the export's parameters as the API states them: the
	// registry records them, and a request id's retries must repeat them.
	Parameters *cwpexportv1.ExportParameters
	// Cloud are the same parameters as the cloud takes them.
	Cloud cloud.ExportParams
	// RequestID, when set, makes the creation idempotent for its caller.
	RequestID string
}

// Create starts an export within the caller's share of the export budget
// (see createRecorded) and returns its task and the cloud's request id.
func (s *Saga) Create(ctx context.Context, req Request) (*cwpexportv1.ExportTask, string, error) {
	// Unauthenticated callers cannot be told apart: they share the budget
	// as before.
	if caller := callerauth.Caller(ctx); s.shares != nil && caller != "" {
		if err := s.shares.Admit(caller, s.opts.Now()); err != nil {
			return nil, "", err
		}
	}
	return s.createRecorded(ctx, req)
}

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
func (s *Saga) createRecorded(ctx context.Context, req Request) (*cwpexportv1.ExportTask, string, error) {
	creator := callerauth.Caller(ctx)
	params := req.Cloud
	enc, fp := encodeParameters(req.Parameters, creator)
	row := taskstore.Task{RequestID: req.RequestID, Fingerprint: fp, Parameters: enc, Creator: creator}
	if row.RequestID == "" {
		got, err := s.createOnce(ctx, row, params)
		if err != nil {
			return nil, "", err
		}
		return FromRow(got), got.CreateRequestID, nil
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
		return FromRow(got), got.CreateRequestID, nil
	}
}

// createIdempotent is one flight of a creation with a request id.
func (s *Saga) createIdempotent(ctx context.Context, row taskstore.Task, params cloud.ExportParams) (taskstore.Task, error) {
	for {
		got, found, err := s.opts.Registry.GetRequest(ctx, row.Creator, row.RequestID)
		if err != nil {
			return taskstore.Task{}, apierror.Registry(ctx, err)
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
func (s *Saga) resolve(ctx context.Context, got taskstore.Task) (_ taskstore.Task, again bool, _ error) {
	wctx, cancel := deadline.AnswerBefore(ctx, s.opts.CreateTimeout+registryTimeout)
	defer cancel()
	for {
		switch {
		case got.TaskID != 0:
			return got, false, nil
		case !got.InFlight && got.EndReason == "" && !got.CallStarted:
			// Its process stopped before the cloud call could start (it
			// waited for the budget): nothing reached the cloud, so the
			// request runs again.
			if _, err := s.opts.Registry.ReleaseUnstarted(ctx, got.ID); err != nil {
				return taskstore.Task{}, false, apierror.Registry(ctx, err)
			}
			return taskstore.Task{}, true, nil
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
			return taskstore.Task{}, false, apierror.Registry(ctx, err)
		} else if !found {
			return taskstore.Task{}, true, nil
		}
	}
}

// createOnce records a creation and makes its cloud call within the export
// budget. When the cloud answers RequestLimitExceeded (other programs share
// the account's quota) it backs off with jitter and tries again while the
// caller's deadline allows: the cloud refused before doing anything.
func (s *Saga) createOnce(ctx context.Context, row taskstore.Task, params cloud.ExportParams) (taskstore.Task, error) {
	retry := backoff.ExponentialBackOff{InitialInterval: 200 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 5 * time.Second}
	retry.Reset()
	giveUp := s.opts.Now().Add(s.opts.MaxQueueWait)
	again := false
	for {
		// The creation is recorded before it waits for the budget, with a
		// lease that covers the wait and the mark that its call starts
		// (CallStarting, which renews the lease for the call and the
		// recording of its outcome). A process that stops while it waits
		// leaves a row without the mark: a retry runs it again.
		row.ID, row.Owner, row.Created = "", s.opts.Instance, s.opts.Now()
		waitAtMost := giveUp.Sub(s.opts.Now())
		if d, ok := ctx.Deadline(); ok {
			waitAtMost = min(waitAtMost, time.Until(d))
		}
		got, fresh, err := s.opts.Registry.Reserve(ctx, row, max(waitAtMost, 0)+registryTimeout)
		switch {
		case errors.Is(err, taskstore.ErrLostReservation):
			continue
		case err != nil:
			s.opts.Logger.ErrorContext(ctx, "record a creation before calling the cloud", "request_id", row.RequestID, "err", err)
			return taskstore.Task{}, apierror.Registry(ctx, err)
		case !fresh:
			// Another process recorded the request id first.
			got, again, err := s.resolve(ctx, got)
			if again {
				continue
			}
			return got, err
		}
		if err := s.admission.Admit(ctx, giveUp, again); err != nil {
			// Nothing was sent: the request id may be tried again.
			s.release(got)
			return taskstore.Task{}, err
		}
		// The mark comes after the budget's slot, so that a process
		// stopped in the queue burns no request id; the call waits for it.
		switch err := s.opts.Registry.CallStarting(ctx, got.ID, got.Owner, s.opts.CreateTimeout+2*registryTimeout); {
		case errors.Is(err, taskstore.ErrLostReservation):
			continue
		case err != nil:
			s.release(got)
			return taskstore.Task{}, apierror.Registry(ctx, err)
		}
		created, err := s.call(ctx, got, params)
		switch {
		case err == nil:
			return created, nil
		case cloud.KindOf(err) != cloud.KindThrottled:
			return taskstore.Task{}, apierror.Cloud(ctx, 0, err)
		}
		wait := retry.NextBackOff()
		end := giveUp
		if d, ok := ctx.Deadline(); ok && d.Before(end) {
			end = d
		}
		if s.opts.Now().Add(wait + s.opts.CreateCallTime).After(end) {
			return taskstore.Task{}, apierror.Cloud(ctx, 0, err)
		}
		again = true
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return taskstore.Task{}, apierror.Context(ctx, ctx.Err())
		}
	}
}

// call makes the cloud call of the recorded creation row, detached from the
// caller: it runs under CreateTimeout whether or not the caller waits, and
// its outcome is recorded when it ends. The caller gets the outcome, or
// its own deadline's status if that comes first.
func (s *Saga) call(ctx context.Context, row taskstore.Task, params cloud.ExportParams) (taskstore.Task, error) {
	type outcome struct {
		row taskstore.Task
		err error
	}
	done := make(chan outcome, 1)
	created := make(chan taskstore.Task, 1) // the cloud created the task; its record is being written
	notify := make(chan struct{})
	s.inflightMu.Lock()
	s.inflight[row.ID] = notify
	s.inflightMu.Unlock()
	s.detached.Add(1)
	go func() {
		defer s.detached.Done()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.CreateTimeout)
		got, err := s.opts.Cloud.ExportLicenseDetail(cctx, params)
		if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			err = &cloud.Error{Action: cloud.ActionExportLicenseDetail, Code: cloud.CodeTimeout,
				Message: fmt.Sprintf("the cloud did not answer within %s", s.opts.CreateTimeout)}
		}
		cancel()
		if cloud.KindOf(err) == cloud.KindThrottled {
			s.opts.CreateBudget.Throttled()
		}
		r, err := s.recordOutcome(row, got, err, created)
		done <- outcome{r, err}
		s.inflightMu.Lock()
		delete(s.inflight, row.ID)
		s.inflightMu.Unlock()
		close(notify)
	}()
	wctx, cancel := deadline.AnswerBefore(ctx, s.opts.CreateTimeout+registryTimeout)
	defer cancel()
	select {
	case o := <-done:
		return o.row, o.err
	case <-wctx.Done():
		return taskstore.Task{}, creationCutShort(ctx, row.RequestID)
	case r := <-created:
		// The task exists: an error now would make the caller retry and
		// create a second one. Its record is awaited as long as the
		// caller's deadline allows, then the caller gets the task while
		// the write goes on.
		rctx, cancel := deadline.AnswerBefore(ctx, recordWait)
		defer cancel()
		select {
		case o := <-done:
			if o.err == nil {
				return o.row, nil
			}
		case <-rctx.Done():
		}
		return r, nil
	}
}

// creating returns a channel closed when this process has recorded the
// outcome of creation id, or nil when no call of this process makes it.
func (s *Saga) creating(id string) <-chan struct{} {
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
func (s *Saga) WaitCreations() { s.detached.Wait() }

// recordOutcome writes the outcome of a creation's cloud call. A task the
// cloud created is sent on created first (the caller may answer with it)
// and then recorded, the write tried again until recordPatience passes.
func (s *Saga) recordOutcome(row taskstore.Task, got cloud.Created, err error, created chan<- taskstore.Task) (taskstore.Task, error) {
	switch {
	case err == nil:
		// The tracker's clock: the database's in a fleet, where these
		// times are compared with other replicas' observations.
		now := s.tracker.Now()
		row.TaskID, row.State, row.Created, row.Observed, row.Changed = got.TaskID, taskstore.StatePending, now, now, now
		row.CreateRequestID, row.LastRequestID = got.RequestID, got.RequestID
		// It can be watched by its id from now on, recorded or not.
		s.tracker.Created(got.TaskID, got.RequestID)
		created <- row
		if werr := s.persist("record a created task", row, func(ctx context.Context) error {
			return s.opts.Registry.Complete(ctx, row.ID, row.Owner, row)
		}); werr != nil {
			s.opts.Logger.Error("a created task could not be recorded; it is watched by its id but not listed", "task_id", got.TaskID, "request_id", row.RequestID, "err", werr)
			return taskstore.Task{}, apierror.New(cwpexportv1.ErrorReason_REGISTRY_FAILED, fmt.Sprintf(
				"export task %d was created but could not be recorded; it can still be watched by its id", got.TaskID)).
				Code(codes.Internal).Meta(apierror.MetadataTaskID, fmt.Sprint(got.TaskID)).Err()
		}
		s.recorded(row)
		return row, nil
	case cloud.Refused(err):
		s.release(row)
		return taskstore.Task{}, err
	default:
		reason := "the cloud call failed without a clear answer (" + apierror.CloudMessage(err) + "), so the cloud may have created a task this service never learned of"
		ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
		defer cancel()
		if werr := s.opts.Registry.Unknown(ctx, row.ID, row.Owner, reason); werr != nil {
			// Its lease running out says the same to every reader.
			s.opts.Logger.Error("record a creation's unknown outcome", "request_id", row.RequestID, "err", werr)
		}
		s.opts.Logger.Warn("a creation's outcome is unknown; the cloud may hold an unreported task", "request_id", row.RequestID, "err", err)
		return taskstore.Task{}, outcomeUnknownNow(err, row.RequestID)
	}
}

// persist runs write, a registry write about creation row that must
// happen, each attempt under registryTimeout, again after failures with
// backoff until recordPatience has passed. ErrLostReservation ends it: the
// row is no longer this process's to write.
func (s *Saga) persist(what string, row taskstore.Task, write func(context.Context) error) error {
	retry := backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 5 * time.Second}
	retry.Reset()
	giveUp := time.Now().Add(recordPatience)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
		err := write(ctx)
		cancel()
		if err == nil || errors.Is(err, taskstore.ErrLostReservation) {
			return err
		}
		wait := retry.NextBackOff()
		if time.Now().Add(wait).After(giveUp) {
			return err
		}
		s.opts.Logger.Warn(what+" failed; trying again", "request_id", row.RequestID, "retry_in", wait, "err", err)
		time.Sleep(wait)
	}
}

// release drops a recorded creation the cloud certainly did not act on,
// even when the caller has gone. A first attempt is made at once (a retry
// of the request id then finds it gone); after a failure the write goes on
// in the background, and until it succeeds a retry waits for the row's
// lease.
func (s *Saga) release(row taskstore.Task) {
	write := func(ctx context.Context) error { return s.opts.Registry.Release(ctx, row.ID, row.Owner) }
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	err := write(ctx)
	cancel()
	if err == nil || errors.Is(err, taskstore.ErrLostReservation) {
		return
	}
	s.detached.Add(1)
	go func() {
		defer s.detached.Done()
		if err := s.persist("release a creation the cloud did not act on", row, write); err != nil && !errors.Is(err, taskstore.ErrLostReservation) {
			s.opts.Logger.Error("release a creation the cloud did not act on", "request_id", row.RequestID, "err", err)
		}
	}()
}

// recorded tells the tracker about a task just recorded (it was told of
// its creation already): the registry's interest keeps it polled until it
// ends.
func (s *Saga) recorded(row taskstore.Task) {
	s.tracker.Follow(row.TaskID, row.Created)
	s.remember(row)
}

// outcomeUnknownNow is the status of a creation whose cloud call just failed
// without a clear answer: the cloud failure's own status, saying that the
// outcome is unknown.
func outcomeUnknownNow(err error, rid string) error {
	cloudErr := apierror.Cloud(context.Background(), 0, err)
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
		return apierror.Context(ctx, ctx.Err())
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
	v := []*errdetails.BadRequest_FieldViolation{{Field: "request_id", Description: fmt.Sprintf(
		"request_id %s was already used for an export with other parameters; use a new request_id for a different export", rid)}}
	b := apierror.New(cwpexportv1.ErrorReason_REQUEST_ID_REUSED, "invalid request: request_id: "+v[0].Description).Meta(apierror.MetadataRequestID, rid)
	if taskID > 0 {
		b.Meta(apierror.MetadataTaskID, fmt.Sprint(taskID))
	}
	return b.Violations(v...).Err()
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
