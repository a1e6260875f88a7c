// Package causality orders the transactions a SQL sink's worker pool runs:
// transactions that touch a common key run one after another in the order
// they were added (commit order), and the others run in parallel.
//
// A transaction is described by the 64-bit hashes of its keys
// (sink/sqlsink hashes every primary- and unique-key value of its rows,
// before and after). The detector remembers, per hash, the last unfinished
// transaction that touched it. Adding a transaction makes it depend on the
// last transaction of each of its hashes, so it becomes ready only when
// every earlier transaction it might conflict with has finished. A hash
// collision costs some parallelism, never correctness.
//
// Hashes are kept exactly (a map of the hashes in flight), not folded into
// a fixed array of slots as TiCDC does: with thousands of transactions in
// flight, 65,536 slots made about one in ten of an insert-only workload's
// transactions wait for an unrelated one, and every such wait became a
// tiny downstream transaction of its own once its predecessor finished.
package causality

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Next once the detector is closed.
var ErrClosed = errors.New("causality: detector closed")

// Detector tracks the dependencies of added transactions and hands out
// those whose dependencies have finished. All methods are safe for
// concurrent use.
type Detector[T any] struct {
	mu sync.Mutex
	// last is the last unfinished transaction per key hash; entries go at
	// Done. fold > 0 folds hashes modulo fold first: tests use it to make
	// unrelated transactions collide.
	last map[uint64]*Node[T]
	fold uint64
	// Ready transactions (no unfinished dependency), FIFO per group (a
	// table, for the SQL sinks), and the groups that have some, in the
	// order they became non-empty: Next serves the groups in turn, and a
	// worker batching one group's transactions takes them from its queue
	// without scanning the others'.
	groups  map[uint64]*fifo[*Node[T]]
	order   fifo[uint64]
	pending int
	closed  bool

	// wake holds one token while ready may be non-empty, so a waiting
	// worker notices without a condition variable (which cannot select on
	// a context).
	wake chan struct{}
	done chan struct{}
}

// fifo is a slice-backed queue.
type fifo[E any] struct {
	items []E
	head  int
}

func (q *fifo[E]) push(e E) { q.items = append(q.items, e) }
func (q *fifo[E]) len() int { return len(q.items) - q.head }
func (q *fifo[E]) pop() E {
	var zero E
	e := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	return e
}
func (q *fifo[E]) peek() E { return q.items[q.head] }

// Node is one added transaction.
type Node[T any] struct {
	Item  T
	group uint64
	// Waited reports whether the transaction had to wait for an earlier
	// one when it was added (a conflict), for metrics.
	Waited bool

	deps       int
	dependents []*Node[T]
	finished   bool
	keys       []uint64 // the hashes this node is the last of, dropped on
	// Done so that finished transactions (and their rows) are not kept
	// alive
}

// New returns a detector. fold > 0 folds key hashes modulo fold, so that
// unrelated keys collide (for tests of that path); 0 keeps them exact.
func New[T any](fold int) *Detector[T] {
	return &Detector[T]{last: map[uint64]*Node[T]{}, fold: uint64(max(fold, 0)), groups: map[uint64]*fifo[*Node[T]]{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Add registers a transaction of a group (any number: the SQL sinks use
// one per table) touching the given key hashes. It never blocks: the
// transaction waits inside the detector until every earlier transaction
// sharing a key hash with it has been marked Done. A transaction with no keys
// conflicts with nothing.
func (d *Detector[T]) Add(item T, group uint64, keys []uint64) *Node[T] {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addLocked(item, group, keys)
}

// AddAll adds several transactions of one group, in order, at once: the
// workers see them together and can batch them, instead of waking for the
// first one alone.
func (d *Detector[T]) AddAll(group uint64, items []T, keys func(i int) []uint64) []*Node[T] {
	out := make([]*Node[T], len(items))
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, it := range items {
		out[i] = d.addLocked(it, group, keys(i))
	}
	return out
}

func (d *Detector[T]) addLocked(item T, group uint64, keys []uint64) *Node[T] {
	n := &Node[T]{Item: item, group: group}
	for _, k := range keys {
		if d.fold > 0 {
			k %= d.fold
		}
		last := d.last[k]
		d.last[k] = n
		if last != n {
			n.keys = append(n.keys, k)
		}
		if last == nil || last == n || last.finished {
			continue
		}
		// Several keys of n may have the same last writer; depend on it
		// once.
		if k := len(last.dependents); k > 0 && last.dependents[k-1] == n {
			continue
		}
		last.dependents = append(last.dependents, n)
		n.deps++
	}
	n.Waited = n.deps > 0
	if n.deps == 0 {
		d.pushLocked(n)
	}
	return n
}

func (d *Detector[T]) pushLocked(n *Node[T]) {
	q := d.groups[n.group]
	if q == nil {
		q = &fifo[*Node[T]]{}
		d.groups[n.group] = q
	}
	if q.len() == 0 {
		d.order.push(n.group)
	}
	q.push(n)
	d.pending++
	d.signalLocked()
}

func (d *Detector[T]) signalLocked() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// popLocked takes the oldest ready transaction of the group whose turn it
// is; if more remain it leaves the wake token for the next worker.
func (d *Detector[T]) popLocked() *Node[T] {
	for d.order.len() > 0 {
		g := d.order.pop()
		q := d.groups[g]
		if q == nil || q.len() == 0 {
			continue // emptied by NextBatch since it was queued
		}
		n := d.takeLocked(q)
		if q.len() > 0 {
			d.order.push(g) // the group's next turn
		}
		if d.pending > 0 {
			d.signalLocked()
		}
		return n
	}
	return nil
}

func (d *Detector[T]) takeLocked(q *fifo[*Node[T]]) *Node[T] {
	n := q.pop()
	d.pending--
	if q.len() == 0 {
		delete(d.groups, n.group)
	}
	return n
}

// Next blocks until a transaction is ready, the context ends or the
// detector is closed.
func (d *Detector[T]) Next(ctx context.Context) (*Node[T], error) {
	b, err := d.NextBatch(ctx, nil, func(T) int { return 1 }, 0)
	if err != nil {
		return nil, err
	}
	return b[0], nil
}

// NextBatch blocks like Next for a ready transaction, then takes, in the
// same critical section, more ready transactions of its group in order
// while their total size stays within max (the first is taken whatever
// its size), appending them all to dst. Taking the batch at once matters:
// when each worker takes one transaction per lock, idle workers woken
// together take turns on the same group and split its ready transactions
// into many small batches.
func (d *Detector[T]) NextBatch(ctx context.Context, dst []*Node[T], size func(T) int, max int) ([]*Node[T], error) {
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return dst, ErrClosed
		}
		n := d.popLocked()
		if n != nil {
			dst = append(dst, n)
			total := size(n.Item)
			if q := d.groups[n.group]; q != nil {
				for q.len() > 0 && total+size(q.peek().Item) <= max {
					total += size(q.peek().Item)
					dst = append(dst, d.takeLocked(q))
				}
			}
			d.mu.Unlock()
			return dst, nil
		}
		d.mu.Unlock()
		select {
		case <-d.wake:
		case <-d.done:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}

// Group is the group a transaction was added with.
func (n *Node[T]) Group() uint64 { return n.group }

// Done marks a transaction finished, making ready the transactions that
// waited only for it.
func (d *Detector[T]) Done(n *Node[T]) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n.finished {
		return
	}
	n.finished = true
	for _, k := range n.keys {
		if d.last[k] == n {
			delete(d.last, k)
		}
	}
	n.keys = nil
	for _, dep := range n.dependents {
		dep.deps--
		if dep.deps == 0 {
			d.pushLocked(dep)
		}
	}
	n.dependents = nil
}

// Pending is the number of ready transactions not yet handed out.
func (d *Detector[T]) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending
}

// Close wakes every waiting Next with ErrClosed.
func (d *Detector[T]) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.closed = true
		close(d.done)
	}
}
