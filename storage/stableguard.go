package storage

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// errStoresClosed is what a read of the stable store answers once the
// stores are closed.
var errStoresClosed = errors.New("raft storage is closed")

// stableGuard stands between Raft and the stable store because a shut-down
// Raft can still write to it. hashicorp/raft's network transport runs
// heartbeats on the connection's goroutine; the handler checks for shutdown
// only on entry, and neither Raft.Shutdown nor the transport's Close waits
// for a handler in flight. A heartbeat carrying a higher term that got past
// the check then saves the term into a store the node has closed, and Raft
// panics on any stable-store error ("failed to save current term: database
// not open", seen in a test run). So Close waits for the calls in flight,
// and writes after it are dropped: only that shut-down Raft makes them, and
// it never reads them back.
type stableGuard struct {
	mu     sync.RWMutex
	closed bool
	s      raft.StableStore
}

var _ raft.StableStore = (*stableGuard)(nil)

func (g *stableGuard) Set(key, val []byte) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return nil
	}
	return g.s.Set(key, val)
}

func (g *stableGuard) Get(key []byte) ([]byte, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return nil, errStoresClosed
	}
	return g.s.Get(key)
}

func (g *stableGuard) SetUint64(key []byte, val uint64) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return nil
	}
	return g.s.SetUint64(key, val)
}

func (g *stableGuard) GetUint64(key []byte) (uint64, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return 0, errStoresClosed
	}
	return g.s.GetUint64(key)
}

// close waits for the calls in flight and turns later ones away.
func (g *stableGuard) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
