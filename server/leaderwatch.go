package server

import (
	"context"
	"sync"

	"github.com/hashicorp/raft"
)

// leaderWatch tells whoever waits for a Raft leader that one became known,
// as soon as Raft learns it. Waiting for a leader used to mean polling with
// a doubling sleep (up to 640 ms): right after a cluster formed, a capture's
// registration slept through the election and the first changefeed's
// tables started up to a second late; after a failover every waiting
// write did the same.
type leaderWatch struct {
	mu sync.Mutex
	ch chan struct{}
}

func newLeaderWatch() *leaderWatch { return &leaderWatch{ch: make(chan struct{})} }

// next is closed at the next leader change. Take it before looking at the
// leader, so that a change in between is not missed.
func (w *leaderWatch) next() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

// changed wakes every waiter.
func (w *leaderWatch) changed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.ch)
	w.ch = make(chan struct{})
}

// observeLeaders registers a Raft observer for leader changes and turns
// them into wake-ups until ctx ends.
func (n *Node) observeLeaders(ctx context.Context) {
	obs := make(chan raft.Observation, 8)
	// Non-blocking: Raft drops an observation the channel has no room for
	// rather than wait, and one wake-up covers any number of changes.
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	for {
		select {
		case <-ctx.Done():
			return
		case <-obs:
			n.leaders.changed()
		}
	}
}
