package exports

import (
	"strings"
	"testing"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

func TestRecordCacheIsBoundedInBytes(t *testing.T) {
	big := Record{Recorded: true, Creator: "alice", Params: &cwpexportv1.ExportParameters{
		Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: []string{strings.Repeat("x", 30<<10)}}}}}
	const max = 1 << 20
	c := newRecordCache(max)
	for id := int64(1); id <= 100; id++ {
		c.Add(id, big)
		if c.bytes > max {
			t.Fatalf("after %d records: %d bytes, more than %d", id, c.bytes, max)
		}
	}
	if n := c.lru.Len(); n < 10 || n > max/(60<<10) {
		t.Errorf("%d records of ~%d bytes kept within %d bytes", n, big.size(), max)
	}
	if _, ok := c.Get(1); ok {
		t.Errorf("the oldest record was kept")
	}
	if _, ok := c.Get(100); !ok {
		t.Errorf("the newest record was evicted")
	}
	// A record learnt meanwhile is not replaced by "unknown".
	c.AddAbsent(100, time.Now())
	if got, _ := c.Get(100); !got.Recorded {
		t.Errorf("AddAbsent replaced a record")
	}
	// Replacing a record accounts for the old one.
	before := c.bytes
	c.Add(100, Record{Recorded: true})
	if c.bytes >= before {
		t.Errorf("replacing a large record by a small one: %d bytes, was %d", c.bytes, before)
	}
}
