package sqltest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/sinktest"
)

// FenceEnv is what the writer-fence scenarios need from a dialect's test:
// a new sink instance of one changefeed (as another capture would open)
// with extra URI parameters, and the downstream table's rows.
type FenceEnv struct {
	Open func(t *testing.T, params string) sink.Sink
	Rows func(t *testing.T, s *model.TableSchema) [][]model.Value
}

// fenceModes are the statement modes both dialects have, each a different
// path to COMMIT: multi-statement requests, prepared statements one at a
// time (or pipelined), plain text one at a time.
var fenceModes = []string{"", "multi-stmt-enable=false", "multi-stmt-enable=false&cache-prep-stmts=false"}

func openOn(t *testing.T, ctx context.Context, s sink.Sink, schema *model.TableSchema) (sink.TableSink, error) {
	ts, err := s.OpenTable(ctx, schema.Table, sink.TableOptions{Schema: schema})
	if err == nil {
		t.Cleanup(func() { ts.Close() })
	}
	return ts, err
}

// CheckFencedWriters runs the writer-fence scenarios (sqlsink/DESIGN.md,
// "Fenced writers"): once a table's next writer has opened it, a
// transaction of the earlier writer — one that was about to commit when
// the next writer opened — commits nothing; a claim stalled under its lock
// keeps the next writer waiting, so whatever the earlier writer commits
// lands before the next writer's first write.
func CheckFencedWriters(t *testing.T, e FenceEnv) {
	for i, params := range fenceModes {
		t.Run(fmt.Sprintf("params=%q", params), func(t *testing.T) {
			checkFencedWriters(t, fmt.Sprintf("fence%d", i), func(t *testing.T) sink.Sink { return e.Open(t, params) }, e.Rows)
		})
	}
}

func checkFencedWriters(t *testing.T, prefix string, open func(t *testing.T) sink.Sink, rows func(t *testing.T, s *model.TableSchema) [][]model.Value) {
	t.Run("AnEarlierWritersTransactionCommitsNothing", func(t *testing.T) {
		schema := KVSchema(prefix+"_a", "t")
		old, err := openOn(t, context.Background(), open(t), schema)
		if err != nil {
			t.Fatal(err)
		}
		WriteFlush(t, old, Txn(10, Insert(schema, KV(1, "old", 1, 1))))
		cur, err := openOn(t, context.Background(), open(t), schema)
		if err != nil {
			t.Fatal(err)
		}
		err = TryWriteFlush(old, Txn(11, Insert(schema, KV(2, "stale", 2, 2))))
		if !errors.Is(err, sink.ErrFenced) {
			t.Fatalf("the earlier writer's flush after the claim returned %v, want sink.ErrFenced", err)
		}
		WriteFlush(t, cur, Txn(12, Insert(schema, KV(3, "new", 3, 3))))
		RequireRows(t, schema, rows(t, schema), [][]model.Value{KV(1, "old", 1, 1), KV(3, "new", 3, 3)})
	})
	t.Run("AStalledClaimHoldsTheNextWriterBack", func(t *testing.T) {
		schema := KVSchema(prefix+"_b", "t")
		l := sinktest.NewStalledLease()
		type opened struct {
			ts  sink.TableSink
			err error
		}
		first, second := make(chan opened, 1), make(chan opened, 1)
		a, b := open(t), open(t)
		go func() {
			ts, err := openOn(t, sink.WithLease(context.Background(), l.Holds), a, schema)
			first <- opened{ts, err}
		}()
		l.WaitChecking(t)
		go func() {
			ts, err := openOn(t, context.Background(), b, schema)
			second <- opened{ts, err}
		}()
		// The second claim waits for the first one's row lock: nothing can
		// be polled for that, so give it time to have finished if it could.
		select {
		case o := <-second:
			t.Fatalf("the second writer claimed the table while the first claim held it (err %v)", o.err)
		case <-time.After(500 * time.Millisecond):
		}
		l.Release()
		var o1, o2 opened
		for _, p := range []struct {
			ch <-chan opened
			o  *opened
		}{{first, &o1}, {second, &o2}} {
			select {
			case *p.o = <-p.ch:
			case <-time.After(time.Minute):
				t.Fatal("a claim did not finish within a minute of the release")
			}
			if p.o.err != nil {
				t.Fatal(p.o.err)
			}
		}
		if err := TryWriteFlush(o1.ts, Txn(10, Insert(schema, KV(1, "stale", 1, 1)))); !errors.Is(err, sink.ErrFenced) {
			t.Fatalf("the first writer's flush returned %v, want sink.ErrFenced", err)
		}
		WriteFlush(t, o2.ts, Txn(11, Insert(schema, KV(2, "new", 2, 2))))
		RequireRows(t, schema, rows(t, schema), [][]model.Value{KV(2, "new", 2, 2)})
	})
	t.Run("AnEarlierWritersLargeTransactionCommitsNothing", func(t *testing.T) {
		// Large enough to be streamed through its own downstream
		// transaction (sqlsink's streamRows), which checks the fence at its
		// commit.
		schema := KVSchema(prefix+"_d", "t")
		old, err := openOn(t, context.Background(), open(t), schema)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := openOn(t, context.Background(), open(t), schema); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		err = nil
		for part := 0; part < 5 && err == nil; part++ {
			rows := make([]*model.RowChange, 4096)
			for i := range rows {
				id := int64(part*4096 + i)
				rows[i] = Insert(schema, KV(id, "stale", id, 0))
			}
			err = old.Write(ctx, []*model.Txn{Txn(20, rows...)})
		}
		if err == nil {
			err = old.Flush(ctx, 20)
		}
		if !errors.Is(err, sink.ErrFenced) {
			t.Fatalf("the earlier writer's large transaction returned %v, want sink.ErrFenced", err)
		}
		if got := rows(t, schema); len(got) != 0 {
			t.Fatalf("%d rows of the fenced transaction are downstream", len(got))
		}
	})
	t.Run("AClaimAfterTheLeaseLapsedFails", func(t *testing.T) {
		schema := KVSchema(prefix+"_c", "t")
		ctx := sink.WithLease(context.Background(), func() bool { return false })
		if _, err := openOn(t, ctx, open(t), schema); !errors.Is(err, sink.ErrLeaseExpired) {
			t.Fatalf("a claim without a lease returned %v, want sink.ErrLeaseExpired", err)
		}
	})
}
