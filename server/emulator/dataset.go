package emulator

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// dataset is the seeded license data. Records are generated from (seed,
// index) on demand rather than stored, so memory stays flat however large
// Records is, and a record never depends on the ones before it.
type dataset struct {
	seed     uint64
	n        int
	licenses int
	anchor   time.Time // UTC midnight of the clock at New: "today" for the data
}

// record is one binding of a license to a machine: one CSV row.
type record struct {
	LicenseID      int64
	LicenseType    int // 0 Pro pay-as-you-go, 1 Pro monthly, 2 Ultimate monthly
	LicenseStatus  int // 0 not used, 1 partially used, 2 used up, 3 unavailable, 4 available
	DeadlineStatus string
	Deadline       time.Time // zero for pay-as-you-go
	ResourceID     string
	MachineName    string
	MachineIP      string
	Tags           []tag
	BindTime       time.Time
	UnbindTime     time.Time // zero while still bound
}

type tag struct{ Key, Value string }

const (
	deadlineNotExpired = "NotExpired"
	deadlineExpire     = "Expire"
	deadlineNearExpiry = "NearExpiry"
	nearExpiryWindow   = 15 * 24 * time.Hour
	historyDays        = 730
)

var (
	roles = []string{"web", "api", "db", "cache", "batch", "gw", "etl", "ml"}
	envs  = []string{"prod", "staging", "dev"}
	teams = []string{"payments", "search", "infra", "data", "growth"}
)

func newDataset(seed int64, n int, now time.Time) *dataset {
	return &dataset{
		seed:     uint64(seed),
		n:        n,
		licenses: max(1, n/3),
		anchor:   anchorDate(now),
	}
}

// anchorDate is UTC midnight of now's UTC date.
func anchorDate(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Distinct stream constants keep license and record generators independent.
const (
	licenseStream = 0x6c6963656e736573
	recordStream  = 0x7265636f72647321
)

func (d *dataset) rng(stream uint64, i int) *rand.Rand {
	return rand.New(rand.NewPCG(d.seed^stream, uint64(i)))
}

// license fills the license attributes of license j into r.
func (d *dataset) license(j int, r *record) {
	g := d.rng(licenseStream, j)
	r.LicenseID = int64(j) + 1
	r.ResourceID = "cwp-" + randomName(g, 8)
	switch p := g.IntN(10); {
	case p < 3:
		r.LicenseType = 0
	case p < 8:
		r.LicenseType = 1
	default:
		r.LicenseType = 2
	}
	r.DeadlineStatus = deadlineNotExpired
	if r.LicenseType != 0 {
		r.Deadline = d.anchor.AddDate(0, 0, g.IntN(520)-120).Add(time.Duration(g.IntN(86400)) * time.Second)
		switch {
		case r.Deadline.Before(d.anchor):
			r.DeadlineStatus = deadlineExpire
		case r.Deadline.Before(d.anchor.Add(nearExpiryWindow)):
			r.DeadlineStatus = deadlineNearExpiry
		}
	}
	if r.DeadlineStatus == deadlineExpire {
		r.LicenseStatus = 3
		return
	}
	switch p := g.IntN(20); {
	case p < 10:
		r.LicenseStatus = 1
	case p < 17:
		r.LicenseStatus = 2
	default:
		r.LicenseStatus = 4
	}
}

// record generates record i (0 <= i < d.n).
func (d *dataset) record(i int) record {
	g := d.rng(recordStream, i)
	var r record
	d.license(g.IntN(d.licenses), &r)

	env := envs[g.IntN(len(envs))]
	r.MachineName = fmt.Sprintf("%s-%s-%03d", roles[g.IntN(len(roles))], env, g.IntN(1000))
	// The last two octets come from i so addresses are unique per data set.
	r.MachineIP = fmt.Sprintf("10.%d.%d.%d", g.IntN(256), i/250%256, i%250+1)
	if g.IntN(10) < 8 {
		r.Tags = append(r.Tags, tag{"env", env})
	}
	if g.IntN(10) < 6 {
		r.Tags = append(r.Tags, tag{"team", teams[g.IntN(len(teams))]})
	}
	r.BindTime = d.anchor.Add(-time.Duration(1+g.Int64N(historyDays*86400-1)) * time.Second)
	if g.IntN(4) == 0 {
		bound := d.anchor.Sub(r.BindTime)
		r.UnbindTime = r.BindTime.Add(time.Duration(1+g.Int64N(int64(bound/time.Second))) * time.Second)
	}
	return r
}

func randomName(g *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.IntN(len(alphabet))]
	}
	return string(b)
}

// each calls fn for every record matching q, in index order, until fn
// returns false.
func (d *dataset) each(q *exportQuery, fn func(record) bool) {
	for i := range d.n {
		r := d.record(i)
		if q.matches(&r) && !fn(r) {
			return
		}
	}
}

// matches applies IsHistory/ExportMonth, then Filters and Tags.
func (q *exportQuery) matches(r *record) bool {
	switch {
	case !q.IsHistory:
		if !r.UnbindTime.IsZero() {
			return false
		}
	case !q.monthStart.IsZero():
		monthEnd := q.monthStart.AddDate(0, 1, 0)
		if !r.BindTime.Before(monthEnd) || (!r.UnbindTime.IsZero() && r.UnbindTime.Before(q.monthStart)) {
			return false
		}
	}
	for _, f := range q.Filters {
		if !f.matches(r) {
			return false
		}
	}
	for key, values := range q.tags {
		if !tagMatches(r.Tags, key, values) {
			return false
		}
	}
	return true
}

func (f *filter) matches(r *record) bool {
	for _, v := range f.Values {
		var hit bool
		switch f.Name {
		case "LicenseType":
			hit = v == strconv.Itoa(r.LicenseType)
		case "LicenseStatus":
			hit = v == strconv.Itoa(r.LicenseStatus)
		case "DeadlineStatus":
			hit = strings.EqualFold(v, r.DeadlineStatus)
		case "ResourceId":
			hit = textMatch(r.ResourceID, v, f.ExactMatch)
		case "Keywords":
			hit = textMatch(r.MachineName, v, f.ExactMatch) ||
				textMatch(r.MachineIP, v, f.ExactMatch) ||
				textMatch(r.ResourceID, v, f.ExactMatch)
		}
		if hit {
			return true
		}
	}
	return false
}

func textMatch(have, want string, exact bool) bool {
	if exact {
		return have == want
	}
	return strings.Contains(strings.ToLower(have), strings.ToLower(want))
}

// tagMatches reports whether tags has key with one of values; an empty value
// in values accepts any value of key.
func tagMatches(tags []tag, key string, values []string) bool {
	for _, t := range tags {
		if t.Key != key {
			continue
		}
		for _, v := range values {
			if v == "" || v == t.Value {
				return true
			}
		}
	}
	return false
}
