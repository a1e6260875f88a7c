package processor

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// gate is the lease fence in front of every sink Write and Flush (see
// DESIGN.md, "Writers are fenced"). It is open only while the capture holds
// its lease under the term it was opened with; enter checks that at every
// call, by the clock, and hands the caller a context that carries the lease
// (sinks check it right before a write becomes visible) and is cancelled
// when the lease lapses. It follows renewals: a call may outlast the lease
// it began under as long as the lease is renewed under the same term (a
// fixed deadline at the lease's end failed every storage-sink flush that
// waited longer than the lease for its flush round).
// Once the lease lapses — however briefly, which shows as a new term — the
// gate stays closed until the manager has proven the capture is still
// registered and caught up (a fenced probe), since the owner may have moved
// its tables meanwhile. Callers that are inside when it closes finish their
// call (their deadline still stops them at the visible write).
type gate struct {
	lease Lease // nil: no lease (tests): open means open, with no deadline

	mu     sync.Mutex
	open   bool
	term   uint64 // the lease term the gate was opened under
	active int
	opened chan struct{} // closed when the gate opens; replaced when it closes
	// lapsed is poked when enter finds the lease gone, so the manager
	// starts proving the capture at once rather than at its next tick.
	lapsed kick
}

func newGate(lease Lease) *gate {
	return &gate{lease: lease, opened: make(chan struct{}), lapsed: newKick()}
}

// enter waits until the gate is open under a valid lease and counts the
// caller in; it must call the returned leave exactly once, and make its
// sink call with the returned context.
func (g *gate) enter(ctx context.Context) (context.Context, func(), error) {
	for {
		g.mu.Lock()
		if g.open {
			var until time.Time
			ok := true
			if g.lease != nil {
				var term uint64
				until, term = g.lease.Lease()
				ok = term == g.term && time.Now().Before(until)
			}
			if ok {
				g.active++
				g.mu.Unlock()
				cctx, cancel := ctx, context.CancelFunc(func() {})
				if g.lease != nil {
					cctx, cancel = followLease(ctx, g.lease, g.term, until)
				}
				var once sync.Once
				return cctx, func() {
					once.Do(func() {
						cancel()
						g.mu.Lock()
						g.active--
						g.mu.Unlock()
					})
				}, nil
			}
			g.closeLocked()
			g.lapsed.poke()
		}
		ch := g.opened
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// followLease returns a context that carries the lease of term and is
// cancelled, with cause sink.ErrLeaseExpired, once that lease lapses: at
// each lease end it looks again and re-arms while the lease was renewed
// under the same term.
func followLease(ctx context.Context, lease Lease, term uint64, until time.Time) (context.Context, context.CancelFunc) {
	holds := func() bool {
		u, t := lease.Lease()
		return t == term && time.Now().Before(u)
	}
	cctx, cancelCause := context.WithCancelCause(sink.WithLease(ctx, holds))
	var mu sync.Mutex
	done := false
	var timer *time.Timer
	var arm func(at time.Time)
	arm = func(at time.Time) {
		timer = time.AfterFunc(time.Until(at), func() {
			mu.Lock()
			defer mu.Unlock()
			if done {
				return
			}
			if u, t := lease.Lease(); t == term && time.Now().Before(u) {
				arm(u)
				return
			}
			done = true
			cancelCause(sink.ErrLeaseExpired)
		})
	}
	mu.Lock()
	arm(until)
	mu.Unlock()
	return cctx, func() {
		mu.Lock()
		done = true
		timer.Stop()
		mu.Unlock()
		cancelCause(context.Canceled)
	}
}

func (g *gate) closeLocked() bool {
	if !g.open {
		return false
	}
	g.open = false
	g.opened = make(chan struct{})
	return true
}

// close closes the gate; it reports whether it was open.
func (g *gate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closeLocked()
}

// openUnder opens the gate for holders of lease term.
func (g *gate) openUnder(term uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.term = term
	if g.open {
		return false
	}
	g.open = true
	close(g.opened)
	return true
}

// valid reports whether the gate is open under a lease that still holds.
func (g *gate) valid() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return false
	}
	if g.lease == nil {
		return true
	}
	until, term := g.lease.Lease()
	return term == g.term && time.Now().Before(until)
}

func (g *gate) isOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// drained reports that the gate is closed and no sink call is in flight.
func (g *gate) drained() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.open && g.active == 0
}

// tsCell holds a timestamp that one goroutine sets and others wait on; every
// change closes the channel the waiters hold, so nobody misses an update.
type tsCell struct {
	mu      sync.Mutex
	v       model.Ts
	changed chan struct{}
}

func newTsCell() *tsCell { return &tsCell{changed: make(chan struct{})} }

func (c *tsCell) set(v model.Ts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v == v {
		return
	}
	c.v = v
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *tsCell) get() (model.Ts, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v, c.changed
}

// kick is a level-triggered wake-up: any number of pokes before the
// receiver looks collapse into one.
type kick chan struct{}

func newKick() kick { return make(kick, 1) }

func (k kick) poke() {
	select {
	case k <- struct{}{}:
	default:
	}
}

// backoff is an exponential backoff with full jitter, so that the captures
// of a cluster that lost its leader together do not retry in lockstep.
type backoff struct {
	base, max time.Duration
	attempt   int
}

func (b *backoff) next() time.Duration {
	d := b.base << min(b.attempt, 20)
	if d <= 0 || d > b.max {
		d = b.max
	}
	b.attempt++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.attempt = 0 }

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// broadcast wakes every waiter once per fire.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

func (b *broadcast) fire() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

// wait returns a channel closed at the next fire.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}
