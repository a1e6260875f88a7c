package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// LeaderSync says how a leader writes its own new entries.
type LeaderSync string

const (
	// LeaderSyncParallel: the leader hands its new entries to replication at
	// once and writes them to its own log at the same time (Raft thesis
	// §10.2.1, what etcd's leader does). A command is acknowledged only once
	// it is also in the leader's own log (Stores.WaitDurable).
	LeaderSyncParallel LeaderSync = "parallel"
	// LeaderSyncSerial: the leader writes and syncs its entries before
	// replicating them, as hashicorp/raft does by itself.
	LeaderSyncSerial LeaderSync = "serial"
)

// DefaultLeaderSync is parallel: it takes one fsync off every write's path
// (bench/RESULTS.md, "Metadata writes").
const DefaultLeaderSync = LeaderSyncParallel

// ParseLeaderSync checks a --raft-leader-sync value; "" is the default.
func ParseLeaderSync(s string) (LeaderSync, error) {
	switch LeaderSync(s) {
	case "":
		return DefaultLeaderSync, nil
	case LeaderSyncParallel, LeaderSyncSerial:
		return LeaderSync(s), nil
	}
	return "", fmt.Errorf("--raft-leader-sync %q is not a mode: use parallel or serial", s)
}

// errLogClosed: an entry handed to the log after Close.
var errLogClosed = errors.New("the Raft log is closed")

// parallelLog sits between Raft's log cache and the durable log store. On a
// follower, and whenever the node is not leader, it is the store: StoreLogs
// returns once the entries are synced, which is what a follower's
// acknowledgement promises. On the leader StoreLogs only queues the entries
// and returns, so that hashicorp/raft replicates them while one goroutine
// writes and syncs them (several queued batches in one write). hashicorp/raft
// counts the leader's own copy when StoreLogs returns, so an entry can
// commit on one follower's sync before the leader's finishes; that is why
// Node.Apply answers only after WaitDurable: an acknowledged command is in a
// majority of logs, as with the serial write. What is weaker (as in etcd
// 3.4): a leader that loses power in the sync's window loses its unwritten
// tail, and if the one follower that has the entries is also lost before
// an election, an applied-but-unacknowledged entry can be replaced. See
// storage/DESIGN.md.
//
// Entries queued or being written stay readable (GetLog, LastIndex): Raft
// reads them back to replicate. They are contiguous, because only the
// leader queues and anything else first waits for the queue to be written.
type parallelLog struct {
	store    raft.LogStore
	leader   atomic.Pointer[func() bool]
	onFailed func(error)

	// writeMu keeps the writer and the synchronous path from writing the
	// store at the same time (they never should; this makes sure).
	writeMu sync.Mutex

	mu      sync.Mutex
	queue   []*raft.Log // accepted as leader, not yet handed to the store
	writing []*raft.Log // handed to the store, not yet written
	durable uint64      // every entry up to here is in the store
	err     error       // a failed write: nothing is accepted after it
	closed  bool
	changed chan struct{} // closed when durable, the queue or err change
	kick    chan struct{}
	done    chan struct{}
}

func newParallelLog(store raft.LogStore, onFailed func(error)) (*parallelLog, error) {
	last, err := store.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read the last index of the Raft log: %w", err)
	}
	if onFailed == nil {
		onFailed = func(err error) {
			// Raft already counted these entries as the leader's; a node
			// that could not write them must not go on answering.
			panic(fmt.Sprintf("raft log: %v; the node stops so that it never acknowledges what its log does not hold", err))
		}
	}
	p := &parallelLog{store: store, onFailed: onFailed, durable: last,
		changed: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan struct{})}
	go p.run()
	return p, nil
}

// setLeader tells the log how to know the node leads. Until it is set the
// log writes synchronously.
func (p *parallelLog) setLeader(f func() bool) { p.leader.Store(&f) }

func (p *parallelLog) isLeader() bool {
	f := p.leader.Load()
	return f != nil && (*f)()
}

// notifyLocked wakes everyone waiting for a change. p.mu is held.
func (p *parallelLog) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// pendingLocked returns the queued or in-flight entry idx, if any.
func (p *parallelLog) pendingLocked(idx uint64) *raft.Log {
	for _, list := range [][]*raft.Log{p.writing, p.queue} {
		if len(list) > 0 && idx >= list[0].Index && idx <= list[len(list)-1].Index {
			return list[idx-list[0].Index]
		}
	}
	return nil
}

func (p *parallelLog) lastPendingLocked() uint64 {
	if n := len(p.queue); n > 0 {
		return p.queue[n-1].Index
	}
	if n := len(p.writing); n > 0 {
		return p.writing[n-1].Index
	}
	return 0
}

func (p *parallelLog) StoreLog(l *raft.Log) error { return p.StoreLogs([]*raft.Log{l}) }

func (p *parallelLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if p.isLeader() {
		p.mu.Lock()
		switch last := p.lastPendingLocked(); {
		case p.err != nil:
			p.mu.Unlock()
			return p.err
		case p.closed:
			p.mu.Unlock()
			return errLogClosed
		case last == 0 || logs[0].Index == last+1:
			p.queue = append(p.queue, logs...)
			p.notifyLocked()
			p.mu.Unlock()
			select {
			case p.kick <- struct{}{}:
			default:
			}
			return nil
		}
		// Not a continuation of what is queued (never seen from Raft): write
		// it in order, synchronously.
		p.mu.Unlock()
	}
	if err := p.drain(context.Background()); err != nil {
		return err
	}
	p.writeMu.Lock()
	err := p.store.StoreLogs(logs)
	p.writeMu.Unlock()
	if err != nil {
		return err
	}
	p.mu.Lock()
	if last := logs[len(logs)-1].Index; last > p.durable {
		p.durable = last
		p.notifyLocked()
	}
	p.mu.Unlock()
	return nil
}

// run writes what the leader queued, everything queued so far in one write.
func (p *parallelLog) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			closed := p.closed || p.err != nil
			p.mu.Unlock()
			if closed {
				return
			}
			<-p.kick
			continue
		}
		batch := p.queue
		p.queue, p.writing = nil, batch
		p.mu.Unlock()

		p.writeMu.Lock()
		err := p.store.StoreLogs(batch)
		p.writeMu.Unlock()

		p.mu.Lock()
		p.writing = nil
		if err != nil {
			p.err = fmt.Errorf("writing the leader's entries %d to %d failed: %w", batch[0].Index, batch[len(batch)-1].Index, err)
			p.queue = nil
			p.notifyLocked()
			p.mu.Unlock()
			p.onFailed(p.err)
			return
		}
		if last := batch[len(batch)-1].Index; last > p.durable {
			p.durable = last
		}
		p.notifyLocked()
		p.mu.Unlock()
	}
}

// drain waits until nothing queued is left unwritten.
func (p *parallelLog) drain(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.err != nil {
			p.mu.Unlock()
			return p.err
		}
		if len(p.queue) == 0 && len(p.writing) == 0 {
			p.mu.Unlock()
			return nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the Raft log's queued entries to be written: %w", ctx.Err())
		}
	}
}

// WaitDurable returns once entry idx is in this node's log store.
func (p *parallelLog) WaitDurable(ctx context.Context, idx uint64) error {
	for {
		p.mu.Lock()
		if p.durable >= idx {
			p.mu.Unlock()
			return nil
		}
		if p.err != nil {
			p.mu.Unlock()
			return p.err
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for entry %d to reach this node's Raft log: %w", idx, ctx.Err())
		}
	}
}

func (p *parallelLog) FirstIndex() (uint64, error) {
	first, err := p.store.FirstIndex()
	if err != nil || first != 0 {
		return first, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, list := range [][]*raft.Log{p.writing, p.queue} {
		if len(list) > 0 {
			return list[0].Index, nil
		}
	}
	return 0, nil
}

func (p *parallelLog) LastIndex() (uint64, error) {
	p.mu.Lock()
	last := p.lastPendingLocked()
	p.mu.Unlock()
	if last != 0 {
		return last, nil
	}
	return p.store.LastIndex()
}

func (p *parallelLog) GetLog(idx uint64, log *raft.Log) error {
	p.mu.Lock()
	if l := p.pendingLocked(idx); l != nil {
		*log = *l
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return p.store.GetLog(idx, log)
}

// DeleteRange waits for the queue first, so that a range never meets
// entries that are still on their way to the store.
func (p *parallelLog) DeleteRange(min, max uint64) error {
	if err := p.drain(context.Background()); err != nil {
		return err
	}
	p.writeMu.Lock()
	err := p.store.DeleteRange(min, max)
	p.writeMu.Unlock()
	if err != nil {
		return err
	}
	p.mu.Lock()
	// A follower's log losing its tail to a new leader: the indexes will be
	// written again, and are not durable until they are.
	if min <= p.durable && max >= p.durable {
		p.durable = min - 1
		p.notifyLocked()
	}
	p.mu.Unlock()
	return nil
}

// close writes what is queued and stops the writer. The store itself is
// closed by its owner afterwards.
func (p *parallelLog) close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
