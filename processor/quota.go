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
//
// Tables ahead of the barrier (resolved ts above it) stop earlier, at ahead
// bytes: what they read cannot be flushed before the barrier moves anyway,
// and the tables holding it back need the room. Those near it (within the
// read window: near) read on up to near, so that more than the one table
// holding the barrier back can work while the barrier moves. near stops a
// quarter short of the limit: that quarter is the room the tables holding
// the barrier back read into. Without it the near tables filled the quota
// to the limit, every batch of the table holding the barrier back went
// past it, and past the limit a table spills what it buffers: a catch-up
// with a 256 MiB quota wrote nearly every row to disk and read it back
// (9.6 GB for 4.8 million rows, bench/RESULTS.md).
type memQuota struct {
	limit int64
	ahead int64
	near  int64 // what tables near the barrier may fill the quota to

	mu      sync.Mutex
	used    int64
	peak    int64
	waiting int           // acquirers blocked now
	changed chan struct{} // closed and replaced whenever used goes down
	// blocked is signalled (without blocking) when an acquirer starts to
	// wait: the processor then reports its position promptly, since what
	// frees memory is the barrier moving, and the barrier moves only on
	// reports.
	blocked chan struct{}
}

// newMemQuota: ahead <= 0 or above limit means limit.
func newMemQuota(limit, ahead int64) *memQuota {
	if ahead <= 0 || ahead > limit {
		ahead = limit
	}
	near := max(ahead, limit-limit/4)
	return &memQuota{limit: limit, ahead: ahead, near: near, changed: make(chan struct{}), blocked: make(chan struct{}, 1)}
}

// acquire blocks until n bytes fit under ahead (or the quota is empty, so
// that one batch bigger than the quota still goes through alone), or under
// three quarters of the limit if near says the caller is near the barrier,
// unless mayForce says the caller holds the barrier back. near and
// mayForce (either may be nil) are asked again whenever memory is released
// or the caller's wake channel fires.
func (q *memQuota) acquire(ctx context.Context, n int64, near, mayForce func() bool, wake func() <-chan struct{}) error {
	for {
		// Take the wake-up channel before looking, so that a change between
		// the look and the wait is not missed.
		var w <-chan struct{}
		if wake != nil {
			w = wake()
		}
		q.mu.Lock()
		if q.used == 0 || q.used+n <= q.ahead || (near != nil && q.used+n <= q.near && near()) || (mayForce != nil && mayForce()) {
			q.used += n
			q.peak = max(q.peak, q.used)
			q.mu.Unlock()
			return nil
		}
		ch := q.changed
		q.waiting++
		q.mu.Unlock()
		select {
		case q.blocked <- struct{}{}:
		default:
		}
		var err error
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-ch:
		case <-w:
		}
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// waiters is how many acquirers are blocked now.
func (q *memQuota) waiters() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting
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

// overLimit says whether a table should spill what it buffers. Tables far
// from the barrier spill as soon as the quota is over its limit; a table
// near it (near says so) holds rows that are flushed next, and writing
// them to disk only to read them back costs more than holding them, so it
// spills only past the limit by the reserve as well.
func (q *memQuota) overLimit(near func() bool) bool {
	q.mu.Lock()
	used := q.used
	q.mu.Unlock()
	if used <= q.limit {
		return false
	}
	return used > q.limit+(q.limit-q.near) || near == nil || !near()
}

func (q *memQuota) usage() (used, peak, limit int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.used, q.peak, q.limit
}
