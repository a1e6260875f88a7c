package processor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
	"github.com/rs/zerolog"
)

// A scripted single-stream source: batch i carries the transactions and
// DDLs given, resolves to its ts and hands out position "p<i>". Opening at
// position p<i> resumes after batch i, the way a slot resumes after its
// confirmed LSN.
type scriptStream struct {
	mu       sync.Mutex
	batches  []source.StreamBatch
	opens    []string // positions OpenStream was called with
	confirms []string
	// failAfter makes the next opened stream fail after this many batches,
	// once failGate is closed.
	failAfter int
	failGate  chan struct{}
}

var (
	streamT1 = model.TableName{ID: 1, Schema: "s", Table: "a"}
	streamT2 = model.TableName{ID: 2, Schema: "s", Table: "b"}
)

func streamSchema(tn model.TableName, version uint64, cols ...string) *model.TableSchema {
	sc := &model.TableSchema{Table: tn, Version: version, Indexes: []model.Index{{Name: "PRIMARY", Columns: []string{"id"}, Primary: true}}}
	for _, c := range append([]string{"id"}, cols...) {
		sc.Columns = append(sc.Columns, model.Column{Name: c, Type: model.ColumnType{Kind: model.TypeBigInt}, Nullable: c != "id"})
	}
	return sc
}

// newScript builds n batches, each one transaction touching both tables at
// ts base+10*i; batch ddlAt also carries an ADD COLUMN on table 1 at the
// same ts as its transaction, which must apply before the rows.
func newScript(base model.Ts, n, ddlAt int) *scriptStream {
	s := &scriptStream{failAfter: -1}
	v1a, v1b, v2 := streamSchema(streamT1, 1), streamSchema(streamT1, 2, "x"), streamSchema(streamT2, 1)
	for i := 0; i < n; i++ {
		ts := base + model.Ts(10*(i+1))
		sa := v1a
		var ddls []*model.DDLEvent
		if i >= ddlAt {
			sa = v1b
		}
		if i == ddlAt {
			ddls = append(ddls, &model.DDLEvent{CommitTs: ts, Kind: model.DDLAddColumn, Schema: "s", Query: "ALTER TABLE `s`.`a` ADD COLUMN `x` bigint",
				Tables: []model.TableName{streamT1}, After: []*model.TableSchema{v1b}})
		}
		img := func(sc *model.TableSchema) []model.Value {
			out := []model.Value{model.IntValue(int64(i))}
			for range sc.Columns[1:] {
				out = append(out, model.IntValue(int64(ts)))
			}
			return out
		}
		txn := &model.Txn{StartTs: ts - 1, CommitTs: ts, Rows: []*model.RowChange{
			{Schema: sa, StartTs: ts - 1, CommitTs: ts, Op: model.OpInsert, After: img(sa)},
			{Schema: v2, StartTs: ts - 1, CommitTs: ts, Op: model.OpInsert, After: img(v2)},
		}}
		s.batches = append(s.batches, source.StreamBatch{Txns: []*model.Txn{txn}, DDLs: ddls, ResolvedTs: ts, Position: "p" + strconv.Itoa(i)})
	}
	return s
}

func (s *scriptStream) UpstreamID(context.Context) (string, error) { return "script", nil }
func (s *scriptStream) TablesAt(context.Context, model.Ts) ([]model.TableName, error) {
	return []model.TableName{streamT1, streamT2}, nil
}
func (s *scriptStream) SchemaAt(_ context.Context, tn model.TableName, _ model.Ts) (*model.TableSchema, error) {
	return streamSchema(tn, 1), nil
}
func (s *scriptStream) CurrentTs(context.Context) (model.Ts, error) {
	return model.TsFromTime(time.Now()), nil
}
func (s *scriptStream) GCSafepoint(context.Context) (model.Ts, error) { return 0, nil }
func (s *scriptStream) UpdateServiceGCSafepoint(context.Context, string, time.Duration, model.Ts) (model.Ts, error) {
	return 0, nil
}
func (s *scriptStream) Close() error { return nil }

func (s *scriptStream) OpenStream(_ context.Context, opts source.StreamOptions) (source.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens = append(s.opens, opts.Position)
	next := 0
	if opts.Position != "" {
		i, err := strconv.Atoi(strings.TrimPrefix(opts.Position, "p"))
		if err != nil {
			return nil, fmt.Errorf("bad position %q", opts.Position)
		}
		next = i + 1
	}
	st := &scriptReader{s: s, next: next, fail: s.failAfter, gate: s.failGate}
	s.failAfter = -1
	return st, nil
}

func (s *scriptStream) confirmed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.confirms...)
}

type scriptReader struct {
	s    *scriptStream
	next int
	fail int
	gate chan struct{}
}

func (r *scriptReader) Next(ctx context.Context) (source.StreamBatch, error) {
	if r.fail == 0 {
		if r.gate != nil {
			select {
			case <-r.gate:
			case <-ctx.Done():
				return source.StreamBatch{}, ctx.Err()
			}
		}
		return source.StreamBatch{}, fmt.Errorf("connection reset by peer")
	}
	if r.next >= len(r.s.batches) {
		<-ctx.Done()
		return source.StreamBatch{}, ctx.Err()
	}
	if r.fail > 0 {
		r.fail--
	}
	b := r.s.batches[r.next]
	r.next++
	return b, nil
}

func (r *scriptReader) Confirm(_ context.Context, pos string) error {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.s.confirms = append(r.s.confirms, pos)
	return nil
}

func (r *scriptReader) Close() error { return nil }

// recordSink keeps what was flushed per table and checks, at each DDL, that
// no row at or after it was flushed yet, and remembers how many rows before
// it each table had flushed: violations compares that with the rows before
// it once everything is flushed. (A table with nothing to flush is not
// asked to flush up to the DDL — its checkpoint settles without a call —
// so how far Flush calls reached says nothing; the rows do.)
type recordSink struct {
	sink.NopCheckpoint
	t *testing.T

	mu    sync.Mutex
	rows  map[model.TableID][]*model.RowChange
	ddls  []*model.DDLEvent
	atDDL []map[model.TableID]int // per DDL: rows before it flushed when it ran
	bad   []string
	// refuse, when set (before the feed starts), is asked about every row a
	// flush would make durable; an error it returns fails the flush.
	refuse func(model.TableID, *model.RowChange) error
}

func newRecordSink(t *testing.T) *recordSink {
	return &recordSink{t: t, rows: map[model.TableID][]*model.RowChange{}}
}

func rowsBefore(rows []*model.RowChange, ts model.Ts) int {
	n := 0
	for _, r := range rows {
		if r.CommitTs < ts {
			n++
		}
	}
	return n
}

// violations is every barrier violation, judged once all rows are flushed.
func (s *recordSink) violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := append([]string(nil), s.bad...)
	for i, d := range s.ddls {
		for id, rows := range s.rows {
			if then, all := s.atDDL[i][id], rowsBefore(rows, d.CommitTs); then != all {
				bad = append(bad, fmt.Sprintf("DDL at %d ran when table %d had flushed %d of its %d rows before it", d.CommitTs, id, then, all))
			}
		}
	}
	return bad
}

func (s *recordSink) OpenTable(_ context.Context, tn model.TableName, _ sink.TableOptions) (sink.TableSink, error) {
	return &recordTable{s: s, id: tn.ID}, nil
}

func (s *recordSink) EmitDDL(_ context.Context, d *model.DDLEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	then := map[model.TableID]int{}
	for id, rows := range s.rows {
		then[id] = rowsBefore(rows, d.CommitTs)
	}
	s.atDDL = append(s.atDDL, then)
	for _, rows := range s.rows {
		for _, r := range rows {
			if r.CommitTs >= d.CommitTs {
				s.bad = append(s.bad, fmt.Sprintf("row at %d was flushed before the DDL at %d", r.CommitTs, d.CommitTs))
			}
		}
	}
	s.ddls = append(s.ddls, d)
	return nil
}

func (s *recordSink) Close() error { return nil }

type recordTable struct {
	s       *recordSink
	id      model.TableID
	pending []*model.RowChange
}

func (t *recordTable) Write(_ context.Context, txns []*model.Txn) error {
	for _, tx := range txns {
		t.pending = append(t.pending, tx.Rows...)
	}
	return nil
}

func (t *recordTable) Flush(_ context.Context, upto model.Ts) error {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	keep := t.pending[:0]
	for _, r := range t.pending {
		if t.s.refuse != nil && r.CommitTs <= upto {
			if err := t.s.refuse(t.id, r); err != nil {
				return err
			}
		}
		if r.CommitTs <= upto {
			t.s.rows[t.id] = append(t.s.rows[t.id], r)
		} else {
			keep = append(keep, r)
		}
	}
	t.pending = keep
	return nil
}

func (t *recordTable) Close() error { return nil }

type streamConns struct {
	src *scriptStream
	snk *recordSink
}

func (c streamConns) SourceFor(context.Context, string, string) (source.Upstream, error) {
	return c.src, nil
}
func (c streamConns) OpenChangefeedSink(context.Context, model.ChangefeedID, string, model.ChangefeedConfig) (sink.Sink, error) {
	return c.snk, nil
}

// miniOwner plays the owner's part for a stream changefeed: it follows the
// unit's reports with the changefeed's resolved ts (the flush barrier) and
// records the stream position it reports.
func miniOwner(ctx context.Context, c *cluster, base model.Ts) {
	for ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		pos, ok := c.position()
		var st model.ChangefeedStatus
		if !c.get(meta.ChangefeedStatusKey(testFeed), &st) {
			continue
		}
		changed := false
		if ok && pos.ResolvedTs > st.ResolvedTs {
			st.ResolvedTs, changed = pos.ResolvedTs, true
		}
		if ok && pos.Stream != nil && (st.StreamPosition == nil || pos.Stream.Ts > st.StreamPosition.Ts) {
			sp := *pos.Stream
			st.StreamPosition, changed = &sp, true
			st.CheckpointTs = max(st.CheckpointTs, sp.Ts)
		}
		if changed {
			c.owner(put(c.t, meta.ChangefeedStatusKey(testFeed), st))
		}
	}
}

func startStreamFeed(t *testing.T, script *scriptStream, base model.Ts, opts ...func(*recordSink)) (*cluster, *recordSink, *Manager) {
	t.Helper()
	c := newCluster(t)
	info := model.ChangefeedInfo{ID: testFeed, SourceURI: "script://", SinkURI: "record://", StartTs: base, State: model.StateNormal}
	if res, err := c.Apply(context.Background(), fsm.Command{Ops: []fsm.Op{put(t, meta.ChangefeedInfoKey(testFeed), info)}}); err != nil || res.Err != nil {
		t.Fatal(err, res.Error())
	}
	c.owner(
		put(t, meta.ChangefeedStatusKey(testFeed), model.ChangefeedStatus{CheckpointTs: base, ResolvedTs: base, Initialized: true,
			Tables: []model.TableName{model.StreamUnitName}, Stream: true, StreamTables: []model.TableName{streamT1, streamT2}}),
		put(t, meta.TaskStatusKey(testFeed, testCapture), model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{model.StreamUnitID: {StartTs: base}}}),
	)
	snk := newRecordSink(t)
	for _, o := range opts {
		o(snk)
	}
	cfg := Config{CaptureID: testCapture, AdvertiseAddr: "127.0.0.1:8300", FlushInterval: 10 * time.Millisecond,
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond, MaxRetries: 3, SpillDir: t.TempDir()}
	m := NewManager(cfg, c, c.f, streamConns{src: script, snk: snk}, &fakeLease{}, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	ownerDone := make(chan struct{})
	go func() { defer close(ownerDone); miniOwner(ctx, c, base) }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-ownerDone
	})
	return c, snk, m
}

// TestStreamUnitReplicatesWithLocalDDLBarrier: every table of a stream
// changefeed runs with its stream unit; a DDL runs once, after every table
// flushed everything before it and before its own transaction's rows; the
// unit reports positions only once flushed past, and confirms upstream
// only what the owner recorded.
func TestStreamUnitReplicatesWithLocalDDLBarrier(t *testing.T) {
	base := model.Ts(1000)
	script := newScript(base, 20, 7)
	c, snk, _ := startStreamFeed(t, script, base)
	last := base + 200
	waitUntil(t, "every row of both tables is flushed", func() bool {
		snk.mu.Lock()
		defer snk.mu.Unlock()
		return len(snk.rows[1]) == 20 && len(snk.rows[2]) == 20
	})
	if bad := snk.violations(); len(bad) > 0 {
		t.Fatalf("barrier violations: %v", bad)
	}
	snk.mu.Lock()
	if len(snk.ddls) != 1 || snk.ddls[0].CommitTs != base+80 {
		t.Fatalf("DDLs executed: %v", snk.ddls)
	}
	for id, rows := range snk.rows {
		for i, r := range rows {
			if r.After[0].I != int64(i) {
				t.Fatalf("table %d row %d is %v: lost or out of order", id, i, r.After[0])
			}
			if id == 1 && i >= 7 && r.Schema.Version != 2 {
				t.Fatalf("row %d of table 1 after the DDL has schema version %d", i, r.Schema.Version)
			}
		}
	}
	snk.mu.Unlock()
	pos := c.waitPosition("the last position is safe", func(p model.TaskPosition) bool { return p.Stream != nil && p.Stream.Ts == last })
	if pos.Stream.Position != "p19" || pos.Running[model.StreamUnitID] < last {
		t.Fatalf("position %+v", pos)
	}
	waitUntil(t, "the recorded position is confirmed upstream", func() bool {
		cs := script.confirmed()
		return len(cs) > 0 && cs[len(cs)-1] == "p19"
	})
	var st model.ChangefeedStatus
	c.get(meta.ChangefeedStatusKey(testFeed), &st)
	recorded := map[string]bool{}
	for i := 0; i <= 19; i++ {
		recorded["p"+strconv.Itoa(i)] = true
	}
	for _, p := range script.confirmed() {
		if !recorded[p] {
			t.Fatalf("confirmed %q upstream, never recorded", p)
		}
	}
}

// TestStreamUnitRestartsFromTheSafePosition: the stream fails mid-way; the
// unit reopens it at its last safe position and every row arrives, with
// replays only above that position.
func TestStreamUnitRestartsFromTheSafePosition(t *testing.T) {
	base := model.Ts(1000)
	script := newScript(base, 30, 100)
	script.failAfter = 12
	script.failGate = make(chan struct{})
	c, snk, _ := startStreamFeed(t, script, base)
	// Fail once some position is safe and recorded: the reopen must use it.
	c.waitPosition("a safe position before the failure", func(p model.TaskPosition) bool { return p.Stream != nil && p.Stream.Ts >= base+80 })
	waitUntil(t, "the owner recorded it", func() bool {
		var st model.ChangefeedStatus
		return c.get(meta.ChangefeedStatusKey(testFeed), &st) && st.StreamPosition != nil && st.StreamPosition.Ts >= base+80
	})
	close(script.failGate)
	waitUntil(t, "every row is flushed after the restart", func() bool {
		snk.mu.Lock()
		defer snk.mu.Unlock()
		seen := map[int64]bool{}
		for _, r := range snk.rows[1] {
			seen[r.After[0].I] = true
		}
		return len(seen) == 30
	})
	script.mu.Lock()
	opens := append([]string(nil), script.opens...)
	script.mu.Unlock()
	if len(opens) < 2 || opens[0] != "" {
		t.Fatalf("opened at %v; want a first open with no position and a reopen", opens)
	}
	resumed, err := strconv.Atoi(strings.TrimPrefix(opens[1], "p"))
	if err != nil || resumed > 11 || resumed < 7 {
		t.Fatalf("reopened at %q: must be the safe position reached before the failure (p7 to p11)", opens[1])
	}
	snk.mu.Lock()
	defer snk.mu.Unlock()
	for id, rows := range snk.rows {
		seen := map[int64]int{}
		for _, r := range rows {
			seen[r.After[0].I]++
		}
		for i, n := range seen {
			if n > 1 && i <= int64(resumed) {
				t.Fatalf("table %d: row %d written %d times although the stream resumed after it (position p%d)", id, i, n, resumed)
			}
		}
	}
}

// TestStreamUnitReportsAnUnretryableSinkErrorAtOnce: a table of a stream
// unit whose sink refuses a row for good fails the unit at once with the
// sink's code and message; the unit does not reopen the stream to meet the
// same row again.
func TestStreamUnitReportsAnUnretryableSinkErrorAtOnce(t *testing.T) {
	base := model.Ts(1000)
	script := newScript(base, 20, 100)
	refused := base + 50
	c, _, _ := startStreamFeed(t, script, base, func(s *recordSink) {
		s.refuse = func(id model.TableID, r *model.RowChange) error {
			if id == streamT2.ID && r.CommitTs == refused {
				return sink.Unretryable(fmt.Errorf("record sink: table s.b: the row at %d is refused for good", r.CommitTs))
			}
			return nil
		}
	})
	pos := c.waitPosition("an error in the position", func(p model.TaskPosition) bool { return p.Error != nil })
	if pos.Error.Code != CodeSinkUnretryable || !strings.Contains(pos.Error.Message, "s.b: the row at 1050 is refused for good") {
		t.Fatalf("position error %+v, want %s with the sink's message", pos.Error, CodeSinkUnretryable)
	}
	script.mu.Lock()
	opens := len(script.opens)
	script.mu.Unlock()
	if opens != 1 {
		t.Fatalf("the stream was opened %d times, want once: an unretryable error must not restart the unit", opens)
	}
}
