package processor

import (
	"context"
	"sync"
)

// memQuota bounds the bytes a processor holds between its sources and its
// sink: transactions read but not yet flushed. A table pipeline acquires
// before it takes a batch from its source (so a full quota throttles the
// source; nothing is dropped) and releases once the rows are flushed or
// thrown away.
//
// A plain semaphore can deadlock here. The flush barrier is the minimum
// resolved ts over all tables, so rows above it cannot be flushed until the
// slowest table reads further; if the rows of the fast tables fill the
// quota, the slowest table cannot read, and nothing moves again. So a table
// that holds the barrier back — its resolved ts is at or below the barrier —
// may always take its next batch (acquireForce). It reads at most until it
// passes the barrier, which bounds the overshoot to what one table reads to
// get past it.
type memQuota struct {
	limit int64

	mu      sync.Mutex
	used    int64
	peak    int64
	changed chan struct{} // closed and replaced whenever used goes down
}

func newMemQuota(limit int64) *memQuota {
	return &memQuota{limit: limit, changed: make(chan struct{})}
}

// acquire blocks until n bytes fit (or the quota is empty, so that one batch
// bigger than the quota still goes through alone), unless mayForce says the
// caller holds the barrier back; mayForce is asked again whenever memory is
// released or the caller's wake channel fires.
func (q *memQuota) acquire(ctx context.Context, n int64, mayForce func() bool, wake func() <-chan struct{}) error {
	for {
		// Take the wake-up channel before looking, so that a change between
		// the look and the wait is not missed.
		var w <-chan struct{}
		if wake != nil {
			w = wake()
		}
		q.mu.Lock()
		if q.used == 0 || q.used+n <= q.limit || (mayForce != nil && mayForce()) {
			q.used += n
			q.peak = max(q.peak, q.used)
			q.mu.Unlock()
			return nil
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-w:
		}
	}
}

func (q *memQuota) release(n int64) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	q.used -= n
	if q.used < 0 {
		q.used = 0
	}
	close(q.changed)
	q.changed = make(chan struct{})
	q.mu.Unlock()
}

func (q *memQuota) usage() (used, peak, limit int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.used, q.peak, q.limit
}
