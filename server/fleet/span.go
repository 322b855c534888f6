package fleet

import (
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// formatSpan writes a span's trace and span ids for the row, so that other
// replicas' watches can link to it.
func formatSpan(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String() + "-" + sc.SpanID().String()
}

// parseSpan reads what formatSpan wrote.
func parseSpan(s string) trace.SpanContext {
	tid, sid, ok := strings.Cut(s, "-")
	if !ok {
		return trace.SpanContext{}
	}
	t, err1 := trace.TraceIDFromHex(tid)
	sp, err2 := trace.SpanIDFromHex(sid)
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: t, SpanID: sp, TraceFlags: trace.FlagsSampled, Remote: true})
}
