package tidb

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	timodel "github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/tablecodec"
	"github.com/pingcap/tidb/pkg/types"

	"github.com/raftcdc/raftcdc/model"
)

// historyTableID is mysql.tidb_ddl_history's table ID in every TiDB
// (pkg/ddl's HistoryTableID: MaxInt48 − 3). TiDB writes every finished
// DDL job there, in the transaction that finishes it.
const historyTableID = (1<<48 - 1) - 3

// schemaTracker is TiCDC's schema storage and DDL puller in one: the
// catalog read from TiDB's meta keys at base, then every DDL job read from
// the DDL history table's record span, applied in FinishedTS order once
// the span's resolved ts has passed its row. It keeps every table's
// versions since base (for decoding rows against the schema in force at
// commit ts − 1) and the DDL events (for the owner's barrier). Table
// subscriptions and DDL subscriptions of one source share trackers.
type schemaTracker struct {
	src  *Source
	base uint64

	histCol int64
	histFt  *types.FieldType

	q      *eventQueue
	span   *spanSub
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	cat      *catalog
	versions map[int64][]*tableVersion
	events   []*model.DDLEvent
	// resolved: every DDL with FinishedTS <= resolved has been applied.
	resolved uint64
	err      error
	changed  chan struct{}
	pending  []pendingJob
	// refs and idleGen are guarded by the source's mu.
	refs    int
	idleGen int
}

// tableVersion is one definition of a table, in force from ts on (0: from
// before the tracker's base).
type tableVersion struct {
	ts     uint64
	info   *timodel.TableInfo // nil: the table does not exist from ts on
	db     string
	id     int64
	schema *model.TableSchema
	err    error
}

type pendingJob struct {
	commitTs uint64
	job      *timodel.Job
}

func (s *Source) newTracker(ctx context.Context, base uint64) (*schemaTracker, error) {
	cat, err := readCatalog(ctx, snapshot{s.kv.GetSnapshot(base)})
	if err != nil {
		return nil, fmt.Errorf("read TiDB's schema at ts %d: %w", base, err)
	}
	t := &schemaTracker{src: s, base: base, cat: cat, versions: map[int64][]*tableVersion{}, resolved: base,
		changed: make(chan struct{}), q: newEventQueue(), done: make(chan struct{}), histCol: 2}
	t.histFt = types.NewFieldType(mysql.TypeLongBlob)
	if h := cat.tables[historyTableID]; h != nil {
		for _, c := range h.info.Columns {
			if c.Name.L == "job_meta" {
				t.histCol, t.histFt = c.ID, &c.FieldType
			}
		}
	}
	for id, e := range cat.tables {
		t.versions[id] = []*tableVersion{{ts: 0, info: e.info, db: cat.dbName(e.dbID), id: id}}
	}
	start := tablecodec.GenTableRecordPrefix(historyTableID)
	end := tablecodec.GenTableRecordPrefix(historyTableID)
	end[len(end)-1]++
	rctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.span = s.client.subscribe(start, end, base, "mysql.tidb_ddl_history", t.q, nil)
	go t.run(rctx)
	return t, nil
}

func (t *schemaTracker) close() {
	t.cancel()
	<-t.done
	t.span.close()
}

func (t *schemaTracker) run(ctx context.Context) {
	defer close(t.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.q.wait():
		}
		evs, err := t.q.take()
		if err != nil {
			t.fail(fmt.Errorf("reading TiDB's DDL history: %w", err))
			return
		}
		for _, ev := range evs {
			for i := range ev.rows {
				r := &ev.rows[i]
				if r.delete {
					continue // history cleanup
				}
				job, err := t.decodeJob(r.value)
				if err != nil {
					t.fail(fmt.Errorf("decoding a DDL job from the history table at ts %d: %w", r.commitTs, err))
					return
				}
				t.mu.Lock()
				t.pending = append(t.pending, pendingJob{commitTs: r.commitTs, job: job})
				t.mu.Unlock()
			}
			if ev.resolved > 0 {
				if err := t.advance(ev.resolved); err != nil {
					t.fail(err)
					return
				}
			}
		}
	}
}

func (t *schemaTracker) decodeJob(value []byte) (*timodel.Job, error) {
	m, err := tablecodec.DecodeRowToDatumMap(value, map[int64]*types.FieldType{t.histCol: t.histFt}, time.UTC)
	if err != nil {
		return nil, err
	}
	d, ok := m[t.histCol]
	if !ok || d.IsNull() {
		return nil, fmt.Errorf("the row has no job_meta")
	}
	job := &timodel.Job{}
	if err := job.Decode(d.GetBytes()); err != nil {
		return nil, err
	}
	return job, nil
}

// advance applies every job whose history row is at or below the span's
// resolved ts r, in FinishedTS order.
func (t *schemaTracker) advance(r uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ready, keep []pendingJob
	for _, p := range t.pending {
		if p.commitTs <= r {
			ready = append(ready, p)
		} else {
			keep = append(keep, p)
		}
	}
	t.pending = keep
	sort.Slice(ready, func(i, j int) bool {
		a, b := ready[i].job, ready[j].job
		if fa, fb := finished(a), finished(b); fa != fb {
			return fa < fb
		}
		return a.ID < b.ID
	})
	for _, p := range ready {
		ev, changes, err := t.cat.apply(p.job)
		if err != nil {
			return fmt.Errorf("applying DDL job %d (%s, %q): %w", p.job.ID, p.job.Type, p.job.Query, err)
		}
		for _, ch := range changes {
			v := &tableVersion{ts: finished(p.job), info: ch.info, db: ch.db, id: ch.id}
			list := append(t.versions[ch.id], v)
			sort.SliceStable(list, func(i, j int) bool { return list[i].ts < list[j].ts })
			t.versions[ch.id] = list
		}
		if ev != nil && !systemSchema(ev.Schema) {
			t.events = append(t.events, ev)
			t.src.log.Info().Str("kind", string(ev.Kind)).Uint64("commit_ts", ev.CommitTs).Str("query", ev.Query).Msg("DDL read from TiDB")
		}
	}
	// A DDL job's FinishedTS is its transaction's start ts; a job still in
	// flight at r can have exactly r as its FinishedTS.
	if r > 0 && r-1 > t.resolved {
		t.resolved = r - 1
	}
	t.signalLocked()
	return nil
}

func finished(j *timodel.Job) uint64 {
	if j.BinlogInfo != nil {
		return j.BinlogInfo.FinishedTS
	}
	return j.StartTS
}

func (t *schemaTracker) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
		t.src.log.Error().Err(err).Msg("schema tracker failed")
	}
	t.signalLocked()
}

func (t *schemaTracker) signalLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// state is the tracker's resolved ts, its error, and a channel closed at
// its next change.
func (t *schemaTracker) state() (uint64, <-chan struct{}, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.resolved, t.changed, t.err
}

// versionAt is the table's definition in force at ts (nil when the
// tracker does not know the table then).
func (t *schemaTracker) versionAt(id int64, ts uint64) *tableVersion {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.versions[id]
	i := sort.Search(len(list), func(i int) bool { return list[i].ts > ts }) - 1
	if i < 0 {
		return nil
	}
	return list[i]
}

// versionUntil is versionAt's answer with the end of its validity: the
// version holds for every ts' from ts up to (not including) until, which is
// the next version's ts or, where none is known yet, just past what the
// tracker has resolved.
func (t *schemaTracker) versionUntil(id int64, ts uint64) (v *tableVersion, until uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.versions[id]
	i := sort.Search(len(list), func(i int) bool { return list[i].ts > ts })
	until = t.resolved + 1
	if i < len(list) {
		until = list[i].ts
	}
	if i == 0 {
		return nil, until
	}
	return list[i-1], until
}

// partitionSince is the ts of the first version of a table that has the
// physical table pid (0 if none has).
func (t *schemaTracker) partitionSince(id, pid int64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range t.versions[id] {
		if v.info == nil {
			continue
		}
		for _, p := range physicalIDs(v.info) {
			if p == pid {
				return v.ts
			}
		}
	}
	return 0
}

// schemaOf is the model schema of a version, built once.
func (t *schemaTracker) schemaOf(v *tableVersion) (*model.TableSchema, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v.schema == nil && v.err == nil {
		v.schema, v.err = tableSchema(v.db, v.info, v.id)
	}
	return v.schema, v.err
}

// eventsAfter are the DDL events with CommitTs > ts from index from on,
// and the index to continue at.
func (t *schemaTracker) eventsAfter(from int, ts uint64) ([]*model.DDLEvent, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*model.DDLEvent
	for ; from < len(t.events); from++ {
		if t.events[from].CommitTs > ts {
			out = append(out, t.events[from])
		}
	}
	return out, from
}

// acquireTracker returns a running tracker whose base is at or below ts,
// starting one at ts if there is none.
func (s *Source) acquireTracker(ctx context.Context, ts uint64) (*schemaTracker, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("tidb source is closed")
	}
	for _, t := range s.trackers {
		_, _, err := t.state()
		if t.base <= ts && err == nil {
			t.refs++
			s.mu.Unlock()
			return t, nil
		}
	}
	s.mu.Unlock()
	t, err := s.newTracker(ctx, ts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		go t.close()
		return nil, fmt.Errorf("tidb source is closed")
	}
	t.refs++
	s.trackers = append(s.trackers, t)
	return t, nil
}

// trackerLinger is how long a tracker nobody uses stays up: a pipeline
// reads a table's schema and then subscribes, or restarts, and a new
// tracker costs a snapshot read of every table.
const trackerLinger = 30 * time.Second

// releaseTracker drops a reference; a tracker unused for trackerLinger
// stops.
func (s *Source) releaseTracker(t *schemaTracker) {
	s.mu.Lock()
	t.refs--
	if t.refs > 0 {
		s.mu.Unlock()
		return
	}
	t.idleGen++
	gen := t.idleGen
	s.mu.Unlock()
	time.AfterFunc(trackerLinger, func() {
		s.mu.Lock()
		if t.refs > 0 || t.idleGen != gen || s.closed {
			s.mu.Unlock()
			return
		}
		for i, x := range s.trackers {
			if x == t {
				s.trackers = append(s.trackers[:i], s.trackers[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
		t.close()
	})
}

// waitResolved waits until every DDL with FinishedTS <= ts is applied.
func (t *schemaTracker) waitResolved(ctx context.Context, ts uint64) error {
	for {
		resolved, changed, err := t.state()
		if err != nil {
			return err
		}
		if resolved >= ts {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for TiDB's DDL history to reach ts %d (at %d): %w", ts, resolved, ctx.Err())
		case <-changed:
		}
	}
}

// label names a table for logs and metrics.
func label(db, table string) string {
	return strings.Join([]string{db, table}, ".")
}
