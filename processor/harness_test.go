package processor

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/raftcdc/raftcdc/connector"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source/datagen"
	"github.com/rs/zerolog"
)

const (
	testCapture = "c1"
	testFeed    = "cf1"
	waitFor     = 15 * time.Second
)

// cluster stands in for Raft: it applies each command to a real FSM at the
// next index, as a single-node group would.
type cluster struct {
	t     *testing.T
	f     *fsm.FSM
	epoch uint64

	mu    sync.Mutex
	index uint64
	// failNext makes the next n proposals fail as if there were no leader.
	failNext int
	// refuse, if set, can turn a command into a refusal before it applies.
	refuse func(fsm.Command) *fsm.Error
	// probes counts fenced commands without operations (fencing probes).
	probes int
	// mem is the in-memory sink of the feed created last.
	mem *memSink
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	f, err := fsm.Open(filepath.Join(t.TempDir(), "fsm.db"), fsm.Options{Rules: meta.Rules{}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c := &cluster{t: t, f: f}
	res, err := c.Apply(context.Background(), fsm.Command{Kind: fsm.KindClaimOwner, NodeID: "owner", UnixMilli: time.Now().UnixMilli()})
	if err != nil || res.Err != nil {
		t.Fatalf("claim owner: %v %v", err, res.Error())
	}
	c.epoch = res.Index
	// A cluster of this build runs at its schema version: positions are
	// written grouped (model.GroupedTableTs).
	rec, _ := json.Marshal(model.ClusterInfo{ID: "test-cluster", Created: time.Now().UTC(), SchemaVersion: meta.SchemaVersion})
	if res, err := c.Apply(context.Background(), fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.KeyCluster, Value: rec}}}); err != nil || res.Err != nil {
		t.Fatalf("cluster record: %v %v", err, res.Error())
	}
	return c
}

func (c *cluster) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failNext > 0 {
		c.failNext--
		return nil, errors.New("no leader")
	}
	if cmd.Capture != nil && len(cmd.Ops) == 0 {
		c.probes++
	}
	if c.refuse != nil {
		if e := c.refuse(cmd); e != nil {
			c.index++
			return &fsm.Result{Index: c.index, Err: e}, nil
		}
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	c.index++
	res := c.f.Apply(&raft.Log{Index: c.index, Type: raft.LogCommand, Data: data}).(*fsm.Result)
	return res, nil
}

func (c *cluster) setFailNext(n int) {
	c.mu.Lock()
	c.failNext = n
	c.mu.Unlock()
}

func (c *cluster) probeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probes
}

// countPositionWrites counts the commands that write the test capture's
// position from now on (refusing none).
func (c *cluster) countPositionWrites() *atomic.Int64 {
	var writes atomic.Int64
	c.setRefuse(func(cmd fsm.Command) *fsm.Error {
		for _, op := range cmd.Ops {
			if op.Key == meta.TaskPositionKey(testFeed, testCapture) {
				writes.Add(1)
			}
		}
		return nil
	})
	return &writes
}

func (c *cluster) setRefuse(f func(fsm.Command) *fsm.Error) {
	c.mu.Lock()
	c.refuse = f
	c.mu.Unlock()
}

// owner applies an owner command and fails the test if it is refused.
func (c *cluster) owner(ops ...fsm.Op) {
	c.t.Helper()
	res, err := c.Apply(context.Background(), fsm.Command{OwnerEpoch: c.epoch, Ops: ops})
	if err != nil || res.Err != nil {
		c.t.Fatalf("owner command: %v %v", err, res.Error())
	}
}

func put(t *testing.T, key string, v any) fsm.Op {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return fsm.Op{Type: fsm.OpPut, Key: key, Value: b}
}

func (c *cluster) get(key string, v any) bool {
	c.t.Helper()
	kv, ok, err := c.f.Get(key)
	if err != nil {
		c.t.Fatal(err)
	}
	if !ok {
		return false
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		c.t.Fatalf("decode %s: %v", key, err)
	}
	return true
}

// position is the test capture's position as meta decodes it (stored
// grouped or not).
func (c *cluster) position() (model.TaskPosition, bool) {
	c.t.Helper()
	key := meta.TaskPositionKey(testFeed, testCapture)
	kv, ok, err := c.f.Get(key)
	if err != nil || !ok {
		if err != nil {
			c.t.Fatal(err)
		}
		return model.TaskPosition{}, false
	}
	v, err := meta.Decode(key, kv.Value)
	if err != nil {
		c.t.Fatalf("decode %s: %v", key, err)
	}
	return *v.(*model.TaskPosition), true
}

// rawPosition is the stored position's bytes.
func (c *cluster) rawPosition() string {
	c.t.Helper()
	kv, _, err := c.f.Get(meta.TaskPositionKey(testFeed, testCapture))
	if err != nil {
		c.t.Fatal(err)
	}
	return string(kv.Value)
}

// waitPosition polls the reported position until cond holds.
func (c *cluster) waitPosition(what string, cond func(model.TaskPosition) bool) model.TaskPosition {
	c.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		pos, ok := c.position()
		if ok && cond(pos) {
			return pos
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for position: %s; last position %+v (present %v)", what, pos, ok)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// feed is a changefeed set up in the FSM the way the owner would, writing
// to an in-memory sink that keeps what each flush made durable.
type feed struct {
	sourceURI string
	startTs   model.Ts
	src       *datagen.Source // an independent instance: the expected history
	tables    []model.TableName
	mem       *memSink
	config    model.ChangefeedConfig // the changefeed's config (zero: defaults)
}

func newFeed(t *testing.T, sourceParams string, startTs model.Ts) *feed {
	t.Helper()
	uri := "datagen://?" + sourceParams
	src, err := datagen.Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	tables, err := src.TablesAt(context.Background(), startTs)
	if err != nil {
		t.Fatal(err)
	}
	return &feed{sourceURI: uri, startTs: startTs, src: src, tables: tables, mem: newMemSink()}
}

// create writes the changefeed's info and status and assigns tables to the
// test capture.
func (f *feed) create(c *cluster, barrier model.Ts, tables ...model.TableID) {
	c.t.Helper()
	c.mem = f.mem
	info := model.ChangefeedInfo{ID: testFeed, SourceURI: f.sourceURI, SinkURI: "memory://", StartTs: f.startTs, State: model.StateNormal, Config: f.config}
	res, err := c.Apply(context.Background(), fsm.Command{Ops: []fsm.Op{put(c.t, meta.ChangefeedInfoKey(testFeed), info)}})
	if err != nil || res.Err != nil {
		c.t.Fatalf("create changefeed info: %v %v", err, res.Error())
	}
	task := model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{}}
	for _, id := range tables {
		task.Tables[id] = model.TableReplicaInfo{StartTs: f.startTs}
	}
	c.owner(
		put(c.t, meta.ChangefeedStatusKey(testFeed), model.ChangefeedStatus{ResolvedTs: barrier, CheckpointTs: f.startTs, Tables: f.tables, Initialized: true}),
		put(c.t, meta.TaskStatusKey(testFeed, testCapture), task),
	)
}

func (c *cluster) task() model.TaskStatus {
	c.t.Helper()
	var task model.TaskStatus
	if !c.get(meta.TaskStatusKey(testFeed, testCapture), &task) {
		c.t.Fatal("no task status")
	}
	return task
}

func (c *cluster) setTask(task model.TaskStatus) {
	c.t.Helper()
	c.owner(put(c.t, meta.TaskStatusKey(testFeed, testCapture), task))
}

func (c *cluster) setBarrier(f *feed, barrier model.Ts) {
	c.t.Helper()
	c.owner(put(c.t, meta.ChangefeedStatusKey(testFeed), model.ChangefeedStatus{ResolvedTs: barrier, CheckpointTs: f.startTs, Tables: f.tables, Initialized: true}))
}

// rowSig identifies a row change in the sink: op and image.
func rowSig(r *model.RowChange) string {
	var b strings.Builder
	b.WriteString(string(r.Op))
	for _, v := range r.Image() {
		b.WriteByte('|')
		b.WriteString(v.Text())
	}
	return b.String()
}

// memSink keeps, per table and commit ts, the rows flushes made durable.
// Every sink opened on it (one per processor run) shares the store.
type memSink struct {
	mu      sync.Mutex
	durable map[model.TableID]map[model.Ts][]string
}

func newMemSink() *memSink { return &memSink{durable: map[model.TableID]map[model.Ts][]string{}} }

type memView struct {
	sink.NopDDL
	sink.NopCheckpoint
	m *memSink
}

func (v memView) OpenTable(_ context.Context, tn model.TableName, _ sink.TableOptions) (sink.TableSink, error) {
	return &memTable{m: v.m, id: tn.ID}, nil
}
func (v memView) Close() error { return nil }

type memTable struct {
	m       *memSink
	id      model.TableID
	pending []*model.Txn
}

func (t *memTable) Write(_ context.Context, txns []*model.Txn) error {
	t.pending = append(t.pending, txns...)
	return nil
}

func (t *memTable) Flush(_ context.Context, upto model.Ts) error {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	keep := t.pending[:0]
	for _, tx := range t.pending {
		if tx.CommitTs > upto {
			keep = append(keep, tx)
			continue
		}
		byTs := t.m.durable[t.id]
		if byTs == nil {
			byTs = map[model.Ts][]string{}
			t.m.durable[t.id] = byTs
		}
		for _, r := range tx.Rows {
			byTs[tx.CommitTs] = append(byTs[tx.CommitTs], rowSig(r))
		}
	}
	t.pending = keep
	return nil
}

func (t *memTable) Close() error { t.pending = nil; return nil }

// sinkRows is every row flushes made durable for a table, by commit ts.
func (f *feed) sinkRows(t *testing.T, id model.TableID) map[model.Ts][]string {
	t.Helper()
	f.mem.mu.Lock()
	defer f.mem.mu.Unlock()
	out := map[model.Ts][]string{}
	for ts, rows := range f.mem.durable[id] {
		out[ts] = append([]string(nil), rows...)
	}
	return out
}

// expected reads the table's history in (startTs, upto] from an independent
// datagen instance: the same URI gives the same transactions.
func (f *feed) expected(t *testing.T, id model.TableID, upto model.Ts) map[model.Ts][]string {
	t.Helper()
	var name model.TableName
	for _, tn := range f.tables {
		if tn.ID == id {
			name = tn
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sub, err := f.src.SubscribeTxns(ctx, name, f.startTs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	out := map[model.Ts][]string{}
	for {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("reading the expected history of table %d: %v", id, err)
		}
		for _, tx := range b.Txns {
			if tx.CommitTs <= upto {
				for _, r := range tx.Rows {
					out[tx.CommitTs] = append(out[tx.CommitTs], rowSig(r))
				}
			}
		}
		if b.ResolvedTs >= upto {
			return out
		}
	}
}

// checkSink asserts the sink holds exactly the source's rows of a table in
// (startTs, upto], and nothing outside (startTs, maxTs].
// producedByNow is the highest commit ts the source can have produced by
// now: datagen numbers the rows of one millisecond in its logical part, so
// a row of this very millisecond sorts above TsFromTime(now).
func producedByNow() model.Ts {
	return model.TsFromTime(time.Now()) | (1<<18 - 1)
}

// checkSink checks table id's rows in the sink: exactly the source's up to
// upto, nothing above maxTs. maxTs 0 means "produced by now", taken after
// the rows are read: taken before, a flush between the two (a few
// milliseconds on a loaded machine under -race) looks like a row from the
// future.
func (f *feed) checkSink(t *testing.T, id model.TableID, upto, maxTs model.Ts) {
	t.Helper()
	rows := f.sinkRows(t, id)
	if maxTs == 0 {
		maxTs = producedByNow()
	}
	want := f.expected(t, id, upto)
	if len(want) == 0 {
		t.Fatalf("table %d: no rows expected in (%d, %d]; the test proves nothing", id, f.startTs, upto)
	}
	for ts, w := range want {
		got, ok := rows[ts]
		if !ok {
			t.Fatalf("table %d: rows at commit ts %d (<= %d) are missing from the sink", id, ts, upto)
		}
		if strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Fatalf("table %d: rows at %d are\n%v\nwant\n%v", id, ts, got, w)
		}
	}
	for ts := range rows {
		if ts <= f.startTs || ts > maxTs {
			t.Fatalf("table %d: sink has a row at %d outside (%d, %d]", id, ts, f.startTs, maxTs)
		}
	}
}

// probeSink wraps a sink to watch and steer what the pipeline does to it.
type probeSink struct {
	sink.Sink
	p  *probe
	id int64 // which opening of the changefeed sink this is, from 1
}

type probe struct {
	// sinksOpened counts the changefeed sinks opened (OpenChangefeedSink).
	sinksOpened atomic.Int64
	flushes     atomic.Int64
	entered     atomic.Int64 // flushes that found the block in place
	// failFlushes: this many flushes fail before reaching the sink (what
	// was written stays unflushed and goes with the table sink's Close).
	failFlushes atomic.Int64
	// flushErr, when set (before the manager starts), fails every flush.
	flushErr error

	mu     sync.Mutex
	block  chan struct{} // while non-nil, Flush waits for it to close
	tables []*probeTable
}

type probeTable struct {
	sink.TableSink
	p      *probe
	sink   int64 // the probeSink.id of the sink it was opened on
	closed atomic.Bool
}

func (s probeSink) OpenTable(ctx context.Context, table model.TableName, opts sink.TableOptions) (sink.TableSink, error) {
	ts, err := s.Sink.OpenTable(ctx, table, opts)
	if err != nil {
		return nil, err
	}
	pt := &probeTable{TableSink: ts, p: s.p, sink: s.id}
	s.p.mu.Lock()
	s.p.tables = append(s.p.tables, pt)
	s.p.mu.Unlock()
	return pt, nil
}

func (t *probeTable) Flush(ctx context.Context, upto model.Ts) error {
	t.p.flushes.Add(1)
	for n := t.p.failFlushes.Load(); n > 0; n = t.p.failFlushes.Load() {
		if t.p.failFlushes.CompareAndSwap(n, n-1) {
			return errors.New("probe: injected flush failure")
		}
	}
	if t.p.flushErr != nil {
		return t.p.flushErr
	}
	t.p.mu.Lock()
	block := t.p.block
	t.p.mu.Unlock()
	if block != nil {
		t.p.entered.Add(1)
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return t.TableSink.Flush(ctx, upto)
}

func (t *probeTable) Close() error {
	t.closed.Store(true)
	return t.TableSink.Close()
}

func (p *probe) setBlock(ch chan struct{}) {
	p.mu.Lock()
	p.block = ch
	p.mu.Unlock()
}

func (p *probe) openedTables() []*probeTable {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*probeTable(nil), p.tables...)
}

type probeConns struct {
	*connector.Pool
	p *probe
	c *cluster
}

func (c probeConns) OpenChangefeedSink(ctx context.Context, id model.ChangefeedID, uri string, cfg model.ChangefeedConfig) (sink.Sink, error) {
	if uri != "memory://" {
		s, err := c.Pool.OpenChangefeedSink(ctx, id, uri, cfg)
		if err != nil {
			return nil, err
		}
		return probeSink{Sink: s, p: c.p, id: c.p.sinksOpened.Add(1)}, nil
	}
	c.c.mu.Lock()
	m := c.c.mem
	c.c.mu.Unlock()
	return probeSink{Sink: memView{m: m}, p: c.p, id: c.p.sinksOpened.Add(1)}, nil
}

// fakeLease is a lease the node keeps renewing, unless the test cuts it:
// then it has ended, and when restored it comes back under a new term, as
// a lease that lapsed does.
type fakeLease struct {
	mu   sync.Mutex
	cut  bool
	term uint64
}

func (l *fakeLease) Lease() (time.Time, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return time.Now().Add(-time.Second), l.term
	}
	return time.Now().Add(time.Hour), l.term
}

func (l *fakeLease) setCut(cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut && !cut {
		l.term++
	}
	l.cut = cut
}

type env struct {
	c     *cluster
	m     *Manager
	probe *probe
	lease *fakeLease
	reg   *prometheus.Registry
}

// startManager runs a manager for the test capture until the test ends.
func startManager(t *testing.T, c *cluster, tweak func(*Config), probeOpts ...func(*probe)) *env {
	t.Helper()
	cfg := Config{
		CaptureID: testCapture, AdvertiseAddr: "127.0.0.1:8300", Version: "test",
		FlushInterval: 20 * time.Millisecond, WorkloadInterval: 100 * time.Millisecond,
		RetryBackoff: 10 * time.Millisecond, ResetInterval: 10 * time.Millisecond,
		MaxRetryBackoff: 50 * time.Millisecond, MaxRetries: 3,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	pool := connector.NewPool()
	pr := &probe{}
	for _, o := range probeOpts {
		o(pr)
	}
	lease := &fakeLease{}
	reg := prometheus.NewRegistry()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	m := NewManager(cfg, c, c.f, probeConns{Pool: pool, p: pr, c: c}, lease, log, reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return after cancel")
		}
		pool.Close()
	})
	return &env{c: c, m: m, probe: pr, lease: lease, reg: reg}
}

// family is the manager's metric family name, nil while it has no series.
func (e *env) family(t *testing.T, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// counter sums a counter's series (0 when it has none yet).
func (e *env) counter(t *testing.T, name string) float64 {
	t.Helper()
	var sum float64
	for _, m := range e.family(t, name).GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

func (e *env) fencedTotal(t *testing.T) float64 {
	t.Helper()
	mf := e.family(t, "raftcdc_processor_fenced_total")
	if mf == nil {
		t.Fatal("raftcdc_processor_fenced_total is not registered")
	}
	return mf.GetMetric()[0].GetCounter().GetValue()
}

// feedGauge is the test changefeed's sample of a gauge vector, and whether
// it has one yet.
func (e *env) feedGauge(t *testing.T, name string) (float64, bool) {
	t.Helper()
	for _, m := range e.family(t, name).GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "changefeed" && l.GetValue() == testFeed {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

const maxTs = ^model.Ts(0)

func pastTs(d time.Duration) model.Ts { return model.TsFromTime(time.Now().Add(-d)) }
