// Package sink defines the downstream a changefeed writes to. Implementations
// live in subpackages and are chosen by URI scheme (see package connector).
//
// Contract, version 2 (see ../shared/DESIGN.md §10 and sink/DESIGN.md):
//   - One Sink per (changefeed, capture) owns the connections and workers;
//     the TableSinks it opens are views onto it, one per table pipeline.
//   - A TableSink receives whole transactions of its table, in commit-ts
//     order (ties broken by start ts), and never a row of another table.
//     A large transaction arrives as several consecutive Txn values with
//     the same (CommitTs, StartTs), possibly over several Write calls: the
//     transaction ends where the key changes or at the next Flush. Sinks
//     that apply transactions atomically group such fragments.
//   - The processor writes only what it is about to flush: every Write is
//     followed by Flush(upto) covering it. A sink must not need to hold a
//     whole large transaction in memory: it may push fragments downstream
//     as they come (an open database transaction, a file being written, a
//     producer) and make them durable or visible at Flush.
//   - Flush(upto) returns once every transaction with CommitTs <= upto that
//     was written is durable downstream.
//   - Rows carry their own schema (RowChange.Schema), whose table name is
//     the one to write to: a table renamed by a DDL keeps its TableSink, and
//     its rows after the DDL carry the new name.
//   - Rows above the changefeed checkpoint may be delivered again after a
//     failover. TableOptions.ReplayUntil tells the sink which commit ts may
//     already be downstream, so it can write those idempotently (safe mode).
//   - EmitDDL executes one DDL downstream, once every table has flushed to
//     the DDL's CommitTs − 1: the owner's sink instance calls it, or, for a
//     single-stream source, the sink of the capture holding the stream. It
//     may be called again for the same DDL after a failover: the sink
//     treats "already applied" as success.
//   - EmitCheckpoint publishes the changefeed checkpoint where the sink has a
//     place for it (Kafka resolved events, the storage sink's metadata file);
//     others return nil.
package sink

import (
	"context"
	"errors"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// TableOptions are what a table sink needs to know about where its table
// pipeline starts.
type TableOptions struct {
	// StartTs is the table's checkpoint: everything at or below it is
	// already downstream.
	StartTs model.Ts
	// ReplayUntil is the highest commit ts that an earlier run may already
	// have written downstream. Transactions with StartTs < CommitTs <=
	// ReplayUntil are in the replay window.
	ReplayUntil model.Ts
	// Schema is the table's schema at StartTs, when the source knows it.
	Schema *model.TableSchema
}

// Sink is one downstream, shared by the table pipelines of one processor
// and, for the owner, by its DDL and checkpoint calls.
type Sink interface {
	// OpenTable prepares the downstream for one table's transactions.
	OpenTable(ctx context.Context, table model.TableName, opts TableOptions) (TableSink, error)
	// EmitDDL executes one DDL downstream; "already applied" is success.
	EmitDDL(ctx context.Context, ddl *model.DDLEvent) error
	// EmitCheckpoint publishes the changefeed checkpoint ts.
	EmitCheckpoint(ctx context.Context, ts model.Ts) error
	Close() error
}

// TableSink writes one table's transactions. It is used by one goroutine at
// a time.
type TableSink interface {
	// Write buffers transactions of this table, in commit-ts order. The sink
	// may keep the slices; the caller does not change them afterwards.
	Write(ctx context.Context, txns []*model.Txn) error
	// Flush returns once every written transaction with CommitTs <= upto is
	// durable; later ones stay buffered.
	Flush(ctx context.Context, upto model.Ts) error
	// Close drops unflushed transactions.
	Close() error
}

// CodeUnretryable is the error code a processor reports for an error a
// sink marked Unretryable; the owner fails the changefeed on it (state
// failed, which is not retried) instead of retrying it after a backoff.
// One constant for both, so that the two cannot drift.
const CodeUnretryable = "sink_unretryable"

// Unretryable marks err as one that restarting the table from its
// checkpoint cannot fix: the same rows would meet the same refusal (a row
// larger than the sink accepts as configured). The processor reports it at
// once instead of retrying, and the changefeed fails until the user changes
// its configuration and resumes it. The message stays err's own.
func Unretryable(err error) error {
	if err == nil {
		return nil
	}
	return &unretryableError{err: err}
}

// IsUnretryable reports whether err, or an error it wraps, was marked by
// Unretryable.
func IsUnretryable(err error) bool {
	var u *unretryableError
	return errors.As(err, &u)
}

type unretryableError struct{ err error }

func (e *unretryableError) Error() string { return e.err.Error() }
func (e *unretryableError) Unwrap() error { return e.err }

// NopDDL can be embedded by sinks that have no schema to change (blackhole)
// or that record DDL in their data stream themselves.
type NopDDL struct{}

func (NopDDL) EmitDDL(context.Context, *model.DDLEvent) error { return nil }

// NopCheckpoint can be embedded by sinks that have nowhere to publish a
// checkpoint.
type NopCheckpoint struct{}

func (NopCheckpoint) EmitCheckpoint(context.Context, model.Ts) error { return nil }

// Writer is the capture process that writes through a sink, and for which
// changefeed: the processor
// puts it in the context of every sink call, for sinks that record or fence
// their writers (sink/flushlog records them to check that no table is ever
// written by two captures at once).
type Writer struct {
	Changefeed  string
	Capture     string
	Incarnation uint64
}

type writerKey struct{}

// WithWriter returns ctx carrying w.
func WithWriter(ctx context.Context, w Writer) context.Context {
	return context.WithValue(ctx, writerKey{}, w)
}

// WriterFrom returns the writer ctx carries, if any.
func WriterFrom(ctx context.Context) (Writer, bool) {
	w, ok := ctx.Value(writerKey{}).(Writer)
	return w, ok
}

// Leases. A capture may write to a sink only while it holds its lease (see
// processor/DESIGN.md); the processor passes every Write and Flush a
// context that carries the lease (WithLease) and is cancelled, with cause
// ErrLeaseExpired, the moment the lease lapses. A lease renewed during a
// long call (a storage sink's Flush waits for its next flush round, a
// Kafka flush for acknowledgements) keeps the call going. A sink whose write
// becomes visible at one instant (a rename, a COMMIT) checks LeaseValid
// right before that instant and reports the instant with CommittedAt.
// A check by the clock cannot stop a capture frozen between the check and
// the instant; a sink closes that gap with a fence the downstream enforces
// (the storage sink's, ErrFenced), so that the frozen capture's write
// cannot become visible after another capture took the table over.

// ErrLeaseExpired is returned by a sink that did not make a write visible
// because the writer's lease had ended.
var ErrLeaseExpired = errors.New("the capture's lease ended before the write became visible; nothing was written")

// ErrFenced is returned by a sink whose downstream revoked a write before it
// became visible because another writer took the table over (a storage
// sink's fence: sink/storage/DESIGN.md). Nothing was written.
var ErrFenced = errors.New("another writer took the table over before the write became visible; nothing was written")

type leaseKey struct{}

// WithLease returns ctx carrying the writer's lease: holds reports, by the
// clock, whether the lease the call began under still holds.
func WithLease(ctx context.Context, holds func() bool) context.Context {
	return context.WithValue(ctx, leaseKey{}, holds)
}

// LeaseValid reports ErrLeaseExpired once the lease ctx carries has lapsed
// or ctx's deadline has passed. It asks the lease (which reads the clock)
// rather than relying on ctx.Err, which may lag behind the lapse right
// after the process was paused.
func LeaseValid(ctx context.Context) error {
	if holds, ok := ctx.Value(leaseKey{}).(func() bool); ok && !holds() {
		return ErrLeaseExpired
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return ErrLeaseExpired
	}
	return ctx.Err()
}

// CommitReporter is implemented by a sink that calls CommittedAt for every
// write it makes visible (a file linked or renamed into place): a flush of
// such a sink that returns without reporting a commit wrote nothing (it had
// nothing pending), which the writer-overlap check needs to know.
type CommitReporter interface {
	ReportsCommits() bool
}

type commitKey struct{}

// WithCommitHook returns ctx carrying fn, which a sink calls (through
// CommittedAt) when a flush made data visible downstream, with the instant
// it became visible.
func WithCommitHook(ctx context.Context, fn func(at time.Time)) context.Context {
	return context.WithValue(ctx, commitKey{}, fn)
}

// CommittedAt tells ctx's commit hook, if any, that data became visible at
// at. A sink passes the downstream's own record of the instant where it
// has one (a file system's ctime of the linked file): the call itself may
// come much later, if the process was paused right after the write.
func CommittedAt(ctx context.Context, at time.Time) {
	if fn, ok := ctx.Value(commitKey{}).(func(time.Time)); ok {
		fn(at)
	}
}
