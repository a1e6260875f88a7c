package datagen

import (
	"sync"
	"sync/atomic"
	"time"
)

// MaxResolvedPerSecond bounds the resolved ts one source hands out per
// second over all its table subscriptions. A table at a low rate wakes only
// to be told "nothing up to now"; at the configured resolve-interval (50 ms
// by default) 33,000 tables on one node are 660,000 wake-ups a second, each
// running the table's pipeline loop, and the node starves (issue 16). Past
// this bound the interval grows with the subscriptions instead — as a real
// upstream's resolved ts advance is paced (TiKV advances every region's
// once per interval, not per change) — so the checkpoint lag grows
// gently with the table count while the CPU spent on resolving stays flat.
const MaxResolvedPerSecond = 20_000

// resolveClock paces the resolved ts of a source's table subscriptions: one
// timer per source and boundary instead of one timer per table. Resolved ts
// are due at multiples of the interval, each table at one of
// resolvePhases offsets, so the subscriptions that are only waiting to
// resolve share a few channels and timers.
type resolveClock struct {
	subs  atomic.Int64
	mu    sync.Mutex
	waits map[int64]chan struct{} // boundary (Unix ns) → closed once reached
}

// resolveInterval is the interval between two resolved ts of one
// subscription: the configured one, or longer when the subscriptions would
// hand out more than MaxResolvedPerSecond.
func (s *Source) resolveInterval() time.Duration {
	iv := s.hist.cfg.ResolveInterval
	if spread := time.Duration(s.rc.subs.Load()) * time.Second / MaxResolvedPerSecond; spread > iv {
		iv = spread.Round(time.Millisecond)
	}
	return iv
}

// resolvePhases spreads a source's subscriptions over this many phases of
// the interval: all of them waking at one instant is a herd of thousands of
// runnable goroutines that Raft's heartbeat goroutines queue behind.
const resolvePhases = 8

// phaseOf is a table's phase: its share of the interval.
func phaseOf(table int64, iv time.Duration) time.Duration {
	return time.Duration(table%resolvePhases) * (iv / resolvePhases)
}

// boundaryAfter is the first instant after t that is phase past a multiple
// of iv (counted from the Unix epoch).
func boundaryAfter(t time.Time, iv, phase time.Duration) time.Time {
	n := t.UnixNano() - int64(phase)
	return time.Unix(0, (n/int64(iv)+1)*int64(iv)+int64(phase))
}

// resolveAt answers a channel that is closed once the source's clock should
// have reached b. Every caller waiting for one boundary shares the channel
// and its one timer.
func (s *Source) resolveAt(b time.Time) <-chan struct{} {
	k := b.UnixNano()
	s.rc.mu.Lock()
	defer s.rc.mu.Unlock()
	if ch, ok := s.rc.waits[k]; ok {
		return ch
	}
	if s.rc.waits == nil {
		s.rc.waits = map[int64]chan struct{}{}
	}
	ch := make(chan struct{})
	s.rc.waits[k] = ch
	time.AfterFunc(max(b.Sub(s.clock.Now()), time.Millisecond), func() {
		s.rc.mu.Lock()
		delete(s.rc.waits, k)
		s.rc.mu.Unlock()
		close(ch)
	})
	return ch
}

// pendingBoundaries is how many shared resolve timers are pending (tests).
func (s *Source) pendingBoundaries() int {
	s.rc.mu.Lock()
	defer s.rc.mu.Unlock()
	return len(s.rc.waits)
}
