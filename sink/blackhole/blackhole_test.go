package blackhole

import (
	"context"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

func TestCounts(t *testing.T) {
	ctx := context.Background()
	s, err := Open("blackhole://")
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.OpenTable(ctx, model.TableName{ID: 1, Schema: "s", Table: "a"}, sink.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.OpenTable(ctx, model.TableName{ID: 2, Schema: "s", Table: "b"}, sink.TableOptions{})
	rows := func(ts ...model.Ts) []*model.Txn {
		out := make([]*model.Txn, len(ts))
		for i, t := range ts {
			out[i] = &model.Txn{CommitTs: t, Rows: []*model.RowChange{{CommitTs: t}}}
		}
		return out
	}
	if err := a.Write(ctx, rows(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, rows(2, 9)); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Stats(), (Stats{WrittenRows: 5, FlushedRows: 2, Flushes: 1}); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	a.Flush(ctx, 100)
	b.Close() // drops 2 and 9
	if got, want := s.Stats(), (Stats{WrittenRows: 5, FlushedRows: 3, Flushes: 2}); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if err := b.Write(ctx, rows(10)); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

func TestBadURIs(t *testing.T) {
	for _, uri := range []string{"blackhole://x", "blackhole://?a=1", "file:///x", "blackhole:///x/y", "blackhole"} {
		if _, err := Open(uri); err == nil {
			t.Errorf("Open(%q) succeeded", uri)
		}
	}
}

func TestRateLimitsRowsPerSecond(t *testing.T) {
	s, err := Open("blackhole://?rate=200")
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := s.OpenTable(t.Context(), model.TableName{ID: 1, Schema: "s", Table: "a"}, sink.TableOptions{})
	start := time.Now()
	for i := 0; i < 5; i++ {
		txn := &model.Txn{CommitTs: model.Ts(i + 1)}
		for j := 0; j < 20; j++ {
			txn.Rows = append(txn.Rows, &model.RowChange{CommitTs: txn.CommitTs})
		}
		if err := ts.Write(t.Context(), []*model.Txn{txn}); err != nil {
			t.Fatal(err)
		}
	}
	// 100 rows at 200/s: the last write may start only after ~0.4 s.
	if el := time.Since(start); el < 350*time.Millisecond {
		t.Fatalf("100 rows at rate=200 took %v", el)
	}
	for _, bad := range []string{"blackhole://?rate=0", "blackhole://?rate=-1", "blackhole://?rate=x", "blackhole://?rate=1&rate=2"} {
		if _, err := Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}
