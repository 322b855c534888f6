package apierror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// Keys of ErrorInfo metadata that several errors carry.
const (
	// MetadataTaskID is the task an error is about.
	MetadataTaskID = "task_id"
	// MetadataRetryAfterMillis is how long to wait before a retry.
	MetadataRetryAfterMillis = "retry_after_ms"
)

// Reasons (google.rpc.ErrorInfo.reason) of the service's errors.
const (
	ReasonTaskNotFound          = "TASK_NOT_FOUND"
	ReasonUpstreamNotFound      = "UPSTREAM_RESOURCE_NOT_FOUND"
	ReasonUpstreamInvalid       = "UPSTREAM_INVALID_ARGUMENT"
	ReasonUpstreamRateLimited   = "UPSTREAM_RATE_LIMITED"
	ReasonUpstreamQuota         = "UPSTREAM_QUOTA_EXCEEDED"
	ReasonUpstreamCredentials   = "UPSTREAM_CREDENTIALS_REJECTED"
	ReasonUpstreamPermission    = "UPSTREAM_PERMISSION_DENIED"
	ReasonUpstreamUnavailable   = "UPSTREAM_UNAVAILABLE"
	ReasonUpstreamFailed        = "UPSTREAM_FAILED_OPERATION"
	ReasonUpstreamUnknown       = "UPSTREAM_UNKNOWN_ERROR"
	ReasonBudgetExhausted       = "EXPORT_BUDGET_EXHAUSTED"
	ReasonDeadlineExceeded      = "DEADLINE_EXCEEDED"
	ReasonCanceled              = "CANCELED"
	ReasonShuttingDown          = "SHUTTING_DOWN"
	ReasonRegistryFailed        = "REGISTRY_FAILED"
	retryAfterThrottled         = time.Second
	metadataCloudCode           = "cloud_code"
	metadataCloudRequestID      = "cloud_request_id"
	metadataCloudAction         = "cloud_action"
	metadataFieldViolations     = "field_violations"
	msgCredentialsOperatorFixes = "the service's cloud credentials were rejected by the cloud (%s); this is not the caller's fault: an operator must fix the service's configuration"
)

// InvalidArgument is the status of a request that failed validation with
// total violations, of which v lists the first. When some are not listed,
// the message says how many and ErrorInfo.metadata.field_violations counts
// them all.
func InvalidArgument(v []*errdetails.BadRequest_FieldViolation, total int) error {
	msg := fmt.Sprintf("invalid request: %s: %s", v[0].Field, v[0].Description)
	var md map[string]string
	if total > len(v) {
		msg += fmt.Sprintf(" (%d problems in all; the first %d are listed)", total, len(v))
		md = map[string]string{metadataFieldViolations: fmt.Sprint(total)}
	}
	st := status.New(codes.InvalidArgument, msg)
	st, _ = st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonInvalidArgument, Domain: Domain, Metadata: md},
		&errdetails.BadRequest{FieldViolations: v},
	)
	return st.Err()
}

// Cloud maps a failed cloud call to the status a caller receives.
//
//	cloud error                                gRPC code           HTTP
//	ResourceNotFound*                          NotFound            404
//	InvalidParameter*, MissingParameter,
//	  UnknownParameter                         InvalidArgument     400
//	RequestLimitExceeded*                      ResourceExhausted   429 (RetryInfo 1s)
//	LimitExceeded*                             ResourceExhausted   429
//	AuthFailure* (the service's credentials)   Internal            500
//	UnauthorizedOperation*                     Internal            500
//	InternalError*, ServiceUnavailable*,
//	  ResourceUnavailable*, unreachable,
//	  unreadable answer                        Unavailable         503
//	FailedOperation*, UnsupportedOperation*,
//	  InvalidAction                            FailedPrecondition  400
//	anything else                              Unknown             500
//	the caller's deadline / cancellation       DeadlineExceeded / Canceled
//
// Every status carries a google.rpc.ErrorInfo whose metadata holds the
// cloud's code, action and RequestId.
func Cloud(ctx context.Context, taskID int64, err error) error {
	if s, ok := status.FromError(err); ok {
		return s.Err() // already a status
	}
	var ce *cloud.Error
	if !errors.As(err, &ce) {
		ce = &cloud.Error{Code: "ClientError", Message: "internal error"}
	}
	md := map[string]string{metadataCloudCode: ce.Code}
	if ce.RequestID != "" {
		md[metadataCloudRequestID] = ce.RequestID
	}
	if ce.Action != "" {
		md[metadataCloudAction] = ce.Action
	}
	if taskID > 0 {
		md[MetadataTaskID] = fmt.Sprint(taskID)
	}
	var (
		code   codes.Code
		reason string
		msg    string
		retry  time.Duration
	)
	switch cloud.KindOf(err) {
	case cloud.KindCanceled:
		return Context(ctx, err)
	case cloud.KindNotFound:
		code, reason = codes.NotFound, ReasonUpstreamNotFound
		msg = "the cloud found no such resource: " + ce.Message
		if taskID > 0 {
			reason = ReasonTaskNotFound
			msg = fmt.Sprintf("export task %d does not exist in the cloud", taskID)
		}
	case cloud.KindInvalidArgument:
		code, reason = codes.InvalidArgument, ReasonUpstreamInvalid
		msg = "the cloud rejected the request's parameters: " + ce.Message
	case cloud.KindThrottled:
		code, reason, retry = codes.ResourceExhausted, ReasonUpstreamRateLimited, retryAfterThrottled
		msg = "the cloud's request rate limit was reached (other programs may share the account); retry later"
	case cloud.KindQuota:
		code, reason = codes.ResourceExhausted, ReasonUpstreamQuota
		msg = "a cloud quota was exceeded: " + ce.Message
	case cloud.KindCredentials:
		code, reason = codes.Internal, ReasonUpstreamCredentials
		msg = fmt.Sprintf(msgCredentialsOperatorFixes, ce.Code)
	case cloud.KindPermission:
		code, reason = codes.Internal, ReasonUpstreamPermission
		msg = "the service's cloud account is not authorized for " + OrDefault(ce.Action, "this action") + "; an operator must grant it"
	case cloud.KindUnavailable:
		code, reason = codes.Unavailable, ReasonUpstreamUnavailable
		msg = "the cloud is unavailable or answered unreadably (" + ce.Code + "); retry later"
	case cloud.KindFailed:
		code, reason = codes.FailedPrecondition, ReasonUpstreamFailed
		msg = "the cloud refused the operation: " + ce.Message
	default:
		code, reason = codes.Unknown, ReasonUpstreamUnknown
		msg = "the cloud answered with an unexpected error (" + ce.Code + ")"
	}
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: md}}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if ws, err := st.WithDetails(details...); err == nil {
		st = ws
	}
	return st.Err()
}

// Context is the status of a call whose context ended.
func Context(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return WithInfo(codes.DeadlineExceeded, ReasonDeadlineExceeded, "the call's deadline passed before the cloud answered", nil)
	}
	return WithInfo(codes.Canceled, ReasonCanceled, "the call was canceled", nil)
}

// withInfo builds a status with an ErrorInfo detail.
func WithInfo(code codes.Code, reason, msg string, md map[string]string) error {
	st := status.New(code, msg)
	if ws, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: md}); err == nil {
		st = ws
	}
	return st.Err()
}

// OrDefault returns s, or def when s is empty.
func OrDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// CloudMessage describes a failed cloud call without internals: the
// message of the status a caller of Cloud would receive.
func CloudMessage(err error) string {
	st, _ := status.FromError(Cloud(context.Background(), 0, err))
	return st.Message()
}

// Registry is the status of a call the task registry failed: the caller's
// own end when its context ended, Unavailable otherwise.
func Registry(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return Context(ctx, ctx.Err())
	}
	return WithInfo(codes.Unavailable, ReasonRegistryFailed, "the task registry is unavailable; retry later", nil)
}
