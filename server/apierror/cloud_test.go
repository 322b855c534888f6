package apierror_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
)

// TestCloudStatusTable checks the documented mapping of every cloud error
// class to a status, reason and ErrorInfo metadata.
func TestCloudStatusTable(t *testing.T) {
	cases := []struct {
		code   string
		taskID int64
		want   codes.Code
		reason cwpexportv1.ErrorReason
	}{
		{"ResourceNotFound", 7, codes.NotFound, cwpexportv1.ErrorReason_TASK_NOT_FOUND},
		{"ResourceNotFound", 0, codes.NotFound, cwpexportv1.ErrorReason_UPSTREAM_RESOURCE_NOT_FOUND},
		{"ResourceNotFound.TaskNotExist", 7, codes.NotFound, cwpexportv1.ErrorReason_TASK_NOT_FOUND},
		{"InvalidParameter", 0, codes.InvalidArgument, cwpexportv1.ErrorReason_UPSTREAM_INVALID_ARGUMENT},
		{"InvalidParameterValue", 0, codes.InvalidArgument, cwpexportv1.ErrorReason_UPSTREAM_INVALID_ARGUMENT},
		{"InvalidParameterValue.Month", 0, codes.InvalidArgument, cwpexportv1.ErrorReason_UPSTREAM_INVALID_ARGUMENT},
		{"MissingParameter", 0, codes.InvalidArgument, cwpexportv1.ErrorReason_UPSTREAM_INVALID_ARGUMENT},
		{"UnknownParameter", 0, codes.InvalidArgument, cwpexportv1.ErrorReason_UPSTREAM_INVALID_ARGUMENT},
		{"RequestLimitExceeded", 0, codes.ResourceExhausted, cwpexportv1.ErrorReason_UPSTREAM_RATE_LIMITED},
		{"RequestLimitExceeded.UinLimitExceeded", 0, codes.ResourceExhausted, cwpexportv1.ErrorReason_UPSTREAM_RATE_LIMITED},
		{"LimitExceeded", 0, codes.ResourceExhausted, cwpexportv1.ErrorReason_UPSTREAM_QUOTA_EXCEEDED},
		{"AuthFailure.SecretIdNotFound", 0, codes.Internal, cwpexportv1.ErrorReason_UPSTREAM_CREDENTIALS_REJECTED},
		{"AuthFailure.SignatureFailure", 0, codes.Internal, cwpexportv1.ErrorReason_UPSTREAM_CREDENTIALS_REJECTED},
		{"AuthFailure.SignatureExpire", 0, codes.Internal, cwpexportv1.ErrorReason_UPSTREAM_CREDENTIALS_REJECTED},
		{"AuthFailure.TokenFailure", 0, codes.Internal, cwpexportv1.ErrorReason_UPSTREAM_CREDENTIALS_REJECTED},
		{"AuthFailure.InvalidSecretId", 0, codes.Internal, cwpexportv1.ErrorReason_UPSTREAM_CREDENTIALS_REJECTED},
		{"AuthFailure.UnauthorizedOperation", 0, codes.Internal, cwpexportv1.ErrorReason_UPSTREAM_PERMISSION_DENIED},
		{"UnauthorizedOperation", 0, codes.Internal, cwpexportv1.ErrorReason_UPSTREAM_PERMISSION_DENIED},
		{"InternalError", 0, codes.Unavailable, cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE},
		{"InternalError.DbError", 0, codes.Unavailable, cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE},
		{"ServiceUnavailable", 0, codes.Unavailable, cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE},
		{"ResourceUnavailable", 0, codes.Unavailable, cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE},
		{cloud.CodeNetwork, 0, codes.Unavailable, cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE},
		{"ClientError.ParseJsonError", 0, codes.Unavailable, cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE},
		{"ClientError.HttpStatusCodeError", 0, codes.Unavailable, cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE},
		{cloud.CodeBadResponse, 0, codes.Unavailable, cwpexportv1.ErrorReason_UPSTREAM_UNAVAILABLE},
		{"FailedOperation", 0, codes.FailedPrecondition, cwpexportv1.ErrorReason_UPSTREAM_FAILED_OPERATION},
		{"UnsupportedOperation", 0, codes.FailedPrecondition, cwpexportv1.ErrorReason_UPSTREAM_FAILED_OPERATION},
		{"InvalidAction", 0, codes.FailedPrecondition, cwpexportv1.ErrorReason_UPSTREAM_FAILED_OPERATION},
		{"SomethingNew", 0, codes.Unknown, cwpexportv1.ErrorReason_UPSTREAM_UNKNOWN_ERROR},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d", tc.code, tc.taskID), func(t *testing.T) {
			err := &cloud.Error{Action: cloud.ActionExportTasks, Code: tc.code, Message: "m", RequestID: "rid-1"}
			st := status.Convert(apierror.Cloud(context.Background(), tc.taskID, err))
			if st.Code() != tc.want {
				t.Fatalf("code %v, want %v", st.Code(), tc.want)
			}
			info := apierror.Info(st.Err())
			if apierror.Reason(st.Err()) != tc.reason {
				t.Fatalf("error info %v, want reason %s", info, tc.reason)
			}
			md := info.GetMetadata()
			if md["cloud_code"] != tc.code || md["cloud_request_id"] != "rid-1" || md["cloud_action"] != cloud.ActionExportTasks {
				t.Errorf("metadata %v", md)
			}
			if _, retry := apierror.RetryDelay(st.Err()); (tc.reason == cwpexportv1.ErrorReason_UPSTREAM_RATE_LIMITED) != retry {
				t.Errorf("retry info %v for %s", retry, tc.code)
			}
			if tc.want == codes.Internal && !strings.Contains(st.Message(), "operator") {
				t.Errorf("message does not tell that an operator must act: %q", st.Message())
			}
		})
	}
}

func TestContextErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c := status.Code(apierror.Cloud(ctx, 0, &cloud.Error{Code: cloud.CodeNetwork, Err: context.Canceled})); c != codes.Canceled {
		t.Errorf("canceled: %v", c)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 0)
	defer dcancel()
	<-dctx.Done()
	if c := status.Code(apierror.Cloud(dctx, 0, &cloud.Error{Code: cloud.CodeNetwork, Err: context.DeadlineExceeded})); c != codes.DeadlineExceeded {
		t.Errorf("deadline: %v", c)
	}
}
