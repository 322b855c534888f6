package apierror

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// TestCloudStatusTable checks the documented mapping of every cloud error
// class to a status, reason and ErrorInfo metadata.
func TestCloudStatusTable(t *testing.T) {
	cases := []struct {
		code   string
		taskID int64
		want   codes.Code
		reason string
	}{
		{"ResourceNotFound", 7, codes.NotFound, ReasonTaskNotFound},
		{"ResourceNotFound", 0, codes.NotFound, ReasonUpstreamNotFound},
		{"ResourceNotFound.TaskNotExist", 7, codes.NotFound, ReasonTaskNotFound},
		{"InvalidParameter", 0, codes.InvalidArgument, ReasonUpstreamInvalid},
		{"InvalidParameterValue", 0, codes.InvalidArgument, ReasonUpstreamInvalid},
		{"InvalidParameterValue.Month", 0, codes.InvalidArgument, ReasonUpstreamInvalid},
		{"MissingParameter", 0, codes.InvalidArgument, ReasonUpstreamInvalid},
		{"UnknownParameter", 0, codes.InvalidArgument, ReasonUpstreamInvalid},
		{"RequestLimitExceeded", 0, codes.ResourceExhausted, ReasonUpstreamRateLimited},
		{"RequestLimitExceeded.UinLimitExceeded", 0, codes.ResourceExhausted, ReasonUpstreamRateLimited},
		{"LimitExceeded", 0, codes.ResourceExhausted, ReasonUpstreamQuota},
		{"AuthFailure.SecretIdNotFound", 0, codes.Internal, ReasonUpstreamCredentials},
		{"AuthFailure.SignatureFailure", 0, codes.Internal, ReasonUpstreamCredentials},
		{"AuthFailure.SignatureExpire", 0, codes.Internal, ReasonUpstreamCredentials},
		{"AuthFailure.TokenFailure", 0, codes.Internal, ReasonUpstreamCredentials},
		{"AuthFailure.InvalidSecretId", 0, codes.Internal, ReasonUpstreamCredentials},
		{"AuthFailure.UnauthorizedOperation", 0, codes.Internal, ReasonUpstreamPermission},
		{"UnauthorizedOperation", 0, codes.Internal, ReasonUpstreamPermission},
		{"InternalError", 0, codes.Unavailable, ReasonUpstreamUnavailable},
		{"InternalError.DbError", 0, codes.Unavailable, ReasonUpstreamUnavailable},
		{"ServiceUnavailable", 0, codes.Unavailable, ReasonUpstreamUnavailable},
		{"ResourceUnavailable", 0, codes.Unavailable, ReasonUpstreamUnavailable},
		{cloud.CodeNetwork, 0, codes.Unavailable, ReasonUpstreamUnavailable},
		{"ClientError.ParseJsonError", 0, codes.Unavailable, ReasonUpstreamUnavailable},
		{"ClientError.HttpStatusCodeError", 0, codes.Unavailable, ReasonUpstreamUnavailable},
		{cloud.CodeBadResponse, 0, codes.Unavailable, ReasonUpstreamUnavailable},
		{"FailedOperation", 0, codes.FailedPrecondition, ReasonUpstreamFailed},
		{"UnsupportedOperation", 0, codes.FailedPrecondition, ReasonUpstreamFailed},
		{"InvalidAction", 0, codes.FailedPrecondition, ReasonUpstreamFailed},
		{"SomethingNew", 0, codes.Unknown, ReasonUpstreamUnknown},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d", tc.code, tc.taskID), func(t *testing.T) {
			err := &cloud.Error{Action: cloud.ActionExportTasks, Code: tc.code, Message: "m", RequestID: "rid-1"}
			st := status.Convert(Cloud(context.Background(), tc.taskID, err))
			if st.Code() != tc.want {
				t.Fatalf("code %v, want %v", st.Code(), tc.want)
			}
			var info *errdetails.ErrorInfo
			var retry *errdetails.RetryInfo
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.RetryInfo:
					retry = d
				}
			}
			if info == nil || info.GetReason() != tc.reason || info.GetDomain() != Domain {
				t.Fatalf("error info %v, want reason %s", info, tc.reason)
			}
			md := info.GetMetadata()
			if md["cloud_code"] != tc.code || md["cloud_request_id"] != "rid-1" || md["cloud_action"] != cloud.ActionExportTasks {
				t.Errorf("metadata %v", md)
			}
			if (tc.reason == ReasonUpstreamRateLimited) != (retry != nil) {
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
	if c := status.Code(Cloud(ctx, 0, &cloud.Error{Code: cloud.CodeNetwork, Err: context.Canceled})); c != codes.Canceled {
		t.Errorf("canceled: %v", c)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 0)
	defer dcancel()
	<-dctx.Done()
	if c := status.Code(Cloud(dctx, 0, &cloud.Error{Code: cloud.CodeNetwork, Err: context.DeadlineExceeded})); c != codes.DeadlineExceeded {
		t.Errorf("deadline: %v", c)
	}
}
