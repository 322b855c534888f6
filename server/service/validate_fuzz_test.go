package service

import (
	"strconv"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// checkInvalidArgument fails unless err is InvalidArgument with at least
// one field violation.
func checkInvalidArgument(t *testing.T, err error) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("error %v, want InvalidArgument", err)
	}
	if n := len(apierror.Violations(err)); n > 0 {
		if n > MaxFieldViolations {
			t.Fatalf("%d field violations listed, more than %d", n, MaxFieldViolations)
		}
		return
	}
	t.Fatalf("InvalidArgument without field violations: %v", err)
}

// FuzzValidateExport decodes arbitrary JSON as a REST export request and
// validates it: validation never panics, and whatever it accepts is within
// the documented bounds.
func FuzzValidateExport(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"filters":[{"name":"LicenseType","values":["1"]}]}`,
		`{"filters":[{"name":"Keywords","values":["a","b"],"exactMatch":true}],"tags":[{"tagKey":"k","tagValue":"v"}]}`,
		`{"isHistory":true,"exportMonth":"2024-05","requestId":"123e4567-e89b-12d3-a456-426614174000"}`,
		`{"exportMonth":"2024-13"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req cwpexportv1.ExportLicenseDetailRequest
		if protojson.Unmarshal(body, &req) != nil {
			return // the gateway answers 400 before validation
		}
		p, err := validateExport(&req)
		if err != nil {
			checkInvalidArgument(t, err)
			return
		}
		if n := proto.Size(toParameters(&req)); n > MaxParametersBytes {
			t.Fatalf("accepted %d bytes of parameters", n)
		}
		if len(p.Filters) > MaxFilters || len(p.Tags) > MaxTags {
			t.Fatalf("accepted %d filters and %d tags", len(p.Filters), len(p.Tags))
		}
		for _, fl := range p.Filters {
			if !filterNames[fl.Name] || len(fl.Values) == 0 || len(fl.Values) > MaxValues {
				t.Fatalf("accepted filter %+v", fl)
			}
			for _, v := range fl.Values {
				if v == "" || utf8.RuneCountInString(v) > MaxValueLen {
					t.Fatalf("accepted value %q", v)
				}
			}
		}
		for _, tag := range p.Tags {
			if tag.Key == "" || utf8.RuneCountInString(tag.Key) > MaxTagKeyLen || utf8.RuneCountInString(tag.Value) > MaxTagValueLen {
				t.Fatalf("accepted tag %+v", tag)
			}
		}
		if p.ExportMonth != "" && (!p.IsHistory || !monthPattern.MatchString(p.ExportMonth)) {
			t.Fatalf("accepted month %q with history %v", p.ExportMonth, p.IsHistory)
		}
	})
}

// FuzzParseTaskID: a task id is accepted exactly when it is the canonical
// decimal form of a positive int64.
func FuzzParseTaskID(f *testing.F) {
	for _, s := range []string{"1", "42", "9223372036854775807", "9223372036854775808", "0", "007", "-1", "+1", "1e3", "../1", "١٢٣", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseTaskID(s)
		if err != nil {
			checkInvalidArgument(t, err)
			if n, perr := strconv.ParseInt(s, 10, 64); perr == nil && n > 0 && strconv.FormatInt(n, 10) == s {
				t.Fatalf("rejected the valid id %q", s)
			}
			return
		}
		if id <= 0 || strconv.FormatInt(id, 10) != s {
			t.Fatalf("accepted %q as %d", s, id)
		}
	})
}
