package datagen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// MaxBatchDDLs caps the DDL events of one DDLBatch.
const MaxBatchDDLs = 256

var _ source.SpanSource = (*Source)(nil)

// History is the version 2 history behind the source.
func (s *Source) History() *History { return s.hist }

// UpstreamID identifies the simulated upstream: its cluster-id parameter,
// by default derived from the seed and schema name, so that two URIs with
// the same seed and schema are the same database.
func (s *Source) UpstreamID(ctx context.Context) (string, error) {
	if err := s.checkOpen(); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("get datagen upstream ID: %w", err)
	}
	return s.hist.cfg.UpstreamID(), nil
}

// TablesAt lists the tables that exist at ts.
func (s *Source) TablesAt(ctx context.Context, ts model.Ts) ([]model.TableName, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list datagen tables at %d: %w", ts, err)
	}
	return s.hist.TablesAt(ts), nil
}

// SchemaAt is the schema of a table at ts. The table is named by its ID;
// the schema (database) name must be datagen's.
func (s *Source) SchemaAt(ctx context.Context, table model.TableName, ts model.Ts) (*model.TableSchema, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get datagen schema of %s at %d: %w", table, ts, err)
	}
	if table.Schema != s.hist.cfg.Schema {
		return nil, fmt.Errorf("get datagen schema of %s: datagen's database is %q", table, s.hist.cfg.Schema)
	}
	sch, err := s.hist.SchemaAt(table.ID, ts)
	if err != nil {
		return nil, fmt.Errorf("get datagen schema of %s: %w", table, err)
	}
	return sch, nil
}

// SubscribeTxns streams one table's transactions with commit ts > startTs.
// The table is identified by its ID; its name may be any name the table has
// during its life (a rename does not end a subscription). A table that has
// been dropped or truncated by then gets no more transactions, only
// resolved ts.
func (s *Source) SubscribeTxns(ctx context.Context, table model.TableName, startTs model.Ts) (source.TxnSubscription, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("subscribe datagen table %s: %w", table, err)
	}
	inc, ok := s.hist.incarnationOf(table.ID)
	if !ok {
		return nil, fmt.Errorf("subscribe datagen table %s (id %d): no such table ID; datagen has %s.t0001..t%04d with IDs 1..%d, and more once DDL creates tables",
			table, table.ID, s.hist.cfg.Schema, s.hist.cfg.Tables, s.hist.cfg.Tables)
	}
	if table.Schema != s.hist.cfg.Schema || !slices.Contains(s.hist.knownNames(inc), table.Table) {
		return nil, fmt.Errorf("subscribe datagen table %s (id %d): table ID %d is named %s.%v", table, table.ID, table.ID, s.hist.cfg.Schema, s.hist.knownNames(inc))
	}
	s.mu.Lock()
	gc := s.advanceGCLocked(s.clock.Now())
	s.mu.Unlock()
	if startTs < gc {
		return nil, fmt.Errorf("subscribe datagen table %s from ts %d: below GC safepoint %d: %w", table, startTs, gc, source.ErrSnapshotLost)
	}
	s.rc.subs.Add(1)
	return &txnSubscription{
		src:      s,
		cur:      s.hist.cursor(inc, startTs),
		resolved: startTs,
		closed:   make(chan struct{}),
	}, nil
}

type txnSubscription struct {
	src *Source

	closeOnce sync.Once
	closed    chan struct{}

	mu       sync.Mutex
	cur      *txnCursor
	resolved model.Ts
	// resolveDue is when the next resolved ts without a transaction is
	// due: a boundary of the source's resolve clock (zero: at once).
	resolveDue time.Time
}

func (sub *txnSubscription) Close() error {
	sub.closeOnce.Do(func() {
		close(sub.closed)
		sub.src.rc.subs.Add(-1)
	})
	return nil
}

// nextBoundary is this table's first resolve boundary after now.
func (sub *txnSubscription) nextBoundary(now time.Time, interval time.Duration) time.Time {
	return boundaryAfter(now, interval, phaseOf(sub.cur.inc.id, interval))
}

func (sub *txnSubscription) Next(ctx context.Context) (source.TxnBatch, error) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for {
		// The table's name for the error is formatted only on an error:
		// this runs at every resolved ts of every table (issue 16).
		if err := sub.src.wakeErr(ctx, sub.closed); err != nil {
			return source.TxnBatch{}, fmt.Errorf("wait for datagen table %d changes: %w", sub.cur.inc.id, err)
		}
		interval := sub.src.resolveInterval()
		now := sub.src.clock.Now()
		nowTs := model.TsFromTime(now)

		var txns []*model.Txn
		rows := uint64(0)
		for rows < MaxBatchRows {
			txn, ok := sub.cur.next(nowTs)
			if !ok {
				break
			}
			txns = append(txns, txn)
			rows += uint64(len(txn.Rows))
		}
		next := sub.cur.nextTs()
		if len(txns) > 0 {
			// Everything before the next transaction is settled; once
			// caught up that is everything up to now.
			resolved := next - 1
			if next > nowTs {
				resolved = nowTs
				sub.resolveDue = sub.nextBoundary(now, interval)
			}
			sub.resolved = max(sub.resolved, resolved)
			return source.TxnBatch{Txns: txns, ResolvedTs: sub.resolved}, nil
		}
		if nowTs > sub.resolved && !now.Before(sub.resolveDue) {
			sub.resolved = nowTs
			sub.resolveDue = sub.nextBoundary(now, interval)
			return source.TxnBatch{ResolvedTs: nowTs}, nil
		}
		if !sub.resolveDue.After(now) {
			sub.resolveDue = sub.nextBoundary(now, interval)
		}
		var err error
		if next == ^model.Ts(0) || !model.TsTime(next).Add(time.Millisecond).Before(sub.resolveDue) {
			// Only a resolved ts is due next: wait with every other table
			// on the source's shared clock.
			err = sub.src.sleepOn(ctx, sub.closed, sub.src.resolveAt(sub.resolveDue))
		} else {
			err = sub.src.sleepUntil(ctx, sub.closed, now, next, sub.resolveDue)
		}
		if err != nil {
			return source.TxnBatch{}, fmt.Errorf("wait for datagen table %d changes: %w", sub.cur.inc.id, err)
		}
	}
}

// SubscribeDDL streams the upstream's DDL events with commit ts > startTs.
func (s *Source) SubscribeDDL(ctx context.Context, startTs model.Ts) (source.DDLSubscription, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("subscribe datagen DDL: %w", err)
	}
	s.mu.Lock()
	gc := s.advanceGCLocked(s.clock.Now())
	s.mu.Unlock()
	if startTs < gc {
		return nil, fmt.Errorf("subscribe datagen DDL from ts %d: below GC safepoint %d: %w", startTs, gc, source.ErrSnapshotLost)
	}
	return &ddlSubscription{src: s, next: s.hist.ddlCount(startTs), resolved: startTs, closed: make(chan struct{})}, nil
}

type ddlSubscription struct {
	src *Source

	closeOnce sync.Once
	closed    chan struct{}

	mu            sync.Mutex
	next          uint64 // number of the next DDL to emit
	resolved      model.Ts
	lastResolveAt time.Time
}

func (sub *ddlSubscription) Close() error {
	sub.closeOnce.Do(func() { close(sub.closed) })
	return nil
}

func (sub *ddlSubscription) nextTs() model.Ts {
	h := sub.src.hist
	if h.ddlInterval == 0 {
		return ^model.Ts(0)
	}
	return h.ddlTs(sub.next)
}

func (sub *ddlSubscription) Next(ctx context.Context) (source.DDLBatch, error) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	h := sub.src.hist
	interval := h.cfg.ResolveInterval
	for {
		if err := sub.src.wakeErr(ctx, sub.closed); err != nil {
			return source.DDLBatch{}, fmt.Errorf("wait for datagen DDL changes: %w", err)
		}
		now := sub.src.clock.Now()
		nowTs := model.TsFromTime(now)
		var ddls []*model.DDLEvent
		for len(ddls) < MaxBatchDDLs && sub.nextTs() <= nowTs {
			ddls = append(ddls, h.DDL(sub.next))
			sub.next++
		}
		next := sub.nextTs()
		if len(ddls) > 0 {
			resolved := next - 1
			if next > nowTs {
				resolved = nowTs
				sub.lastResolveAt = now
			}
			sub.resolved = max(sub.resolved, resolved)
			return source.DDLBatch{DDLs: ddls, ResolvedTs: sub.resolved}, nil
		}
		if nowTs > sub.resolved && now.Sub(sub.lastResolveAt) >= interval {
			sub.resolved = nowTs
			sub.lastResolveAt = now
			return source.DDLBatch{ResolvedTs: nowTs}, nil
		}
		if err := sub.src.sleepUntil(ctx, sub.closed, now, next, sub.lastResolveAt.Add(interval)); err != nil {
			return source.DDLBatch{}, fmt.Errorf("wait for datagen DDL: %w", err)
		}
	}
}

// wakeErr reports why a subscription must stop: it or the source was
// closed, or ctx is done.
func (s *Source) wakeErr(ctx context.Context, closed <-chan struct{}) error {
	select {
	case <-closed:
		return errors.New("datagen subscription is closed")
	case <-s.closed:
		return errors.New("datagen source is closed")
	default:
	}
	return ctx.Err()
}

// sleepOn waits until ch is closed or the subscription ends.
func (s *Source) sleepOn(ctx context.Context, closed <-chan struct{}, ch <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
	case <-s.closed:
	case <-ch:
	}
	return nil
}

// sleepUntil waits until the change at nextTs becomes visible (the
// millisecond after its physical time) or the next resolved ts is due,
// whichever comes first, or until the subscription ends.
func (s *Source) sleepUntil(ctx context.Context, closed <-chan struct{}, now time.Time, nextTs model.Ts, resolveDue time.Time) error {
	wait := resolveDue.Sub(now)
	if nextTs != ^model.Ts(0) {
		wait = min(wait, model.TsTime(nextTs).Add(time.Millisecond).Sub(now))
	}
	timer := time.NewTimer(max(wait, time.Millisecond))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
	case <-s.closed:
	case <-timer.C:
	}
	return nil
}
