package meta

import (
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
)

// Cache remembers decoded records by key and revision, so that a reader
// that looks at the whole state again and again (the owner on every tick,
// each processor manager on every change) decodes only what changed since
// it last looked. A key's revision is the Raft index that last wrote it, so
// one (key, revision) always holds one value. Decoding every key on every
// pass was the largest CPU cost of a 12,000-table cluster (issue 16): a
// changefeed status lists every table, a position every table's checkpoint.
//
// What a Cache returns is shared between passes and must not be modified;
// the owner's reactor and the processors only read it (the owner's plans
// work on copies).
type Cache struct {
	mu    sync.Mutex
	m     map[string]*cacheEntry
	gen   uint64
	swept time.Time // SweepEvery's last sweep
}

type cacheEntry struct {
	rev uint64
	v   any
	err error
	gen uint64
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{m: map[string]*cacheEntry{}} }

// decode is decodeKind through the cache; a nil cache decodes every time.
func (c *Cache) decode(k Key, kv fsm.KV) (any, error) {
	if c == nil || kv.ModRev == 0 {
		return decodeKind(k, kv.Key, kv.Value)
	}
	c.mu.Lock()
	e, ok := c.m[kv.Key]
	if ok && e.rev == kv.ModRev {
		e.gen = c.gen
		c.mu.Unlock()
		return e.v, e.err
	}
	c.mu.Unlock()
	v, err := decodeKind(k, kv.Key, kv.Value)
	c.mu.Lock()
	c.m[kv.Key] = &cacheEntry{rev: kv.ModRev, v: v, err: err, gen: c.gen}
	c.mu.Unlock()
	return v, err
}

// decodeKV parses kv's key and decodes its value through the cache.
func (c *Cache) decodeKV(kv fsm.KV) (any, error) {
	k, err := ParseKey(kv.Key)
	if err != nil {
		return nil, &CorruptError{Key: kv.Key, Reason: err}
	}
	return c.decode(k, kv)
}

// Sweep forgets every key not read since the previous Sweep: call it after
// each full pass, so that deleted keys do not pile up.
func (c *Cache) Sweep() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.gen != c.gen {
			delete(c.m, k)
		}
	}
	c.gen++
}

// SweepEvery is Sweep for a reader that never makes a full pass (the API
// answering one request at a time): it sweeps once the interval every has
// passed since its last sweep, so that keys nobody read for that long are
// forgotten.
func (c *Cache) SweepEvery(every time.Duration, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	due := now.Sub(c.swept) >= every
	if due {
		c.swept = now
	}
	c.mu.Unlock()
	if due {
		c.Sweep()
	}
}

// Len is the number of cached keys (tests).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func cachedGet[T any](c *Cache, r fsm.Reader, key string) (v T, rev uint64, ok bool, err error) {
	return getWith[T](r, key, c.decodeKV)
}

// GetCapture is meta.GetCapture through the cache.
func (c *Cache) GetCapture(r fsm.Reader, id model.CaptureID) (*model.CaptureInfo, uint64, bool, error) {
	return cachedGet[*model.CaptureInfo](c, r, CaptureKey(id))
}

// GetInfo is meta.GetInfo through the cache.
func (c *Cache) GetInfo(r fsm.Reader, id model.ChangefeedID) (*model.ChangefeedInfo, uint64, bool, error) {
	return cachedGet[*model.ChangefeedInfo](c, r, ChangefeedInfoKey(id))
}

// GetStatus is meta.GetStatus through the cache.
func (c *Cache) GetStatus(r fsm.Reader, id model.ChangefeedID) (*model.ChangefeedStatus, uint64, bool, error) {
	return getStatusWith(r, id, c.decodeKV)
}

// GetTaskStatus is meta.GetTaskStatus through the cache.
func (c *Cache) GetTaskStatus(r fsm.Reader, cf model.ChangefeedID, cp model.CaptureID) (*model.TaskStatus, uint64, bool, error) {
	return cachedGet[*model.TaskStatus](c, r, TaskStatusKey(cf, cp))
}

// GetPosition is meta.GetPosition through the cache.
func (c *Cache) GetPosition(r fsm.Reader, cf model.ChangefeedID, cp model.CaptureID) (*model.TaskPosition, uint64, bool, error) {
	return cachedGet[*model.TaskPosition](c, r, TaskPositionKey(cf, cp))
}
