package apierror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
)

// Constants of the cloud's and the registry's errors.
const (
	retryAfterThrottled         = time.Second
	msgCredentialsOperatorFixes = "the service's cloud credentials were rejected by the cloud (%s); this is not the caller's fault: an operator must fix the service's configuration"
)

// InvalidArgument is the status of a request that failed validation with
// total violations, of which v lists the first. When some are not listed,
// the message says how many and ErrorInfo.metadata.field_violations counts
// them all.
func InvalidArgument(v []*errdetails.BadRequest_FieldViolation, total int) error {
	msg := fmt.Sprintf("invalid request: %s: %s", v[0].Field, v[0].Description)
	more := total > len(v)
	if more {
		msg += fmt.Sprintf(" (%d problems in all; the first %d are listed)", total, len(v))
	}
	b := New(cwpexportv1.ErrorReason_INVALID_ARGUMENT, msg)
	if more {
		b.Meta(MetadataFieldViolations, fmt.Sprint(total))
	}
	return b.Violations(v...).Err()
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
// cloud's code, action and RequestId; each reason's code is the enum's.
func Cloud(ctx context.Context, taskID int64, err error) error {
	if s, ok := status.FromError(err); ok {
		return s.Err() // already a status
	}
	var ce *cloud.Error
	if !errors.As(err, &ce) {
		ce = &cloud.Error{Code: "ClientError", Message: "internal error"}
	}
	md := map[string]string{MetadataCloudCode: ce.Code}
	if ce.RequestID != "" {
		md[MetadataCloudRequestID] = ce.RequestID
	}
	if ce.Action != "" {
		md[MetadataCloudAction] = ce.Action
	}
	if taskID > 0 {
		md[MetadataTaskID] = fmt.Sprint(taskID)
	}
	var (
		reason cwpexportv1.ErrorReason
		msg    string
		retry  time.Duration
	)
	switch cloud.KindOf(err) {
	case cloud.KindCanceled:
		return Context(ctx, err)
	case cloud.KindNotFound:
		reason = cwpexportv1.ErrorReason_UPSTREAM_RESOURCE_NOT_FOUND
		msg = "the cloud found no such resource: " + ce.Message
		if taskID > 0 {
			reason = cwpexportv1.ErrorReason_TASK_NOT_FOUND
			msg = fmt.Sprintf("export task %d does not exist in the cloud", taskID)
		}
	case cloud.KindInvalidArgument:
		reason = cwpexportv1.ErrorReason_UPSTREAM_INVALID_ARGUMENT
		msg = "the cloud rejected the request's parameters: " + ce.Message
	case cloud.KindThrottled:
		reason, retry = cwpexportv1.ErrorReason_UPSTREAM_RATE_LIMITED, retryAfterThrottled
		msg = "the cloud's request rate limit was reached (other programs may share the account); retry later"
	case cloud.KindQuota:
		reason = cwpexportv1.ErrorReason_UPSTREAM_QUOTA_EXCEEDED
		msg = "a cloud quota was exceeded: " + ce.Message
	case cloud.KindCredentials:
		reason = cwpexportv1.ErrorReason_UPSTREAM_CREDENTIALS_REJECTED
		msg = fmt.Sprintf(msgCredentialsOperatorFixes, ce.Code)
	case cloud.KindPermission:
		reason = cwpexportv1.ErrorReason_UPSTREAM_PERMISSION_DENIED
		msg = "the service's cloud account is not authorized for " + OrDefault(ce.Action, "this action") + "; an operator must grant it"
	case cloud.KindUnavailable:
		reason = cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE
		msg = "the cloud is unavailable or answered unreadably (" + ce.Code + "); retry later"
	case cloud.KindFailed:
		reason = cwpexportv1.ErrorReason_UPSTREAM_FAILED_OPERATION
		msg = "the cloud refused the operation: " + ce.Message
	default:
		reason = cwpexportv1.ErrorReason_UPSTREAM_UNKNOWN_ERROR
		msg = "the cloud answered with an unexpected error (" + ce.Code + ")"
	}
	b := New(reason, msg)
	for k, v := range md {
		b.Meta(k, v)
	}
	if retry > 0 {
		b.RetryAfter(retry)
	}
	return b.Err()
}

// Context is the status of a call whose context ended.
func Context(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Error(cwpexportv1.ErrorReason_DEADLINE_EXCEEDED, "the call's deadline passed before the cloud answered")
	}
	return Error(cwpexportv1.ErrorReason_CANCELED, "the call was canceled")
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
	return Error(cwpexportv1.ErrorReason_REGISTRY_FAILED, "the task registry is unavailable; retry later")
}
