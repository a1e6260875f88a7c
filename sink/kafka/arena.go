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
	free [arenaClasses][][]byte
	kept int // bytes in free
}

const (
	// Chunks come in sizes minChunk << class. A write's first chunk is the
	// smallest and each further one of the same write doubles, up to
	// maxChunk: a table writing a few rows holds 64 KiB, not 1 MiB, and
	// with hundreds of tables writing small batches at once that is the
	// difference between megabytes and a gigabyte in flight.
	minChunk     = 64 << 10
	arenaClasses = 5
	maxChunk     = minChunk << (arenaClasses - 1) // 1 MiB
	// A message larger than maxArenaValue gets its own allocation.
	maxArenaValue = maxChunk / 4
	// arenaKeep bounds the bytes of free chunks kept per sink (one per
	// changefeed and capture); what goes back beyond it is left to the
	// collector.
	arenaKeep = 64 << 20
)

// chunkClass is the smallest class whose chunks hold n bytes.
func chunkClass(n int) int {
	c := 0
	for c < arenaClasses-1 && minChunk<<c < n {
		c++
	}
	return c
}

func (a *valueArena) get(class int) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.free[class]); n > 0 {
		c := a.free[class][n-1]
		a.free[class][n-1] = nil
		a.free[class] = a.free[class][:n-1]
		a.kept -= cap(c)
		return c[:0]
	}
	return make([]byte, 0, minChunk<<class)
}

func (a *valueArena) put(chunks [][]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range chunks {
		if a.kept+cap(c) > arenaKeep {
			continue
		}
		class := chunkClass(cap(c))
		a.free[class] = append(a.free[class], c)
		a.kept += cap(c)
	}
}

// groupValues is one ackGroup's share of the arena. Only the Write that
// owns the group appends to it; release runs once, when the group ends.
type groupValues struct {
	arena  *valueArena
	cur    []byte
	chunks [][]byte
	next   int // the class of the group's next chunk
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
		class := max(g.next, chunkClass(len(v)))
		g.next = min(class+1, arenaClasses-1)
		g.cur = g.arena.get(class)
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
