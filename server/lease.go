package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The capture lease (see processor/DESIGN.md, "Writers are fenced"). A node
// may let its processors write to sinks only while it holds a lease: it
// made a round trip to the leader — a read index, which the leader answers
// only after confirming with a quorum that it still leads — that began less
// than `fence` ago, by its own monotonic clock. The leader notes when it
// last heard from each node, and the owner re-dispatches a lost capture's
// tables only once fence + margin have passed since then. A round trip the
// capture starts, rather than heartbeats it receives, keeps the rule safe
// on links that carry traffic one way only.

// leaseKeeper is one node's lease and, on the leader, when it last heard
// from every node.
type leaseKeeper struct {
	fence time.Duration

	mu         sync.Mutex
	validUntil time.Time
	// term changes every time the lease lapses and is taken anew: holders
	// that saw the old term must treat it as lost even if the new one is
	// valid, because assignments may have changed while it was lapsed.
	term  uint64
	heard map[string]time.Time
}

func newLeaseKeeper(fence time.Duration) *leaseKeeper {
	return &leaseKeeper{fence: fence, heard: map[string]time.Time{}}
}

// renewed records a successful round trip that began at start.
func (l *leaseKeeper) renewed(start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	until := start.Add(l.fence)
	if !start.Before(l.validUntil) {
		// Begun after the lease had ended: a lapse, however short.
		l.term++
		l.validUntil = until
		return
	}
	if until.After(l.validUntil) {
		l.validUntil = until
	}
}

// lease is the lease in force: valid until validUntil, under term.
func (l *leaseKeeper) lease() (time.Time, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil, l.term
}

func (l *leaseKeeper) heardFrom(node string, at time.Time) {
	if node == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if at.After(l.heard[node]) {
		l.heard[node] = at
	}
}

func (l *leaseKeeper) lastHeard() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]time.Time, len(l.heard))
	for k, v := range l.heard {
		out[k] = v
	}
	return out
}

// Lease is this node's capture lease: writes to sinks are allowed until
// validUntil, and only to holders that saw the same term (it changes after
// every lapse). Without a lease keeper (CDC not enabled) there is none.
func (n *Node) Lease() (validUntil time.Time, term uint64) {
	if n.lease == nil {
		return time.Time{}, 0
	}
	return n.lease.lease()
}

// LastHeard is, as far as this node knows, when each node last made a
// round trip to it as the leader (its own entry is always now while it
// leads). The owner uses it to wait out a lost capture's lease.
func (n *Node) LastHeard() map[string]time.Time {
	if n.lease == nil {
		return nil
	}
	out := n.lease.lastHeard()
	if n.raft.State() == raft.Leader {
		out[n.id] = time.Now()
	}
	return out
}

// LeaseFence is how long a round trip to the leader keeps the lease.
func (n *Node) LeaseFence() time.Duration {
	if n.lease == nil {
		return 0
	}
	return n.lease.fence
}

// runLease renews the lease every fence/4 until ctx ends. A failed round
// trip (no leader yet, a leader change) is tried again when a leader is
// next known, or after fence/20: waiting a whole fence/4 after a failover
// kept every capture's sink writes blocked that much longer.
func (n *Node) runLease(ctx context.Context) error {
	for {
		elected := n.leaders.next()
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, n.lease.fence/2)
		err := n.leaseRoundTrip(rctx)
		cancel()
		wait := n.lease.fence/4 - time.Since(start)
		if err == nil {
			n.lease.renewed(start)
			elected = nil
		} else {
			if ctx.Err() == nil {
				n.log.Debug().Err(err).Msg("capture lease not renewed")
			}
			wait = n.lease.fence / 20
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-elected:
		case <-t.C:
		}
		t.Stop()
	}
}

// leaseRoundTrip confirms with the leader (through a quorum) that it
// leads: on the leader itself by VerifyLeader, elsewhere by asking the
// leader for its read index, which makes it note this node.
func (n *Node) leaseRoundTrip(ctx context.Context) error {
	if n.raft.State() == raft.Leader {
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return fmt.Errorf("confirming leadership: %w", err)
		}
		return nil
	}
	_, addr := n.leaderAPI()
	if addr == "" {
		return errNoLeader()
	}
	resp, err := n.internalRequest(ctx, http.MethodGet, addr, "/internal/v1/read-index", nil)
	if err != nil {
		return fmt.Errorf("asking the leader at %s for its read index: %w", addr, err)
	}
	defer resp.Body.Close()
	var out struct {
		Index uint64 `json:"index"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return fmt.Errorf("leader at %s answered %s to read-index", addr, resp.Status)
	}
	return nil
}
