package emulator

import (
	"strings"
	"testing"
	"time"

	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
)

func TestParameterValidation(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, RateLimit: -1})
	c := sdkClient(s, testID, testKey)
	now := clock.Now().UTC()
	thisMonth := now.Format("2006-01")
	nextMonth := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Format("2006-01")
	kw := func(f map[string]any) map[string]any { return map[string]any{"Filters": []any{f}} }

	tests := []struct {
		name     string
		action   string
		params   map[string]any
		wantCode string
		wantMsg  string // substring of the message, naming the parameter
	}{
		{"empty", "ExportLicenseDetail", map[string]any{}, "", ""},
		{"all fields", "ExportLicenseDetail", map[string]any{
			"Filters":     []any{map[string]any{"Name": "LicenseType", "Values": []any{"0", "2"}, "ExactMatch": true}},
			"IsHistory":   true,
			"Tags":        []any{map[string]any{"TagKey": "env", "TagValue": "prod"}},
			"ExportMonth": thisMonth,
		}, "", ""},
		{"null is absent", "ExportLicenseDetail", map[string]any{"Filters": nil, "Tags": nil}, "", ""},
		{"unknown top-level", "ExportLicenseDetail", map[string]any{"Limit": 10}, codeUnknownParameter, "`Limit`"},
		{"field names are case-sensitive", "ExportLicenseDetail", map[string]any{"isHistory": true}, codeUnknownParameter, "isHistory"},
		{"IsHistory string", "ExportLicenseDetail", map[string]any{"IsHistory": "true"}, codeInvalidParameter, "`IsHistory`"},
		{"Filters object", "ExportLicenseDetail", map[string]any{"Filters": map[string]any{}}, codeInvalidParameter, "`Filters`"},
		{"Filters element string", "ExportLicenseDetail", map[string]any{"Filters": []any{"x"}}, codeInvalidParameter, "`Filters.0`"},
		{"filter unknown field", "ExportLicenseDetail", kw(map[string]any{"Name": "Keywords", "Values": []any{"a"}, "Fuzzy": true}), codeUnknownParameter, "`Filters.0.Fuzzy`"},
		{"filter without Name", "ExportLicenseDetail", kw(map[string]any{"Values": []any{"a"}}), codeMissingParameter, "`Filters.0.Name`"},
		{"filter unknown Name", "ExportLicenseDetail", kw(map[string]any{"Name": "Region", "Values": []any{"a"}}), codeInvalidParameterValue, "`Filters.0.Name`"},
		{"filter Name number", "ExportLicenseDetail", kw(map[string]any{"Name": 1, "Values": []any{"a"}}), codeInvalidParameter, "`Filters.0.Name`"},
		{"filter without Values", "ExportLicenseDetail", kw(map[string]any{"Name": "Keywords"}), codeMissingParameter, "`Filters.0.Values`"},
		{"filter empty Values", "ExportLicenseDetail", kw(map[string]any{"Name": "Keywords", "Values": []any{}}), codeInvalidParameterValue, "`Filters.0.Values`"},
		{"filter Values number", "ExportLicenseDetail", kw(map[string]any{"Name": "LicenseType", "Values": []any{1}}), codeInvalidParameter, "`Filters.0.Values.0`"},
		{"filter Values string", "ExportLicenseDetail", kw(map[string]any{"Name": "LicenseType", "Values": "1"}), codeInvalidParameter, "`Filters.0.Values`"},
		{"LicenseType 3", "ExportLicenseDetail", kw(map[string]any{"Name": "LicenseType", "Values": []any{"1", "3"}}), codeInvalidParameterValue, "`Filters.0.Values.1`"},
		{"LicenseStatus 5", "ExportLicenseDetail", kw(map[string]any{"Name": "LicenseStatus", "Values": []any{"5"}}), codeInvalidParameterValue, "`Filters.0.Values.0`"},
		{"DeadlineStatus any case", "ExportLicenseDetail", kw(map[string]any{"Name": "DeadlineStatus", "Values": []any{"nearexpiry", "Expire"}}), "", ""},
		{"DeadlineStatus unknown", "ExportLicenseDetail", kw(map[string]any{"Name": "DeadlineStatus", "Values": []any{"Soon"}}), codeInvalidParameterValue, "`Filters.0.Values.0`"},
		{"ExactMatch string", "ExportLicenseDetail", kw(map[string]any{"Name": "Keywords", "Values": []any{"a"}, "ExactMatch": "yes"}), codeInvalidParameter, "`Filters.0.ExactMatch`"},
		{"second filter bad", "ExportLicenseDetail", map[string]any{"Filters": []any{
			map[string]any{"Name": "Keywords", "Values": []any{"a"}},
			map[string]any{"Name": "LicenseType", "Values": []any{"x"}},
		}}, codeInvalidParameterValue, "`Filters.1.Values.0`"},
		{"tag without key", "ExportLicenseDetail", map[string]any{"Tags": []any{map[string]any{"TagValue": "v"}}}, codeMissingParameter, "`Tags.0.TagKey`"},
		{"tag empty key", "ExportLicenseDetail", map[string]any{"Tags": []any{map[string]any{"TagKey": ""}}}, codeInvalidParameterValue, "`Tags.0.TagKey`"},
		{"tag unknown field", "ExportLicenseDetail", map[string]any{"Tags": []any{map[string]any{"TagKey": "k", "Key": "k"}}}, codeUnknownParameter, "`Tags.0.Key`"},
		{"tag value number", "ExportLicenseDetail", map[string]any{"Tags": []any{map[string]any{"TagKey": "k", "TagValue": 1}}}, codeInvalidParameter, "`Tags.0.TagValue`"},
		{"ExportMonth without IsHistory", "ExportLicenseDetail", map[string]any{"ExportMonth": thisMonth}, codeInvalidParameterValue, "`ExportMonth`"},
		{"ExportMonth with IsHistory false", "ExportLicenseDetail", map[string]any{"IsHistory": false, "ExportMonth": thisMonth}, codeInvalidParameterValue, "`ExportMonth`"},
		{"ExportMonth bad format", "ExportLicenseDetail", map[string]any{"IsHistory": true, "ExportMonth": "2024-1"}, codeInvalidParameterValue, "`ExportMonth`"},
		{"ExportMonth month 13", "ExportLicenseDetail", map[string]any{"IsHistory": true, "ExportMonth": "2024-13"}, codeInvalidParameterValue, "`ExportMonth`"},
		{"ExportMonth future", "ExportLicenseDetail", map[string]any{"IsHistory": true, "ExportMonth": nextMonth}, codeInvalidParameterValue, "`ExportMonth`"},
		{"ExportMonth number", "ExportLicenseDetail", map[string]any{"IsHistory": true, "ExportMonth": 202401}, codeInvalidParameter, "`ExportMonth`"},

		{"TaskId missing", "ExportTasks", map[string]any{}, codeMissingParameter, "`TaskId`"},
		{"TaskId null", "ExportTasks", map[string]any{"TaskId": nil}, codeMissingParameter, "`TaskId`"},
		{"TaskId number", "ExportTasks", map[string]any{"TaskId": 1}, codeInvalidParameter, "`TaskId`"},
		{"TaskId word", "ExportTasks", map[string]any{"TaskId": "one"}, codeInvalidParameterValue, "`TaskId`"},
		{"TaskId empty", "ExportTasks", map[string]any{"TaskId": ""}, codeInvalidParameterValue, "`TaskId`"},
		{"TaskId fraction", "ExportTasks", map[string]any{"TaskId": "1.0"}, codeInvalidParameterValue, "`TaskId`"},
		{"TaskId plus sign", "ExportTasks", map[string]any{"TaskId": "+1"}, codeInvalidParameterValue, "`TaskId`"},
		{"TaskId overflow", "ExportTasks", map[string]any{"TaskId": "99999999999999999999"}, codeInvalidParameterValue, "`TaskId`"},
		{"TaskId unknown", "ExportTasks", map[string]any{"TaskId": "424242"}, codeResourceNotFound, "424242"},
		{"ExportTasks unknown field", "ExportTasks", map[string]any{"TaskId": "1", "Offset": 0}, codeUnknownParameter, "`Offset`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sdkCall(t, c, APIVersion, tt.action, tt.params, nil)
			if got := errCode(t, err); got != tt.wantCode {
				t.Fatalf("code %q, want %q (%v)", got, tt.wantCode, err)
			}
			if err != nil {
				msg := err.(*tcerr.TencentCloudSDKError).GetMessage()
				if !strings.Contains(msg, tt.wantMsg) {
					t.Fatalf("message %q does not mention %q", msg, tt.wantMsg)
				}
			}
		})
	}
}

// Bodies the SDK cannot produce, sent hand-signed.
func TestBodyValidation(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1})
	tests := []struct {
		name, body, contentType, wantCode string
	}{
		{"array", `[]`, "", codeInvalidParameter},
		{"null", `null`, "", codeInvalidParameter},
		{"string", `"x"`, "", codeInvalidParameter},
		{"not JSON", `TaskId=1`, "", codeInvalidParameter},
		{"two objects", `{}{}`, "", codeInvalidParameter},
		{"truncated", `{"IsHistory":`, "", codeInvalidParameter},
		{"empty", ``, "", codeInvalidParameter},
		{"form content type", `{}`, "application/x-www-form-urlencoded", codeInvalidParameter},
		{"charset is fine", `{}`, "application/json; charset=utf-8", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := s.do(t, signedRequest{action: "ExportLicenseDetail", body: tt.body, contentTyp: tt.contentType})
			if code != tt.wantCode {
				t.Fatalf("code %q, want %q: %v", code, tt.wantCode, resp)
			}
		})
	}
}
