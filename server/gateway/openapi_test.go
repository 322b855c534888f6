package gateway_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// openAPIDoc is the part of the served Swagger 2.0 document these tests read.
type openAPIDoc struct {
	Info struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Description string `json:"description"`
	} `json:"info"`
	Schemes  []string `json:"schemes"`
	Consumes []string `json:"consumes"`
	Produces []string `json:"produces"`
	Paths    map[string]map[string]struct {
		Produces  []string                   `json:"produces"`
		Responses map[string]openAPIResponse `json:"responses"`
	} `json:"paths"`
	Definitions map[string]json.RawMessage `json:"definitions"`
}

type openAPIResponse struct {
	Description string `json:"description"`
	Schema      struct {
		Ref        string         `json:"$ref"`
		Type       string         `json:"type"`
		Format     string         `json:"format"`
		Properties map[string]any `json:"properties"`
	} `json:"schema"`
	Examples map[string]json.RawMessage `json:"examples"`
}

func servedOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	env := testserver.Start(t, testserver.Config{})
	r := env.Do(t, "GET", "/openapi.json", "")
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("/openapi.json answered %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	var doc openAPIDoc
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("/openapi.json: %v", err)
	}
	return doc
}

// The details that protoc-gen-openapiv2 takes from the OpenAPI configuration
// file (proto/cwpexport/v1/license_export.openapi.yaml) reach the served
// document: the info block, the streams' and the download's responses with
// their examples.
func TestOpenAPICarriesTheConfiguredDetails(t *testing.T) {
	doc := servedOpenAPI(t)

	if doc.Info.Title != "CWP license export gateway" || doc.Info.Version != "1.0" ||
		!strings.Contains(doc.Info.Description, `one {"result": ...} object per message, or a final {"error": ...} object`) {
		t.Errorf("info = %+v", doc.Info)
	}
	if !slices.Equal(doc.Schemes, []string{"http", "https"}) || !slices.Equal(doc.Consumes, []string{"application/json"}) ||
		!slices.Equal(doc.Produces, []string{"application/json"}) {
		t.Errorf("schemes %v, consumes %v, produces %v", doc.Schemes, doc.Consumes, doc.Produces)
	}

	watch := doc.Paths["/v1/export-tasks/{taskId}:watch"]["get"].Responses["200"]
	if !strings.Contains(watch.Description, `{"result": WatchExportTaskResponse} per message, the first a SNAPSHOT`) ||
		!strings.Contains(watch.Description, `an unknown task with HTTP 404`) {
		t.Errorf("watch 200 description = %q", watch.Description)
	}
	var beat struct {
		Result struct {
			Kind     string            `json:"kind"`
			Task     map[string]string `json:"task"`
			Progress map[string]any    `json:"progress"`
		} `json:"result"`
	}
	decodeExample(t, watch, &beat)
	if beat.Result.Kind != "WATCH_EVENT_KIND_HEARTBEAT" || beat.Result.Task["state"] != "EXPORT_TASK_STATE_PENDING" ||
		beat.Result.Progress["pollCount"] != "3" || beat.Result.Progress["taskElapsed"] != "5.2s" {
		t.Errorf("watch 200 example = %+v", beat)
	}

	ew := doc.Paths["/v1/license-detail:exportAndWatch"]["post"].Responses
	for name, ok := range map[string]openAPIResponse{"watch": watch, "exportAndWatch": ew["200"]} {
		if ok.Schema.Properties["result"] == nil || ok.Schema.Properties["error"] == nil {
			t.Errorf("%s 200 schema does not describe the {result} and {error} lines: %+v", name, ok.Schema)
		}
	}
	if !strings.Contains(ew["200"].Description, "resume with GET /v1/export-tasks/{taskId}:watch") {
		t.Errorf("exportAndWatch 200 description = %q", ew["200"].Description)
	}
	var first struct {
		Result struct {
			Kind              string            `json:"kind"`
			Task              map[string]string `json:"task"`
			UpstreamRequestID string            `json:"upstreamRequestId"`
		} `json:"result"`
	}
	decodeExample(t, ew["200"], &first)
	if first.Result.Kind != "WATCH_EVENT_KIND_SNAPSHOT" || first.Result.Task["taskId"] != "8" || first.Result.UpstreamRequestID == "" {
		t.Errorf("exportAndWatch 200 example = %+v", first)
	}
	bad := ew["400"]
	if bad.Schema.Ref != "#/definitions/rpcStatus" || !strings.Contains(bad.Description, "one field violation per problem") {
		t.Errorf("exportAndWatch 400 = %+v", bad)
	}
	var st struct {
		Code    int `json:"code"`
		Details []struct {
			Type            string `json:"@type"`
			FieldViolations []struct {
				Field       string `json:"field"`
				Description string `json:"description"`
			} `json:"fieldViolations"`
		} `json:"details"`
	}
	decodeExample(t, bad, &st)
	if st.Code != 3 || len(st.Details) != 1 || st.Details[0].Type != "type.googleapis.com/google.rpc.BadRequest" ||
		len(st.Details[0].FieldViolations) != 1 || st.Details[0].FieldViolations[0].Field != "export_month" ||
		!strings.Contains(st.Details[0].FieldViolations[0].Description, `got "2026-13"`) {
		t.Errorf("exportAndWatch 400 example = %+v", st)
	}

	dl := doc.Paths["/v1/export-tasks/{taskId}:download"]["get"]
	if !slices.Equal(dl.Produces, []string{"text/csv", "application/octet-stream"}) {
		t.Errorf("download produces %v", dl.Produces)
	}
	if ok := dl.Responses["200"]; ok.Schema.Type != "string" || ok.Schema.Format != "binary" || !strings.Contains(ok.Description, "exact bytes (not JSON)") {
		t.Errorf("download 200 = %+v", ok)
	}
	if nf := dl.Responses["400"]; nf.Schema.Ref != "#/definitions/rpcStatus" || !strings.Contains(nf.Description, "not FINISHED") {
		t.Errorf("download 400 = %+v", nf)
	}
	for _, def := range []string{"rpcStatus", "v1Tag", "v1Filter", "v1ExportTask", "v1Progress"} {
		if doc.Definitions[def] == nil {
			t.Errorf("no definition %s", def)
		}
	}
}

// decodeExample decodes a response's application/json example into v. The
// generator embeds the example as JSON, so it must be valid JSON.
func decodeExample(t *testing.T, r openAPIResponse, v any) {
	t.Helper()
	raw := r.Examples["application/json"]
	if raw == nil {
		t.Errorf("no application/json example in %q", r.Description)
		return
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Errorf("example %s: %v", raw, err)
	}
}

// The API proto imports only what gRPC toolchains and the standard googleapis
// packages carry, so clients in any language compile it without this
// repository's generator options.
func TestAPIProtoImportsOnlyStandardFiles(t *testing.T) {
	imports := cwpexportv1.File_cwpexport_v1_license_export_proto.Imports()
	if imports.Len() == 0 {
		t.Fatal("the API proto imports nothing; google/api/annotations.proto expected")
	}
	for i := range imports.Len() {
		path := imports.Get(i).Path()
		if !strings.HasPrefix(path, "google/api/") && !strings.HasPrefix(path, "google/rpc/") && !strings.HasPrefix(path, "google/protobuf/") {
			t.Errorf("the API proto imports %s", path)
		}
	}
}
