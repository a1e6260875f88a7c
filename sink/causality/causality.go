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
	mu     sync.Mutex
	slots  []*Node[T]
	ready  []*Node[T] // FIFO of transactions with no unfinished dependency
	head   int
	closed bool

	// wake holds one token while ready may be non-empty, so a waiting
	// worker notices without a condition variable (which cannot select on
	// a context).
	wake chan struct{}
	done chan struct{}
}

// Node is one added transaction.
type Node[T any] struct {
	Item T
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
	return &Detector[T]{slots: make([]*Node[T], slots), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Add registers a transaction touching the given key hashes. It never
// blocks: the transaction waits inside the detector until every earlier
// transaction sharing a slot with it has been marked Done. A transaction
// with no keys conflicts with nothing.
func (d *Detector[T]) Add(item T, keys []uint64) *Node[T] {
	n := &Node[T]{Item: item}
	d.mu.Lock()
	defer d.mu.Unlock()
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
	d.ready = append(d.ready, n)
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// popLocked takes the oldest ready transaction; if more remain it leaves
// the wake token for the next worker.
func (d *Detector[T]) popLocked() *Node[T] {
	if d.head == len(d.ready) {
		return nil
	}
	n := d.ready[d.head]
	d.ready[d.head] = nil
	d.head++
	if d.head == len(d.ready) {
		d.ready, d.head = d.ready[:0], 0
	} else {
		select {
		case d.wake <- struct{}{}:
		default:
		}
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

// TryNext returns the oldest ready transaction if accept agrees to take it,
// without blocking; workers use it to batch ready transactions (of one
// table, say) into one downstream transaction. Ready transactions never
// conflict with each other, so any set of them may be applied together.
func (d *Detector[T]) TryNext(accept func(T) bool) *Node[T] {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.head == len(d.ready) || !accept(d.ready[d.head].Item) {
		return nil
	}
	return d.popLocked()
}

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
	return len(d.ready) - d.head
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
