package tidb

import (
	"github.com/cespare/xxhash/v2"
)

// maxDedupEntries bounds the memory of one span's dedup log (16 bytes an
// entry). Past it, new rows are not remembered: a region that then fails
// before its resolved ts passes them may send some twice (the sinks'
// replay handling covers that case; see DESIGN.md).
const maxDedupEntries = 1 << 22

// dedup remembers the rows a span has handed out above its resolved ts,
// by a 64-bit hash of (key, commit ts), so that what a resubscribed region
// sends again is dropped. Rows at or below the span's resolved ts are
// forgotten: no region is ever resubscribed below it.
//
// Remembering is an append to a log; only after a region has been
// resubscribed (arm) is the log turned into a set that rows are checked
// against, until the span's resolved ts passes everything in it. A span
// whose regions never fail pays 16 bytes and an append per row above its
// resolved ts, and nothing more.
type dedup struct {
	log      []dedupRec
	minTs    uint64
	filter   map[uint64]uint64 // hash → commit ts, while armed
	armed    bool
	overflow bool
	dig      xxhash.Digest
}

type dedupRec struct{ h, ts uint64 }

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

// arm starts checking rows against everything remembered: a region of the
// span was resubscribed below rows it may have sent.
func (d *dedup) arm() { d.armed = true }

// add reports whether the row is new, and remembers it.
func (d *dedup) add(key []byte, commitTs uint64) bool {
	h := d.hash(key, commitTs)
	if d.armed {
		if d.filter == nil {
			d.filter = make(map[uint64]uint64, len(d.log))
			for _, r := range d.log {
				d.filter[r.h] = r.ts
			}
		}
		if ts, ok := d.filter[h]; ok && ts == commitTs {
			return false
		}
		d.filter[h] = commitTs
	}
	if len(d.log) >= maxDedupEntries {
		d.overflow = true
		return true
	}
	if len(d.log) == 0 || commitTs < d.minTs {
		d.minTs = commitTs
	}
	d.log = append(d.log, dedupRec{h: h, ts: commitTs})
	return true
}

// prune forgets rows at or below ts.
func (d *dedup) prune(ts uint64) {
	if len(d.log) == 0 || d.minTs > ts {
		return
	}
	keep := d.log[:0]
	next := ^uint64(0)
	for _, r := range d.log {
		if r.ts > ts {
			keep = append(keep, r)
			next = min(next, r.ts)
		} else if d.filter != nil && d.filter[r.h] == r.ts {
			delete(d.filter, r.h)
		}
	}
	d.minTs = next
	if len(keep) == 0 {
		// Let a large log go, and stop checking: nothing is left that a
		// resubscribed region could send again.
		d.log, d.filter, d.armed, d.overflow = nil, nil, false, false
		return
	}
	d.log = keep
}
