package exports

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"google.golang.org/protobuf/proto"
)

// DefaultRecordCacheBytes bounds the memory of the registry records that
// reads of tasks keep at hand.
const DefaultRecordCacheBytes = 32 << 20

// recordCache keeps the records of recently read tasks, least recently used
// first out, within a bound on their estimated size in bytes: a task's
// parameters may take up to MaxParametersBytes, so a bound on the count
// alone would not bound the memory.
type recordCache struct {
	mu    sync.Mutex
	lru   *simplelru.LRU[int64, Record]
	bytes int
	max   int
}

func newRecordCache(maxBytes int) *recordCache {
	c := &recordCache{max: maxBytes}
	// The count is bounded by the bytes; the LRU wants a bound of its own.
	c.lru, _ = simplelru.NewLRU(1<<30, func(_ int64, v Record) { c.bytes -= v.size() })
	return c
}

// Get returns a task's record.
func (c *recordCache) Get(id int64) (Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Get(id)
}

// Add keeps a task's record, replacing any.
func (c *recordCache) Add(id int64, info Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.lru.Peek(id); ok {
		c.bytes -= old.size()
	}
	c.lru.Add(id, info)
	c.bytes += info.size()
	c.trim()
}

// Remove forgets a task's record, so that the next read takes it from the
// registry again (its final state is being recorded).
func (c *recordCache) Remove(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(id)
}

// AddAbsent keeps that the registry does not know a task, unless the task
// was recorded meanwhile.
func (c *recordCache) AddAbsent(id int64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.lru.Peek(id); ok {
		if old.Recorded {
			return
		}
		c.bytes -= old.size()
	}
	c.lru.Add(id, Record{absentSince: at})
	c.bytes += Record{}.size()
	c.trim()
}

func (c *recordCache) trim() {
	for c.bytes > c.max && c.lru.Len() > 1 {
		c.lru.RemoveOldest()
	}
}

// size estimates a record's memory: a fixed part for the entry and its
// strings' headers, twice the parameters' encoded size for their Go form.
func (r Record) size() int {
	n := 256 + len(r.RequestID) + len(r.Creator)
	if r.Params != nil {
		n += 2 * proto.Size(r.Params)
	}
	if r.Final != nil {
		n += 2 * proto.Size(r.Final)
	}
	return n
}
