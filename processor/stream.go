package processor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
)

// A single-stream changefeed (PostgreSQL) is scheduled as one unit, the
// stream unit (model.StreamUnitID): the capture that holds it reads the
// stream and runs every table of the changefeed itself. See DESIGN.md,
// "Single-stream sources", for why the tables are not spread.
//
// A stream session opens the stream at the newest safe position, starts a
// local pipeline per table fed by a demultiplexer, and keeps the positions
// the stream hands out; a position becomes safe once every local table has
// flushed past its ts. Any local table's failure ends the session and the
// unit restarts from the last safe position: the stream cannot replay one
// table alone.

// streamEnv is what a stream unit reads from its processor.
type streamEnv struct {
	// state returns the changefeed's stream tables, the position the owner
	// recorded (nil before the first) and the changefeed's start ts.
	state func() (tables []model.TableName, recorded *model.StreamPosition, startTs model.Ts)
	// changed fires when the changefeed status changes (a newly recorded
	// position to confirm).
	changed func() <-chan struct{}
	// report publishes the newest safe position, for the task position.
	report func(*model.StreamPosition)
}

// streamItem is one step of the stream in commit order: a DDL or the rows
// of one transaction.
type streamItem struct {
	ddl *model.DDLEvent
	txn *model.Txn
}

func (t *table) runStream(ctx context.Context, src source.StreamSource, snk sink.Sink) error {
	env := t.env.stream
	tables, recorded, startTs := env.state()
	t.mu.Lock()
	safe := t.safePos
	t.mu.Unlock()
	if safe == nil || (recorded != nil && recorded.Ts > safe.Ts) {
		safe = recorded
	}
	opts := source.StreamOptions{StartTs: startTs, Tables: tables}
	if safe != nil {
		opts.Position, opts.StartTs = safe.Position, safe.Ts
	} else {
		t.mu.Lock()
		opts.StartTs = max(opts.StartTs, t.startTs)
		t.mu.Unlock()
	}
	sessionTs := opts.StartTs

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := src.OpenStream(sctx, opts)
	if err != nil {
		return sourceErr(fmt.Errorf("opening the stream at ts %d: %w", sessionTs, err))
	}
	defer stream.Close()

	s := &streamSession{
		unit: t, src: src, snk: snk, stream: stream, start: sessionTs,
		dmx:      newDemux(t.env.quota, cancel),
		children: map[model.TableID]*table{},
		kick:     newKick(),
		confirm:  recorded,
	}
	defer s.stopChildren()
	defer s.dmx.close()
	t.mu.Lock()
	t.checkpoint, t.resolved = max(t.checkpoint, sessionTs), max(t.resolved, sessionTs)
	t.mu.Unlock()
	for _, tn := range tables {
		s.startChild(sctx, tn, sessionTs)
	}
	t.setState(TableRunning)
	t.log.Info().Uint64("start_ts", sessionTs).Int("tables", len(tables)).Bool("resumed", opts.Position != "").Msg("stream session started")
	if recorded != nil {
		if err := stream.Confirm(sctx, recorded.Position); err != nil {
			return sourceErr(fmt.Errorf("confirming position at ts %d upstream: %w", recorded.Ts, err))
		}
	}
	return s.run(sctx)
}

type streamSession struct {
	unit   *table
	src    source.StreamSource
	snk    sink.Sink
	stream source.Stream
	start  model.Ts
	dmx    *demux

	mu       sync.Mutex
	children map[model.TableID]*table
	cancels  []context.CancelFunc
	kick     kick

	// positions the stream handed out, oldest first, not yet safe.
	positions []model.StreamPosition
	confirm   *model.StreamPosition
}

func (s *streamSession) startChild(ctx context.Context, tn model.TableName, startTs model.Ts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.children[tn.ID]; ok {
		return
	}
	s.dmx.register(tn, startTs)
	parent := s.unit.env
	env := *parent
	env.connectors = func(context.Context) (source.Upstream, sink.Sink, error) {
		return &demuxSource{Upstream: s.src, dmx: s.dmx}, s.snk, nil
	}
	env.preacquired = true
	env.finished = s.kick
	env.flushed = func(n uint64) {
		parent.flushed(n)
		s.kick.poke()
	}
	env.resolveName = func(context.Context, model.TableID) (model.TableName, error) { return tn, nil }
	env.log = parent.log.With().Str("stream_table", tn.String()).Logger()
	child := newTable(tn.ID, startTs, &env)
	cctx, cancel := context.WithCancel(ctx)
	child.cancel = cancel
	s.children[tn.ID] = child
	s.cancels = append(s.cancels, cancel)
	go child.run(cctx)
}

func (s *streamSession) stopChild(id model.TableID) {
	s.mu.Lock()
	child := s.children[id]
	delete(s.children, id)
	s.mu.Unlock()
	if child != nil {
		child.cancel()
		<-child.done
	}
	s.dmx.unregister(id)
}

func (s *streamSession) stopChildren() {
	s.mu.Lock()
	children := make([]*table, 0, len(s.children))
	for _, c := range s.children {
		children = append(children, c)
	}
	s.mu.Unlock()
	for _, c := range children {
		c.cancel()
	}
	for _, c := range children {
		<-c.done
	}
}

// progress is the minimum checkpoint and resolved ts over the local tables,
// and whether one of them gave up.
func (s *streamSession) progress() (ckpt, resolved model.Ts, failed error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ckpt, resolved = math.MaxUint64, math.MaxUint64
	for _, c := range s.children {
		if c.finished() {
			if ti := c.info(); ti.State == TableFailed {
				// Wrapping the table's own error keeps its code: a sink's
				// unretryable refusal fails the unit at once too.
				return 0, 0, fmt.Errorf("table %s: %w", ti.Name, c.failure())
			}
		}
		cp, rs := c.progress()
		ckpt, resolved = min(ckpt, cp), min(resolved, rs)
	}
	return ckpt, resolved, nil
}

// update recomputes the unit's checkpoint, resolved ts and newest safe
// position from its tables, and confirms upstream what the owner recorded.
func (s *streamSession) update(ctx context.Context, streamResolved model.Ts) error {
	ckpt, resolved, failed := s.progress()
	if failed != nil {
		return failed
	}
	if ckpt == math.MaxUint64 { // no tables: the stream alone decides
		ckpt, resolved = streamResolved, streamResolved
	}
	// The dispatcher may still hold items it has not handed to the tables.
	resolved = min(resolved, streamResolved)
	var safe *model.StreamPosition
	for len(s.positions) > 0 && s.positions[0].Ts <= ckpt {
		p := s.positions[0]
		safe = &p
		s.positions = s.positions[1:]
	}
	u := s.unit
	if b, ok := u.boundaryTs(); ok {
		// A move or drain: every table stops exactly at the boundary.
		s.mu.Lock()
		for _, c := range s.children {
			c.setBoundary(b)
		}
		s.mu.Unlock()
	}
	var snap *model.SnapshotProgress
	if pr, ok := s.stream.(source.ProgressReporter); ok {
		if p := pr.SnapshotProgress(); p.Copying {
			snap = &model.SnapshotProgress{TablesTotal: p.TablesTotal, TablesDone: p.TablesDone, Rows: p.Rows, Bytes: p.Bytes,
				EstRows: p.EstRows, ETASeconds: p.ETA.Round(time.Second).Seconds()}
		}
	}
	u.mu.Lock()
	u.checkpoint = max(u.checkpoint, ckpt)
	u.resolved = max(u.resolved, resolved)
	if safe != nil {
		u.safePos = safe
	}
	cur := u.safePos
	u.snapshot = snap
	u.mu.Unlock()
	if safe != nil {
		u.env.stream.report(cur)
	}
	_, recorded, _ := u.env.stream.state()
	if recorded != nil && (s.confirm == nil || recorded.Ts > s.confirm.Ts) {
		if err := s.stream.Confirm(ctx, recorded.Position); err != nil {
			return sourceErr(fmt.Errorf("confirming position at ts %d upstream: %w", recorded.Ts, err))
		}
		s.confirm = recorded
	}
	return nil
}

func (s *streamSession) run(ctx context.Context) error {
	batches := make(chan source.StreamBatch, 1)
	readErr := make(chan error, 1)
	go s.read(ctx, batches, readErr)
	streamResolved := s.start
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := s.update(ctx, streamResolved); err != nil {
			return err
		}
		if s.unit.reachedBoundary() {
			return nil
		}
		select {
		case b := <-batches:
			if err := s.apply(ctx, b, streamResolved); err != nil {
				return err
			}
			if b.ResolvedTs > streamResolved {
				streamResolved = b.ResolvedTs
				s.dmx.resolve(streamResolved)
				if b.Position != "" {
					s.positions = append(s.positions, model.StreamPosition{Ts: b.ResolvedTs, Position: b.Position})
				}
			}
		case err := <-readErr:
			return sourceErr(fmt.Errorf("reading the stream: %w", err))
		case <-s.kick:
		case <-s.unit.wake:
		case <-s.unit.env.stream.changed():
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read takes batches from the stream after taking their bytes from the
// memory quota. It may go past a full quota only when nothing buffered can
// be flushed (every table has flushed everything the stream resolved), as
// when one transaction is larger than the quota: the tables then spill.
func (s *streamSession) read(ctx context.Context, out chan<- source.StreamBatch, errc chan<- error) {
	q := s.unit.env.quota
	mayForce := func() bool {
		ckpt, _, failed := s.progress()
		return failed == nil && ckpt >= s.dmx.resolvedTs()
	}
	wake := func() <-chan struct{} { return s.kick }
	for {
		b, err := s.stream.Next(ctx)
		if err != nil {
			errc <- err
			return
		}
		n := txnBytes(b.Txns)
		if n > 0 {
			if err := q.acquire(ctx, n, nil, mayForce, wake); err != nil {
				errc <- err
				return
			}
		}
		select {
		case out <- b:
		case <-ctx.Done():
			q.release(n)
			return
		}
	}
}

// apply hands a batch's DDLs and transactions to the tables in commit
// order, holding each DDL until every table has flushed everything before
// it, then executing it once through the sink (the local DDL barrier: all
// of the changefeed's tables are here).
func (s *streamSession) apply(ctx context.Context, b source.StreamBatch, resolved model.Ts) error {
	items := make([]streamItem, 0, len(b.DDLs)+len(b.Txns))
	for _, d := range b.DDLs {
		items = append(items, streamItem{ddl: d})
	}
	for _, t := range b.Txns {
		items = append(items, streamItem{txn: t})
	}
	ts := func(it streamItem) model.Ts {
		if it.ddl != nil {
			return it.ddl.CommitTs
		}
		return it.txn.CommitTs
	}
	// DDLs first among equals: a DDL at ts applies to that ts's rows.
	sort.SliceStable(items, func(i, j int) bool {
		if ts(items[i]) != ts(items[j]) {
			return ts(items[i]) < ts(items[j])
		}
		return items[i].ddl != nil && items[j].ddl == nil
	})
	for _, it := range items {
		if it.txn != nil {
			if err := s.route(ctx, it.txn); err != nil {
				return err
			}
			continue
		}
		if err := s.runDDL(ctx, it.ddl); err != nil {
			return err
		}
	}
	return nil
}

// route splits a transaction by table and queues each part.
func (s *streamSession) route(ctx context.Context, txn *model.Txn) error {
	parts := map[model.TableID]*model.Txn{}
	var order []model.TableID
	for _, r := range txn.Rows {
		id := r.Schema.Table.ID
		p := parts[id]
		if p == nil {
			p = &model.Txn{StartTs: txn.StartTs, CommitTs: txn.CommitTs}
			parts[id] = p
			order = append(order, id)
		}
		p.Rows = append(p.Rows, r)
	}
	total := int64(txn.ApproxSize())
	var given int64
	for _, id := range order {
		p := parts[id]
		if !s.dmx.known(id) {
			// A table the stream added without a DDL we saw: run it from
			// just before this transaction.
			s.startChild(ctx, p.Rows[0].Schema.Table, txn.CommitTs-1)
		}
		sz := int64(p.ApproxSize())
		given += sz
		s.dmx.push(id, p, sz)
	}
	// Splitting changes the estimate a little; square the quota with what
	// the reader took, so that releases add up exactly.
	if d := total - given; d > 0 {
		s.unit.env.quota.release(d)
	} else if d < 0 {
		_ = s.unit.env.quota.acquire(ctx, -d, nil, func() bool { return true }, nil)
	}
	return nil
}

func (s *streamSession) runDDL(ctx context.Context, d *model.DDLEvent) error {
	// Everything before the DDL goes to the tables and must be flushed.
	s.dmx.resolve(d.CommitTs - 1)
	for {
		ckpt, _, failed := s.progress()
		if failed != nil {
			return failed
		}
		if ckpt >= d.CommitTs-1 || ckpt == math.MaxUint64 {
			break
		}
		// Report the resolved ts the tables reached, so the owner moves the
		// flush barrier up to the DDL.
		if err := s.update(ctx, d.CommitTs-1); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.kick:
		case <-time.After(20 * time.Millisecond):
		}
	}
	dctx, leave, err := s.unit.env.gate.enter(ctx)
	if err != nil {
		return err
	}
	err = s.snk.EmitDDL(dctx, d)
	leave()
	if err != nil {
		return sinkErr(fmt.Errorf("executing DDL %q (commit ts %d) downstream: %w", d.Query, d.CommitTs, err))
	}
	s.unit.log.Info().Str("ddl_kind", string(d.Kind)).Uint64("ddl_ts", d.CommitTs).Str("query", d.Query).Msg("DDL executed downstream")
	for i, tn := range d.Tables {
		var after *model.TableSchema
		if i < len(d.After) {
			after = d.After[i]
		}
		switch d.Kind {
		case model.DDLCreateTable:
			if after != nil {
				s.startChild(ctx, after.Table, d.CommitTs)
			}
		case model.DDLDropTable:
			s.stopChild(tn.ID)
		}
	}
	return nil
}

// demux hands the stream's transactions to the local tables' pipelines.
// Its queues are unbounded: the stream reader already holds the quota for
// everything queued, and a queue that blocked would stall every other
// table (and with them the flush barrier).
type demux struct {
	quota *memQuota
	// rewind ends the session when a table asks for the stream again.
	rewind func()

	mu       sync.Mutex
	closed   bool
	resolved model.Ts
	subs     map[model.TableID]*demuxSub
}

type demuxSub struct {
	table      model.TableName
	startTs    model.Ts
	subscribed bool
	queue      []*model.Txn
	bytes      int64
	resolved   model.Ts
	notify     chan struct{}
}

func newDemux(q *memQuota, rewind func()) *demux {
	return &demux{quota: q, rewind: rewind, subs: map[model.TableID]*demuxSub{}}
}

func (d *demux) register(tn model.TableName, startTs model.Ts) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.subs[tn.ID]; !ok {
		d.subs[tn.ID] = &demuxSub{table: tn, startTs: startTs, resolved: startTs, notify: make(chan struct{}, 1)}
	}
}

func (d *demux) unregister(id model.TableID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sub := d.subs[id]; sub != nil {
		d.quota.release(sub.bytes)
		delete(d.subs, id)
	}
}

func (d *demux) known(id model.TableID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.subs[id]
	return ok
}

func (d *demux) resolvedTs() model.Ts {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resolved
}

func (d *demux) push(id model.TableID, txn *model.Txn, bytes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sub := d.subs[id]
	if sub == nil || d.closed || txn.CommitTs <= sub.startTs {
		d.quota.release(bytes)
		return
	}
	sub.queue = append(sub.queue, txn)
	sub.bytes += bytes
	poke(sub.notify)
}

func (d *demux) resolve(ts model.Ts) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ts <= d.resolved {
		return
	}
	d.resolved = ts
	for _, sub := range d.subs {
		if ts > sub.resolved {
			sub.resolved = ts
			poke(sub.notify)
		}
	}
}

func (d *demux) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for _, sub := range d.subs {
		d.quota.release(sub.bytes)
		sub.queue, sub.bytes = nil, 0
		poke(sub.notify)
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// errStreamRewind: a table pipeline asked for the stream again within one
// session; only a new session (from the last safe position) can replay.
var errStreamRewind = errors.New("a stream table cannot be re-read alone; the stream unit restarts")

// demuxSource is the span-source face the local table pipelines see.
type demuxSource struct {
	source.Upstream
	dmx *demux
}

func (s *demuxSource) SubscribeTxns(ctx context.Context, table model.TableName, startTs model.Ts) (source.TxnSubscription, error) {
	s.dmx.mu.Lock()
	defer s.dmx.mu.Unlock()
	sub := s.dmx.subs[table.ID]
	if sub == nil {
		return nil, fmt.Errorf("table %s is not part of the stream", table)
	}
	if sub.subscribed {
		// The table restarts after an error; the rows it had but did not
		// flush are gone from the stream. Restart the whole session.
		go s.dmx.rewind()
		return nil, errStreamRewind
	}
	sub.subscribed = true
	return &demuxSubscription{dmx: s.dmx, id: table.ID, sub: sub}, nil
}

func (s *demuxSource) SubscribeDDL(context.Context, model.Ts) (source.DDLSubscription, error) {
	return nil, errors.New("a stream's DDL is handled by its stream unit")
}

type demuxSubscription struct {
	dmx  *demux
	id   model.TableID
	sub  *demuxSub
	last model.Ts
}

func (s *demuxSubscription) Next(ctx context.Context) (source.TxnBatch, error) {
	for {
		s.dmx.mu.Lock()
		if s.dmx.closed {
			s.dmx.mu.Unlock()
			return source.TxnBatch{}, errors.New("the stream session ended")
		}
		sub := s.sub
		if len(sub.queue) > 0 || sub.resolved > s.last {
			b := source.TxnBatch{Txns: sub.queue, ResolvedTs: sub.resolved}
			// The bytes now belong to the table pipeline, which releases
			// them when it flushes or drops the transactions.
			sub.queue, sub.bytes = nil, 0
			// The resolved ts may only cover what was queued: with the
			// dispatcher in the middle of a batch, transactions at the
			// stream's resolved ts may still come.
			s.last = sub.resolved
			s.dmx.mu.Unlock()
			return b, nil
		}
		ch := sub.notify
		s.dmx.mu.Unlock()
		select {
		case <-ctx.Done():
			return source.TxnBatch{}, ctx.Err()
		case <-ch:
		}
	}
}

func (s *demuxSubscription) Close() error { return nil }
