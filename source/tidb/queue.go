package tidb

import (
	"sync"

	"github.com/raftcdc/raftcdc/model"
)

// rawRow is one committed change of a key, as the kv client assembles it
// from TiKV's events (a COMMITTED row, or a COMMIT matched to its
// PREWRITE).
type rawRow struct {
	key, value, oldValue []byte
	delete               bool
	startTs, commitTs    uint64
}

// spanEvent is what a span subscription hands its consumer: rows, or a new
// resolved ts for the whole span (every row at or below it has been
// handed out before it).
type spanEvent struct {
	span *spanSub
	rows []rawRow
	// changes are the rows already decoded (nil entries, or nil: not yet).
	changes  []*model.RowChange
	resolved uint64
}

// eventQueue is an unbounded queue between the kv client's workers and one
// consumer. It never blocks a producer: a stream carries the regions of
// many tables, and a table whose pipeline waits (memory quota, flush
// barrier) must not stop the others — among them the slowest table, whose
// progress is what frees the quota (see processor/DESIGN.md, "Memory").
type eventQueue struct {
	mu     sync.Mutex
	items  []spanEvent
	err    error
	notify chan struct{}
}

func newEventQueue() *eventQueue {
	return &eventQueue{notify: make(chan struct{}, 1)}
}

func (q *eventQueue) push(ev spanEvent) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// fail makes the consumer's next take return err (the first error wins).
func (q *eventQueue) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take returns everything queued, or the error once the queue is empty of
// events that came before it.
func (q *eventQueue) take() ([]spanEvent, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	if len(items) == 0 {
		return nil, q.err
	}
	return items, nil
}

func (q *eventQueue) wait() <-chan struct{} { return q.notify }
