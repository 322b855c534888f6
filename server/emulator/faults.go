package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FaultKind names one way the emulated cloud misbehaves.
type FaultKind string

// The fault kinds. Kinds that replace the answer (5xx, reset, error codes)
// stop the request before the action runs unless Fault.AfterAction is set;
// truncated and malformed answers always corrupt the action's real answer,
// so the action has run (a task may have been created) when they fire.
const (
	// FaultLatency delays the request by Fault.Delay before the action
	// runs. Like a real server, the emulator then acts on the request even
	// if the client gave up meanwhile (a create still creates the task);
	// the answer cannot be delivered and is counted as ClientGone.
	FaultLatency FaultKind = "latency"
	// FaultHTTPError answers HTTP Fault.Status (default 500) with a JSON
	// cloud error envelope (InternalError).
	FaultHTTPError FaultKind = "http_error"
	// FaultHTTPErrorNoBody answers HTTP Fault.Status (default 502) with an
	// empty body, as a proxy in front of the cloud might.
	FaultHTTPErrorNoBody FaultKind = "http_error_no_body"
	// FaultReset resets the TCP connection without answering.
	FaultReset FaultKind = "reset"
	// FaultTruncated sends only the first half of the JSON answer.
	FaultTruncated FaultKind = "truncated"
	// FaultMalformed sends an answer that is not JSON at all.
	FaultMalformed FaultKind = "malformed"
	// FaultInternalError answers the cloud error InternalError.
	FaultInternalError FaultKind = "internal_error"
	// FaultServiceUnavailable answers the cloud error ServiceUnavailable.
	FaultServiceUnavailable FaultKind = "service_unavailable"
	// FaultRequestLimitExceeded answers the cloud error RequestLimitExceeded.
	FaultRequestLimitExceeded FaultKind = "request_limit_exceeded"
	// FaultClockSkew shifts the emulator clock by Fault.Skew (default 10
	// minutes) when it checks the signature, so signatures look expired.
	FaultClockSkew FaultKind = "clock_skew"
)

// FaultKinds lists every fault kind, for tests and help texts.
var FaultKinds = []FaultKind{
	FaultLatency, FaultHTTPError, FaultHTTPErrorNoBody, FaultReset, FaultTruncated, FaultMalformed,
	FaultInternalError, FaultServiceUnavailable, FaultRequestLimitExceeded, FaultClockSkew,
}

const codeServiceUnavailable = "ServiceUnavailable"

// Codes counted in ActionStats.Errors for answers that were not delivered.
const (
	// codeClientGone: the client hung up before the answer was written.
	codeClientGone = "ClientGone"
	// codeAborted: the emulator stopped while the request was delayed.
	codeAborted = "Aborted"
)

// Fault is one injected misbehaviour. Its JSON encoding is the body of
// POST /_emulator/faults.
type Fault struct {
	// Kind is what goes wrong.
	Kind FaultKind
	// Action limits the fault to one action ("ExportTasks",
	// "ExportLicenseDetail"); empty means every API request.
	Action string `json:",omitempty"`
	// Probability is the chance that a matching request is hit, in (0, 1];
	// 0 means 1.
	Probability float64 `json:",omitempty"`
	// Count, when positive, ends the fault after it has hit Count requests
	// ("the next N calls"); 0 keeps it until cleared.
	Count int `json:",omitempty"`
	// Delay is the added latency of FaultLatency; 0 means 1s.
	Delay time.Duration `json:",omitempty"`
	// Status is the HTTP status of the HTTP error kinds.
	Status int `json:",omitempty"`
	// Skew is the clock offset of FaultClockSkew; 0 means 10 minutes.
	Skew time.Duration `json:",omitempty"`
	// AfterAction runs the action before the fault replaces its answer:
	// the cloud did the work but the caller never learns the result.
	AfterAction bool `json:",omitempty"`
}

func (f *Fault) validate() error {
	known := false
	for _, k := range FaultKinds {
		known = known || f.Kind == k
	}
	switch {
	case !known:
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	case f.Action != "" && actions[f.Action] == nil:
		return fmt.Errorf("unknown action %q", f.Action)
	case f.Probability < 0 || f.Probability > 1:
		return fmt.Errorf("probability %v is outside [0, 1]", f.Probability)
	case f.Count < 0:
		return errors.New("count must not be negative")
	case f.Status != 0 && (f.Status < 500 || f.Status > 599):
		return fmt.Errorf("status %d is not a 5xx status", f.Status)
	case f.Delay < 0:
		return errors.New("delay must not be negative")
	}
	return nil
}

// faultSet holds the active faults; the first matching fault hits.
type faultSet struct {
	mu     sync.Mutex
	faults []*Fault
	hits   map[FaultKind]int64
}

func newFaultSet() *faultSet { return &faultSet{hits: map[FaultKind]int64{}} }

// pick returns a copy of the fault that hits a request for action, if any,
// consuming one of its Count.
func (s *faultSet) pick(action string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Action != "" && f.Action != action {
			continue
		}
		if f.Probability > 0 && f.Probability < 1 && rand.Float64() >= f.Probability {
			continue
		}
		hit := *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		s.hits[hit.Kind]++
		return hit, true
	}
	return Fault{}, false
}

// FaultStatus is the body of GET /_emulator/faults.
type FaultStatus struct {
	// Active lists the faults in force, with their remaining Count.
	Active []Fault
	// Hits counts the requests each kind has hit since start.
	Hits map[FaultKind]int64
}

// InjectFault adds a fault; faults are tried in the order they were added.
func (e *Emulator) InjectFault(f Fault) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.faults = append(e.faults.faults, &f)
	return nil
}

// ClearFaults removes every active fault.
func (e *Emulator) ClearFaults() {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	e.faults.faults = nil
}

// Faults returns the active faults and the hit counts.
func (e *Emulator) Faults() FaultStatus {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	st := FaultStatus{Active: []Fault{}, Hits: map[FaultKind]int64{}}
	for _, f := range e.faults.faults {
		st.Active = append(st.Active, *f)
	}
	for k, n := range e.faults.hits {
		st.Hits[k] = n
	}
	return st
}

// serveFaults handles /_emulator/faults: GET lists, POST adds one fault
// (a JSON Fault), DELETE clears them all.
func (e *Emulator) serveFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		var f Fault
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, adminResult{Error: "body must be a JSON fault: " + err.Error()})
			return
		}
		if err := e.InjectFault(f); err != nil {
			writeJSON(w, http.StatusBadRequest, adminResult{Error: err.Error()})
			return
		}
		e.log.Info("fault injected", "kind", string(f.Kind), "action", f.Action, "count", f.Count, "probability", f.Probability)
	case http.MethodDelete:
		e.ClearFaults()
		e.log.Info("faults cleared")
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeJSON(w, http.StatusMethodNotAllowed, adminResult{Error: "use GET, POST or DELETE"})
		return
	}
	writeJSON(w, http.StatusOK, e.Faults())
}

// faultBefore applies f before the pipeline runs. It returns true when it
// answered the request (or dropped the connection) itself.
func (e *Emulator) faultBefore(w http.ResponseWriter, r *http.Request, c *call, f Fault) bool {
	switch f.Kind {
	case FaultLatency:
		d := f.Delay
		if d == 0 {
			d = time.Second
		}
		// A server reads the request, then works on it whether or not the
		// client still waits: after the delay the action runs even if the
		// client hung up, and only its answer is lost (serveAPI counts it
		// as ClientGone).
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			// The request never arrived whole: nothing to act on.
			e.stats.request(c.action, codeClientGone)
			return true
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return false
		case <-e.closing:
			// The emulator is going away: the request is dropped
			// unprocessed, as by a server that stops.
			e.stats.request(c.action, codeAborted)
			panic(http.ErrAbortHandler)
		}
	case FaultClockSkew:
		skew := f.Skew
		if skew == 0 {
			skew = 10 * time.Minute
		}
		c.received = c.received.Add(skew)
		return false
	case FaultTruncated, FaultMalformed:
		return false
	}
	if f.AfterAction {
		return false
	}
	e.answerFault(w, c, f, nil)
	return true
}

// answerFault writes the faulty answer; resp is the real answer's encoding,
// if the action ran.
func (e *Emulator) answerFault(w http.ResponseWriter, c *call, f Fault, resp []byte) {
	code := ""
	defer func() { e.stats.request(c.action, code) }()
	switch f.Kind {
	case FaultHTTPError:
		code = codeInternalError
		status := f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		writeJSON(w, status, envelope{Response: errorResponse{
			Error: apiError{Code: codeInternalError, Message: "An internal error occurred (injected HTTP error)."}, RequestId: c.requestID}})
	case FaultHTTPErrorNoBody:
		code = "HTTP"
		status := f.Status
		if status == 0 {
			status = http.StatusBadGateway
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(status)
	case FaultReset:
		code = "Reset"
		resetConnection(w)
	case FaultInternalError, FaultServiceUnavailable, FaultRequestLimitExceeded:
		code = map[FaultKind]string{
			FaultInternalError:        codeInternalError,
			FaultServiceUnavailable:   codeServiceUnavailable,
			FaultRequestLimitExceeded: codeRequestLimitExceeded,
		}[f.Kind]
		writeJSON(w, http.StatusOK, envelope{Response: errorResponse{
			Error: apiError{Code: code, Message: "Injected fault: " + string(f.Kind) + "."}, RequestId: c.requestID}})
	case FaultTruncated, FaultMalformed:
		code = "Corrupted"
		if resp == nil {
			resp = []byte(`{"Response":{"RequestId":"` + c.requestID + `"}}`)
		}
		body := resp[:len(resp)/2]
		if f.Kind == FaultMalformed {
			body = []byte("<html><body>502 Bad Gateway</body></html>\n")
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	}
}

// resetConnection closes the request's TCP connection with a RST.
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST instead of FIN
	}
	_ = conn.Close()
}

// replacesAnswer reports whether f, once the action has run, replaces its
// answer.
func (f Fault) replacesAnswer() bool {
	switch f.Kind {
	case FaultLatency, FaultClockSkew:
		return false
	case FaultTruncated, FaultMalformed:
		return true
	}
	return f.AfterAction
}

// ParseFault parses a fault written as
// "kind[@action][,p=0.5][,n=3][,delay=1s][,status=503][,skew=10m][,after]",
// the form of cmd/cwp-emulator's -fault flag.
func ParseFault(spec string) (Fault, error) {
	parts := strings.Split(spec, ",")
	var f Fault
	kind, action, _ := strings.Cut(parts[0], "@")
	f.Kind, f.Action = FaultKind(kind), action
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		var err error
		switch k {
		case "p":
			f.Probability, err = strconv.ParseFloat(v, 64)
		case "n":
			f.Count, err = strconv.Atoi(v)
		case "delay":
			f.Delay, err = time.ParseDuration(v)
		case "status":
			f.Status, err = strconv.Atoi(v)
		case "skew":
			f.Skew, err = time.ParseDuration(v)
		case "after":
			f.AfterAction = true
		default:
			err = errors.New("unknown option")
		}
		if err != nil {
			return Fault{}, fmt.Errorf("fault %q: option %q: %v", spec, p, err)
		}
	}
	if err := f.validate(); err != nil {
		return Fault{}, fmt.Errorf("fault %q: %w", spec, err)
	}
	return f, nil
}
