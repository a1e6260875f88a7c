// Package causality orders the transactions a SQL sink's worker pool runs:
// transactions that touch a common key run one after another in the order
// they were added (commit order), and the others run in parallel.
//
// A transaction is described by the hashes of its keys (sink/sqlsink
// hashes every primary- and unique-key value of its rows, before and
// after). Hashes are folded into a fixed number of slots; each slot
// remembers the last transaction that touched it. Adding a transaction
// makes it depend on the unfinished last transaction of each of its slots,
// so it becomes ready only when every earlier transaction it might
// conflict with has finished. A hash collision costs some parallelism,
// never correctness.
package causality

import (
	"context"
	"errors"
	"sync"
)

// DefaultSlots is the slot count New uses for 0. 65536 slots make a false
// conflict between two random keys a 1-in-65536 event, for 512 KiB.
const DefaultSlots = 1 << 16

// ErrClosed is returned by Next once the detector is closed.
var ErrClosed = errors.New("causality: detector closed")

// Detector tracks the dependencies of added transactions and hands out
// those whose dependencies have finished. All methods are safe for
// concurrent use.
type Detector[T any] struct {
	mu    sync.Mutex
	slots []*Node[T]
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
	slots      []int // where Add put this node, cleared on Done so that
	// finished transactions (and their rows) are not kept alive
}

// New returns a detector with the given number of slots (0: DefaultSlots).
func New[T any](slots int) *Detector[T] {
	if slots <= 0 {
		slots = DefaultSlots
	}
	return &Detector[T]{slots: make([]*Node[T], slots), groups: map[uint64]*fifo[*Node[T]]{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Add registers a transaction of a group (any number: the SQL sinks use
// one per table) touching the given key hashes. It never blocks: the
// transaction waits inside the detector until every earlier transaction
// sharing a slot with it has been marked Done. A transaction with no keys
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
		i := int(k % uint64(len(d.slots)))
		last := d.slots[i]
		d.slots[i] = n
		if last != n {
			n.slots = append(n.slots, i)
		}
		if last == nil || last == n || last.finished {
			continue
		}
		// Several keys of n may map to slots whose last writer is the same
		// transaction; depend on it once.
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
			continue // emptied by TryNext since it was queued
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
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, ErrClosed
		}
		n := d.popLocked()
		d.mu.Unlock()
		if n != nil {
			return n, nil
		}
		select {
		case <-d.wake:
		case <-d.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TryNext returns, without blocking, the oldest ready transaction of the
// group if accept agrees to take it (nil otherwise); workers use it to
// batch ready transactions of one table into one downstream transaction.
// Ready transactions never conflict with each other, so any set of them
// may be applied together.
func (d *Detector[T]) TryNext(group uint64, accept func(T) bool) *Node[T] {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.groups[group]
	if d.closed || q == nil || q.len() == 0 || !accept(q.peek().Item) {
		return nil
	}
	return d.takeLocked(q)
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
	for _, i := range n.slots {
		if d.slots[i] == n {
			d.slots[i] = nil
		}
	}
	n.slots = nil
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
