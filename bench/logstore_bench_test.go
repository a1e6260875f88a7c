//go:build bench

package bench

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/storage"
	"github.com/rs/zerolog"
)

// TestBenchLogStore appends to each Raft log store alone, the way a Raft
// leader does (one synced append per batch), in interleaved rounds: single
// entries (an unbatched write) and batches of 64. It isolates what the log
// store costs from replication and the HTTP path.
func TestBenchLogStore(t *testing.T) {
	value := bytes.Repeat([]byte("v"), 300)
	type key struct {
		store storage.LogStore
		batch int
	}
	total := map[key]time.Duration{}
	count := map[key]int{}
	dirs := map[storage.LogStore]*storage.Stores{}
	next := map[storage.LogStore]uint64{}
	for _, kind := range []storage.LogStore{storage.LogStoreWAL, storage.LogStoreBoltDB} {
		s, err := storage.Open(t.TempDir(), storage.Options{LogStore: kind, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		dirs[kind], next[kind] = s, 1
	}
	for round := 0; round < 4; round++ {
		for _, kind := range []storage.LogStore{storage.LogStoreWAL, storage.LogStoreBoltDB} {
			for _, batch := range []int{1, 64} {
				n := 400 / batch * batch
				if batch > 1 {
					n = 64 * 40
				}
				s := dirs[kind]
				start := time.Now()
				for i := 0; i < n; i += batch {
					logs := make([]*raft.Log, batch)
					for j := range logs {
						logs[j] = &raft.Log{Index: next[kind], Term: 1, Type: raft.LogCommand, Data: value, AppendedAt: time.Now()}
						next[kind]++
					}
					if err := s.Log.StoreLogs(logs); err != nil {
						t.Fatal(err)
					}
				}
				if round > 0 {
					total[key{kind, batch}] += time.Since(start)
					count[key{kind, batch}] += n
				}
			}
		}
	}
	for _, batch := range []int{1, 64} {
		w, b := key{storage.LogStoreWAL, batch}, key{storage.LogStoreBoltDB, batch}
		wr := float64(count[w]) / total[w].Seconds()
		br := float64(count[b]) / total[b].Seconds()
		fmt.Printf("RESULT logstore batch=%d wal=%.0f entries/s boltdb=%.0f entries/s wal/boltdb=%.2f\n", batch, wr, br, wr/br)
	}
}
