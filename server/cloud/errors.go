package cloud

import (
	"context"
	"errors"
	"strings"
)

// Codes this client reports that do not come from the cloud itself. The
// SDK's own client-side codes (ClientError.*) pass through unchanged.
const (
	// CodeNetwork: the request failed in transport (or the caller's context
	// ended); the cloud may or may not have received it.
	CodeNetwork = "ClientError.NetworkError"
	// CodeBadResponse: the cloud answered with something this client cannot
	// use (for example FINISHED without a URL).
	CodeBadResponse = "ClientError.BadResponse"
	// CodeTimeout: the cloud did not answer within the service's own time
	// limit for the call (not the caller's deadline); transient.
	CodeTimeout = "ClientError.Timeout"
)

// Error is a failed cloud call: an error answered by the cloud (Code,
// Message, RequestID) or a client-side failure (Code "ClientError.*").
type Error struct {
	// Action is the cloud action that failed.
	Action string
	// Code is the cloud's error code, e.g. "ResourceNotFound".
	Code string
	// Message is the cloud's message. It may be shown to users.
	Message string
	// RequestID is the cloud's RequestId, when it answered.
	RequestID string
	// Err is the underlying cause, if any (a transport or context error).
	Err error
}

// Error names the action, the cloud's code and message, and its RequestId.
func (e *Error) Error() string {
	s := e.Action + ": " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (RequestId " + e.RequestID + ")"
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Kind is the class of a cloud error that decides how the service reacts.
type Kind int

// The kinds of cloud errors.
const (
	// KindUnknown is an error this client cannot classify.
	KindUnknown Kind = iota
	// KindCanceled: the caller's context ended.
	KindCanceled
	// KindNotFound: ResourceNotFound*.
	KindNotFound
	// KindInvalidArgument: the cloud rejected the parameters.
	KindInvalidArgument
	// KindThrottled: RequestLimitExceeded*; retry later.
	KindThrottled
	// KindQuota: LimitExceeded*; a quota other than the request rate.
	KindQuota
	// KindCredentials: the service's own credentials were rejected.
	KindCredentials
	// KindPermission: the service's account may not perform the action.
	KindPermission
	// KindUnavailable: the cloud failed or could not be reached; transient.
	KindUnavailable
	// KindFailed: the cloud refused the operation (FailedOperation*,
	// UnsupportedOperation*, InvalidAction).
	KindFailed
)

// KindOf classifies err; an error that is not an *Error is KindUnknown,
// unless it is a context error.
func KindOf(err error) Kind {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return KindCanceled
	}
	var e *Error
	if !errors.As(err, &e) {
		return KindUnknown
	}
	c := e.Code
	switch {
	case hasPrefix(c, "ResourceNotFound"):
		return KindNotFound
	case hasPrefix(c, "InvalidParameter"), hasPrefix(c, "InvalidParameterValue"),
		hasPrefix(c, "MissingParameter"), hasPrefix(c, "UnknownParameter"):
		return KindInvalidArgument
	case hasPrefix(c, "RequestLimitExceeded"):
		return KindThrottled
	case hasPrefix(c, "LimitExceeded"):
		return KindQuota
	case c == "AuthFailure.UnauthorizedOperation", hasPrefix(c, "UnauthorizedOperation"):
		return KindPermission
	case hasPrefix(c, "AuthFailure"):
		return KindCredentials
	case hasPrefix(c, "InternalError"), hasPrefix(c, "ServiceUnavailable"), hasPrefix(c, "ResourceUnavailable"),
		hasPrefix(c, "ClientError"):
		return KindUnavailable
	case hasPrefix(c, "FailedOperation"), hasPrefix(c, "UnsupportedOperation"), c == "InvalidAction":
		return KindFailed
	}
	return KindUnknown
}

// Transient reports whether a read that failed with err may succeed if
// retried later.
func Transient(err error) bool {
	switch KindOf(err) {
	case KindThrottled, KindUnavailable:
		return true
	}
	return false
}

// hasPrefix matches a code or one of its dotted sub-codes
// ("RequestLimitExceeded" matches "RequestLimitExceeded.UinLimitExceeded").
func hasPrefix(code, base string) bool {
	return code == base || strings.HasPrefix(code, base+".")
}

// Refused reports whether err proves that the cloud did not perform the
// action: the request never reached it (NotSent), or the cloud answered
// with an error that turns a request away before acting on it (invalid
// parameters, rate limits and quotas, credentials and permissions, refused
// operations, unknown resources, or a service that is unavailable). Any
// other failure (a reset or timeout after sending, an unreadable answer,
// InternalError) may follow an action the cloud did perform.
func Refused(err error) bool {
	if err == nil {
		return false
	}
	if NotSent(err) {
		return true
	}
	var e *Error
	if !errors.As(err, &e) || hasPrefix(e.Code, "ClientError") {
		return false
	}
	switch KindOf(err) {
	case KindInvalidArgument, KindThrottled, KindQuota, KindCredentials, KindPermission, KindFailed, KindNotFound:
		return true
	}
	return hasPrefix(e.Code, "ServiceUnavailable") || hasPrefix(e.Code, "ResourceUnavailable")
}
