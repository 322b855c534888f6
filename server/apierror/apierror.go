// Package apierror makes the error statuses the service answers with
// outside its request handlers (authentication, stream limits, recovered
// panics): each carries a google.rpc.ErrorInfo in the API's domain, as the
// handlers' own errors do, so that a client tells errors apart by reason
// whichever part of the service refused the call.
package apierror

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of the service's errors.
const Domain = "cwpexport.v1"

// ReasonInvalidArgument is the ErrorInfo reason of invalid input.
const ReasonInvalidArgument = "INVALID_ARGUMENT"

// New returns a status of code with msg and an ErrorInfo of reason.
func New(code codes.Code, reason, msg string) *status.Status {
	return status.Convert(WithInfo(code, reason, msg, nil))
}

// Error is New as an error.
func Error(code codes.Code, reason, msg string) error { return WithInfo(code, reason, msg, nil) }

// InvalidField is the InvalidArgument answer to one invalid field, as the
// service answers invalid input everywhere: "invalid request: field:
// description", the reason INVALID_ARGUMENT and a field violation.
func InvalidField(field, description string) error {
	st := New(codes.InvalidArgument, ReasonInvalidArgument, "invalid request: "+field+": "+description)
	if ws, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: description}}}); err == nil {
		st = ws
	}
	return st.Err()
}
