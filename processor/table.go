package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
	"github.com/rs/zerolog"
)

// TableState is where a table pipeline is in its life.
type TableState string

const (
	// TableStarting: waiting for the changefeed's source and sink, or
	// between attempts after an error.
	TableStarting TableState = "starting"
	// TableRunning: replicating.
	TableRunning TableState = "running"
	// TableStopping: a delete operation arrived; replicating up to its
	// boundary ts.
	TableStopping TableState = "stopping"
	// TableStopped: flushed up to the boundary and closed.
	TableStopped TableState = "stopped"
	// TableFailed: gave up after an error that is reported in the position.
	TableFailed TableState = "failed"
)

// pipeError says which side of the pipeline failed, so that the reported
// error code points the operator at the right system.
type pipeError struct {
	code string
	err  error
}

func (e *pipeError) Error() string { return e.err.Error() }
func (e *pipeError) Unwrap() error { return e.err }

func sourceErr(err error) error { return &pipeError{code: CodeSourceError, err: err} }
func sinkErr(err error) error   { return &pipeError{code: CodeSinkError, err: err} }

func errorCode(err error) string {
	if errors.Is(err, source.ErrSnapshotLost) {
		return CodeSnapshotLost
	}
	if sink.IsUnretryable(err) {
		return CodeSinkUnretryable
	}
	var pe *pipeError
	if errors.As(err, &pe) {
		return pe.code
	}
	return CodeSourceError
}

// tableEnv is what a table pipeline shares with its processor.
type tableEnv struct {
	cfg  Config
	log  zerolog.Logger
	gate *gate
	// opens bounds pipelines opening at once (nil: unbounded).
	opens chan struct{}
	// pressure holds readers back while the node is starved (nil: never).
	pressure *pressure
	barrier  *tsCell
	// connectors blocks until the processor has opened its source and sink.
	connectors func(ctx context.Context) (source.Upstream, sink.Sink, error)
	// quota bounds the bytes buffered between the source and the sink.
	quota *memQuota
	// spillDir is where a table's sorter spills; spilled counts the bytes.
	spillDir func(model.TableID) string
	spilled  func(bytes int64)
	// preacquired: the subscription's transactions were already counted in
	// the quota by whoever produced them (a stream unit's reader).
	preacquired bool
	// stream is what a stream unit needs from its processor.
	stream streamEnv
	// resolveName maps a table ID to the name the source and sink need.
	resolveName func(ctx context.Context, id model.TableID) (model.TableName, error)
	// flushed is told how many rows each flush made durable.
	flushed func(n uint64)
	// finished wakes the processor when a pipeline ends.
	finished kick
}

// table is one table's pipeline: source subscription → sorter → table sink.
type table struct {
	id      model.TableID
	startTs model.Ts
	env     *tableEnv
	log     zerolog.Logger
	cancel  context.CancelFunc
	done    chan struct{}
	wake    kick // the boundary changed

	mu          sync.Mutex
	name        model.TableName
	state       TableState
	checkpoint  model.Ts // everything <= checkpoint is durable in the sink
	resolved    model.Ts // the sorter has every row <= resolved
	count       uint64   // rows flushed
	hasBoundary bool
	boundary    model.Ts
	err         *model.RunningError
	// cause is the error err reports, kept so that a stream unit can
	// report its table's failure with the same code (it wraps cause).
	cause error
	// safePos is, for a stream unit, the newest stream position every local
	// table has flushed past; snapshot its initial copy's progress.
	safePos  *model.StreamPosition
	snapshot *model.SnapshotProgress
	// idle: the pipeline is parked with nothing buffered (an empty
	// sorter, everything it wrote flushed), so nothing lies between the
	// checkpoint and live. An idle table's checkpoint follows
	// min(live, barrier, boundary) without waking its loop or calling
	// the sink (settleLocked): at tens of thousands of tables per node,
	// waking every loop at every barrier step, and again at every resolved
	// ts, to flush nothing was most of a node's CPU (issue 16).
	idle bool
	// inflight counts batches the reader handed the loop that the loop has
	// not taken in yet. The reader may move live itself only when there
	// are none: a queued batch's transactions lie above live.
	inflight int
	// live is how far the current attempt's subscription has delivered:
	// every transaction at or below it is in the sorter or flushed. Unlike
	// resolved (reported, and never moved back) it starts again at the
	// checkpoint with every attempt, which replays what the last one had
	// read but not flushed; settling on resolved instead lost those rows.
	live model.Ts
}

func newTable(id model.TableID, startTs model.Ts, env *tableEnv) *table {
	return &table{
		id:         id,
		startTs:    startTs,
		env:        env,
		log:        env.log.With().Int64("table_id", id).Logger(),
		done:       make(chan struct{}),
		wake:       newKick(),
		state:      TableStarting,
		checkpoint: startTs,
		resolved:   startTs,
	}
}

// TableInfo is one table's progress, for the API.
type TableInfo struct {
	ID           model.TableID       `json:"id"`
	Name         string              `json:"name,omitempty"`
	State        TableState          `json:"state"`
	StartTs      model.Ts            `json:"start_ts"`
	CheckpointTs model.Ts            `json:"checkpoint_ts"`
	ResolvedTs   model.Ts            `json:"resolved_ts"`
	BoundaryTs   model.Ts            `json:"boundary_ts,omitempty"`
	Count        uint64              `json:"count"`
	Error        *model.RunningError `json:"error,omitempty"`
}

func (t *table) info() TableInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settleLocked()
	ti := TableInfo{ID: t.id, State: t.state, StartTs: t.startTs, CheckpointTs: t.checkpoint, ResolvedTs: t.resolved, Count: t.count, Error: t.err}
	if t.name != (model.TableName{}) {
		ti.Name = t.name.String()
	}
	if t.hasBoundary {
		ti.BoundaryTs = t.boundary
	}
	return ti
}

// failure is the error the table failed with (nil unless failed).
func (t *table) failure() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cause
}

func (t *table) finished() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// setBoundary hands the table a delete operation: replicate up to ts, then
// stop.
func (t *table) setBoundary(ts model.Ts) {
	t.mu.Lock()
	changed := !t.hasBoundary || t.boundary != ts
	t.hasBoundary, t.boundary = true, ts
	if t.state == TableRunning {
		t.state = TableStopping
	}
	t.mu.Unlock()
	if changed {
		t.wake.poke()
	}
}

func (t *table) boundaryTs() (model.Ts, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.boundary, t.hasBoundary
}

// reachedBoundary reports whether a delete operation is done: the table is
// durable up to its boundary (or was already past it when the operation came).
func (t *table) reachedBoundary() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settleLocked()
	return t.hasBoundary && t.checkpoint >= t.boundary
}

func (t *table) setState(s TableState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s == TableRunning && t.hasBoundary {
		s = TableStopping
	}
	t.state = s
}

func (t *table) progress() (checkpoint, resolved model.Ts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settleLocked()
	return t.checkpoint, t.resolved
}

// settleLocked moves an idle table's checkpoint to where a flush would
// take it: with nothing buffered, everything up to min(live, barrier,
// boundary) is already in the sink, so no flush is needed to say so. It
// writes nothing downstream, but it still follows the lease as a flush
// would: a capture without its lease reports a checkpoint that stands
// still. The barrier is read under t.mu, so that every caller sees it at
// least as far as the one before, and the checkpoint never moves back.
func (t *table) settleLocked() {
	if !t.idle || !t.env.gate.valid() {
		return
	}
	b, _ := t.env.barrier.get()
	upto := min(t.live, b)
	if t.hasBoundary {
		upto = min(upto, t.boundary)
	}
	if upto > t.checkpoint {
		t.checkpoint = upto
	}
}

// absorbResolved takes a resolved ts the reader read with no transactions
// straight into an idle table, without waking its loop. It refuses while
// a batch is queued (whose transactions lie above live) and while a
// delete is pending (the loop must see its boundary reached).
func (t *table) absorbResolved(ts model.Ts) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.idle || t.inflight > 0 || t.hasBoundary {
		return false
	}
	t.live = max(t.live, ts)
	t.resolved = max(t.resolved, ts)
	return true
}

// flushTarget is how far the table may flush: what the sorter has released,
// capped by the changefeed barrier and by a pending delete's boundary.
func (t *table) flushTarget(resolved, barrier model.Ts) model.Ts {
	t.mu.Lock()
	defer t.mu.Unlock()
	upto := min(resolved, barrier)
	if t.hasBoundary {
		upto = min(upto, t.boundary)
	}
	return upto
}

func (t *table) fail(err error) {
	code := errorCode(err)
	t.mu.Lock()
	t.state = TableFailed
	t.cause = err
	t.err = &model.RunningError{Code: code, Message: fmt.Sprintf("table %d: %v", t.id, err), Time: time.Now().UTC()}
	cp := t.checkpoint
	t.mu.Unlock()
	t.log.Error().Err(err).Str("code", code).Uint64("checkpoint_ts", cp).Msg("table pipeline failed; reporting the error")
}

// run drives the pipeline until the table stops at its boundary, fails for
// good, or ctx is cancelled. Any error tears the whole pipeline down and
// restarts it from the checkpoint: after a failed Write or Flush the sink's
// buffer is in an unknown state, and only the checkpoint is known durable.
func (t *table) run(ctx context.Context) {
	defer t.env.finished.poke()
	defer close(t.done)

	// A table assigned together with a delete it is already past needs no
	// connectors at all; do not let a broken sink hold its stop up.
	if t.reachedBoundary() {
		t.stop()
		return
	}
	src, snk, err := t.env.connectors(ctx)
	if err != nil {
		return
	}
	bo := backoff{base: t.env.cfg.RetryBackoff, max: t.env.cfg.MaxRetryBackoff}
	failures := 0
	for {
		if t.reachedBoundary() {
			t.stop()
			return
		}
		before, _ := t.progress()
		var err error
		switch s := src.(type) {
		case source.StreamSource:
			if t.id != model.StreamUnitID {
				err = sourceErr(fmt.Errorf("table %d: the source is a single stream, whose tables run with its stream unit", t.id))
				break
			}
			err = t.runStream(ctx, s, snk)
		case source.SpanSource:
			err = t.runOnce(ctx, s, snk)
		default:
			err = sourceErr(fmt.Errorf("source %T can be neither subscribed to nor streamed", src))
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			t.stop()
			return
		}
		if errors.Is(err, source.ErrSnapshotLost) || sink.IsUnretryable(err) {
			// Another attempt would meet the same refusal: report it now
			// rather than after MaxRetries restarts.
			t.fail(err)
			return
		}
		if after, _ := t.progress(); after > before {
			failures = 0
			bo.reset()
		}
		failures++
		if failures > t.env.cfg.MaxRetries {
			t.fail(err)
			return
		}
		t.setState(TableStarting)
		wait := bo.next()
		t.log.Warn().Err(err).Str("code", errorCode(err)).Int("attempt", failures).Dur("retry_in", wait).Msg("table pipeline error; restarting from the checkpoint")
		if sleepCtx(ctx, wait) != nil {
			return
		}
	}
}

func (t *table) stop() {
	t.mu.Lock()
	t.state = TableStopped
	cp, b := t.checkpoint, t.boundary
	t.mu.Unlock()
	t.log.Info().Uint64("checkpoint_ts", cp).Uint64("boundary_ts", b).Msg("table stopped at its boundary")
}

// sized is a batch read from the source with each transaction's part of
// the quota bytes taken for it (measured once: sizing walks every value of
// every row).
type sized struct {
	b     source.TxnBatch
	sizes []int64
}

func txnBytes(txns []*model.Txn) int64 {
	var n int64
	for _, t := range txns {
		n += int64(t.ApproxSize())
	}
	return n
}

// txnSizes is each transaction's size and their sum.
func txnSizes(txns []*model.Txn) (sizes []int64, total int64) {
	sizes = make([]int64, len(txns))
	for i, t := range txns {
		sizes[i] = int64(t.ApproxSize())
		total += sizes[i]
	}
	return sizes, total
}

// runOnce is one attempt: open, subscribe from the checkpoint, replicate.
// It returns nil once the table reached its boundary.
func (t *table) runOnce(ctx context.Context, src source.SpanSource, snk sink.Sink) (err error) {
	// Opening (schema, sink table, subscription) is the costly part of a
	// start; thousands of tables dispatched at once would otherwise all
	// open at the same moment and starve everything else on the node.
	opening := t.env.opens != nil
	if opening {
		select {
		case t.env.opens <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	opened := func() {
		if opening {
			opening = false
			<-t.env.opens
		}
	}
	defer opened()
	name, err := t.env.resolveName(ctx, t.id)
	if err != nil {
		return sourceErr(err)
	}
	t.mu.Lock()
	t.name = name
	startTs := t.checkpoint
	t.live = startTs
	t.mu.Unlock()

	schema, err := src.SchemaAt(ctx, name, startTs)
	if err != nil {
		return sourceErr(fmt.Errorf("reading the schema of table %s at ts %d: %w", name, startTs, err))
	}
	// Anything committed upstream before now may already have been written
	// downstream by an earlier run of this table (every flush is capped by
	// a changefeed resolved ts, which is never above the upstream's current
	// ts): that is the replay window the sink makes idempotent.
	replayUntil, err := src.CurrentTs(ctx)
	if err != nil {
		return sourceErr(fmt.Errorf("reading the upstream's current ts for table %s: %w", name, err))
	}
	// Opening is a write too: a sink may fence the table's previous writer
	// downstream (the storage sink's staging directory), which only a
	// capture holding its lease may do.
	octx, leave, err := t.env.gate.enter(ctx)
	if err != nil {
		return err
	}
	ts, err := snk.OpenTable(octx, name, sink.TableOptions{StartTs: startTs, ReplayUntil: replayUntil, Schema: schema})
	leave()
	if err != nil {
		return sinkErr(fmt.Errorf("opening table %s in the sink: %w", name, err))
	}
	// Closing drops whatever was written but not flushed, which is exactly
	// what a stop, a fence or a restart from the checkpoint needs.
	defer ts.Close()

	sub, err := src.SubscribeTxns(ctx, name, startTs)
	if err != nil {
		return sourceErr(fmt.Errorf("subscribing to table %s from ts %d: %w", name, startTs, err))
	}
	opened()

	// held is every quota byte this attempt took; whatever is not released
	// by a flush goes back when the attempt ends.
	var held atomic.Int64
	quota := t.env.quota
	// within: the table's resolved ts is at most slack above the flush
	// barrier. At or below it (slack 0) the table holds the changefeed
	// back and may read past a full quota; near it (within the read
	// window) it may read past the read-ahead, up to the quota: the next
	// barrier step needs it.
	within := func(slack model.Ts) bool {
		b, _ := t.env.barrier.get()
		_, r := t.progress()
		return r <= b+slack
	}
	holdsBarrier := func() bool { return within(0) }
	var nearBarrier func() bool
	if w := t.env.cfg.ReadWindow; w > 0 {
		window := model.Ts(w.Milliseconds()) << 18 // a TSO's physical part is in ms
		nearBarrier = func() bool { return within(window) }
	}
	nearOrHolding := holdsBarrier
	if nearBarrier != nil {
		nearOrHolding = nearBarrier
	}
	barrierWake := func() <-chan struct{} { _, ch := t.env.barrier.get(); return ch }

	rctx, cancel := context.WithCancel(ctx)
	batches := make(chan sized, 1)
	readErr := make(chan error, 1)
	readerDone := make(chan struct{})
	// Next blocks; reading in its own goroutine lets the pipeline flush when
	// the barrier moves even if the source is quiet.
	go func() {
		defer close(readerDone)
		// The size of the next batch is not known before it is read, and a
		// batch read before the quota admits it is memory nobody counted.
		// So the reader takes the last batch's size before reading, and
		// squares up with the real size after.
		var reserve int64
		for {
			if reserve > 0 && !t.env.preacquired {
				// Asked again whenever memory is released or the barrier
				// moves.
				if err := quota.acquire(rctx, reserve, nearBarrier, holdsBarrier, barrierWake); err != nil {
					readErr <- err
					return
				}
				held.Add(reserve)
			}
			// The control plane first: while the node is starved of CPU
			// the reader asks for nothing more.
			if err := t.env.pressure.wait(rctx); err != nil {
				readErr <- err
				return
			}
			b, err := sub.Next(rctx)
			if err != nil {
				readErr <- err
				return
			}
			sizes, n := txnSizes(b.Txns)
			switch {
			case t.env.preacquired:
				held.Add(n)
			case n > reserve:
				// Already read: take the rest without waiting, as a table
				// holding the barrier back would.
				_ = quota.acquire(rctx, n-reserve, nil, func() bool { return true }, nil)
				held.Add(n - reserve)
			case n < reserve:
				quota.release(reserve - n)
				held.Add(n - reserve)
			}
			reserve = n
			if len(b.Txns) == 0 && t.absorbResolved(b.ResolvedTs) {
				continue
			}
			t.mu.Lock()
			t.inflight++
			t.mu.Unlock()
			select {
			case batches <- sized{b: b, sizes: sizes}:
			case <-rctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		sub.Close()
		<-readerDone
		quota.release(held.Swap(0))
		// The sorter and the sink's buffer go with this attempt; whatever
		// the next one does starts from the checkpoint.
		t.mu.Lock()
		t.idle, t.inflight = false, 0
		t.mu.Unlock()
	}()

	t.setState(TableRunning)
	t.log.Info().Str("table", name.String()).Uint64("start_ts", startTs).Msg("table pipeline started")

	srt := newSorter(t.env.spillDir(t.id))
	defer srt.close()
	var (
		resolved   = startTs // the source has given every transaction up to here
		checkpoint = startTs
	)
	write := func(txns []*model.Txn) error {
		wctx, leave, err := t.env.gate.enter(ctx)
		if err != nil {
			return err
		}
		defer leave()
		return ts.Write(wctx, txns)
	}
	for {
		// An idle spell moved live (the reader) and the checkpoint
		// (settleLocked) past what this loop last saw.
		t.mu.Lock()
		t.settleLocked()
		resolved = max(resolved, t.live)
		checkpoint = max(checkpoint, t.checkpoint)
		t.mu.Unlock()
		barrier, barrierChanged := t.env.barrier.get()
		// Transactions go to the sink only once they can be flushed: the
		// sorter (which can spill) holds them until then, not the sink.
		if upto := t.flushTarget(resolved, barrier); upto > checkpoint {
			n, freed, err := srt.release(upto, write)
			quota.release(freed)
			held.Add(-freed)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return sinkErr(fmt.Errorf("writing transactions of table %s up to %d: %w", name, upto, err))
			}
			fctx, leave, err := t.env.gate.enter(ctx)
			if err != nil {
				return err
			}
			err = ts.Flush(fctx, upto)
			leave()
			if err != nil {
				return sinkErr(fmt.Errorf("flushing table %s up to %d: %w", name, upto, err))
			}
			checkpoint = upto
			t.mu.Lock()
			t.checkpoint = max(t.checkpoint, upto)
			t.count += n
			t.mu.Unlock()
			t.env.flushed(n)
		}
		if t.reachedBoundary() {
			return nil
		}
		// With nothing buffered the loop sleeps through barrier steps and
		// resolved ts alone: the checkpoint follows them without it
		// (settleLocked), and only a batch with transactions, an error, a
		// boundary or a cancel wakes it.
		idle := srt.empty()
		t.mu.Lock()
		t.idle = idle
		t.mu.Unlock()
		if idle {
			barrierChanged = nil
		}
		select {
		case sb := <-batches:
			t.mu.Lock()
			t.inflight--
			if t.idle {
				t.settleLocked()
				t.idle = false
			}
			resolved = max(resolved, t.live)
			t.mu.Unlock()
			b := sb.b
			// The reader took the sum of the transactions' sizes; each keeps
			// its part until it is flushed or dropped.
			var dropped int64
			for i, txn := range b.Txns {
				sz := sb.sizes[i]
				// Transactions at or below the resolved ts would arrive out
				// of order; the source promised there are none.
				if txn.CommitTs > resolved {
					srt.add(pendingTxn{txn: txn, bytes: sz})
				} else {
					dropped += sz
				}
			}
			quota.release(dropped)
			held.Add(-dropped)
			if srt.memBytes > 0 && quota.overLimit(nearOrHolding) {
				// Over the quota (a table that holds the barrier back may
				// read past it): move this table's buffered transactions to
				// disk.
				freed, err := srt.spill()
				if err != nil {
					return sourceErr(fmt.Errorf("spilling table %s to disk: %w", name, err))
				}
				quota.release(freed)
				held.Add(-freed)
				t.env.spilled(freed)
			}
			if b.ResolvedTs > resolved {
				resolved = b.ResolvedTs
				t.mu.Lock()
				t.live = max(t.live, resolved)
				t.resolved = max(t.resolved, resolved)
				t.mu.Unlock()
			}
		case err := <-readErr:
			return sourceErr(fmt.Errorf("reading table %s: %w", name, err))
		case <-barrierChanged:
		case <-t.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pendingTxn is a transaction in the sorter with the quota bytes it holds.
type pendingTxn struct {
	txn   *model.Txn
	bytes int64
}
