//go:build bench

package bench

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source/datagen"
)

var datagenWindow = flag.Duration("datagen-window", 8*time.Second, "datagen: measurement window per round")

// drainV2 reads history through SubscribeTxns on every table in parallel for
// the window and returns rows/s and approximate bytes/s (model.RowChange's
// ApproxSize, what the memory quota counts).
func drainV2(t *testing.T, uri string, history, window time.Duration) (rows, bytes float64) {
	src, err := datagen.Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	start := model.TsFromTime(time.Now().Add(-history))
	tables, err := src.TablesAt(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var n, size uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	for _, tb := range tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub, err := src.SubscribeTxns(ctx, tb, start)
			if err != nil {
				t.Error(err)
				return
			}
			defer sub.Close()
			var r, s uint64
			for {
				b, err := sub.Next(ctx)
				if err != nil {
					break
				}
				for _, txn := range b.Txns {
					r += uint64(len(txn.Rows))
					s += uint64(txn.ApproxSize())
				}
			}
			mu.Lock()
			n += r
			size += s
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	return float64(n) / el, float64(size) / el
}

// TestBenchDatagen measures datagen v2 alone (typed rows of ~40 columns
// with before images, generated on the subscriber's goroutine) in two
// shapes, two rounds each. (The first round's untyped stream it used to
// be compared with is gone.)
func TestBenchDatagen(t *testing.T) {
	history := 150 * time.Second
	shapes := []struct{ name, uri string }{
		{"single-row txns", "datagen://?tables=8&rate=20000"},
		{"10-row 2-table txns, DDL every 10s", "datagen://?tables=8&rate=20000&txn-rows=10&txn-tables=2&ddl-every=10s"},
	}
	for _, sh := range shapes {
		var v2, v2b []float64
		for round := 0; round < 2; round++ {
			b, bb := drainV2(t, sh.uri, history, *datagenWindow)
			v2 = append(v2, b)
			v2b = append(v2b, bb)
			t.Logf("%s round %d: v2 %.0f rows/s (%.1f MB/s)", sh.name, round, b, bb/1e6)
		}
		fmt.Printf("RESULT datagen %q v2=%.0f rows/s v2-bytes=%.1f MB/s\n", sh.name, (v2[0]+v2[1])/2, (v2b[0]+v2b[1])/2e6)
	}
}
