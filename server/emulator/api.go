package emulator

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"
)

// Error codes used by the emulator, as the cloud spells them.
const (
	codeInvalidAuthorization    = "AuthFailure.InvalidAuthorization"
	codeSecretIDNotFound        = "AuthFailure.SecretIdNotFound"
	codeSignatureExpire         = "AuthFailure.SignatureExpire"
	codeSignatureFailure        = "AuthFailure.SignatureFailure"
	codeTokenFailure            = "AuthFailure.TokenFailure"
	codeInvalidAction           = "InvalidAction"
	codeInvalidParameter        = "InvalidParameter"
	codeInvalidParameterValue   = "InvalidParameterValue"
	codeMissingParameter        = "MissingParameter"
	codeUnknownParameter        = "UnknownParameter"
	codeNoSuchVersion           = "NoSuchVersion"
	codeRequestLimitExceeded    = "RequestLimitExceeded"
	codeRequestSizeLimitExceeds = "RequestSizeLimitExceeded"
	codeResourceNotFound        = "ResourceNotFound"
	codeUnsupportedProtocol     = "UnsupportedProtocol"
	codeInternalError           = "InternalError"
)

// maxBodyBytes bounds the request body the emulator reads.
const maxBodyBytes = 1 << 20

// apiError is a cloud error answered in the Response.Error envelope.
type apiError struct {
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func newError(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// call carries one API request through the pipeline.
type call struct {
	r         *http.Request
	requestID string
	received  time.Time // emulator clock at arrival
	action    string    // X-TC-Action as sent, possibly unknown
	secretID  string    // set once authenticated
	body      []byte
}

// actionHandler executes one validated, authenticated, admitted request and
// returns the Response object (without the envelope). It must set RequestId.
type actionHandler func(e *Emulator, c *call, params object) (any, *apiError)

// actions is the emulator's API surface, keyed by X-TC-Action.
var actions = map[string]actionHandler{
	actionExportLicenseDetail: (*Emulator).exportLicenseDetail,
	actionExportTasks:         (*Emulator).exportTasks,
}

const (
	actionExportLicenseDetail = "ExportLicenseDetail"
	actionExportTasks         = "ExportTasks"
)

// serveAPI is the single entry point of every cloud API request: it runs the
// pipeline, records statistics and writes the envelope. Per-action fault
// injection (latency, 5xx, connection resets, malformed JSON, error storms,
// clock skew) belongs here, keyed on c.action, around e.process.
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	c := &call{
		r:         r,
		requestID: newRequestID(),
		received:  e.now(),
		action:    r.Header.Get("X-TC-Action"),
	}
	fault, faulty := e.faults.pick(c.action)
	if faulty && e.faultBefore(w, r, c, fault) {
		e.log.LogAttrs(r.Context(), slog.LevelDebug, "api request failed by injected fault",
			slog.String("action", c.action), slog.String("fault", string(fault.Kind)))
		return
	}
	resp, aerr := e.process(c)
	code := ""
	if aerr != nil {
		code = aerr.Code
		resp = errorResponse{Error: *aerr, RequestId: c.requestID}
	}
	if faulty && fault.replacesAnswer() {
		b, _ := json.Marshal(envelope{Response: resp})
		e.answerFault(w, c, fault, append(b, '\n'))
	} else {
		code = e.answer(w, c, code, envelope{Response: resp})
	}
	e.log.LogAttrs(r.Context(), slog.LevelDebug, "api request",
		slog.String("action", c.action),
		slog.String("secretId", c.secretID),
		slog.String("requestId", c.requestID),
		slog.String("code", code),
		slog.Duration("took", time.Since(started)))
}

// process runs the checks in the order documented in the package comment
// and dispatches to the action handler.
func (e *Emulator) process(c *call) (any, *apiError) {
	if c.r.Method != http.MethodPost {
		return nil, newError(codeUnsupportedProtocol,
			"HTTP method %s is not supported; the emulator accepts POST with a JSON body.", c.r.Method)
	}
	body, err := io.ReadAll(io.LimitReader(c.r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, newError(codeInternalError, "Could not read the request body.")
	}
	if len(body) > maxBodyBytes {
		return nil, newError(codeRequestSizeLimitExceeds, "The request body exceeds %d bytes.", maxBodyBytes)
	}
	c.body = body

	secretID, aerr := e.authenticate(c.r, body, c.received)
	if aerr != nil {
		return nil, aerr
	}
	c.secretID = secretID

	switch v := c.r.Header.Get("X-TC-Version"); {
	case v == "":
		return nil, newError(codeMissingParameter, "The request is missing the required parameter `Version` (header X-TC-Version).")
	case v != APIVersion:
		return nil, newError(codeNoSuchVersion, "The API version `%s` does not exist for service %s; use %s.", v, Service, APIVersion)
	}
	if c.action == "" {
		return nil, newError(codeMissingParameter, "The request is missing the required parameter `Action` (header X-TC-Action).")
	}
	handler, ok := actions[c.action]
	if !ok {
		return nil, newError(codeInvalidAction, "The action `%s` does not exist for service %s version %s.", c.action, Service, APIVersion)
	}
	switch l := c.r.Header.Get("X-TC-Language"); l {
	case "", "zh-CN", "en-US":
	default:
		return nil, newError(codeInvalidParameterValue, "The value `%s` of X-TC-Language is not supported; use zh-CN or en-US.", l)
	}

	admitted, offered := e.limiter.admit(c.secretID, c.action, c.received)
	e.stats.offered(c.action, offered, c.received)
	if !admitted {
		return nil, newError(codeRequestLimitExceeded, "Your requests to %s exceed the frequency limit.", c.action)
	}

	if ct := c.r.Header.Get("Content-Type"); !isJSONContentType(ct) {
		return nil, newError(codeInvalidParameter, "Content-Type `%s` is not supported; use application/json.", ct)
	}
	params, aerr := parseBody(body)
	if aerr != nil {
		return nil, aerr
	}
	return handler(e, c, params)
}

func isJSONContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// envelope is the API 3.0 outer object.
type envelope struct {
	Response any
}

// errorResponse is the Response object of a failed call.
type errorResponse struct {
	Error     apiError
	RequestId string
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs and maps are encoded; this cannot happen.
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// answer writes the API answer and returns the code it was counted with:
// code, or ClientGone when the client hung up before it could be written
// (the request's context ends once the server reads EOF from the client) or
// the write failed. It counts before writing, so that a client holding the
// answer finds it counted; a client that hangs up after the write is not
// noticed.
func (e *Emulator) answer(w http.ResponseWriter, c *call, code string, v any) string {
	if c.r.Context().Err() != nil {
		e.stats.request(c.action, codeClientGone)
		return codeClientGone
	}
	e.stats.request(c.action, code)
	writeJSON(w, http.StatusOK, v)
	if http.NewResponseController(w).Flush() != nil {
		e.stats.undelivered(c.action, code)
		return codeClientGone
	}
	return code
}

// newRequestID returns a random UUID (version 4), the cloud's RequestId form.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
