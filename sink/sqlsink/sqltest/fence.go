package sqltest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// FenceEnv is what the writer-fence scenarios need from a dialect's test:
// a new sink instance of one changefeed (as another capture would open),
// and the downstream table's rows.
type FenceEnv struct {
	// Prefix starts the scenarios' database names (one per variant).
	Prefix string
	Open   func(t *testing.T) sink.Sink
	Rows   func(t *testing.T, s *model.TableSchema) [][]model.Value
}

// stalledLease holds, but its first check blocks until released: the
// claimer then sits between its lease check and its commit, as a capture
// frozen there by SIGSTOP does.
type stalledLease struct {
	once              sync.Once
	checking, release chan struct{}
}

func (l *stalledLease) holds() bool {
	first := false
	l.once.Do(func() { first = true })
	if first {
		close(l.checking)
		<-l.release
	}
	return true
}

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
	t.Run("AnEarlierWritersTransactionCommitsNothing", func(t *testing.T) {
		schema := KVSchema(e.Prefix+"_a", "t")
		old, err := openOn(t, context.Background(), e.Open(t), schema)
		if err != nil {
			t.Fatal(err)
		}
		WriteFlush(t, old, Txn(10, Insert(schema, KV(1, "old", 1, 1))))
		cur, err := openOn(t, context.Background(), e.Open(t), schema)
		if err != nil {
			t.Fatal(err)
		}
		err = TryWriteFlush(old, Txn(11, Insert(schema, KV(2, "stale", 2, 2))))
		if !errors.Is(err, sink.ErrFenced) {
			t.Fatalf("the earlier writer's flush after the claim returned %v, want sink.ErrFenced", err)
		}
		WriteFlush(t, cur, Txn(12, Insert(schema, KV(3, "new", 3, 3))))
		RequireRows(t, schema, e.Rows(t, schema), [][]model.Value{KV(1, "old", 1, 1), KV(3, "new", 3, 3)})
	})
	t.Run("AStalledClaimHoldsTheNextWriterBack", func(t *testing.T) {
		schema := KVSchema(e.Prefix+"_b", "t")
		l := &stalledLease{checking: make(chan struct{}), release: make(chan struct{})}
		type opened struct {
			ts  sink.TableSink
			err error
		}
		first, second := make(chan opened, 1), make(chan opened, 1)
		a, b := e.Open(t), e.Open(t)
		go func() {
			ts, err := openOn(t, sink.WithLease(context.Background(), l.holds), a, schema)
			first <- opened{ts, err}
		}()
		select {
		case <-l.checking:
		case <-time.After(time.Minute):
			t.Fatal("the first claim did not reach its lease check within a minute")
		}
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
		close(l.release)
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
		RequireRows(t, schema, e.Rows(t, schema), [][]model.Value{KV(2, "new", 2, 2)})
	})
	t.Run("AnEarlierWritersLargeTransactionCommitsNothing", func(t *testing.T) {
		// Large enough to be streamed through its own downstream
		// transaction (sqlsink's streamRows), which checks the fence at its
		// commit.
		schema := KVSchema(e.Prefix+"_d", "t")
		old, err := openOn(t, context.Background(), e.Open(t), schema)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := openOn(t, context.Background(), e.Open(t), schema); err != nil {
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
		if got := e.Rows(t, schema); len(got) != 0 {
			t.Fatalf("%d rows of the fenced transaction are downstream", len(got))
		}
	})
	t.Run("AClaimAfterTheLeaseLapsedFails", func(t *testing.T) {
		schema := KVSchema(e.Prefix+"_c", "t")
		ctx := sink.WithLease(context.Background(), func() bool { return false })
		if _, err := openOn(t, ctx, e.Open(t), schema); !errors.Is(err, sink.ErrLeaseExpired) {
			t.Fatalf("a claim without a lease returned %v, want sink.ErrLeaseExpired", err)
		}
	})
}
