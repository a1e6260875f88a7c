package blackhole

import (
	"context"
	"testing"

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
