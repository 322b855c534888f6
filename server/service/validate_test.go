package service

import (
	"strings"
	"testing"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// TestErrorsStaySmall: thousands of bad values are answered with the first
// MaxFieldViolations violations and a count, in an error smaller than the
// request.
func TestErrorsStaySmall(t *testing.T) {
	values := make([]string, 10_000)
	for i := range values {
		values[i] = strings.Repeat("v", MaxValueLen+1)
	}
	req := &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: values}}}
	_, err := validateExport(req)
	st := status.Convert(err)
	listed := len(apierror.Violations(err))
	total := apierror.Info(err).GetMetadata()[apierror.MetadataFieldViolations]
	if listed != MaxFieldViolations || total != "10001" {
		t.Errorf("listed %d violations, counted %q; want %d and 10001", listed, total, MaxFieldViolations)
	}
	if !strings.Contains(st.Message(), "10001 problems in all") {
		t.Errorf("message %q does not say how many problems there are", st.Message())
	}
	if errSize, reqSize := proto.Size(st.Proto()), proto.Size(req); errSize > reqSize/100 {
		t.Errorf("a %d-byte request got a %d-byte error", reqSize, errSize)
	}
}

func TestParametersAreBoundedInTotal(t *testing.T) {
	var filters []*cwpexportv1.Filter
	for range MaxFilters {
		values := make([]string, MaxValues)
		for i := range values {
			values[i] = strings.Repeat("k", 40)
		}
		filters = append(filters, &cwpexportv1.Filter{Name: "Keywords", Values: values})
	}
	_, err := validateExport(&cwpexportv1.ExportLicenseDetailRequest{Filters: filters})
	if st := status.Convert(err); !strings.Contains(st.Message(), "filters: the filters and tags together take") {
		t.Fatalf("a %d-byte export was not refused: %v", proto.Size(&cwpexportv1.ExportParameters{Filters: filters}), err)
	}
	if _, err := validateExport(&cwpexportv1.ExportLicenseDetailRequest{Filters: filters[:4]}); err != nil {
		t.Fatalf("an export of %d bytes was refused: %v", proto.Size(&cwpexportv1.ExportParameters{Filters: filters[:4]}), err)
	}
}
