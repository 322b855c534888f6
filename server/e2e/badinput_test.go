package e2e_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// TestBadRESTInput: malformed, mistyped, oversized and odd REST requests
// get a 4xx with a google.rpc.Status body and never reach the cloud.
func TestBadRESTInput(t *testing.T) {
	env := start(t)
	const export = "/v1/license-detail:export"
	const exportAndWatch = "/v1/license-detail:exportAndWatch"
	hugeValues := `{"filters":[{"name":"Keywords","values":[` + strings.Repeat(`"a",`, 100_000) + `"a"]}]}`
	hugeFilters := `{"filters":[` + strings.Repeat(`{"name":"Keywords","values":["a"]},`, 20_000) + `{"name":"Keywords","values":["a"]}]}`
	// field is the field violation a 400 must carry ("" for none: the
	// decoder named no field); every 400 carries the reason.
	cases := []struct{ name, method, path, body, field string }{
		{"invalid JSON", http.MethodPost, export, `{"filters":`, ""},
		{"not an object", http.MethodPost, export, `"export"`, ""},
		{"trailing garbage", http.MethodPost, export, `{} {}`, ""},
		{"wrong type: filters", http.MethodPost, export, `{"filters":{"name":"Keywords"}}`, ""},
		{"wrong type: isHistory", http.MethodPost, export, `{"isHistory":"yes"}`, "is_history"},
		{"wrong type: values", http.MethodPost, export, `{"filters":[{"name":"Keywords","values":[1,2]}]}`, ""},
		{"wrong type: null value", http.MethodPost, export, `{"filters":[{"name":"Keywords","values":[null]}]}`, ""},
		{"unknown field", http.MethodPost, export, `{"filter":[]}`, "filter"},
		{"unknown nested field", http.MethodPost, export, `{"tags":[{"tagKey":"k","colour":"red"}]}`, "colour"},
		{"oversized body", http.MethodPost, export, `{"filters":[{"name":"Keywords","values":["` + strings.Repeat("x", 2<<20) + `"]}]}`, ""},
		{"huge values array", http.MethodPost, export, hugeValues, ""},
		{"huge filters array", http.MethodPost, exportAndWatch, hugeFilters, ""},
		{"invalid UTF-8 in a value", http.MethodPost, export, "{\"filters\":[{\"name\":\"Keywords\",\"values\":[\"\xff\xfe\"]}]}", ""},
		{"invalid UTF-8 in a key", http.MethodPost, export, "{\"\xff\":1}", ""},
		{"escaped lone surrogate", http.MethodPost, export, `{"filters":[{"name":"Keywords","values":["\ud800"]}]}`, ""},
		{"deep nesting", http.MethodPost, export, strings.Repeat(`{"a":`, 10_000) + strings.Repeat("}", 10_000), ""},
		{"task id ../", http.MethodGet, "/v1/export-tasks/..%2F..%2Fetc%2Fpasswd", "", ""},
		{"task id dot-dot", http.MethodGet, "/v1/export-tasks/..", "", ""},
		{"task id very long", http.MethodGet, "/v1/export-tasks/" + strings.Repeat("9", 5000), "", ""},
		{"task id unicode digits", http.MethodGet, "/v1/export-tasks/%D9%A1%D9%A2%D9%A3", "", ""},
		{"task id fullwidth digits", http.MethodGet, "/v1/export-tasks/%EF%BC%91%EF%BC%92", "", ""},
		{"task id negative", http.MethodGet, "/v1/export-tasks/-5", "", ""},
		{"task id overflowing", http.MethodGet, "/v1/export-tasks/9223372036854775808", "", ""},
		{"task id invalid UTF-8", http.MethodGet, "/v1/export-tasks/%FF%FE", "", ""},
		{"task id with space", http.MethodGet, "/v1/export-tasks/1%202", "", ""},
		{"task id exponent", http.MethodGet, "/v1/export-tasks/1e5:watch", "", ""},
		{"task id plus sign", http.MethodGet, "/v1/export-tasks/+5:watch", "", ""},
		{"task id zero", http.MethodGet, "/v1/export-tasks/0:watch", "", ""},
		{"unknown query parameter", http.MethodGet, "/v1/export-tasks/7?foo=bar", "", "foo"},
		{"misspelt query parameter", http.MethodGet, "/v1/export-tasks?pagesize=5", "", "pagesize"},
		{"query parameter below a scalar", http.MethodGet, "/v1/export-tasks?pageSize.x=5", "", "page_size.x"},
		{"bad enum in query", http.MethodGet, "/v1/export-tasks?state=BOGUS", "", "state"},
		{"bad number in query", http.MethodGet, "/v1/export-tasks?pageSize=ten", "", "page_size"},
		{"wrong method", http.MethodDelete, export, "", ""},
		{"unknown path", http.MethodGet, "/v1/nothing-here", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := env.Do(t, tc.method, tc.path, tc.body)
			if r.Status < 400 || r.Status >= 500 {
				t.Fatalf("HTTP %d %.300s, want 4xx", r.Status, r.Body)
			}
			body := r.Body
			var line struct {
				Error json.RawMessage
			}
			if json.Unmarshal(body, &line) == nil && line.Error != nil {
				body = line.Error // a stream failing before its first message
			}
			var st struct {
				Code    int
				Message string
				Details []any
			}
			if err := json.Unmarshal(body, &st); err != nil || st.Code == 0 || st.Message == "" || st.Details == nil {
				t.Errorf("body is not a google.rpc.Status: %v: %.300s", err, r.Body)
			}
			// Every answer tells why as the service's own answers do,
			// whoever refused the request: an ErrorInfo's reason, and for a
			// 400 the field when known.
			reason := restReason(body)
			if reason == "" {
				t.Errorf("HTTP %d without an ErrorInfo: %.300s", r.Status, body)
			}
			if r.Status != http.StatusBadRequest {
				return
			}
			if reason != "INVALID_ARGUMENT" {
				t.Errorf("400 with the reason %q, want INVALID_ARGUMENT: %.300s", reason, body)
			}
			if tc.field != "" && !strings.Contains(string(body), `"field":"`+tc.field+`"`) {
				t.Errorf("400 without a violation of field %q: %.400s", tc.field, body)
			}
		})
	}
	stats := env.Emulator.Stats()
	if n := stats.Actions[cloud.ActionExportLicenseDetail].Requests + stats.Actions[cloud.ActionExportTasks].Requests; n != 0 {
		t.Fatalf("bad input reached the cloud %d times", n)
	}
}

// restReason is the reason of the google.rpc.ErrorInfo in a REST error
// body; "" when it has none.
func restReason(body []byte) string {
	var st struct {
		Details []struct {
			Type   string `json:"@type"`
			Reason string
			Domain string
		}
	}
	_ = json.Unmarshal(body, &st)
	for _, d := range st.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" && d.Domain == "cwpexport.v1" {
			return d.Reason
		}
	}
	return ""
}
