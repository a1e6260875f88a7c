// Package sink defines the downstream a changefeed writes row changes to.
// Implementations live in subpackages and are chosen by URI scheme (see
// package connector).
package sink

import (
	"context"

	"github.com/raftcdc/raftcdc/model"
)

// Sink is one downstream, shared by the tables of a processor.
type Sink interface {
	// OpenTable prepares the downstream for one table's rows.
	OpenTable(ctx context.Context, table model.TableName) (TableSink, error)
	Close() error
}

// TableSink writes one table's rows. It is used by one goroutine at a time.
type TableSink interface {
	// Write buffers rows, which arrive in commit-ts order.
	Write(ctx context.Context, rows []model.RowChange) error
	// Flush returns once every written row with CommitTs <= upto is durable;
	// rows above upto stay buffered.
	Flush(ctx context.Context, upto model.Ts) error
	// Close drops unflushed rows.
	Close() error
}
