package verify

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/connector"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
	"github.com/raftcdc/raftcdc/source/datagen"
)

type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// TestSubscriptionThroughFileSink runs the chain a changefeed runs —
// subscribe, write, flush at the resolved ts — and checks the result.
func TestSubscriptionThroughFileSink(t *testing.T) {
	ctx := context.Background()
	const uri = "datagen://?tables=4&rate=2000&mix=5:3:2&row-size=40"
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	pool := connector.NewPool(connector.WithDatagenOptions(datagen.WithClock(&fixedClock{t: now})))
	defer pool.Close()
	up, err := pool.Source(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	src := up.(source.SpanSource)
	dir := t.TempDir()
	snk, err := pool.OpenSink(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close()
	tables, err := src.TablesAt(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := model.TsFromTime(now.Add(-3 * time.Second))
	nowTs := model.TsFromTime(now)
	for _, tb := range tables {
		sub, err := src.SubscribeTxns(ctx, tb, start)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := snk.OpenTable(ctx, tb, sink.TableOptions{StartTs: start})
		if err != nil {
			t.Fatal(err)
		}
		for resolved := start; resolved < nowTs; {
			b, err := sub.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := ts.Write(ctx, b.Txns); err != nil {
				t.Fatal(err)
			}
			if err := ts.Flush(ctx, b.ResolvedTs); err != nil {
				t.Fatal(err)
			}
			resolved = b.ResolvedTs
		}
		sub.Close()
		ts.Close()
	}
	r, err := Run(ctx, Params{SourceURI: uri, SinkDir: dir, StartTs: start, CheckpointTs: nowTs})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Expected < 4*5990 || r.Found != r.Expected || r.Duplicates != 0 || r.OutOfOrder != 0 || r.Decoded != 0 {
		t.Fatalf("end to end: %s", r)
	}
	if r.Files < 4*(6000/datagen.MaxBatchRows+1) {
		t.Fatalf("%d files: flushes per batch did not happen", r.Files)
	}
}
