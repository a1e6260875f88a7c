// Package blackhole is a sink that counts rows and drops them, for
// benchmarks that measure everything but the downstream.
package blackhole

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// Scheme is the URI scheme of this sink.
const Scheme = "blackhole"

// ParseURI accepts "blackhole://" and its one parameter, rate.
func ParseURI(uri string) error {
	_, err := parseRate(uri)
	return err
}

// parseRate checks the URI and returns its rate parameter: rows per second
// the sink accepts, 0 for unlimited. A slow sink is what tests of
// backpressure and memory need.
func parseRate(uri string) (float64, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return 0, fmt.Errorf("parse blackhole sink URI %q: %w", uri, err)
	}
	if u.Scheme != Scheme {
		return 0, fmt.Errorf("blackhole sink URI %q: scheme must be %q", uri, Scheme)
	}
	if u.Opaque != "" || u.User != nil || u.Host != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return 0, fmt.Errorf("blackhole sink URI %q: write just blackhole:// (optionally ?rate=N)", uri)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return 0, fmt.Errorf("blackhole sink URI %q: parse query: %w", uri, err)
	}
	var rate float64
	for name, vals := range q {
		if name != "rate" {
			return 0, fmt.Errorf("blackhole sink URI %q: unknown parameter %q (the blackhole sink takes only rate)", uri, name)
		}
		r, err := strconv.ParseFloat(vals[0], 64)
		if err != nil || len(vals) != 1 || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			return 0, fmt.Errorf("blackhole sink URI %q: parameter rate: %q is not a positive number of rows per second", uri, vals[0])
		}
		rate = r
	}
	return rate, nil
}

// Stats are the sink's counters since it was opened.
type Stats struct {
	WrittenRows uint64 // rows passed to Write
	FlushedRows uint64 // rows a Flush made "durable"
	Flushes     uint64 // Flush calls that flushed at least one row
	DDLs        uint64 // DDL events "executed"
	Checkpoint  model.Ts
}

// Sink counts and drops.
type Sink struct {
	written, flushed, flushes, ddls, checkpoint atomic.Uint64
	closed                                      atomic.Bool
	// rate limits rows per second over the whole sink (0: none).
	rate float64
	mu   sync.Mutex
	next time.Time // when the next row may be written
}

// throttle waits until n more rows fit under the rate.
func (s *Sink) throttle(ctx context.Context, n int) error {
	if s.rate == 0 || n == 0 {
		return nil
	}
	s.mu.Lock()
	now := time.Now()
	if s.next.Before(now) {
		s.next = now
	}
	wait := s.next.Sub(now)
	s.next = s.next.Add(time.Duration(float64(n) / s.rate * float64(time.Second)))
	s.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var _ sink.Sink = (*Sink)(nil)

// Open checks the URI and returns a new sink.
func Open(uri string) (*Sink, error) {
	rate, err := parseRate(uri)
	if err != nil {
		return nil, err
	}
	s := New()
	s.rate = rate
	return s, nil
}

// New returns a new sink.
func New() *Sink { return &Sink{} }

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	return Stats{WrittenRows: s.written.Load(), FlushedRows: s.flushed.Load(), Flushes: s.flushes.Load(), DDLs: s.ddls.Load(), Checkpoint: s.checkpoint.Load()}
}

// EmitDDL counts the DDL.
func (s *Sink) EmitDDL(ctx context.Context, ddl *model.DDLEvent) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("emit DDL on blackhole sink: %w", err)
	}
	s.ddls.Add(1)
	return nil
}

// EmitCheckpoint remembers the highest checkpoint.
func (s *Sink) EmitCheckpoint(ctx context.Context, ts model.Ts) error {
	for {
		old := s.checkpoint.Load()
		if ts <= old || s.checkpoint.CompareAndSwap(old, ts) {
			return nil
		}
	}
}

// OpenTable returns a table sink that reports into s.
func (s *Sink) OpenTable(ctx context.Context, table model.TableName, _ sink.TableOptions) (sink.TableSink, error) {
	if s.closed.Load() {
		return nil, errors.New("open table on blackhole sink: sink is closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open table %s on blackhole sink: %w", table, err)
	}
	return &tableSink{parent: s, table: table}, nil
}

// Close stops new tables from being opened.
func (s *Sink) Close() error {
	s.closed.Store(true)
	return nil
}

type tableSink struct {
	parent *Sink
	table  model.TableName

	mu     sync.Mutex
	closed bool
	// Only commit ts are kept: Flush must still count exactly the rows up to
	// its ts, but the rows themselves are never needed.
	pending []model.Ts
}

func (t *tableSink) Write(ctx context.Context, txns []*model.Txn) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("write to blackhole table %s: closed", t.table)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write to blackhole table %s: %w", t.table, err)
	}
	n := 0
	for _, txn := range txns {
		n += len(txn.Rows)
	}
	// Wait outside the lock: Close must not wait for a slow Write.
	t.mu.Unlock()
	err := t.parent.throttle(ctx, n)
	t.mu.Lock()
	if err != nil {
		return fmt.Errorf("write to blackhole table %s: %w", t.table, err)
	}
	if t.closed {
		return fmt.Errorf("write to blackhole table %s: closed", t.table)
	}
	for _, txn := range txns {
		for range txn.Rows {
			t.pending = append(t.pending, txn.CommitTs)
		}
	}
	t.parent.written.Add(uint64(n))
	return nil
}

func (t *tableSink) Flush(ctx context.Context, upto model.Ts) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("flush blackhole table %s: closed", t.table)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("flush blackhole table %s: %w", t.table, err)
	}
	n := sort.Search(len(t.pending), func(i int) bool { return t.pending[i] > upto })
	if n == 0 {
		return nil
	}
	t.pending = t.pending[n:]
	t.parent.flushed.Add(uint64(n))
	t.parent.flushes.Add(1)
	return nil
}

func (t *tableSink) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.pending = nil
	return nil
}
