package owner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/rs/zerolog"
)

// world is a real FSM that tests build state in and apply the owner's
// commands to, so every test also checks that the commands pass the FSM's
// fencing, access rules, preconditions and one-capture-per-table rule.
type world struct {
	t     testing.TB
	f     *fsm.FSM
	mu    sync.Mutex
	index uint64
	epoch uint64
	incs  map[model.CaptureID]uint64
	now   time.Time
	// live is the membership view ticks use.
	live map[model.CaptureID]CaptureLiveness
	cfg  Config
	// tables and upstreamGC are the worker-side inputs ticks use.
	tables     map[model.ChangefeedID]TablesResult
	upstreamGC map[string]model.Ts
	// upstreamIDs maps source URIs to upstream identities; a URI not in it
	// is its own upstream. gcFailures are the worker's failing pushes.
	upstreamIDs map[string]string
	gcFailures  map[string]GCFailure
	// lastHeard is when the leader last heard from each capture.
	lastHeard map[model.CaptureID]time.Time
	since     time.Time
	// ddl is the DDL puller's view per changefeed; a changefeed missing here
	// has a puller that saw no DDL and is resolved to the end of time.
	ddl map[model.ChangefeedID]DDLState
	// executed lists the DDLs the owner ran through the sink, in order;
	// failDDL makes the sink refuse them.
	executed []*model.DDLEvent
	failDDL  error
	// statusWrites is the worker's record of its status writes.
	statusWrites map[model.ChangefeedID]StatusWrite
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func newWorld(t testing.TB) *world {
	t.Helper()
	f, err := fsm.Open(filepath.Join(t.TempDir(), "fsm.db"), fsm.Options{Rules: meta.Rules{}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w := &world{t: t, f: f, incs: map[model.CaptureID]uint64{}, now: t0, since: t0.Add(-time.Hour),
		live: map[model.CaptureID]CaptureLiveness{}, tables: map[model.ChangefeedID]TablesResult{},
		upstreamGC: map[string]model.Ts{}, upstreamIDs: map[string]string{}, gcFailures: map[string]GCFailure{},
		// Test timestamps are small numbers (1970): a default gc-ttl that
		// ages them out would fail every stopped changefeed.
		cfg: Config{MaxMovesPerChangefeed: 100, GCTTL: 200 * 365 * 24 * time.Hour}, ddl: map[model.ChangefeedID]DDLState{}}
	w.epoch = w.mustApply(fsm.Command{Kind: fsm.KindClaimOwner, NodeID: "owner", UnixMilli: t0.UnixMilli()}).Index
	// A cluster of this build runs at its schema version (older ones in
	// the tests that say so).
	w.schema(meta.SchemaVersion)
	return w
}

// schema records the cluster at metadata schema v, as the leader node does.
func (w *world) schema(v int) *world {
	w.t.Helper()
	w.mustApply(fsm.Command{Ops: []fsm.Op{putJSON(meta.KeyCluster, model.ClusterInfo{ID: "test-cluster", Created: t0, SchemaVersion: v})}})
	return w
}

// applyCmd applies at the next index, as Raft would.
func (w *world) applyCmd(c fsm.Command) *fsm.Result {
	w.t.Helper()
	b, err := fsm.Encode(c)
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.index++
	idx := w.index
	w.mu.Unlock()
	return w.f.Apply(rawLog(idx, b)).(*fsm.Result)
}

func rawLog(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
}

func (w *world) mustApply(c fsm.Command) *fsm.Result {
	w.t.Helper()
	r := w.applyCmd(c)
	if r.Err != nil {
		w.t.Fatalf("apply %+v: %v", c, r.Err)
	}
	return r
}

func putJSON(key string, v any) fsm.Op {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return fsm.Op{Type: fsm.OpPut, Key: key, Value: b}
}

// capture registers a capture and sets its liveness.
func (w *world) capture(id model.CaptureID, l CaptureLiveness) *world {
	return w.captureWithLease(id, l, 0)
}

// captureWithLease registers a capture that declares its lease.
func (w *world) captureWithLease(id model.CaptureID, l CaptureLiveness, lease time.Duration) *world {
	w.t.Helper()
	w.incs[id]++
	w.mustApply(fsm.Command{Kind: fsm.KindRegisterCapture, Ops: []fsm.Op{putJSON(meta.CaptureKey(id), model.CaptureInfo{ID: id, Incarnation: w.incs[id], LeaseMillis: lease.Milliseconds()})}})
	if l != "" {
		w.live[id] = l
	}
	return w
}

// info writes a changefeed's info the way the API does (no epoch).
func (w *world) info(info model.ChangefeedInfo) *world {
	w.t.Helper()
	if info.SourceURI == "" {
		info.SourceURI = "datagen://test"
	}
	w.mustApply(fsm.Command{Ops: []fsm.Op{putJSON(meta.ChangefeedInfoKey(info.ID), info)}})
	return w
}

// owner writes owner-only keys directly.
func (w *world) owner(key string, v any) *world {
	w.t.Helper()
	w.mustApply(fsm.Command{OwnerEpoch: w.epoch, Ops: []fsm.Op{putJSON(key, v)}})
	return w
}

func (w *world) status(cf model.ChangefeedID, st model.ChangefeedStatus) *world {
	return w.owner(meta.ChangefeedStatusKey(cf), st)
}

func (w *world) task(cf model.ChangefeedID, c model.CaptureID, ts model.TaskStatus) *world {
	if ts.Tables == nil {
		ts.Tables = map[model.TableID]model.TableReplicaInfo{}
	}
	return w.owner(meta.TaskStatusKey(cf, c), ts)
}

// position writes a processor's progress, fenced by its incarnation.
// A position of epoch 0 is written with the changefeed's current epoch.
func (w *world) position(cf model.ChangefeedID, c model.CaptureID, p model.TaskPosition) *world {
	w.t.Helper()
	if f := w.state().Changefeeds[cf]; p.Epoch == 0 && f != nil && f.Info != nil {
		p.Epoch = f.Info.Epoch
	}
	w.mustApply(fsm.Command{Capture: &fsm.CaptureFence{ID: c, Incarnation: w.incs[c]}, Ops: []fsm.Op{putJSON(meta.TaskPositionKey(cf, c), p)}})
	return w
}

func (w *world) workload(cf model.ChangefeedID, c model.CaptureID, wl model.TaskWorkload) *world {
	w.t.Helper()
	w.mustApply(fsm.Command{Capture: &fsm.CaptureFence{ID: c, Incarnation: w.incs[c]}, Ops: []fsm.Op{putJSON(meta.TaskWorkloadKey(cf, c), wl)}})
	return w
}

func (w *world) raw(key string, value string) *world {
	w.t.Helper()
	op := fsm.Op{Type: fsm.OpPut, Key: key, Value: json.RawMessage(value)}
	w.mustApply(fsm.Command{OwnerEpoch: w.epoch, Ops: []fsm.Op{op}})
	return w
}

func (w *world) state() *meta.State {
	w.t.Helper()
	var s *meta.State
	err := w.f.View(func(r fsm.Reader, _ uint64) error {
		var err error
		s, err = meta.Load(r)
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *world) inputs() Inputs {
	ddl := map[model.ChangefeedID]DDLState{}
	ids := map[string]string{}
	w.f.View(func(r fsm.Reader, _ uint64) error {
		r.Range(meta.PrefixChangefeedInfo, func(kv fsm.KV) bool {
			ddl[strings.TrimPrefix(kv.Key, meta.PrefixChangefeedInfo)] = DDLState{ResolvedTs: math.MaxUint64}
			if v, err := meta.Decode(kv.Key, kv.Value); err == nil {
				uri := v.(*model.ChangefeedInfo).SourceURI
				ids[uri] = uri
				if id, ok := w.upstreamIDs[uri]; ok {
					ids[uri] = id
				}
			}
			return true
		})
		return nil
	})
	for id, d := range w.ddl {
		ddl[id] = d
	}
	return Inputs{Now: w.now, OwnerSince: w.since, NodeID: "owner", Membership: w.live, LastHeard: w.lastHeard,
		SourceTables: w.tables, UpstreamIDs: ids, UpstreamGC: w.upstreamGC, GCFailures: w.gcFailures, DDL: ddl, StatusWrites: w.statusWrites, Config: w.cfg}
}

// tick runs one reactor pass and applies its commands, like the worker.
// It fails the test on any refusal other than a lost race.
func (w *world) tick() Output {
	w.t.Helper()
	s := w.state()
	// Tick must never change its snapshot: the plan shares the snapshot's
	// task statuses until it changes one, and the snapshot is the meta
	// cache's, which the next tick reuses.
	before, err := json.Marshal(s.Changefeeds)
	if err != nil {
		w.t.Fatal(err)
	}
	out := Tick(s, w.inputs())
	if after, _ := json.Marshal(s.Changefeeds); !bytes.Equal(before, after) {
		w.t.Fatalf("the tick changed its snapshot:\nbefore %s\nafter  %s", before, after)
	}
	for _, c := range out.Commands {
		if c.OwnerEpoch != w.epoch {
			w.t.Fatalf("command without the owner epoch: %+v", c)
		}
		if r := w.applyCmd(c); r.Err != nil && r.Err.Code != fsm.CodePreconditionFailed {
			w.t.Fatalf("owner command refused: %v\n%s", r.Err, cmdString(c))
		}
	}
	for _, a := range out.DDL {
		if !a.Skip {
			if w.failDDL != nil {
				d := w.ddl[a.Changefeed]
				d.ExecErr, d.ExecTs = w.failDDL, a.Event.CommitTs
				w.ddl[a.Changefeed] = d
				continue
			}
			w.executed = append(w.executed, a.Event)
		}
		if r := w.applyCmd(a.Record); r.Err != nil && r.Err.Code != fsm.CodePreconditionFailed {
			w.t.Fatalf("DDL record refused: %v\n%s", r.Err, cmdString(a.Record))
		}
	}
	for _, a := range out.GC {
		if a.Record != nil {
			if r := w.applyCmd(*a.Record); r.Err != nil {
				w.t.Fatalf("GC record refused: %v", r.Err)
			}
		}
	}
	return out
}

// settle ticks until the owner has nothing more to do.
func (w *world) settle() {
	w.t.Helper()
	for i := 0; i < 20; i++ {
		if out := w.tick(); len(out.Commands) == 0 && len(out.DDL) == 0 {
			return
		}
	}
	w.t.Fatal("owner did not settle in 20 ticks")
}

func cmdString(c fsm.Command) string {
	b, _ := json.MarshalIndent(c, "", "  ")
	return string(b)
}

// processors plays every capture's processor for cf once: tables it holds
// run at progress(table) (never below their start ts), tables with a
// delete operation are reported stopped at their boundary ts.
func (w *world) processors(cf model.ChangefeedID, progress func(model.TableID) model.Ts) {
	w.t.Helper()
	s := w.state()
	f := s.Changefeeds[cf]
	if f == nil {
		return
	}
	for _, c := range sortedKeys(f.Tasks) {
		task := f.Tasks[c]
		if task.Status == nil || s.Captures[c] == nil {
			continue
		}
		pos := model.TaskPosition{Running: map[model.TableID]model.Ts{}, Stopped: map[model.TableID]model.Ts{}}
		if task.Position != nil {
			for k, v := range task.Position.Stopped {
				pos.Stopped[k] = v
			}
		}
		first := true
		for table, rep := range task.Status.Tables {
			if op := task.Status.Operations[table]; op != nil && op.Delete {
				pos.Stopped[table] = maxTs(op.BoundaryTs, rep.StartTs)
				continue
			}
			delete(pos.Stopped, table)
			ts := maxTs(rep.StartTs, progress(table))
			pos.Running[table] = ts
			if first || ts < pos.CheckpointTs {
				pos.CheckpointTs, pos.ResolvedTs = ts, ts
			}
			first = false
		}
		w.position(cf, c, pos)
	}
}

// assignment maps each assigned table to "capture@startTs".
func assignment(s *meta.State, cf model.ChangefeedID) map[model.TableID]string {
	out := map[model.TableID]string{}
	f := s.Changefeeds[cf]
	if f == nil {
		return out
	}
	for c, task := range f.Tasks {
		if task.Status == nil {
			continue
		}
		for table, rep := range task.Status.Tables {
			out[table] = fmt.Sprintf("%s@%d", c, rep.StartTs)
		}
	}
	return out
}

// loads counts tables per capture.
func loads(s *meta.State, cf model.ChangefeedID) map[model.CaptureID]int {
	out := map[model.CaptureID]int{}
	for c, task := range s.Changefeeds[cf].Tasks {
		if task.Status != nil {
			out[c] = len(task.Status.Tables)
		}
	}
	return out
}

func tableNames(ids ...model.TableID) []model.TableName {
	out := make([]model.TableName, 0, len(ids))
	for _, id := range ids {
		out = append(out, model.TableName{ID: id, Schema: "db", Table: fmt.Sprintf("t%d", id)})
	}
	return out
}

func tableRange(n int) []model.TableID {
	out := make([]model.TableID, n)
	for i := range out {
		out[i] = model.TableID(i + 1)
	}
	return out
}

// initialized is a status of a running changefeed over the given tables.
func initialized(ckpt model.Ts, ids ...model.TableID) model.ChangefeedStatus {
	return model.ChangefeedStatus{CheckpointTs: ckpt, ResolvedTs: ckpt, Tables: tableNames(ids...), Initialized: true}
}

func replicas(kv ...model.Ts) map[model.TableID]model.TableReplicaInfo {
	out := map[model.TableID]model.TableReplicaInfo{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[model.TableID(kv[i])] = model.TableReplicaInfo{StartTs: kv[i+1]}
	}
	return out
}

func tsMap(kv ...model.Ts) model.TableTs {
	out := map[model.TableID]model.Ts{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[model.TableID(kv[i])] = kv[i+1]
	}
	return out
}

func eventKinds(out Output) []string {
	var ks []string
	for _, e := range out.Events {
		ks = append(ks, string(e.Kind))
	}
	sort.Strings(ks)
	return ks
}

func hasEvent(out Output, k EventKind) bool {
	for _, e := range out.Events {
		if e.Kind == k {
			return true
		}
	}
	return false
}
