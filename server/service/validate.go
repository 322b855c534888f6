package service

import (
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
)

// Bounds on export requests. The cloud documents none; these keep a request
// to a size the cloud plausibly accepts and a caller plausibly means.
const (
	MaxFilters     = 16
	MaxValues      = 100
	MaxValueLen    = 256
	MaxTags        = 16
	MaxTagKeyLen   = 127
	MaxTagValueLen = 255
	maxTaskIDLen   = 19 // digits of the largest int64
	// MaxParametersBytes bounds an export's filters and tags together
	// (protobuf-encoded): what the registry stores, caches and lists for
	// each task.
	MaxParametersBytes = 32 << 10
	// MaxFieldViolations bounds the field violations an error lists; the
	// rest are counted, so that an error stays small whatever the request.
	MaxFieldViolations = 20
)

// filterNames are the filter names the cloud documents.
var filterNames = map[string]bool{
	"LicenseStatus": true, "DeadlineStatus": true, "ResourceId": true, "Keywords": true, "LicenseType": true,
}

// licenseTypes are the LicenseType values the cloud documents.
var licenseTypes = map[string]bool{"0": true, "1": true, "2": true}

var monthPattern = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)

// violations collects field violations of one request.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// fieldErrors collects the field violations of one request: the first
// MaxFieldViolations, and a count of all. A request of thousands of bad
// values thus costs neither thousands of formatted descriptions nor an
// answer larger than itself.
type fieldErrors struct {
	listed violations
	total  int
}

func (f *fieldErrors) add(field, format string, args ...any) {
	f.total++
	if len(f.listed) < MaxFieldViolations {
		f.listed.add(field, format, args...)
	}
}

// err returns the InvalidArgument status of the violations, or nil.
func (f *fieldErrors) err() error {
	if f.total == 0 {
		return nil
	}
	return apierror.InvalidArgument(f.listed, f.total)
}

// exportRequest is the part common to ExportLicenseDetail and
// ExportLicenseDetailAndWatch requests.
type exportRequest interface {
	GetFilters() []*cwpexportv1.Filter
	GetIsHistory() bool
	GetTags() []*cwpexportv1.Tag
	GetExportMonth() string
	GetRequestId() string
}

// validateExport checks an export request and returns the cloud parameters
// it stands for, or an InvalidArgument status listing every violation.
func validateExport(r exportRequest) (cloud.ExportParams, error) {
	var v fieldErrors
	var p cloud.ExportParams
	if n := len(r.GetFilters()); n > MaxFilters {
		v.add("filters", "at most %d filters are allowed, got %d", MaxFilters, n)
	}
	for i, f := range r.GetFilters() {
		field := fmt.Sprintf("filters[%d]", i)
		if !filterNames[f.GetName()] {
			v.add(field+".name", "unknown filter name %q: use one of LicenseStatus, DeadlineStatus, ResourceId, Keywords, LicenseType", clip(f.GetName()))
		}
		switch n := len(f.GetValues()); {
		case n == 0:
			v.add(field+".values", "at least one value is required")
		case n > MaxValues:
			v.add(field+".values", "at most %d values are allowed, got %d", MaxValues, n)
		}
		for j, val := range f.GetValues() {
			vf := fmt.Sprintf("%s.values[%d]", field, j)
			switch {
			case val == "":
				v.add(vf, "must not be empty")
			case utf8.RuneCountInString(val) > MaxValueLen:
				v.add(vf, "must be at most %d characters", MaxValueLen)
			case f.GetName() == "LicenseType" && !licenseTypes[val]:
				v.add(vf, "LicenseType must be 0 (Pro, pay-as-you-go), 1 (Pro, monthly) or 2 (Ultimate, monthly), got %q", clip(val))
			}
		}
		p.Filters = append(p.Filters, cloud.Filter{Name: f.GetName(), Values: f.GetValues(), ExactMatch: f.GetExactMatch()})
	}
	if n := len(r.GetTags()); n > MaxTags {
		v.add("tags", "at most %d tags are allowed, got %d", MaxTags, n)
	}
	for i, t := range r.GetTags() {
		field := fmt.Sprintf("tags[%d]", i)
		switch {
		case t.GetTagKey() == "":
			v.add(field+".tag_key", "a tag key is required")
		case utf8.RuneCountInString(t.GetTagKey()) > MaxTagKeyLen:
			v.add(field+".tag_key", "must be at most %d characters", MaxTagKeyLen)
		}
		if utf8.RuneCountInString(t.GetTagValue()) > MaxTagValueLen {
			v.add(field+".tag_value", "must be at most %d characters", MaxTagValueLen)
		}
		p.Tags = append(p.Tags, cloud.Tag{Key: t.GetTagKey(), Value: t.GetTagValue()})
	}
	if m := r.GetExportMonth(); m != "" {
		switch {
		case !monthPattern.MatchString(m):
			v.add("export_month", "must be a month as YYYY-MM (for example 2024-05), got %q", clip(m))
		case !r.GetIsHistory():
			v.add("export_month", "is only allowed with is_history set to true")
		}
	}
	if id := r.GetRequestId(); id != "" {
		if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
			v.add("request_id", "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000, got %q", clip(id))
		}
	}
	if v.total == 0 {
		if n := proto.Size(toParameters(r)); n > MaxParametersBytes {
			v.add("filters", "the filters and tags together take %d bytes, more than the %d an export may have; split the export", n, MaxParametersBytes)
		}
	}
	p.IsHistory = r.GetIsHistory()
	p.ExportMonth = r.GetExportMonth()
	if err := v.err(); err != nil {
		return cloud.ExportParams{}, err
	}
	return p, nil
}

// parseTaskID checks a task id: a positive decimal integer without sign or
// leading zeros that fits in 63 bits, as the cloud assigns them.
func parseTaskID(s string) (int64, error) {
	var v fieldErrors
	switch {
	case s == "":
		v.add("task_id", "a task id is required")
	case len(s) > maxTaskIDLen:
		v.add("task_id", "must be a positive integer of at most %d digits", maxTaskIDLen)
	case s[0] == '0' || !isDigits(s):
		v.add("task_id", "must be a positive decimal integer such as 42, got %q", clip(s))
	}
	if err := v.err(); err != nil {
		return 0, err
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		v.add("task_id", "must be a positive integer no larger than %d", int64(1<<63-1))
		return 0, v.err()
	}
	return id, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clip shortens a caller's value quoted back in an error message.
func clip(s string) string {
	const n = 64
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
