package sqlsink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/sqlsink/sqltest"
)

// recorder is a Backend whose connections record what they apply, after
// a pause that stands for the server's work.
type recorder struct {
	mu      sync.Mutex
	batches []int // rows per applied transaction
	pause   time.Duration
	fail    func(stmts []Stmt) error
}

func (r *recorder) Connect(context.Context) (Conn, error) { return &recConn{r: r}, nil }
func (r *recorder) Classify(err error) (bool, string) {
	if errors.Is(err, errTransient) {
		return true, "connection"
	}
	return false, "permanent"
}
func (r *recorder) PrepareTable(context.Context, model.TableName, *model.TableSchema, bool) error {
	return nil
}
func (r *recorder) ExecDDL(context.Context, *model.DDLEvent) (bool, error) { return true, nil }
func (r *recorder) Close() error                                           { return nil }

var errTransient = errors.New("connection lost")

type recConn struct{ r *recorder }

func (c *recConn) Apply(ctx context.Context, stmts []Stmt) error {
	if c.r.fail != nil {
		if err := c.r.fail(stmts); err != nil {
			return err
		}
	}
	n := 0
	for _, s := range stmts {
		n += len(s.Rows)
	}
	time.Sleep(c.r.pause)
	c.r.mu.Lock()
	c.r.batches = append(c.r.batches, n)
	c.r.mu.Unlock()
	return nil
}
func (c *recConn) Begin(context.Context) error        { return nil }
func (c *recConn) Exec(context.Context, []Stmt) error { return nil }
func (c *recConn) Commit(context.Context) error       { return nil }
func (c *recConn) Close() error                       { return nil }

// TestWorkersBatchFullTransactions: four table pipelines each flushing
// 2,000 single-row transactions at once, interleaved in the ready queue;
// a worker fills its batches with its table's transactions up to
// max-txn-row (256), not crumbs cut where another table's units sit. (One
// worker, so that the count is exact: with more, idle workers share a
// flush's units, which is parallelism, not a batching failure.)
func TestWorkersBatchFullTransactions(t *testing.T) {
	rec := &recorder{pause: time.Millisecond}
	cfg := DefaultConfig()
	cfg.WorkerCount = 1
	s := New("test", "test://", cfg, rec)
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for tb := 0; tb < 4; tb++ {
		schema := sqltest.KVSchema("db", fmt.Sprint("t", tb))
		ts, err := s.OpenTable(ctx, schema.Table, sink.TableOptions{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var txns []*model.Txn
			for i := 0; i < 2000; i++ {
				txns = append(txns, sqltest.Txn(model.Ts(10+i), sqltest.Insert(schema, sqltest.KV(int64(i), "v", -1, 0))))
			}
			sqltest.WriteFlush(t, ts, txns...)
		}()
	}
	wg.Wait()
	rows, n := 0, len(rec.batches)
	for _, b := range rec.batches {
		rows += b
	}
	if rows != 8000 {
		t.Fatalf("%d rows applied, want 8000", rows)
	}
	// At most ceil(2000/256) = 8 per table; a worker that waits for the
	// next flush of its table may cut one batch more per table.
	if n > 4*9 {
		t.Fatalf("%d transactions for 8,000 rows, want at most 36 (batches of up to 256 rows of one table): %v", n, rec.batches)
	}
	for _, b := range rec.batches {
		if b > 256 {
			t.Fatalf("a batch of %d rows, over max-txn-row", b)
		}
	}
}

func TestTransientErrorsAreRetriedIdempotently(t *testing.T) {
	var mu sync.Mutex
	attempts := 0
	var safeOnRetry bool
	rec := &recorder{fail: func(stmts []Stmt) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts <= 2 {
			return errTransient
		}
		safeOnRetry = stmts[0].Kind == Upsert
		return nil
	}}
	metrics := NewMetrics(nil)
	s := New("test", "test://u:secret@h/", DefaultConfig(), rec, WithMetrics(metrics), WithChangefeed("cf"))
	defer s.Close()
	schema := sqltest.KVSchema("db", "t")
	ts, err := s.OpenTable(context.Background(), schema.Table, sink.TableOptions{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	sqltest.WriteFlush(t, ts, sqltest.Txn(10, sqltest.Insert(schema, sqltest.KV(1, "a", -1, 0))))
	if attempts != 3 || !safeOnRetry {
		t.Fatalf("%d attempts, retry written as upsert: %v; want 3 and true (the lost commit may have landed)", attempts, safeOnRetry)
	}
	if got := testutil.ToFloat64(metrics.Retries.WithLabelValues("cf", "test", "connection")); got != 2 {
		t.Fatalf("retries metric %v, want 2", got)
	}
}

func TestPermanentErrorFailsTheSinkAndHidesThePassword(t *testing.T) {
	rec := &recorder{fail: func(stmts []Stmt) error {
		return &StmtError{Stmt: &stmts[0], Err: errors.New("Duplicate entry for user u:secret")}
	}}
	s := New("test", "test://u:secret@h/", DefaultConfig(), rec)
	defer s.Close()
	schema := sqltest.KVSchema("db", "orders")
	ts, _ := s.OpenTable(context.Background(), schema.Table, sink.TableOptions{Schema: schema})
	err := sqltest.TryWriteFlush(ts, sqltest.Txn(10, sqltest.Insert(schema, sqltest.KV(1, "a", -1, 0))))
	if err == nil || !strings.Contains(err.Error(), "db.orders") || !strings.Contains(err.Error(), "insert of 1 row(s)") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("permanent error: %v", err)
	}
	other := sqltest.KVSchema("db", "other")
	ts2, _ := s.OpenTable(context.Background(), other.Table, sink.TableOptions{Schema: other})
	if err2 := sqltest.TryWriteFlush(ts2, sqltest.Txn(11, sqltest.Insert(other, sqltest.KV(1, "a", -1, 0)))); err2 == nil {
		t.Fatal("another table of a failed sink kept writing")
	}
}

func TestTableCloseStopsItsWork(t *testing.T) {
	block := make(chan struct{})
	rec := &recorder{fail: func([]Stmt) error { <-block; return errTransient }}
	s := New("test", "test://", DefaultConfig(), rec)
	defer s.Close()
	schema := sqltest.KVSchema("db", "t")
	ts, _ := s.OpenTable(context.Background(), schema.Table, sink.TableOptions{Schema: schema})
	if err := ts.Write(context.Background(), []*model.Txn{sqltest.Txn(10, sqltest.Insert(schema, sqltest.KV(1, "a", -1, 0)))}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Flush(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("flush while the downstream hangs: %v", err)
	}
	closed := make(chan struct{})
	go func() { ts.Close(); close(closed) }()
	close(block) // the attempt in progress ends; the table is closed, so no retry
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
}
