// Package apierror builds and reads the service's error statuses. Every
// error the service answers with carries a google.rpc.ErrorInfo in the API's
// domain whose reason is a value of the API's ErrorReason enum
// (proto/cwpexport/v1/error_reason.proto), so that a client tells errors
// apart by reason whichever part of the service refused the call. The
// enum's options give each reason its gRPC code and HTTP status; this
// package takes them from there, so that what the service answers and what
// docs/errors.md says are one.
package apierror

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// Domain is the ErrorInfo domain of the service's errors.
const Domain = "cwpexport.v1"

// Keys of ErrorInfo metadata; each reason's comment in the catalog names
// the ones it carries.
const (
	// MetadataTaskID is the export task an error is about.
	MetadataTaskID = "task_id"
	// MetadataRequestID is the request_id of the creation an error is about.
	MetadataRequestID = "request_id"
	// MetadataState is the state of the task an error is about.
	MetadataState = "state"
	// MetadataCloudCode, MetadataCloudAction and MetadataCloudRequestID are
	// the cloud's error code, the action called and the cloud's RequestId.
	MetadataCloudCode      = "cloud_code"
	MetadataCloudAction    = "cloud_action"
	MetadataCloudRequestID = "cloud_request_id"
	// MetadataCreationOutcome is "unknown" when a creation's cloud call
	// ended without a clear answer.
	MetadataCreationOutcome = "creation_outcome"
	// MetadataFieldViolations counts an invalid request's problems when the
	// BadRequest lists only the first.
	MetadataFieldViolations = "field_violations"
	// MetadataRetryAfterMillis is the delay a RetryInfo asks for, in
	// milliseconds, for clients that read metadata only.
	MetadataRetryAfterMillis = "retry_after_ms"
)

// catalog is each reason's status option, read once from the enum.
var catalog = func() map[cwpexportv1.ErrorReason]*cwpexportv1.ErrorReasonStatus {
	values := cwpexportv1.ErrorReason(0).Descriptor().Values()
	m := make(map[cwpexportv1.ErrorReason]*cwpexportv1.ErrorReasonStatus, values.Len())
	for i := range values.Len() {
		v := values.Get(i)
		if s, ok := proto.GetExtension(v.Options(), cwpexportv1.E_ErrorReasonStatus).(*cwpexportv1.ErrorReasonStatus); ok && s != nil {
			m[cwpexportv1.ErrorReason(v.Number())] = s
		}
	}
	return m
}()

// Code is the gRPC code of reason's errors (Unknown for a value without a
// status option, which the catalog's test forbids).
func Code(reason cwpexportv1.ErrorReason) codes.Code {
	if s, ok := catalog[reason]; ok {
		return codes.Code(s.GetCode())
	}
	return codes.Unknown
}

// HTTPStatus is the HTTP status of reason's REST answers: the reason's own
// where it has one, otherwise the one grpc-gateway gives its code.
func HTTPStatus(reason cwpexportv1.ErrorReason) int {
	if s := catalog[reason].GetHttpStatus(); s != 0 {
		return int(s)
	}
	return runtime.HTTPStatusFromCode(Code(reason))
}

// Builder builds one error status: New starts it, the methods add to it,
// Err or Status ends it.
type Builder struct {
	code    codes.Code
	msg     string
	info    *errdetails.ErrorInfo
	details []protoadapt.MessageV1
}

// New starts a status of reason's code with msg and an ErrorInfo of reason.
func New(reason cwpexportv1.ErrorReason, msg string) *Builder {
	return &Builder{code: Code(reason), msg: msg, info: &errdetails.ErrorInfo{Reason: reason.String(), Domain: Domain}}
}

// Error is New(reason, msg).Err().
func Error(reason cwpexportv1.ErrorReason, msg string) error { return New(reason, msg).Err() }

// From starts a builder from err's status: its code, message and details,
// so that a status can be amended. A status without an ErrorInfo in the
// service's domain gets one of CodeReason.
func From(err error) *Builder {
	st := status.Convert(err)
	b := &Builder{code: st.Code(), msg: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == Domain && b.info == nil {
				b.info = proto.Clone(d).(*errdetails.ErrorInfo)
				continue
			}
			b.details = append(b.details, d)
		case protoadapt.MessageV1:
			b.details = append(b.details, d)
		}
	}
	if b.info == nil {
		b.info = &errdetails.ErrorInfo{Reason: CodeReason(st.Code()).String(), Domain: Domain}
	}
	return b
}

// Message replaces the message.
func (b *Builder) Message(msg string) *Builder {
	b.msg = msg
	return b
}

// Code sets another code than the reason's usual one: one of the
// other_codes its status option declares.
func (b *Builder) Code(c codes.Code) *Builder {
	b.code = c
	return b
}

// Meta adds ErrorInfo metadata.
func (b *Builder) Meta(key, value string) *Builder {
	if b.info.Metadata == nil {
		b.info.Metadata = map[string]string{}
	}
	b.info.Metadata[key] = value
	return b
}

// RetryAfter adds a RetryInfo of d, and d in milliseconds as metadata
// retry_after_ms (REST answers also get a Retry-After header).
func (b *Builder) RetryAfter(d time.Duration) *Builder {
	b.details = append(b.details, &errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	return b.Meta(MetadataRetryAfterMillis, fmt.Sprint(d.Milliseconds()))
}

// Violations adds a BadRequest listing v.
func (b *Builder) Violations(v ...*errdetails.BadRequest_FieldViolation) *Builder {
	b.details = append(b.details, &errdetails.BadRequest{FieldViolations: v})
	return b
}

// Status is the status built.
func (b *Builder) Status() *status.Status {
	st := status.New(b.code, b.msg)
	if ws, err := st.WithDetails(append([]protoadapt.MessageV1{b.info}, b.details...)...); err == nil {
		return ws
	}
	return st
}

// Err is the status built, as an error.
func (b *Builder) Err() error { return b.Status().Err() }

// InvalidField is the InvalidArgument answer to one invalid field, as the
// service answers invalid input everywhere: "invalid request: field:
// description", the reason INVALID_ARGUMENT and a field violation.
func InvalidField(field, description string) error {
	return New(cwpexportv1.ErrorReason_INVALID_ARGUMENT, "invalid request: "+field+": "+description).
		Violations(&errdetails.BadRequest_FieldViolation{Field: field, Description: description}).Err()
}

// CodeReason is the reason a status that carries none is given: the value
// named after its code (UNAVAILABLE, INTERNAL...), which the enum has for
// every code.
func CodeReason(c codes.Code) cwpexportv1.ErrorReason {
	// codes.Code's String is CamelCase: InvalidArgument, Canceled.
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	if v, ok := cwpexportv1.ErrorReason_value[b.String()]; ok {
		return cwpexportv1.ErrorReason(v)
	}
	return cwpexportv1.ErrorReason_UNKNOWN
}

// Ensure gives an error status that carries no details an ErrorInfo of
// CodeReason, so that every answer carries one; others pass unchanged.
func Ensure(err error) error {
	st := status.Convert(err)
	if len(st.Proto().GetDetails()) > 0 || st.Code() == codes.OK {
		return err
	}
	return From(err).Err()
}

// Info is err's ErrorInfo in the service's domain, or nil.
func Info(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info
		}
	}
	return nil
}

// Reason is err's reason; ERROR_REASON_UNSPECIFIED when it carries none the
// enum knows.
func Reason(err error) cwpexportv1.ErrorReason {
	return cwpexportv1.ErrorReason(cwpexportv1.ErrorReason_value[Info(err).GetReason()])
}

// RetryDelay is the delay err's RetryInfo asks for, if it has one.
func RetryDelay(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// Violations are the field violations of err's BadRequest.
func Violations(err error) []*errdetails.BadRequest_FieldViolation {
	var v []*errdetails.BadRequest_FieldViolation
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			v = append(v, br.GetFieldViolations()...)
		}
	}
	return v
}
