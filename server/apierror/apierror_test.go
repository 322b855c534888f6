package apierror_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

func TestBuilderTakesTheCodeFromTheCatalog(t *testing.T) {
	err := apierror.New(cwpexportv1.ErrorReason_TASK_NOT_FOUND, "export task 7 was not found").Meta("task_id", "7").Err()
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != "export task 7 was not found" {
		t.Fatalf("status %v", st)
	}
	info := apierror.Info(err)
	if info.GetReason() != "TASK_NOT_FOUND" || info.GetDomain() != apierror.Domain || info.GetMetadata()["task_id"] != "7" {
		t.Errorf("error info %v", info)
	}
	if r := apierror.Reason(err); r != cwpexportv1.ErrorReason_TASK_NOT_FOUND {
		t.Errorf("reason %v", r)
	}
	if _, ok := apierror.RetryDelay(err); ok {
		t.Error("a retry delay nobody set")
	}
	other := apierror.New(cwpexportv1.ErrorReason_REGISTRY_FAILED, "m").Code(codes.Internal).Err()
	if status.Code(other) != codes.Internal || apierror.Reason(other) != cwpexportv1.ErrorReason_REGISTRY_FAILED {
		t.Errorf("another code: %v", other)
	}
}

func TestBuilderDetails(t *testing.T) {
	v := &errdetails.BadRequest_FieldViolation{Field: "request_id", Description: "reused"}
	err := apierror.New(cwpexportv1.ErrorReason_EXPORT_BUDGET_EXHAUSTED, "later").RetryAfter(1500 * time.Millisecond).Violations(v).Err()
	if d, ok := apierror.RetryDelay(err); !ok || d != 1500*time.Millisecond {
		t.Errorf("retry delay %v %v", d, ok)
	}
	if ms := apierror.Info(err).GetMetadata()[apierror.MetadataRetryAfterMillis]; ms != "1500" {
		t.Errorf("retry_after_ms %q", ms)
	}
	if got := apierror.Violations(err); len(got) != 1 || got[0].GetField() != "request_id" {
		t.Errorf("violations %v", got)
	}
	// The ErrorInfo comes first, as clients that read only the first detail expect.
	if _, ok := status.Convert(err).Details()[0].(*errdetails.ErrorInfo); !ok {
		t.Errorf("first detail %T", status.Convert(err).Details()[0])
	}
	one := apierror.InvalidField("page_size", "must be positive")
	if status.Convert(one).Message() != "invalid request: page_size: must be positive" || apierror.Reason(one) != cwpexportv1.ErrorReason_INVALID_ARGUMENT ||
		len(apierror.Violations(one)) != 1 {
		t.Errorf("invalid field: %v", status.Convert(one).Proto())
	}
}

func TestFromAmendsAStatus(t *testing.T) {
	base := apierror.New(cwpexportv1.ErrorReason_UPSTREAM_RATE_LIMITED, "throttled").Meta("cloud_code", "RequestLimitExceeded").RetryAfter(time.Second).Err()
	err := apierror.From(base).Message("throttled; more").Meta("creation_outcome", "unknown").Err()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || st.Message() != "throttled; more" {
		t.Fatalf("status %v", st)
	}
	md := apierror.Info(err).GetMetadata()
	if apierror.Reason(err) != cwpexportv1.ErrorReason_UPSTREAM_RATE_LIMITED || md["cloud_code"] != "RequestLimitExceeded" || md["creation_outcome"] != "unknown" {
		t.Errorf("error info %v", apierror.Info(err))
	}
	if d, ok := apierror.RetryDelay(err); !ok || d != time.Second {
		t.Errorf("retry info lost: %v %v", d, ok)
	}
	if apierror.Info(base).GetMetadata()["creation_outcome"] != "" {
		t.Error("From changed the status it started from")
	}
}

func TestEnsure(t *testing.T) {
	bare := status.Error(codes.Unavailable, "connection refused")
	err := apierror.Ensure(bare)
	if status.Code(err) != codes.Unavailable || apierror.Reason(err) != cwpexportv1.ErrorReason_UNAVAILABLE || status.Convert(err).Message() != "connection refused" {
		t.Errorf("ensured %v", status.Convert(err).Proto())
	}
	own := apierror.Error(cwpexportv1.ErrorReason_SHUTTING_DOWN, "bye")
	if apierror.Reason(apierror.Ensure(own)) != cwpexportv1.ErrorReason_SHUTTING_DOWN {
		t.Error("Ensure replaced a reason")
	}
	if apierror.Ensure(nil) != nil {
		t.Error("Ensure(nil) is not nil")
	}
}

func TestReadersOnOtherErrors(t *testing.T) {
	for _, err := range []error{nil, errors.New("plain"), fmt.Errorf("wrapped: %w", status.Error(codes.Internal, "x"))} {
		if apierror.Info(err) != nil || apierror.Reason(err) != cwpexportv1.ErrorReason_ERROR_REASON_UNSPECIFIED || apierror.Violations(err) != nil {
			t.Errorf("%v: read details it does not have", err)
		}
	}
	foreign, _ := status.New(codes.NotFound, "x").WithDetails(&errdetails.ErrorInfo{Reason: "TASK_NOT_FOUND", Domain: "other.example"})
	if apierror.Info(foreign.Err()) != nil {
		t.Error("read another domain's ErrorInfo as the service's")
	}
	unknown, _ := status.New(codes.NotFound, "x").WithDetails(&errdetails.ErrorInfo{Reason: "FROM_A_NEWER_SERVER", Domain: apierror.Domain})
	if apierror.Reason(unknown.Err()) != cwpexportv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		t.Error("an unknown reason is not UNSPECIFIED")
	}
}
