// Package source defines the upstream a changefeed reads row changes from.
// Implementations live in subpackages and are chosen by URI scheme (see
// package connector).
package source

import (
	"context"
	"errors"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// ErrSnapshotLost reports that the requested start position is below the
// upstream GC safepoint, so the history it needs no longer exists. Callers
// test for it with errors.Is; implementations wrap it with the table and
// timestamps involved.
var ErrSnapshotLost = errors.New("snapshot lost")

// ---- Contract version 2 (see ../shared/DESIGN.md §10, source/DESIGN.md) ----
//
// Two kinds of source, both behind Upstream:
//   - SpanSource (datagen, TiDB): any capture can subscribe to any table
//     from any ts at or above the GC safepoint; tables are the scheduling
//     unit, and the owner reads the DDL stream separately.
//   - StreamSource (PostgreSQL slot, MySQL binlog): one ordered stream per
//     upstream that cannot be rewound below its confirmed position. The
//     stream is a scheduling unit of its own; its native resume position is
//     stored in the state machine next to the checkpoint, and it confirms
//     upstream only up to the changefeed checkpoint.

// Upstream is what the owner needs from any source.
type Upstream interface {
	// UpstreamID is the upstream's identity (PD's cluster ID for TiDB, the
	// system identifier for PostgreSQL, datagen's cluster-id). GC safepoints
	// are kept per identity, not per URI: two spellings of one upstream
	// share one service safepoint.
	UpstreamID(ctx context.Context) (string, error)
	// TablesAt lists the tables that exist at ts, not now.
	TablesAt(ctx context.Context, ts model.Ts) ([]model.TableName, error)
	// SchemaAt is a table's schema in force at ts.
	SchemaAt(ctx context.Context, table model.TableName, ts model.Ts) (*model.TableSchema, error)
	// CurrentTs is the upstream's current timestamp.
	CurrentTs(ctx context.Context) (model.Ts, error)
	// GCSafepoint is the upstream GC safepoint now in force.
	GCSafepoint(ctx context.Context) (model.Ts, error)
	// UpdateServiceGCSafepoint behaves like PD's: sets the service's
	// safepoint with a TTL (ttl <= 0 removes the service entry); returns
	// the upstream GC safepoint now in force (which can be above the
	// requested one — then the caller's data is gone).
	UpdateServiceGCSafepoint(ctx context.Context, serviceID string, ttl time.Duration, safepoint model.Ts) (model.Ts, error)
	Close() error
}

// TxnBatch is one step of a table subscription.
type TxnBatch struct {
	// Txns are whole transactions of the subscribed table (each holding only
	// that table's rows), in any order; the sorter orders them by TxnKey.
	Txns []*model.Txn
	// ResolvedTs promises that no later transaction of this subscription has
	// CommitTs <= ResolvedTs. It never decreases within a subscription.
	ResolvedTs model.Ts
}

// TxnSubscription streams one table's transactions.
type TxnSubscription interface {
	Next(ctx context.Context) (TxnBatch, error)
	Close() error
}

// DDLBatch is one step of a DDL subscription.
type DDLBatch struct {
	// DDLs in commit-ts order.
	DDLs []*model.DDLEvent
	// ResolvedTs promises no later DDL with CommitTs <= ResolvedTs.
	ResolvedTs model.Ts
}

// DDLSubscription streams the upstream's DDL events (TiCDC's DDL puller).
type DDLSubscription interface {
	Next(ctx context.Context) (DDLBatch, error)
	Close() error
}

// SpanSource is a span-addressable upstream.
type SpanSource interface {
	Upstream
	// SubscribeTxns streams one table's transactions with CommitTs > startTs;
	// errors.Is(err, ErrSnapshotLost) if startTs is below the GC safepoint.
	SubscribeTxns(ctx context.Context, table model.TableName, startTs model.Ts) (TxnSubscription, error)
	// SubscribeDDL streams DDL events with CommitTs > startTs.
	SubscribeDDL(ctx context.Context, startTs model.Ts) (DDLSubscription, error)
}

// StreamOptions say where a single stream resumes.
type StreamOptions struct {
	// Position is the native resume position stored with the checkpoint
	// (empty on the first start).
	Position string
	// StartTs is the changefeed checkpoint the position belongs to.
	StartTs model.Ts
	// Tables are the tables the changefeed replicates.
	Tables []model.TableName
}

// StreamBatch is one step of a single stream.
type StreamBatch struct {
	// Txns may span tables; the stream's capture splits them per table.
	// A transaction too large to hold in memory arrives in pieces:
	// several Txn values with the same key, in order, possibly across
	// batches; ResolvedTs passes its CommitTs only after the last piece.
	Txns []*model.Txn
	// DDLs interleave with Txns by commit ts. A DDL may share its CommitTs
	// with a transaction (a source that learns of a schema change only
	// from the first row written after it, as PostgreSQL's pgoutput);
	// it then applies before that transaction's rows.
	DDLs []*model.DDLEvent
	// ResolvedTs promises nothing later at or below it.
	ResolvedTs model.Ts
	// Position is the native position to resume from once every change at
	// or below ResolvedTs is durable downstream.
	Position string
}

// Stream is a single-stream source's connection.
type Stream interface {
	Next(ctx context.Context) (StreamBatch, error)
	// Confirm tells the upstream it may discard everything up to pos (a
	// Position the stream returned, at or below the changefeed checkpoint).
	Confirm(ctx context.Context, pos string) error
	Close() error
}

// StreamSource is a single-stream upstream.
type StreamSource interface {
	Upstream
	OpenStream(ctx context.Context, opts StreamOptions) (Stream, error)
}

// UpstreamRemover is implemented by sources that keep state upstream for a
// changefeed (a PostgreSQL slot and publication). The owner calls it once a
// removed changefeed's stream is closed; it is idempotent.
type UpstreamRemover interface {
	RemoveUpstreamState(ctx context.Context) error
}

// SnapshotProgress is how far a source's initial copy of existing rows is,
// for changefeed query and statistics.
type SnapshotProgress struct {
	Copying     bool          `json:"copying"`
	TablesTotal int           `json:"tables_total"`
	TablesDone  int           `json:"tables_done"`
	Rows        int64         `json:"rows"`
	Bytes       int64         `json:"bytes"`
	EstRows     int64         `json:"estimated_rows,omitempty"`
	ETA         time.Duration `json:"eta_ns,omitempty"`
}

// ProgressReporter is implemented by streams that copy existing rows before
// streaming (an initial snapshot).
type ProgressReporter interface {
	SnapshotProgress() SnapshotProgress
}

// StatusReporter is implemented by sources that keep state upstream worth
// showing with a changefeed (a PostgreSQL slot's retained WAL); Warning is
// set when that state needs an operator.
type StatusReporter interface {
	UpstreamStatus(ctx context.Context) (status any, warning string, err error)
}
