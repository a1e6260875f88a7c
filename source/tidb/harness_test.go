package tidb

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/raftcdc/raftcdc/internal/tidbfake"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// The vocabulary of these tests: an env is a fake TiDB cluster (PD and
// TiKV stores speaking kvproto's protocols, data in TiDB's codec) and a
// Source connected to it; a feed is one table subscription read in the
// background into a recorder that can rebuild the table's state at any
// resolved ts and compare it with the fake's MVCC state.

type env struct {
	t       *testing.T
	c       *tidbfake.Cluster
	src     *Source
	metrics *Metrics
	reg     *prometheus.Registry
}

type envOption func(*tidbfake.Options, *[]Option)

func withStores(n int) envOption {
	return func(o *tidbfake.Options, _ *[]Option) { o.Stores = n }
}

func withSourceOptions(opts ...Option) envOption {
	return func(_ *tidbfake.Options, so *[]Option) { *so = append(*so, opts...) }
}

func newEnv(t *testing.T, eo ...envOption) *env {
	t.Helper()
	fo := tidbfake.Options{Stores: 3, ResolvedTsInterval: 50 * time.Millisecond, Logf: t.Logf}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	so := []Option{WithMetrics(m), WithStallBound(2*time.Second, time.Second), WithBackoff(10*time.Millisecond, 300*time.Millisecond),
		WithLogger(zerolog.New(zerolog.NewTestWriter(t)).Level(testLogLevel()))}
	for _, f := range eo {
		f(&fo, &so)
	}
	c, err := tidbfake.Start(fo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg, err := ParseURI("tidb://" + c.PDAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := Open(ctx, cfg, so...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return &env{t: t, c: c, src: src, metrics: m, reg: reg}
}

func (e *env) exec(db string, stmts ...string) {
	e.t.Helper()
	if err := e.c.Exec(db, stmts...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) commit(txn *tidbfake.Txn) uint64 {
	e.t.Helper()
	ts, err := txn.Commit()
	if err != nil {
		e.t.Fatal(err)
	}
	return ts
}

func (e *env) table(db, name string) model.TableName {
	e.t.Helper()
	info, err := e.c.TableInfo(db, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return model.TableName{ID: info.ID, Schema: db, Table: name}
}

// metric sums a counter or gauge over the series whose labels include the
// given pairs.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, last)
}

// feed reads one table subscription in the background.
type feed struct {
	t   *testing.T
	sub source.TxnSubscription

	mu       sync.Mutex
	txns     []*model.Txn
	resolved model.Ts
	err      error
	done     chan struct{}
	seen     map[string]bool
}

func (e *env) subscribe(table model.TableName, startTs model.Ts) *feed {
	e.t.Helper()
	sub, err := e.src.SubscribeTxns(context.Background(), table, startTs)
	if err != nil {
		e.t.Fatal(err)
	}
	f := &feed{t: e.t, sub: sub, resolved: startTs, done: make(chan struct{}), seen: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(f.done)
		for {
			b, err := sub.Next(ctx)
			f.mu.Lock()
			if err != nil {
				f.err = err
				f.mu.Unlock()
				return
			}
			for _, txn := range b.Txns {
				for _, r := range txn.Rows {
					if err := r.Validate(); err != nil {
						f.err = fmt.Errorf("invalid row: %w", err)
					}
					// A row is delivered once: a resubscribed region's
					// replay must be filtered out.
					var img []string
					for _, v := range r.Image() {
						img = append(img, v.Text())
					}
					id := fmt.Sprintf("%s %s@%d", r.Op, strings.Join(img, ","), r.CommitTs)
					if f.seen[id] {
						f.err = fmt.Errorf("row %s delivered twice", id)
					}
					f.seen[id] = true
					if r.CommitTs <= startTs || (b.ResolvedTs > 0 && r.CommitTs <= f.resolved) {
						f.err = fmt.Errorf("row at %d arrived after resolved ts %d (start %d)", r.CommitTs, f.resolved, startTs)
					}
				}
			}
			f.txns = append(f.txns, b.Txns...)
			if b.ResolvedTs < f.resolved {
				f.err = fmt.Errorf("resolved ts went back from %d to %d", f.resolved, b.ResolvedTs)
			}
			f.resolved = max(f.resolved, b.ResolvedTs)
			f.mu.Unlock()
		}
	}()
	e.t.Cleanup(func() {
		cancel()
		sub.Close()
		<-f.done
	})
	return f
}

func (f *feed) error() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// waitResolved waits until the feed's resolved ts reaches ts.
func (f *feed) waitResolved(ts model.Ts, timeout time.Duration) {
	f.t.Helper()
	eventually(f.t, timeout, fmt.Sprintf("resolved ts %d", ts), func() (bool, string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.err != nil {
			f.t.Fatalf("subscription failed: %v", f.err)
		}
		return f.resolved >= ts, fmt.Sprintf("resolved %d", f.resolved)
	})
}

// rows are the row changes received with commit ts <= ts, in commit order
// (rows of one transaction in arrival order).
func (f *feed) rows(ts model.Ts) []*model.RowChange {
	f.mu.Lock()
	defer f.mu.Unlock()
	var txns []*model.Txn
	for _, t := range f.txns {
		if t.CommitTs <= ts {
			txns = append(txns, t)
		}
	}
	sort.SliceStable(txns, func(i, j int) bool { return txns[i].Key().Less(txns[j].Key()) })
	var out []*model.RowChange
	for _, t := range txns {
		out = append(out, t.Rows...)
	}
	return out
}

// state applies the received changes up to ts, keyed by the first column
// (the tests' tables have their key first), and renders each row as text.
func (f *feed) state(ts model.Ts) map[string][]string {
	st := map[string][]string{}
	for _, r := range f.rows(ts) {
		switch r.Op {
		case model.OpDelete:
			delete(st, r.Before[0].Text())
		default:
			if r.Op == model.OpUpdate && r.Before != nil && r.Before[0].Text() != r.After[0].Text() {
				delete(st, r.Before[0].Text())
			}
			vals := make([]string, len(r.After))
			for i, v := range r.After {
				vals[i] = v.Text()
			}
			st[r.After[0].Text()] = vals
		}
	}
	return st
}

// fakeState is the fake's MVCC state of a table at ts, decoded by TiDB's
// codec and rendered by TiDB's datum formatting.
func (e *env) fakeState(db, table string, ts model.Ts) map[string][]string {
	e.t.Helper()
	_, rows, err := e.c.Rows(db, table, ts)
	if err != nil {
		e.t.Fatal(err)
	}
	st := map[string][]string{}
	for _, r := range rows {
		vals, err := r.Strings()
		if err != nil {
			e.t.Fatal(err)
		}
		st[vals[0]] = vals
	}
	return st
}

// checkState waits for the feed to resolve ts and compares its state with
// the fake's at ts.
func (e *env) checkState(f *feed, db, table string, ts model.Ts) {
	e.t.Helper()
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Logf("kv client state:\n%s", e.src.client.describe())
			if os.Getenv("TIDB_TEST_STACKS") != "" {
				buf := make([]byte, 1<<22)
				e.t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
			}
		}
	})
	f.waitResolved(ts, 30*time.Second)
	got, want := f.state(ts), e.fakeState(db, table, ts)
	if diff := stateDiff(got, want); diff != "" {
		e.t.Fatalf("table %s.%s at ts %d differs from the fake's MVCC state:\n%s", db, table, ts, diff)
	}
}

func stateDiff(got, want map[string][]string) string {
	var b strings.Builder
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	n := 0
	for _, k := range sorted {
		g, w := strings.Join(got[k], "|"), strings.Join(want[k], "|")
		if _, ok := got[k]; !ok {
			g = "<missing>"
		}
		if _, ok := want[k]; !ok {
			w = "<absent>"
		}
		if g != w {
			n++
			if n <= 10 {
				fmt.Fprintf(&b, "  key %s: got %s, want %s\n", k, g, w)
			}
		}
	}
	if n > 10 {
		fmt.Fprintf(&b, "  … and %d more\n", n-10)
	}
	return b.String()
}

// writer keeps committing transactions to a table until stopped.
type writer struct {
	stop chan struct{}
	done chan struct{}
	n    int
	err  error
}

func (e *env) startWriter(db, table string, keys int) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			k := i % keys
			txn := e.c.Begin()
			if i < keys {
				txn.Insert(db, table, k, fmt.Sprintf("v%d", i))
			} else if i%7 == 3 {
				txn.Delete(db, table, k, "")
			} else {
				txn.Update(db, table, k, fmt.Sprintf("v%d", i))
			}
			if txn.Err() != nil {
				// An update of a deleted key, or a delete of a missing
				// one: insert instead.
				txn = e.c.Begin().Insert(db, table, k, fmt.Sprintf("v%d", i))
				if txn.Err() != nil {
					txn = e.c.Begin().Update(db, table, k, fmt.Sprintf("v%d", i))
				}
			}
			if _, err := txn.Commit(); err != nil {
				w.err = err
				return
			}
			w.n++
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

func (w *writer) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
	if w.n == 0 {
		t.Fatal("writer wrote nothing")
	}
}

// testLogLevel is info, or debug with TIDB_TEST_DEBUG set.
func testLogLevel() zerolog.Level {
	if os.Getenv("TIDB_TEST_DEBUG") != "" {
		return zerolog.DebugLevel
	}
	return zerolog.InfoLevel
}
