package processor

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// gate is the local fence: while it is closed no table may start a sink
// Write or Flush. Callers that are inside when it closes finish their call;
// drained reports when none are left, so that "paused" means no sink call
// is in flight.
type gate struct {
	mu     sync.Mutex
	open   bool
	active int
	opened chan struct{} // closed when the gate opens; replaced when it closes
}

func newGate() *gate {
	g := &gate{opened: make(chan struct{})}
	return g
}

// enter waits until the gate is open and counts the caller in; it must call
// the returned leave exactly once.
func (g *gate) enter(ctx context.Context) (leave func(), err error) {
	for {
		g.mu.Lock()
		if g.open {
			g.active++
			g.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					g.mu.Lock()
					g.active--
					g.mu.Unlock()
				})
			}, nil
		}
		ch := g.opened
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// setOpen opens or closes the gate; it reports whether that changed anything.
func (g *gate) setOpen(open bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open == open {
		return false
	}
	g.open = open
	if open {
		close(g.opened)
	} else {
		g.opened = make(chan struct{})
	}
	return true
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
