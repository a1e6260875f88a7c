package tidb

import (
	"container/heap"

	"github.com/cespare/xxhash/v2"
)

// maxDedupEntries bounds the memory of one span's dedup set (about 40
// bytes an entry). Past it, new rows are not remembered: a region that
// then fails before its resolved ts passes them may send some twice (the
// sinks' replay handling covers that case; see DESIGN.md).
const maxDedupEntries = 1 << 20

// dedup remembers the rows a span has handed out above its resolved ts,
// by a 64-bit hash of (key, commit ts). Rows at or below the span's
// resolved ts are forgotten: no region is ever resubscribed below it.
type dedup struct {
	seen     map[uint64]uint64 // hash → commit ts
	byTs     tsHeap
	overflow bool
	dig      xxhash.Digest
}

func (d *dedup) hash(key []byte, commitTs uint64) uint64 {
	d.dig.Reset()
	_, _ = d.dig.Write(key)
	var b [8]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(commitTs >> (8 * i))
	}
	_, _ = d.dig.Write(b[:])
	return d.dig.Sum64()
}

// add reports whether the row is new, and remembers it.
func (d *dedup) add(key []byte, commitTs uint64) bool {
	h := d.hash(key, commitTs)
	if d.seen == nil {
		d.seen = map[uint64]uint64{}
	}
	if ts, ok := d.seen[h]; ok && ts == commitTs {
		return false
	}
	if len(d.seen) >= maxDedupEntries {
		d.overflow = true
		return true
	}
	d.seen[h] = commitTs
	heap.Push(&d.byTs, tsEntry{ts: commitTs, h: h})
	return true
}

// prune forgets rows at or below ts.
func (d *dedup) prune(ts uint64) {
	for len(d.byTs) > 0 && d.byTs[0].ts <= ts {
		e := heap.Pop(&d.byTs).(tsEntry)
		if d.seen[e.h] == e.ts {
			delete(d.seen, e.h)
		}
	}
	if len(d.seen) == 0 {
		d.seen = nil // let a large map go
		d.byTs = nil
		d.overflow = false
	}
}

type tsEntry struct{ ts, h uint64 }

type tsHeap []tsEntry

func (h tsHeap) Len() int           { return len(h) }
func (h tsHeap) Less(i, j int) bool { return h[i].ts < h[j].ts }
func (h tsHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tsHeap) Push(x any)        { *h = append(*h, x.(tsEntry)) }
func (h *tsHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
