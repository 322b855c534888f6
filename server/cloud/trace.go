package cloud

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the calls' spans.
const tracerName = "github.com/cwpexport/cwpexport/server/cloud"

// Attributes of a cloud call's span ("cwp <action>", kind client).
const (
	// AttrAction is the cloud action called.
	AttrAction = "cwp.action"
	// AttrTaskID is the export task: the one read, or the one created.
	AttrTaskID = "cwp.task_id"
	// AttrRequestID is the RequestId of the cloud's answer, success or
	// error; absent when the cloud did not answer.
	AttrRequestID = "cwp.request_id"
	// AttrOutcome is "Success" or the error code: the cloud's
	// ("ResourceNotFound", "RequestLimitExceeded") or the client's own
	// ("ClientError.NetworkError").
	AttrOutcome = "cwp.outcome"
	// AttrTaskStatus is the state ExportTasks reported.
	AttrTaskStatus = "cwp.task_status"
)

// OutcomeSuccess is the outcome of a call the cloud answered without error.
const OutcomeSuccess = "Success"

// EventRetry is the event of a call retried because its request never
// reached the cloud, with the attempt that failed (cwpexport.retry.attempt),
// the delay before the next (cwpexport.retry.delay_ms) and the failure
// (exception.message).
const EventRetry = "retry"

func (c *Client) start(ctx context.Context, action string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs = append(attrs,
		attribute.String(AttrAction, action),
		semconv.RPCSystemNameKey.String("tencentcloud"),
		semconv.RPCMethod(Service+"/"+action),
		semconv.ServerAddress(c.host),
	)
	return c.tracer.Start(ctx, "cwp "+action, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// retried returns the retry notification that records each retry on span.
func retried(span trace.Span) backoff.Notify {
	attempt := 0
	return func(err error, delay time.Duration) {
		attempt++
		span.AddEvent(EventRetry, trace.WithAttributes(
			attribute.Int("cwpexport.retry.attempt", attempt),
			attribute.Float64("cwpexport.retry.delay_ms", float64(delay.Microseconds())/1000),
			semconv.ExceptionMessage(err.Error()),
		))
	}
}

// end records a call's outcome on its span and ends it.
func end(span trace.Span, taskID int64, requestID string, err error) {
	var e *Error
	if errors.As(err, &e) && requestID == "" {
		requestID = e.RequestID
	}
	if taskID > 0 {
		span.SetAttributes(attribute.Int64(AttrTaskID, taskID))
	}
	if requestID != "" {
		span.SetAttributes(attribute.String(AttrRequestID, requestID))
	}
	switch {
	case err == nil:
		span.SetAttributes(attribute.String(AttrOutcome, OutcomeSuccess))
	case e != nil:
		span.SetAttributes(attribute.String(AttrOutcome, e.Code), semconv.ErrorTypeKey.String(e.Code))
		span.SetStatus(otelcodes.Error, err.Error())
	default:
		// The caller's context ended between attempts.
		span.SetAttributes(attribute.String(AttrOutcome, CodeNetwork), semconv.ErrorTypeKey.String(CodeNetwork))
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}
