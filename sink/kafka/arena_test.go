package kafka

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"
)

// A write of a few rows holds the smallest chunk, and a write that keeps
// going gets chunks that double up to the largest: hundreds of tables
// writing small batches at once must not hold a megabyte each.
func TestChunksGrowWithTheWrite(t *testing.T) {
	var a valueArena
	g := groupValues{arena: &a}
	g.copyOf(make([]byte, 100))
	if len(g.chunks) != 1 || cap(g.chunks[0]) != minChunk {
		t.Fatalf("a 100-byte write holds chunks of %v bytes, want one of %d", caps(g.chunks), minChunk)
	}
	var msgs [][]byte
	var want [][]byte
	for i := 0; i < 800; i++ { // 800 × 4 KiB ≈ 3.1 MiB
		v := bytes.Repeat([]byte{byte(i)}, 4096)
		msgs = append(msgs, g.copyOf(v))
		want = append(want, v)
	}
	got := caps(g.chunks)
	wantCaps := []int{64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 1 << 20, 1 << 20}
	if fmt.Sprint(got[:len(wantCaps)]) != fmt.Sprint(wantCaps) {
		t.Fatalf("chunk sizes %v, want them to start %v", got, wantCaps)
	}
	for i := range msgs {
		if !bytes.Equal(msgs[i], want[i]) {
			t.Fatalf("message %d changed while later ones were copied", i)
		}
		if cap(msgs[i]) != len(msgs[i]) {
			t.Fatalf("message %d has room to grow into the next one (len %d cap %d)", i, len(msgs[i]), cap(msgs[i]))
		}
	}
}

// A message comes in whole: one larger than the group's next chunk size
// gets a chunk of a class that holds it; one over maxArenaValue its own
// allocation.
func TestLargeMessagesGetAChunkThatHoldsThem(t *testing.T) {
	var a valueArena
	g := groupValues{arena: &a}
	v := make([]byte, 200<<10)
	g.copyOf(v)
	if cap(g.chunks[0]) != 256<<10 {
		t.Fatalf("a 200 KiB message went into a chunk of %d bytes", cap(g.chunks[0]))
	}
	big := make([]byte, maxArenaValue+1)
	if c := g.copyOf(big); len(g.chunks) != 1 || len(c) != len(big) {
		t.Fatalf("a message over maxArenaValue took an arena chunk (%d chunks)", len(g.chunks))
	}
	if g.copyOf(nil) != nil {
		t.Fatal("nil came back as an empty message")
	}
}

// Released chunks are reused by size, and the free list keeps at most
// arenaKeep bytes.
func TestReleasedChunksAreReusedAndBounded(t *testing.T) {
	var a valueArena
	g := groupValues{arena: &a}
	g.copyOf(make([]byte, 100))
	first := unsafe.SliceData(g.chunks[0])
	g.release()
	h := groupValues{arena: &a}
	h.copyOf(make([]byte, 100))
	if unsafe.SliceData(h.chunks[0]) != first {
		t.Fatal("a released chunk was not reused by the next write")
	}
	var chunks [][]byte
	for i := 0; i < 2*arenaKeep/maxChunk; i++ {
		chunks = append(chunks, make([]byte, 0, maxChunk))
	}
	a.put(chunks)
	if a.kept > arenaKeep {
		t.Fatalf("the free list keeps %d bytes, bound %d", a.kept, arenaKeep)
	}
	if a.kept < arenaKeep-maxChunk {
		t.Fatalf("the free list keeps only %d bytes of %d offered", a.kept, 2*arenaKeep)
	}
}

func caps(chunks [][]byte) []int {
	var out []int
	for _, c := range chunks {
		out = append(out, cap(c))
	}
	return out
}
