package kafka

import "sync"

// valueArena holds the bytes of row messages between encoding and the
// broker's acknowledgement. A Write's messages are copied into chunks that
// belong to its ackGroup, and the chunks come back for reuse when every
// message of the group has completed (acknowledged or failed: franz-go reads
// a record's value until then, not after).
//
// Measured with the broker and each side in their own processes
// (bench/RESULTS.md, Kafka): a message allocated per row cost the sink far
// more than its encoding. Every message was fresh memory, page-faulted
// and zeroed, and the collections that garbage caused emptied franz-go's
// sync.Pool of request buffers, so each produce request grew its buffer
// from 1 KiB again (runtime.growslice was 40 % of the sink's CPU). A
// sync.Pool of message buffers helped less than it should: it is emptied
// by the same collections, and a pooled buffer smaller than the next row
// grows anyway.
type valueArena struct {
	mu   sync.Mutex
	free [][]byte
}

const (
	// arenaChunk is the unit the arena hands out; a message larger than
	// maxArenaValue gets its own allocation.
	arenaChunk    = 1 << 20
	maxArenaValue = arenaChunk / 4
	// arenaKeep bounds the free chunks kept per sink (one per changefeed
	// and capture); what goes back beyond it is left to the collector.
	arenaKeep = 64
)

func (a *valueArena) get() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.free); n > 0 {
		c := a.free[n-1]
		a.free[n-1] = nil
		a.free = a.free[:n-1]
		return c[:0]
	}
	return make([]byte, 0, arenaChunk)
}

func (a *valueArena) put(chunks [][]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range chunks {
		if len(a.free) >= arenaKeep {
			return
		}
		a.free = append(a.free, c)
	}
}

// groupValues is one ackGroup's share of the arena. Only the Write that
// owns the group appends to it; release runs once, when the group ends.
type groupValues struct {
	arena  *valueArena
	cur    []byte
	chunks [][]byte
}

// copyOf returns v's bytes in memory that stays valid until release; nil
// stays nil (a tombstone is not an empty value).
func (g *groupValues) copyOf(v []byte) []byte {
	if v == nil {
		return nil
	}
	if len(v) > maxArenaValue {
		return append([]byte(nil), v...)
	}
	if cap(g.cur)-len(g.cur) < len(v) {
		g.cur = g.arena.get()
		g.chunks = append(g.chunks, g.cur[:0])
	}
	n := len(g.cur)
	g.cur = append(g.cur, v...)
	// Capped, so that nobody appending to one message writes into the
	// next.
	return g.cur[n : n+len(v) : n+len(v)]
}

func (g *groupValues) release() {
	if len(g.chunks) > 0 {
		g.arena.put(g.chunks)
		g.chunks, g.cur = nil, nil
	}
}
