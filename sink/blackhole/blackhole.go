// Package blackhole is a sink that counts rows and drops them, for
// benchmarks that measure everything but the downstream.
package blackhole

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// Scheme is the URI scheme of this sink.
const Scheme = "blackhole"

// ParseURI accepts "blackhole://" with nothing else.
func ParseURI(uri string) error {
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Errorf("parse blackhole sink URI %q: %w", uri, err)
	}
	if u.Scheme != Scheme {
		return fmt.Errorf("blackhole sink URI %q: scheme must be %q", uri, Scheme)
	}
	if u.Opaque != "" || u.User != nil || u.Host != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return fmt.Errorf("blackhole sink URI %q: write just blackhole://", uri)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fmt.Errorf("blackhole sink URI %q: parse query: %w", uri, err)
	}
	for name := range q {
		return fmt.Errorf("blackhole sink URI %q: unknown parameter %q (the blackhole sink takes no parameters)", uri, name)
	}
	return nil
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
}

var _ sink.Sink = (*Sink)(nil)

// Open checks the URI and returns a new sink.
func Open(uri string) (*Sink, error) {
	if err := ParseURI(uri); err != nil {
		return nil, err
	}
	return New(), nil
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
		for range txn.Rows {
			t.pending = append(t.pending, txn.CommitTs)
		}
		n += len(txn.Rows)
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
