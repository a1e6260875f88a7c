package processor

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// pressure holds the data plane back while the node is starved of CPU, so
// that Raft's heartbeats, the owner and the API keep their timing: the
// control plane comes first. Go has no goroutine priorities, and Raft's
// goroutines queue behind every runnable pipeline goroutine; with tens of
// thousands of tables a node's run queue is long enough that heartbeats
// miss their deadline and the cluster loses its leader (issue 16).
//
// The signal is scheduling delay itself: a probe goroutine asks to wake
// every probeEvery and measures how late it wakes. When lateStart probes in
// a row wake past lateLimit the pressure is on, and every table's reader
// waits before asking its source for more, until the probe has woken on
// time for holdFor. One late wake-up alone is not starvation: a node
// catching up keeps both cores busy with its own pipelines, and an
// isolated delay of a little over 100 ms (a collection, a burst of
// runnable goroutines) paused every table for half a second or more,
// while Raft's timeouts are ten times that. Pipelines only
// pause between batches: nothing is dropped, the checkpoint lags instead.
type pressure struct {
	log zerolog.Logger

	mu     sync.Mutex
	on     bool
	streak int           // consecutive late probes
	relief chan struct{} // closed when the pressure ends
	calmAt time.Time     // the pressure ends at this time unless lateness comes back
}

const (
	probeEvery = 50 * time.Millisecond
	lateLimit  = 100 * time.Millisecond
	lateStart  = 2
	holdFor    = 500 * time.Millisecond
	// maxHold is the longest one reader waits: on a machine loaded by
	// other processes the pressure may never end, and the pipelines must
	// still progress (one batch per table per maxHold).
	maxHold = time.Second
)

func newPressure(log zerolog.Logger) *pressure { return &pressure{log: log} }

// run probes the scheduling delay until ctx ends.
func (p *pressure) run(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			p.observe(time.Now(), 0)
			return
		case <-t.C:
			// The ticker drops ticks it cannot deliver; the gap since the
			// last wake-up beyond one period is the delay.
			now := time.Now()
			p.observe(now, now.Sub(last)-probeEvery)
			last = now
		}
	}
}

// observe records one probe: the node woke late by late at now.
func (p *pressure) observe(now time.Time, late time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if late > lateLimit {
		p.streak++
		p.calmAt = now.Add(holdFor)
		if !p.on && p.streak >= lateStart {
			p.on = true
			p.relief = make(chan struct{})
			p.log.Warn().Dur("late", late).Msg("node starved of CPU: table pipelines wait so that Raft and the owner keep their timing")
		}
		return
	}
	p.streak = 0
	if p.on && !now.Before(p.calmAt) {
		p.on = false
		close(p.relief)
		p.log.Info().Msg("CPU pressure over: table pipelines continue")
	}
}

// wait returns at once without pressure, otherwise when it ends, after
// maxHold, or when ctx ends.
func (p *pressure) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	on, relief := p.on, p.relief
	p.mu.Unlock()
	if !on {
		return nil
	}
	t := time.NewTimer(maxHold)
	defer t.Stop()
	select {
	case <-relief:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// active says whether the pressure is on (tests, metrics).
func (p *pressure) active() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.on
}
