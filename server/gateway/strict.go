package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// strictJSON is the JSON marshaler with a stricter request decoder: a body
// must hold exactly one JSON value (grpc-gateway would silently ignore
// anything after the first). The guard has read the body within its bounds.
type strictJSON struct {
	*runtime.JSONPb
}

// NewDecoder implements runtime.Marshaler.
func (m strictJSON) NewDecoder(r io.Reader) runtime.Decoder {
	b, err := io.ReadAll(r)
	if err != nil {
		return failingDecoder{err}
	}
	d := json.NewDecoder(bytes.NewReader(b))
	var first json.RawMessage
	if err := d.Decode(&first); err == nil {
		if _, err := d.Token(); !errors.Is(err, io.EOF) {
			return failingDecoder{errors.New("the body holds more than one JSON value")}
		}
	}
	return m.JSONPb.NewDecoder(bytes.NewReader(b))
}

type failingDecoder struct{ err error }

func (d failingDecoder) Decode(any) error { return d.err }

// routingError answers requests no route matches with a google.rpc.Status
// carrying an ErrorInfo (UNKNOWN_PATH), and a wrong method with HTTP 405
// (METHOD_NOT_ALLOWED) rather than grpc-gateway's 501.
func routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, refuse(cwpexportv1.ErrorReason_METHOD_NOT_ALLOWED,
			"method %s is not allowed on %s; see /openapi.json", r.Method, clip(r.URL.Path)))
	case http.StatusNotFound:
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, refuse(cwpexportv1.ErrorReason_UNKNOWN_PATH, "no endpoint at %s; see /openapi.json", clip(r.URL.Path)))
	default:
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
	}
}

// validPath reports a request whose path or query is not valid UTF-8: such
// text cannot become a protobuf string, so it is refused before routing.
func validPath(r *http.Request) error {
	if !utf8.ValidString(r.URL.Path) || !utf8.ValidString(r.URL.RawQuery) {
		return status.Error(codes.InvalidArgument, "the request path or query is not valid UTF-8")
	}
	// A task's own endpoints (get, watch, download) take the task id from
	// the path and nothing else; grpc-gateway would ignore a query there
	// instead of refusing it as strictQuery does elsewhere.
	if rest, ok := strings.CutPrefix(r.URL.Path, "/v1/export-tasks/"); ok && rest != "" && r.URL.RawQuery != "" {
		return noQuery(r, "this endpoint takes no query parameters: the task id is part of the path")
	}
	// GetBudgetStatus has no request fields, so grpc-gateway parses no
	// query there at all.
	if r.URL.Path == "/v1/budget" && r.URL.RawQuery != "" {
		return noQuery(r, "this endpoint takes no query parameters")
	}
	return nil
}

// noQuery refuses the first of a request's query parameters.
func noQuery(r *http.Request, why string) error {
	keys := slices.Sorted(maps.Keys(r.URL.Query()))
	if len(keys) == 0 {
		return apierror.Error(cwpexportv1.ErrorReason_INVALID_ARGUMENT, "invalid request: "+why)
	}
	return apierror.InvalidField(clip(keys[0]), "unknown query parameter: "+why)
}
