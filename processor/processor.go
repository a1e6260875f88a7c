package processor

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/raftcdc/raftcdc/internal/redact"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
	"github.com/rs/zerolog"
)

// feedState is what a processor needs from the FSM, read in one view.
type feedState struct {
	info   model.ChangefeedInfo
	status *model.ChangefeedStatus // nil until the owner writes it
	task   model.TaskStatus
	// schema is the metadata schema the cluster runs at: from
	// meta.TablesSchemaVersion on, positions are written grouped.
	schema int
}

// processorDeps is what a processor borrows from its manager.
type processorDeps struct {
	cfg         Config
	log         zerolog.Logger
	proposer    Proposer
	conns       Connectors
	gate        *gate
	opens       chan struct{}
	pressure    *pressure
	metrics     *metrics
	incarnation uint64
	// onFenced reports that a write was refused because this incarnation is
	// no longer registered.
	onFenced func(error)
}

// processor runs one changefeed's tables on this capture.
type processor struct {
	cf   model.ChangefeedID
	deps processorDeps
	log  zerolog.Logger
	// prevPos is the position an earlier processor of this changefeed left
	// on this capture; it answers for delete operations on tables this one
	// never ran.
	prevPos *model.TaskPosition

	stateMu   sync.Mutex
	state     feedState
	stateKick kick
	tableKick kick
	// walked is the task status the last reconcile went over table by
	// table (the first reconcile always does). Only the run goroutine uses
	// it.
	walked model.TaskStatus

	barrier *tsCell
	ready   chan struct{} // closed once src and snk are open
	src     source.Upstream
	snk     sink.Sink
	quota   *memQuota

	namesMu sync.Mutex
	names   map[model.TableID]model.TableName
	// listed is the status's table list as last seen; it is copied into
	// names only when a table needs a name after the list changed
	// (listedIn false): copying a 30,000-entry list into the map at every
	// status change was a noticeable share of a large node's CPU (issue 16).
	listed   []model.TableName
	listedIn bool

	count atomic.Uint64 // rows flushed by every table this processor ran

	// statusChanged wakes a stream unit when the state changes (a position
	// recorded by the owner, to confirm upstream).
	statusChanged *broadcast

	mu     sync.Mutex // guards what Processors() reads
	tables map[model.TableID]*table
	// streamPos is the stream unit's newest safe position.
	streamPos *model.StreamPosition
	stopped   map[model.TableID]model.Ts
	err       *model.RunningError

	// Owned by the run goroutine.
	lastPos        []byte
	lastRunning    int
	nextReportAt   time.Time
	nextUrgentAt   time.Time
	lastWorkload   []byte
	lastWorkloadAt time.Time
	lastCounts     map[model.TableID]uint64

	cancel context.CancelFunc
	done   chan struct{}
}

func newProcessor(cf model.ChangefeedID, st feedState, prev *model.TaskPosition, deps processorDeps) *processor {
	p := &processor{
		cf:            cf,
		deps:          deps,
		log:           deps.log.With().Str("changefeed", cf).Logger(),
		prevPos:       prev,
		state:         st,
		stateKick:     newKick(),
		tableKick:     newKick(),
		barrier:       newTsCell(),
		ready:         make(chan struct{}),
		names:         map[model.TableID]model.TableName{},
		tables:        map[model.TableID]*table{},
		stopped:       map[model.TableID]model.Ts{},
		lastCounts:    map[model.TableID]uint64{},
		done:          make(chan struct{}),
		quota:         newMemQuota(st.info.Config.MemoryQuotaBytes(), deps.cfg.ReadAhead),
		statusChanged: newBroadcast(),
	}
	// The capture's row count continues across processor restarts; the
	// owner folds it into the changefeed status when it deletes the position.
	if prev != nil {
		p.count.Store(prev.Count)
		if prev.Epoch != st.info.Epoch {
			// Only a position of this run of the changefeed says what is
			// already flushed for the current assignment.
			p.prevPos = nil
		}
	}
	return p
}

// start runs the processor until stop.
func (p *processor) start(ctx context.Context) {
	// Every sink call carries who writes (sink/flushlog records it).
	ctx = sink.WithWriter(ctx, sink.Writer{Changefeed: p.cf, Capture: p.deps.cfg.CaptureID, Incarnation: p.deps.incarnation})
	ctx, p.cancel = context.WithCancel(ctx)
	go p.run(ctx)
}

// stop cancels every table, waits for them, and closes the connectors.
// Unflushed rows are dropped.
func (p *processor) stop() {
	p.cancel()
	<-p.done
}

func (p *processor) update(st feedState) {
	p.stateMu.Lock()
	p.state = st
	p.stateMu.Unlock()
	p.stateKick.poke()
	p.statusChanged.fire()
}

func (p *processor) currentState() feedState {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.state
}

func (p *processor) run(ctx context.Context) {
	defer close(p.done)
	p.log.Info().Str("source_uri", redact.URI(p.currentState().info.SourceURI)).Msg("processor started")

	var openerDone sync.WaitGroup
	openerDone.Add(1)
	go func() { defer openerDone.Done(); p.openConnectors(ctx) }()

	defer func() {
		p.mu.Lock()
		tables := slices.Collect(maps.Values(p.tables))
		p.mu.Unlock()
		for _, t := range tables {
			t.cancel()
		}
		for _, t := range tables {
			<-t.done
		}
		openerDone.Wait()
		if p.snk != nil {
			if err := p.snk.Close(); err != nil {
				p.log.Warn().Err(err).Msg("closing sink")
			}
		}
		if p.src != nil {
			if err := p.src.Close(); err != nil {
				p.log.Warn().Err(err).Msg("closing source")
			}
		}
		p.log.Info().Msg("processor stopped")
	}()

	ticker := time.NewTicker(p.deps.cfg.FlushInterval)
	defer ticker.Stop()
	// While a table waits for memory, only the barrier moving frees it, and
	// the barrier moves on reports: they go out every promptReport then
	// instead of every flush interval (a catch-up otherwise idles for most
	// of each interval).
	promptReport := max(p.deps.cfg.FlushInterval/10, time.Millisecond)
	var prompt <-chan time.Time
	p.reconcile(ctx, p.currentState(), true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.stateKick:
			p.reconcile(ctx, p.currentState(), false)
		case <-p.tableKick:
			p.reconcile(ctx, p.currentState(), true)
		case <-ticker.C:
			p.report(ctx)
		case <-p.quota.blocked:
			if prompt == nil {
				prompt = time.After(promptReport)
			}
		case <-prompt:
			prompt = nil
			p.report(ctx)
			if p.quota.waiters() > 0 {
				prompt = time.After(promptReport)
			}
		}
	}
}

// openConnectors opens the changefeed's source and sink, retrying; after
// MaxRetries failures the error is reported and the processor waits for the
// owner to act on it.
func (p *processor) openConnectors(ctx context.Context) {
	info := p.currentState().info
	cfg := p.deps.cfg
	bo := backoff{base: cfg.RetryBackoff, max: cfg.MaxRetryBackoff}
	for attempt := 1; ; attempt++ {
		code := CodeSourceError
		src, err := p.deps.conns.SourceFor(ctx, p.cf, info.SourceURI)
		if err == nil {
			var snk sink.Sink
			snk, err = p.deps.conns.OpenChangefeedSink(ctx, info.ID, info.SinkURI, info.Config)
			if err == nil {
				p.src, p.snk = src, snk
				close(p.ready)
				return
			}
			code = CodeSinkError
			err = fmt.Errorf("opening sink: %w", err)
			src.Close()
		} else {
			err = fmt.Errorf("opening source: %w", err)
		}
		if ctx.Err() != nil {
			return
		}
		if attempt >= cfg.MaxRetries {
			p.setError(code, err)
			return
		}
		wait := bo.next()
		p.log.Warn().Err(err).Str("code", code).Int("attempt", attempt).Dur("retry_in", wait).Msg("cannot open connectors; retrying")
		if sleepCtx(ctx, wait) != nil {
			return
		}
	}
}

func (p *processor) connectors(ctx context.Context) (source.Upstream, sink.Sink, error) {
	select {
	case <-p.ready:
		return p.src, p.snk, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

func (p *processor) resolveName(ctx context.Context, id model.TableID) (model.TableName, error) {
	p.namesMu.Lock()
	if !p.listedIn {
		// A new status list: its names (a rename among them) win.
		for _, n := range p.listed {
			p.names[n.ID] = n
		}
		p.listedIn = true
	}
	name, ok := p.names[id]
	p.namesMu.Unlock()
	if ok {
		return name, nil
	}
	// The owner records the changefeed's tables in its status; asking the
	// source is the fallback for a status that does not list them yet.
	all, err := p.src.TablesAt(ctx, p.currentCheckpoint())
	if err != nil {
		return model.TableName{}, fmt.Errorf("listing source tables to find table %d: %w", id, err)
	}
	p.namesMu.Lock()
	defer p.namesMu.Unlock()
	for _, n := range all {
		if _, known := p.names[n.ID]; !known {
			p.names[n.ID] = n
		}
	}
	if name, ok := p.names[id]; ok {
		return name, nil
	}
	return model.TableName{}, fmt.Errorf("table %d is not in the source", id)
}

// spillDir is a fresh directory name for one run of a table's sorter:
// <SpillDir>/<changefeed>/<table>-<random>, so that two attempts never share
// files and a stale directory from a crash is told apart (and removed at
// start, see Manager.Run).
func (p *processor) spillDir(id model.TableID) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return filepath.Join(p.deps.cfg.SpillDir, p.cf, fmt.Sprintf("%d-%s", id, hex.EncodeToString(b[:])))
}

// currentCheckpoint is the changefeed checkpoint as last seen, the ts at
// which table names are looked up when the status does not list them.
func (p *processor) currentCheckpoint() model.Ts {
	st := p.currentState()
	if st.status != nil {
		return st.status.CheckpointTs
	}
	return st.info.StartTs
}

func (p *processor) setError(code string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return // the first error is the cause; keep the report stable
	}
	p.err = &model.RunningError{Addr: p.deps.cfg.AdvertiseAddr, Code: code, Message: err.Error(), Time: time.Now().UTC()}
	p.log.Error().Err(err).Str("code", code).Msg("processor error reported")
}

func (p *processor) tableEnv() *tableEnv {
	return &tableEnv{
		cfg:        p.deps.cfg,
		log:        p.log,
		gate:       p.deps.gate,
		opens:      p.deps.opens,
		pressure:   p.deps.pressure,
		barrier:    p.barrier,
		connectors: p.connectors,
		quota:      p.quota,
		spillDir:   p.spillDir,
		stream: streamEnv{
			state: func() ([]model.TableName, *model.StreamPosition, model.Ts) {
				st := p.currentState()
				if st.status == nil {
					return nil, nil, st.info.StartTs
				}
				return st.status.StreamTables, st.status.StreamPosition, max(st.info.StartTs, st.status.CheckpointTs)
			},
			changed: p.statusChanged.wait,
			report: func(pos *model.StreamPosition) {
				p.mu.Lock()
				p.streamPos = pos
				p.mu.Unlock()
			},
		},
		spilled: func(n int64) {
			p.deps.metrics.spilledBytes.WithLabelValues(p.cf).Add(float64(n))
		},
		resolveName: p.resolveName,
		flushed: func(n uint64) {
			p.count.Add(n)
			p.deps.metrics.rowsFlushed.WithLabelValues(p.cf).Add(float64(n))
		},
		finished: p.tableKick,
	}
}

// reconcile brings the running tables in line with the task status.
// tablesChanged says a table stopped or failed (or nothing was walked yet);
// otherwise only the changefeed's state changed, and unless the task status
// did too, there is nothing to do table by table: the status changes with
// every checkpoint advance, and walking a 33,000-table capture's tables for
// each was the reconcile costing in proportion to the tables, not to what
// changed.
func (p *processor) reconcile(ctx context.Context, st feedState, tablesChanged bool) {
	p.setBarrier(st)
	if st.status != nil {
		p.namesMu.Lock()
		// The status is decoded once per revision and shared, so the same
		// backing array means the same list.
		if l := st.status.Tables; len(l) != len(p.listed) || (len(l) > 0 && &l[0] != &p.listed[0]) {
			p.listed, p.listedIn = l, false
		}
		p.namesMu.Unlock()
	}
	if !tablesChanged && sameTask(p.walked, st.task) {
		return
	}
	p.walked = st.task
	p.deps.metrics.reconcileWalks.WithLabelValues(p.cf).Inc()
	task := st.task
	isDelete := func(id model.TableID) (model.Ts, bool) {
		if op := task.Operations[id]; op != nil && op.Delete {
			return op.BoundaryTs, true
		}
		return 0, false
	}

	var toStop []*table
	p.mu.Lock()
	for id, t := range p.tables {
		if t.finished() {
			ti := t.info()
			switch ti.State {
			case TableStopped:
				p.stopped[id] = ti.CheckpointTs
				delete(p.tables, id)
				continue
			case TableFailed:
				// A failed table stays so that its checkpoint keeps holding
				// the changefeed back; the error goes into the position.
				if p.err == nil {
					e := *ti.Error
					e.Addr = p.deps.cfg.AdvertiseAddr
					p.err = &e
				}
			}
		}
		_, inTables := task.Tables[id]
		boundary, del := isDelete(id)
		switch {
		case !inTables && !del:
			toStop = append(toStop, t)
			delete(p.tables, id)
			delete(p.stopped, id)
		case del:
			t.setBoundary(boundary)
		}
	}
	for id := range p.stopped {
		if _, del := isDelete(id); !del {
			delete(p.stopped, id)
		}
	}
	var toStart []*table
	start := func(id model.TableID, startTs model.Ts) *table {
		t := newTable(id, startTs, p.tableEnv())
		p.tables[id] = t
		toStart = append(toStart, t)
		return t
	}
	for id, op := range task.Operations {
		if op == nil || !op.Delete {
			continue
		}
		if _, running := p.tables[id]; running {
			continue
		}
		if _, done := p.stopped[id]; done {
			continue
		}
		if rep, ok := task.Tables[id]; ok {
			// An earlier processor of this capture (before a restart of the
			// node) already stopped it for this very assignment: report that
			// instead of running it again from its start.
			if p.prevPos != nil {
				if ts, ok := p.prevPos.Stopped[id]; ok && ts >= rep.StartTs {
					p.stopped[id] = ts
					continue
				}
			}
			// Assigned and already being deleted: run it up to the
			// boundary (it stops at once if it starts past it).
			start(id, p.resumeTs(id, rep.StartTs)).setBoundary(op.BoundaryTs)
			continue
		}
		p.stopped[id] = p.fallbackStop(id, st)
	}
	for id, rep := range task.Tables {
		if _, del := isDelete(id); del {
			continue
		}
		if _, running := p.tables[id]; !running {
			start(id, p.resumeTs(id, rep.StartTs))
		}
	}
	p.mu.Unlock()

	for _, t := range toStop {
		t.cancel()
	}
	for _, t := range toStop {
		<-t.done
		p.log.Info().Int64("table_id", t.id).Msg("table removed from the task; stopped")
	}
	for _, t := range toStart {
		tctx, cancel := context.WithCancel(ctx)
		t.cancel = cancel
		go t.run(tctx)
	}
}

// sameTask says whether two task statuses are one decoded record: the
// manager decodes a record once per revision and shares its maps, which
// nobody modifies, so the same maps mean the same assignment.
func sameTask(a, b model.TaskStatus) bool {
	return a.AdminJob == b.AdminJob && sameMap(a.Tables, b.Tables) && sameMap(a.Operations, b.Operations)
}

func sameMap[M ~map[K]V, K comparable, V any](a, b M) bool {
	return len(a) == len(b) && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// resumeTs is where a table's pipeline starts: its assigned start ts, or
// further on if an earlier processor of this capture already made the table
// durable beyond it (after a restart of the node the assignment is unchanged
// but the rows up to the reported checkpoint are already in the sink, and
// replaying them would write every one of them twice).
func (p *processor) resumeTs(id model.TableID, startTs model.Ts) model.Ts {
	if p.prevPos != nil {
		if ts, ok := p.prevPos.Running[id]; ok && ts > startTs {
			return ts
		}
	}
	return startTs
}

// fallbackStop answers a delete operation for a table this processor never
// ran, with the highest ts known to be durable for it: what an earlier
// processor on this capture reported, or else the changefeed checkpoint,
// which no table's durable position is below.
func (p *processor) fallbackStop(id model.TableID, st feedState) model.Ts {
	if p.prevPos != nil {
		if ts, ok := p.prevPos.Stopped[id]; ok {
			return ts
		}
		if ts, ok := p.prevPos.Running[id]; ok {
			return ts
		}
	}
	var ts model.Ts
	if st.status != nil {
		ts = st.status.CheckpointTs
	}
	p.log.Warn().Int64("table_id", id).Uint64("stopped_ts", ts).Msg("delete operation for a table never run here; reporting the changefeed checkpoint")
	return ts
}

// setBarrier publishes how far tables may flush: the changefeed's global
// resolved ts (see DESIGN.md, "flush barrier"), never past the target ts.
func (p *processor) setBarrier(st feedState) {
	var b model.Ts
	if st.status != nil {
		b = st.status.ResolvedTs
	}
	if st.info.TargetTs != 0 {
		b = min(b, st.info.TargetTs)
	}
	p.barrier.set(b)
}

// position summarises the tables. A processor with no running tables
// reports the changefeed's own status so that it neither holds the
// changefeed back nor moves it backwards.
func (p *processor) position() model.TaskPosition {
	st := p.currentState()
	p.mu.Lock()
	defer p.mu.Unlock()
	pos := model.TaskPosition{Epoch: st.info.Epoch, Count: p.count.Load(), Error: p.err}
	if len(p.tables) > 0 {
		pos.Running = make(map[model.TableID]model.Ts, len(p.tables))
		first := true
		for id, t := range p.tables {
			cp, rs := t.progress()
			pos.Running[id] = cp
			if first || cp < pos.CheckpointTs {
				pos.CheckpointTs = cp
			}
			if first || rs < pos.ResolvedTs {
				pos.ResolvedTs = rs
			}
			first = false
		}
	} else if st.status != nil {
		pos.CheckpointTs, pos.ResolvedTs = st.status.CheckpointTs, st.status.ResolvedTs
	}
	if len(p.stopped) > 0 {
		pos.Stopped = maps.Clone(p.stopped)
	}
	if u, ok := p.tables[model.StreamUnitID]; ok {
		if p.streamPos != nil {
			sp := *p.streamPos
			pos.Stream = &sp
		}
		u.mu.Lock()
		if u.snapshot != nil {
			sn := *u.snapshot
			pos.Snapshot = &sn
		}
		u.mu.Unlock()
	}
	return pos
}

// workload is rows per second per table since the last report; every table
// costs at least 1 so that idle tables still count when balancing.
func (p *processor) workload(now time.Time) model.TaskWorkload {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := now.Sub(p.lastWorkloadAt).Seconds()
	wl := make(model.TaskWorkload, len(p.tables))
	counts := make(map[model.TableID]uint64, len(p.tables))
	for id, t := range p.tables {
		c := t.info().Count
		counts[id] = c
		w := uint64(1)
		if prev, ok := p.lastCounts[id]; ok && elapsed > 0 && c > prev {
			w = max(1, uint64(float64(c-prev)/elapsed+0.5))
		}
		wl[id] = model.WorkloadInfo{Workload: w}
	}
	p.lastCounts = counts
	return wl
}

// DefaultReportBytesPerSecond bounds the position bytes one processor
// writes through Raft per second while nothing urgent changed
// (Config.ReportBytesPerSecond). A position lists every table's checkpoint.
// Written as a map (below schema 3) it is about 1 MB at 33,000 tables, and
// writing it every flush interval (10 a second) on three nodes was 30 MB/s
// through the Raft log and the state machine — enough to starve heartbeats
// on a small machine (issue 16). Past this bound the interval grows with
// the size: a capture of 33,000 tables reports every ~4 s, one of 1,000
// tables (28 KB) still every flush interval. Grouped (schema 3) a position
// is tens of bytes, and DefaultReportTablesPerSecond is the bound.
const DefaultReportBytesPerSecond = 256 << 10

// DefaultReportTablesPerSecond bounds the tables one processor's reports
// list per second (Config.ReportTablesPerSecond). Grouped, a position's size
// no longer says what it costs: building it visits every table, and the
// state machine of every replica, the owner and the processor's own manager
// each expand it back into a map. Paced only by its few dozen bytes, a
// 33,000-table capture reported ten times a second and the positions took
// more CPU than the megabyte ones had (in one 100,000-table run the owner's
// tick averaged 0.87 s against 0.19 s in the run before). At this rate a
// 33,000-table capture reports about twice a second; below ~6,000 tables
// the flush interval is the bound.
const DefaultReportTablesPerSecond = 64_000

// urgentReportFactor is how much faster than ReportBytesPerSecond a report
// the owner acts on (a table started or stopped, an error) may go out. Not
// unpaced: while 33,000 tables open on a node the running count changes at
// every flush interval, and a megabyte ten times a second from each of three
// nodes took the cluster's leader away during start-up (issue 16). A capture
// of up to ~7,000 tables (200 KB) is not held back by it at all.
const urgentReportFactor = 4

// report proposes the position (and, less often, the workload) in one
// command, if anything changed since the last accepted report.
func (p *processor) report(ctx context.Context) {
	cfg := p.deps.cfg
	now := time.Now()
	used, _, limit := p.quota.usage()
	p.deps.metrics.quotaUsed.WithLabelValues(p.cf).Set(float64(used))
	p.deps.metrics.quotaLimit.WithLabelValues(p.cf).Set(float64(limit))
	// A large capture's position (about 28 bytes a table) is paced by its
	// size: see DefaultReportBytesPerSecond. What the owner acts on — a table
	// started or stopped, an error — goes out sooner (urgentReportFactor).
	// The decision comes before the position is built: building and
	// encoding one of 17,000 tables ten times a second only to drop it was
	// a quarter of a 50,000-table leader's CPU (issue 16).
	p.mu.Lock()
	urgent := len(p.tables) != p.lastRunning || len(p.stopped) > 0 || p.err != nil
	p.mu.Unlock()
	if now.Before(p.nextReportAt) && (!urgent || now.Before(p.nextUrgentAt)) {
		return
	}
	pos := p.position()
	stored := pos
	if p.currentState().schema >= meta.TablesSchemaVersion && len(pos.Running) > 0 {
		// Tens of bytes instead of ~28 a table (model.GroupedTableTs).
		stored.RunningGrouped, stored.Running = model.GroupedTableTs(pos.Running), nil
	}
	posBytes, err := json.Marshal(stored)
	if err != nil {
		p.log.Error().Err(err).Msg("encoding position")
		return
	}
	self := cfg.CaptureID
	var ops []fsm.Op
	if !bytes.Equal(posBytes, p.lastPos) {
		ops = append(ops, fsm.Op{Type: fsm.OpPut, Key: meta.TaskPositionKey(p.cf, self), Value: posBytes})
	}
	var wlBytes []byte
	if now.Sub(p.lastWorkloadAt) >= cfg.WorkloadInterval {
		wl := p.workload(now)
		p.lastWorkloadAt = now
		if wlBytes, err = json.Marshal(wl); err == nil && !bytes.Equal(wlBytes, p.lastWorkload) {
			ops = append(ops, fsm.Op{Type: fsm.OpPut, Key: meta.TaskWorkloadKey(p.cf, self), Value: wlBytes})
		}
	}
	if len(pos.Running) > 0 {
		p.deps.metrics.checkpointLag.WithLabelValues(p.cf).Set(model.LagSeconds(pos.CheckpointTs, now))
	}
	if len(ops) == 0 {
		return
	}
	cmd := fsm.Command{
		Kind:    fsm.KindTxn,
		Capture: &fsm.CaptureFence{ID: self, Incarnation: p.deps.incarnation},
		// Once the owner takes the task away it may clean up the position;
		// a late report must not bring it back.
		Conds: []fsm.Cond{{Type: fsm.CondExists, Key: meta.TaskStatusKey(p.cf, self)}},
		Ops:   ops,
	}
	actx, cancel := context.WithTimeout(ctx, cfg.ProposeTimeout)
	res, err := p.deps.proposer.Apply(actx, cmd)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			p.deps.metrics.positionWrites.WithLabelValues("error").Inc()
			p.log.Debug().Err(err).Msg("position report not applied; retrying next interval")
		}
		return
	}
	if err := res.Error(); err != nil {
		p.deps.metrics.positionWrites.WithLabelValues("refused").Inc()
		if errors.Is(err, fsm.ErrFenced) {
			p.deps.onFenced(err)
			return
		}
		p.log.Debug().Err(err).Msg("position report refused")
		return
	}
	p.deps.metrics.positionWrites.WithLabelValues("ok").Inc()
	for _, op := range ops {
		if op.Key == meta.TaskPositionKey(p.cf, self) {
			p.lastPos = posBytes
			p.lastRunning = len(pos.Running)
			pace := max(time.Duration(len(posBytes))*time.Second/time.Duration(cfg.ReportBytesPerSecond),
				time.Duration(len(pos.Running))*time.Second/time.Duration(cfg.ReportTablesPerSecond))
			p.nextReportAt, p.nextUrgentAt = now.Add(pace), now.Add(pace/urgentReportFactor)
		} else {
			p.lastWorkload = wlBytes
		}
	}
}

// ProcessorInfo is one processor's state, for the API.
type ProcessorInfo struct {
	Changefeed   model.ChangefeedID         `json:"changefeed"`
	CaptureID    model.CaptureID            `json:"capture_id"`
	Incarnation  uint64                     `json:"incarnation"`
	State        string                     `json:"state"`
	CheckpointTs model.Ts                   `json:"checkpoint_ts"`
	ResolvedTs   model.Ts                   `json:"resolved_ts"`
	Count        uint64                     `json:"count"`
	Tables       []TableInfo                `json:"tables"`
	Stopped      map[model.TableID]model.Ts `json:"stopped,omitempty"`
	Error        *model.RunningError        `json:"error,omitempty"`
}

// Processor states in ProcessorInfo.
const (
	StateRunning = "running"
	StatePaused  = "paused" // local fence: sink writes are held
	StateError   = "error"
)

func (p *processor) info() ProcessorInfo {
	pos := p.position()
	pi := ProcessorInfo{
		Changefeed: p.cf, CaptureID: p.deps.cfg.CaptureID, Incarnation: p.deps.incarnation,
		State: StateRunning, CheckpointTs: pos.CheckpointTs, ResolvedTs: pos.ResolvedTs,
		Count: pos.Count, Stopped: pos.Stopped, Error: pos.Error,
	}
	p.mu.Lock()
	for _, t := range p.tables {
		pi.Tables = append(pi.Tables, t.info())
	}
	p.mu.Unlock()
	slices.SortFunc(pi.Tables, func(a, b TableInfo) int { return cmp.Compare(a.ID, b.ID) })
	switch {
	case pos.Error != nil:
		pi.State = StateError
	case !p.deps.gate.isOpen():
		pi.State = StatePaused
	}
	return pi
}
