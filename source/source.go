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

// Batch is one step of a subscription.
type Batch struct {
	// Rows may be in any order; the sorter downstream orders them.
	Rows []model.RowChange
	// ResolvedTs promises that no later row of this subscription has
	// CommitTs <= ResolvedTs. It never decreases within a subscription.
	ResolvedTs model.Ts
}

// Subscription streams one table's changes.
type Subscription interface {
	// Next blocks until at least one row or a higher resolved ts is available.
	Next(ctx context.Context) (Batch, error)
	// Close releases the subscription and unblocks a pending Next.
	Close() error
}

// Source is an upstream database.
type Source interface {
	// Tables lists every table of the upstream.
	Tables(ctx context.Context) ([]model.TableName, error)
	// Subscribe streams one table's changes with CommitTs > startTs;
	// errors.Is(err, ErrSnapshotLost) if startTs < GC safepoint.
	Subscribe(ctx context.Context, table model.TableName, startTs model.Ts) (Subscription, error)
	// CurrentTs is the upstream's current timestamp.
	CurrentTs(ctx context.Context) (model.Ts, error)
	// GCSafepoint is the upstream GC safepoint now in force.
	GCSafepoint(ctx context.Context) (model.Ts, error)
	// UpdateServiceGCSafepoint behaves like PD's: sets the service's safepoint
	// with a TTL (ttl <= 0 removes the service entry); returns the upstream GC
	// safepoint now in force (which can be above the requested one — then the
	// caller's data is gone).
	UpdateServiceGCSafepoint(ctx context.Context, serviceID string, ttl time.Duration, safepoint model.Ts) (model.Ts, error)
	Close() error
}
