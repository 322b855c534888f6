package emulator

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// failKeyword in a Keywords filter makes the export task end in ERROR.
const failKeyword = "EMULATOR_FAIL"

// exportQuery is a validated ExportLicenseDetail request.
type exportQuery struct {
	Filters     []filter
	IsHistory   bool
	ExportMonth string
	monthStart  time.Time           // parsed ExportMonth, zero when absent
	tags        map[string][]string // TagKey -> accepted TagValues
}

type filter struct {
	Name       string
	Values     []string
	ExactMatch bool
}

// allowed filter values; nil means free text.
var filterValues = map[string][]string{
	"LicenseStatus":  {"0", "1", "2", "3", "4"},
	"DeadlineStatus": {deadlineNotExpired, deadlineExpire, deadlineNearExpiry},
	"LicenseType":    {"0", "1", "2"},
	"ResourceId":     nil,
	"Keywords":       nil,
}

func (q *exportQuery) wantsFailure() bool {
	for _, f := range q.Filters {
		if f.Name == "Keywords" {
			for _, v := range f.Values {
				if v == failKeyword {
					return true
				}
			}
		}
	}
	return false
}

// parseExportQuery validates ExportLicenseDetail parameters; now bounds
// ExportMonth.
func parseExportQuery(p object, now time.Time) (*exportQuery, *apiError) {
	if aerr := p.allowOnly("", "Filters", "IsHistory", "Tags", "ExportMonth"); aerr != nil {
		return nil, aerr
	}
	q := &exportQuery{tags: map[string][]string{}}

	filters, _, aerr := p.array("", "Filters")
	if aerr != nil {
		return nil, aerr
	}
	for i, raw := range filters {
		f, aerr := parseFilter(index("Filters", i), raw)
		if aerr != nil {
			return nil, aerr
		}
		q.Filters = append(q.Filters, f)
	}

	if q.IsHistory, _, aerr = p.bool("", "IsHistory"); aerr != nil {
		return nil, aerr
	}

	tags, _, aerr := p.array("", "Tags")
	if aerr != nil {
		return nil, aerr
	}
	for i, raw := range tags {
		path := index("Tags", i)
		t, aerr := asObject(path, raw)
		if aerr != nil {
			return nil, aerr
		}
		if aerr := t.allowOnly(path, "TagKey", "TagValue"); aerr != nil {
			return nil, aerr
		}
		key, ok, aerr := t.string(path, "TagKey")
		switch {
		case aerr != nil:
			return nil, aerr
		case !ok:
			return nil, missing(field(path, "TagKey"))
		case key == "":
			return nil, invalidValue(field(path, "TagKey"), "it must not be empty.")
		}
		value, _, aerr := t.string(path, "TagValue")
		if aerr != nil {
			return nil, aerr
		}
		q.tags[key] = append(q.tags[key], value)
	}

	month, _, aerr := p.string("", "ExportMonth")
	if aerr != nil {
		return nil, aerr
	}
	if month != "" {
		if !q.IsHistory {
			return nil, invalidValue("ExportMonth", "it is only allowed when IsHistory is true.")
		}
		start, err := time.Parse("2006-01", month)
		if err != nil {
			return nil, invalidValue("ExportMonth", "it must be YYYY-MM.")
		}
		y, m, _ := now.UTC().Date()
		if start.After(time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)) {
			return nil, invalidValue("ExportMonth", "%s is in the future.", month)
		}
		q.ExportMonth, q.monthStart = month, start
	}
	return q, nil
}

func parseFilter(path string, raw json.RawMessage) (filter, *apiError) {
	var f filter
	o, aerr := asObject(path, raw)
	if aerr != nil {
		return f, aerr
	}
	if aerr := o.allowOnly(path, "Name", "Values", "ExactMatch"); aerr != nil {
		return f, aerr
	}
	name, ok, aerr := o.string(path, "Name")
	if aerr != nil {
		return f, aerr
	}
	if !ok {
		return f, missing(field(path, "Name"))
	}
	allowed, known := filterValues[name]
	if !known {
		return f, invalidValue(field(path, "Name"),
			"unknown filter `%s`; use LicenseStatus, DeadlineStatus, ResourceId, Keywords or LicenseType.", name)
	}
	values, ok, aerr := o.stringArray(path, "Values")
	switch {
	case aerr != nil:
		return f, aerr
	case !ok:
		return f, missing(field(path, "Values"))
	case len(values) == 0:
		return f, invalidValue(field(path, "Values"), "it must not be empty.")
	}
	if allowed != nil {
		for i, v := range values {
			if !containsFold(allowed, v, name == "DeadlineStatus") {
				return f, invalidValue(index(field(path, "Values"), i),
					"`%s` is not one of %s.", v, strings.Join(allowed, ", "))
			}
		}
	}
	exact, _, aerr := o.bool(path, "ExactMatch")
	if aerr != nil {
		return f, aerr
	}
	return filter{Name: name, Values: values, ExactMatch: exact}, nil
}

func containsFold(list []string, v string, fold bool) bool {
	for _, s := range list {
		if s == v || (fold && strings.EqualFold(s, v)) {
			return true
		}
	}
	return false
}

// exportLicenseDetailResponse is the Response object of ExportLicenseDetail.
type exportLicenseDetailResponse struct {
	TaskId      int64
	DownloadUrl string // deprecated by the cloud: always empty
	RequestId   string
}

func (e *Emulator) exportLicenseDetail(c *call, p object) (any, *apiError) {
	q, aerr := parseExportQuery(p, c.received)
	if aerr != nil {
		return nil, aerr
	}
	id, err := e.tasks.create(c.secretID, q, c.received)
	if err != nil {
		e.log.Error("could not record a new task", "err", err)
		return nil, newError(codeInternalError, "The export task could not be created; try again later.")
	}
	e.stats.taskCreated()
	return exportLicenseDetailResponse{TaskId: id, RequestId: c.requestID}, nil
}

// exportTasksResponse is the Response object of ExportTasks.
type exportTasksResponse struct {
	Status      string
	DownloadUrl string
	RequestId   string
}

func (e *Emulator) exportTasks(c *call, p object) (any, *apiError) {
	if aerr := p.allowOnly("", "TaskId"); aerr != nil {
		return nil, aerr
	}
	raw, ok, aerr := p.string("", "TaskId")
	switch {
	case aerr != nil:
		return nil, aerr
	case !ok:
		return nil, missing("TaskId")
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || strings.HasPrefix(raw, "+") {
		return nil, invalidValue("TaskId", "`%s` is not a decimal integer.", raw)
	}
	status, token, found := e.tasks.status(c.secretID, id, c.received, e.pendingFor)
	if !found {
		return nil, newError(codeResourceNotFound, "The export task %d does not exist.", id)
	}
	e.stats.polled(id, c.received)
	resp := exportTasksResponse{Status: status, RequestId: c.requestID}
	if status == statusFinished {
		resp.DownloadUrl = e.signedDownloadURL(c.r, token)
	}
	return resp, nil
}
