package owner

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

const cf = "cf"

// TestEvictionAndStaleTasks covers the establish pass: captures that are
// gone (or never registered) lose their tasks, their tables become durable
// orphans at the right ts, and the orphans are dispatched afterwards.
func TestEvictionAndStaleTasks(t *testing.T) {
	move := func(target model.CaptureID) map[model.TableID]*model.TableOperation {
		return map[model.TableID]*model.TableOperation{1: {Delete: true, IsMove: true, TargetCapture: target, BoundaryTs: 170, Status: model.OperDispatched}}
	}
	cases := []struct {
		name  string
		setup func(w *world)
		// after the first tick
		wantCaptures []model.CaptureID
		wantOrphans  map[model.TableID]model.Ts
		wantEvent    EventKind
	}{
		{
			name: "dead capture: start ts raised by reported progress",
			setup: func(w *world) {
				w.capture("b", LivenessDead)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100, 2, 200, 3, 120)})
				// Table 3 was never reported: the capture-wide checkpoint
				// (300) may predate its arrival, so its start ts is used.
				w.position(cf, "b", model.TaskPosition{CheckpointTs: 300, Running: tsMap(1, 150, 2, 150)})
			},
			wantCaptures: []model.CaptureID{"a"},
			wantOrphans:  tsMap(1, 150, 2, 200, 3, 120),
			wantEvent:    EventCaptureEvicted,
		},
		{
			name: "left capture is evicted at once",
			setup: func(w *world) {
				w.capture("b", LivenessLeft)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100)})
			},
			wantCaptures: []model.CaptureID{"a"},
			wantOrphans:  tsMap(1, 100),
			wantEvent:    EventCaptureEvicted,
		},
		{
			name: "unknown to gossip within the grace period is kept",
			setup: func(w *world) {
				w.capture("b", "")
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100)})
				w.since = w.now.Add(-time.Second)
			},
			wantCaptures: []model.CaptureID{"a", "b"},
			wantOrphans:  map[model.TableID]model.Ts{},
		},
		{
			name: "unknown to gossip after the grace period is evicted",
			setup: func(w *world) {
				w.capture("b", "")
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100)})
				w.since = w.now.Add(-DefaultEvictionGrace)
			},
			wantCaptures: []model.CaptureID{"a"},
			wantOrphans:  tsMap(1, 100),
			wantEvent:    EventCaptureEvicted,
		},
		{
			name: "suspect capture keeps its tables",
			setup: func(w *world) {
				w.capture("b", LivenessSuspect)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100)})
			},
			wantCaptures: []model.CaptureID{"a", "b"},
			wantOrphans:  map[model.TableID]model.Ts{},
		},
		{
			name: "move dispatched, source died before stopping",
			setup: func(w *world) {
				w.capture("b", LivenessDead)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100), Operations: move("a")})
				w.position(cf, "b", model.TaskPosition{Running: tsMap(1, 160)})
			},
			wantCaptures: []model.CaptureID{"a"},
			wantOrphans:  tsMap(1, 160),
		},
		{
			name: "move stopped at the source, source died before the owner added it",
			setup: func(w *world) {
				w.capture("b", LivenessDead)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100), Operations: move("a")})
				w.position(cf, "b", model.TaskPosition{Stopped: tsMap(1, 180)})
			},
			wantCaptures: []model.CaptureID{"a"},
			wantOrphans:  tsMap(1, 180),
		},
		{
			name: "move finished, then its target died before reporting",
			setup: func(w *world) {
				w.capture("b", LivenessDead)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 180)})
			},
			wantCaptures: []model.CaptureID{"a"},
			wantOrphans:  tsMap(1, 180),
		},
		{
			name: "plain delete: a table of the changefeed is orphaned, a stray one dropped",
			setup: func(w *world) {
				w.capture("b", LivenessDead)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100, 99, 100), Operations: map[model.TableID]*model.TableOperation{
					1:  {Delete: true, BoundaryTs: 170, Status: model.OperDispatched},
					99: {Delete: true, BoundaryTs: 170, Status: model.OperDispatched},
				}})
				w.position(cf, "b", model.TaskPosition{Running: tsMap(1, 140)})
			},
			wantCaptures: []model.CaptureID{"a"},
			wantOrphans:  tsMap(1, 140),
		},
		{
			name: "stale task of a capture that is not registered",
			setup: func(w *world) {
				w.task(cf, "ghost", model.TaskStatus{Tables: replicas(1, 110)})
			},
			wantCaptures: []model.CaptureID{"a"},
			wantOrphans:  tsMap(1, 110),
			wantEvent:    EventCleanup,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.capture("a", LivenessAlive)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: model.StateNormal})
			w.status(cf, initialized(100, 1, 2, 3, 4))
			w.task(cf, "a", model.TaskStatus{Tables: replicas(4, 100)})
			tc.setup(w)

			out := w.tick()
			s := w.state()
			if got := sortedKeys(s.Captures); !reflect.DeepEqual(got, tc.wantCaptures) {
				t.Fatalf("captures = %v, want %v", got, tc.wantCaptures)
			}
			orphans := s.Changefeeds[cf].Status.Orphans
			if orphans == nil {
				orphans = map[model.TableID]model.Ts{}
			}
			if !maps.Equal(orphans, tc.wantOrphans) {
				t.Fatalf("orphans = %v, want %v", orphans, tc.wantOrphans)
			}
			if tc.wantEvent != "" && !hasEvent(out, tc.wantEvent) {
				t.Fatalf("events %v lack %s", eventKinds(out), tc.wantEvent)
			}
			for c := range s.Changefeeds[cf].Tasks {
				if _, ok := s.Captures[c]; !ok {
					t.Fatalf("task keys of removed capture %s remain", c)
				}
			}

			// Afterwards every orphan is dispatched at exactly its ts.
			w.settle()
			s = w.state()
			got := assignment(s, cf)
			for table, ts := range tc.wantOrphans {
				if want := "a@" + itoa(ts); got[table] != want {
					t.Errorf("table %d on %q, want %q", table, got[table], want)
				}
			}
			if n := len(s.Changefeeds[cf].Status.Orphans); n != 0 {
				t.Errorf("orphans left after settling: %v", s.Changefeeds[cf].Status.Orphans)
			}
		})
	}
}

func itoa(ts model.Ts) string { return strings.TrimSpace(strings.Replace(jsonString(ts), `"`, "", -1)) }

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestMoveRecovery covers moves caught in flight by an owner change: the
// new owner decides from the FSM alone.
func TestMoveRecovery(t *testing.T) {
	cases := []struct {
		name       string
		targetLive CaptureLiveness
		position   model.TaskPosition
		want       map[model.TableID]string
		wantOp     bool
	}{
		{
			name:       "source reported stopped, old owner died before adding",
			targetLive: LivenessAlive,
			position:   model.TaskPosition{Running: tsMap(2, 150), Stopped: tsMap(1, 180)},
			want:       map[model.TableID]string{1: "b@180", 2: "a@100"},
		},
		{
			name:       "source reported stopped, target died meanwhile",
			targetLive: LivenessDead,
			position:   model.TaskPosition{Running: tsMap(2, 150), Stopped: tsMap(1, 180)},
			want:       map[model.TableID]string{1: "a@180", 2: "a@100"},
		},
		{
			name:       "source still running the table: keep waiting",
			targetLive: LivenessAlive,
			position:   model.TaskPosition{Running: tsMap(1, 160, 2, 150)},
			want:       map[model.TableID]string{1: "a@100", 2: "a@100"},
			wantOp:     true,
		},
		{
			name:       "stopped entry next to a running one is a leftover, not an answer",
			targetLive: LivenessAlive,
			position:   model.TaskPosition{Running: tsMap(1, 160, 2, 150), Stopped: tsMap(1, 90)},
			want:       map[model.TableID]string{1: "a@100", 2: "a@100"},
			wantOp:     true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.capture("a", LivenessAlive).capture("b", tc.targetLive)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
			w.status(cf, initialized(100, 1, 2))
			w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100, 2, 100), Operations: map[model.TableID]*model.TableOperation{
				1: {Delete: true, IsMove: true, TargetCapture: "b", BoundaryTs: 170, Status: model.OperDispatched},
			}})
			w.position(cf, "a", tc.position)
			// A new owner takes over.
			w.epoch = w.mustApply(fsm.Command{Kind: fsm.KindClaimOwner, NodeID: "owner2", UnixMilli: t0.UnixMilli()}).Index

			w.settle()
			s := w.state()
			if got := assignment(s, cf); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("assignment = %v, want %v", got, tc.want)
			}
			hasOp := len(s.Changefeeds[cf].Tasks["a"].Status.Operations) > 0
			if hasOp != tc.wantOp {
				t.Fatalf("operation in flight = %v, want %v", hasOp, tc.wantOp)
			}
		})
	}
}

// TestInitialize covers the first status of a new changefeed.
func TestInitialize(t *testing.T) {
	source := append(tableNames(3, 1, 2), model.TableName{ID: 10, Schema: "mysql", Table: "user"}, model.TableName{ID: 1, Schema: "db", Table: "t1"})
	cases := []struct {
		name       string
		filter     model.FilterConfig
		tables     *TablesResult
		status     *model.ChangefeedStatus
		wantNeed   bool
		wantState  model.FeedState
		wantTables []model.TableID
		wantCkpt   model.Ts
		wantCode   string
	}{
		{name: "asks the worker for the tables first", wantNeed: true, wantState: model.StateNormal},
		{name: "no rules: every table, deduplicated and sorted", tables: &TablesResult{Tables: source},
			wantState: model.StateNormal, wantTables: []model.TableID{1, 2, 3, 10}, wantCkpt: 100},
		{name: "filter excludes a schema", filter: model.FilterConfig{Rules: []string{"*.*", "!mysql.*"}}, tables: &TablesResult{Tables: source},
			wantState: model.StateNormal, wantTables: []model.TableID{1, 2, 3}, wantCkpt: 100},
		{name: "filter selects one table", filter: model.FilterConfig{Rules: []string{"db.t2"}}, tables: &TablesResult{Tables: source},
			wantState: model.StateNormal, wantTables: []model.TableID{2}, wantCkpt: 100},
		{name: "an overwritten checkpoint before initialisation is kept", tables: &TablesResult{Tables: tableNames(1)},
			status:    &model.ChangefeedStatus{CheckpointTs: 140, ResolvedTs: 140},
			wantState: model.StateNormal, wantTables: []model.TableID{1}, wantCkpt: 140},
		{name: "source error stops the changefeed for a retry", tables: &TablesResult{Err: errors.New("connection refused")},
			wantState: model.StateError, wantCode: CodeListTablesFailed},
		{name: "a filter that does not compile fails it", filter: model.FilterConfig{Rules: []string{"nodot"}}, tables: &TablesResult{Tables: source},
			wantState: model.StateFailed, wantCode: CodeInvalidFilter},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: model.StateNormal, Config: model.ChangefeedConfig{Filter: tc.filter}})
			if tc.status != nil {
				w.status(cf, *tc.status)
			}
			if tc.tables != nil {
				w.tables[cf] = *tc.tables
			}
			out := w.tick()
			if got := len(out.NeedTables) == 1 && out.NeedTables[0] == cf; got != tc.wantNeed {
				t.Fatalf("NeedTables = %v, want asked=%v", out.NeedTables, tc.wantNeed)
			}
			f := w.state().Changefeeds[cf]
			if f.Info.State != tc.wantState {
				t.Fatalf("state = %s, want %s", f.Info.State, tc.wantState)
			}
			if tc.wantCode != "" {
				if f.Info.Error == nil || f.Info.Error.Code != tc.wantCode || len(f.Info.ErrorHistory) != 1 {
					t.Fatalf("error = %+v history %v, want code %s once", f.Info.Error, f.Info.ErrorHistory, tc.wantCode)
				}
				return
			}
			if tc.wantTables == nil {
				if f.Status != nil && f.Status.Initialized {
					t.Fatal("initialised without tables")
				}
				return
			}
			st := f.Status
			var ids []model.TableID
			for _, tn := range st.Tables {
				ids = append(ids, tn.ID)
			}
			if !st.Initialized || !reflect.DeepEqual(ids, tc.wantTables) || st.CheckpointTs != tc.wantCkpt || st.ResolvedTs != tc.wantCkpt {
				t.Fatalf("status = %+v, want tables %v at %d", st, tc.wantTables, tc.wantCkpt)
			}
			for _, id := range tc.wantTables {
				if st.Orphans[id] != tc.wantCkpt {
					t.Fatalf("orphans = %v, want every table at %d", st.Orphans, tc.wantCkpt)
				}
			}
		})
	}
}

// TestAdminJobs runs every job in every state, twice: the second time
// must change nothing.
func TestAdminJobs(t *testing.T) {
	states := []model.FeedState{model.StateNormal, model.StateStopped, model.StateError, model.StateFailed, model.StateFinished, model.StateRemoved}
	want := map[model.AdminJobType]map[model.FeedState]model.FeedState{
		model.AdminPause: {model.StateNormal: model.StateStopped, model.StateStopped: model.StateStopped, model.StateError: model.StateStopped,
			model.StateFailed: model.StateFailed, model.StateFinished: model.StateFinished, model.StateRemoved: model.StateRemoved},
		model.AdminResume: {model.StateNormal: model.StateNormal, model.StateStopped: model.StateNormal, model.StateError: model.StateNormal,
			model.StateFailed: model.StateNormal, model.StateFinished: model.StateFinished, model.StateRemoved: model.StateRemoved},
		model.AdminRemove: {model.StateNormal: model.StateRemoved, model.StateStopped: model.StateRemoved, model.StateError: model.StateRemoved,
			model.StateFailed: model.StateRemoved, model.StateFinished: model.StateRemoved, model.StateRemoved: model.StateRemoved},
		model.AdminFinish: {model.StateNormal: model.StateFinished, model.StateStopped: model.StateFinished, model.StateError: model.StateFinished,
			model.StateFailed: model.StateFinished, model.StateFinished: model.StateFinished, model.StateRemoved: model.StateRemoved},
	}
	for _, job := range []model.AdminJobType{model.AdminPause, model.AdminResume, model.AdminRemove, model.AdminFinish} {
		for _, from := range states {
			t.Run(string(job)+"/"+string(from), func(t *testing.T) {
				w := newWorld(t)
				w.capture("a", LivenessAlive)
				info := model.ChangefeedInfo{ID: cf, StartTs: 100, State: from, Epoch: 3, AdminJob: job}
				if from == model.StateError || from == model.StateFailed {
					info.Error = &model.RunningError{Code: "boom", Message: "boom"}
				}
				w.info(info)
				if from != model.StateRemoved {
					w.status(cf, initialized(100, 1, 2))
				}
				if from == model.StateNormal {
					w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100, 2, 100)})
					w.position(cf, "a", model.TaskPosition{Running: tsMap(1, 120, 2, 130)})
				}
				wantState := want[job][from]
				effect := wantState != from || (job == model.AdminRemove && from != model.StateRemoved)

				w.tick()
				f := w.state().Changefeeds[cf]
				if f.Info.AdminJob != model.AdminNone {
					t.Fatalf("admin job not cleared: %s", f.Info.AdminJob)
				}
				if f.Info.State != wantState {
					t.Fatalf("state = %s, want %s", f.Info.State, wantState)
				}
				if wantState != model.StateNormal && len(f.Tasks) != 0 && effect {
					t.Fatalf("tasks left in state %s: %v", wantState, sortedKeys(f.Tasks))
				}
				if (f.Status == nil) != (wantState == model.StateRemoved) {
					t.Fatalf("status present = %v in state %s", f.Status != nil, wantState)
				}
				if f.Status != nil && f.Status.CheckpointTs != 100 {
					t.Fatalf("checkpoint moved to %d", f.Status.CheckpointTs)
				}
				resumed := job == model.AdminResume && effect
				if wantEpoch := uint64(3) + map[bool]uint64{true: 1}[resumed]; f.Info.Epoch != wantEpoch {
					t.Fatalf("epoch = %d, want %d", f.Info.Epoch, wantEpoch)
				}
				if resumed {
					if f.Info.Error != nil {
						t.Fatalf("resume kept the error %+v", f.Info.Error)
					}
					if !reflect.DeepEqual(f.Status.Orphans, tsMap(1, 100, 2, 100)) {
						t.Fatalf("orphans after resume = %v, want every table at the checkpoint", f.Status.Orphans)
					}
				}

				// The same job again changes nothing but clearing it.
				before := w.state().Changefeeds[cf]
				again := *before.Info
				again.AdminJob = job
				w.info(again)
				w.tick()
				after := w.state().Changefeeds[cf]
				if after.Info.AdminJob != model.AdminNone || after.Info.State != before.Info.State || after.Info.Epoch != before.Info.Epoch {
					t.Fatalf("repeated %s: state %s epoch %d, want %s epoch %d", job, after.Info.State, after.Info.Epoch, before.Info.State, before.Info.Epoch)
				}
			})
		}
	}
}

func TestResumeOverwritesCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name      string
		from      model.FeedState
		overwrite model.Ts
	}{
		{"stopped, backwards", model.StateStopped, 50},
		{"error, forwards", model.StateError, 500},
		{"failed, backwards", model.StateFailed, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.capture("a", LivenessAlive)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 10, State: tc.from, AdminJob: model.AdminResume, OverwriteCheckpointTs: tc.overwrite})
			st := initialized(100, 1, 2)
			st.ResolvedTs = 120
			w.status(cf, st)
			w.tick()
			f := w.state().Changefeeds[cf]
			if f.Info.State != model.StateNormal || f.Info.OverwriteCheckpointTs != 0 {
				t.Fatalf("info = %+v", f.Info)
			}
			if f.Status.CheckpointTs != tc.overwrite || f.Status.ResolvedTs != tc.overwrite {
				t.Fatalf("checkpoint/resolved = %d/%d, want %d", f.Status.CheckpointTs, f.Status.ResolvedTs, tc.overwrite)
			}
			w.settle()
			if got := assignment(w.state(), cf); got[1] != "a@"+itoa(tc.overwrite) || got[2] != "a@"+itoa(tc.overwrite) {
				t.Fatalf("assignment = %v, want both tables from %d", got, tc.overwrite)
			}
		})
	}
}

// TestDispatchBalance spreads 12 tables over 1, 2 and 3 captures.
func TestDispatchBalance(t *testing.T) {
	for _, n := range []int{1, 2, 3} {
		t.Run(itoa(model.Ts(n)), func(t *testing.T) {
			w := newWorld(t)
			for i := 0; i < n; i++ {
				w.capture("c"+itoa(model.Ts(i)), LivenessAlive)
			}
			// A draining and a suspect capture get nothing.
			w.capture("drain", LivenessDraining).capture("sus", LivenessSuspect)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
			w.status(cf, initialized(100, tableRange(12)...))
			w.settle()
			s := w.state()
			got := assignment(s, cf)
			if len(got) != 12 {
				t.Fatalf("assigned %d of 12: %v", len(got), got)
			}
			for table, where := range got {
				if !strings.HasSuffix(where, "@100") || strings.HasPrefix(where, "drain") || strings.HasPrefix(where, "sus") {
					t.Fatalf("table %d on %s", table, where)
				}
			}
			l := loads(s, cf)
			lo, hi := 12, 0
			for _, c := range sortedKeys(s.Captures) {
				if strings.HasPrefix(c, "c") {
					lo, hi = min(lo, l[c]), max(hi, l[c])
				}
			}
			if hi-lo > 1 || hi != (12+n-1)/n {
				t.Fatalf("loads %v are not balanced within one", l)
			}
			if len(s.Changefeeds[cf].Status.Orphans) != 0 {
				t.Fatalf("orphans left: %v", s.Changefeeds[cf].Status.Orphans)
			}
		})
	}
}

// runProcessors alternates processors and owner until nothing moves.
func runProcessors(t *testing.T, w *world, rounds int) {
	t.Helper()
	for i := 0; i < rounds; i++ {
		w.processors(cf, func(model.TableID) model.Ts { return 150 })
		w.settle()
	}
}

func TestRebalanceAfterJoin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int
	}{{"unlimited moves", 100}, {"one move at a time", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.cfg.MaxMovesPerChangefeed = tc.budget
			w.capture("a", LivenessAlive).capture("b", LivenessAlive)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
			w.status(cf, initialized(100, tableRange(12)...))
			runProcessors(t, w, 2)
			if l := loads(w.state(), cf); l["a"] != 6 || l["b"] != 6 {
				t.Fatalf("before join: %v", l)
			}
			w.capture("c", LivenessAlive)
			out := w.tick()
			if !hasEvent(out, EventMoveStarted) {
				t.Fatalf("no move started after a join: %v", eventKinds(out))
			}
			if !w.state().Changefeeds[cf].Info.RebalanceRequested && tc.budget == 1 {
				t.Fatal("a partial rebalance must be recorded so the next owner carries on")
			}
			runProcessors(t, w, 12)
			s := w.state()
			if l := loads(s, cf); l["a"] != 4 || l["b"] != 4 || l["c"] != 4 {
				t.Fatalf("after join: %v, want 4/4/4", l)
			}
			if s.Changefeeds[cf].Info.RebalanceRequested {
				t.Fatal("rebalance request not cleared once balanced")
			}
			for c, task := range s.Changefeeds[cf].Tasks {
				if len(task.Status.Operations) != 0 {
					t.Fatalf("operations left on %s: %v", c, task.Status.Operations)
				}
			}
			for table, where := range assignment(s, cf) {
				// Moved tables restart where they stopped (150), others at 100.
				if !strings.HasSuffix(where, "@100") && !strings.HasSuffix(where, "@150") {
					t.Fatalf("table %d at %s", table, where)
				}
			}
		})
	}
}

func TestDrainingCaptureIsEmptied(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive).capture("b", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, tableRange(6)...))
	runProcessors(t, w, 2)
	w.live["b"] = LivenessDraining
	runProcessors(t, w, 4)
	if l := loads(w.state(), cf); l["a"] != 6 || l["b"] != 0 {
		t.Fatalf("loads %v, want everything off the draining capture", l)
	}
}

func TestManualMove(t *testing.T) {
	cases := []struct {
		name       string
		req        model.MoveTableRequest
		notRunning bool
		wantKept   bool
		wantEvent  EventKind
		want       string // where table ends up after the processors ran
	}{
		{name: "valid move is two-phase", req: model.MoveTableRequest{TableID: 3, TargetCapture: "b"}, wantEvent: EventMoveStarted, want: "b@150"},
		{name: "unknown table is dropped", req: model.MoveTableRequest{TableID: 99, TargetCapture: "b"}, wantEvent: EventMoveRejected},
		{name: "dead target is dropped", req: model.MoveTableRequest{TableID: 3, TargetCapture: "dead"}, wantEvent: EventMoveRejected, want: "a@100"},
		{name: "unregistered target is dropped", req: model.MoveTableRequest{TableID: 3, TargetCapture: "nobody"}, wantEvent: EventMoveRejected, want: "a@100"},
		{name: "already there is dropped", req: model.MoveTableRequest{TableID: 3, TargetCapture: "a"}, wantEvent: EventMoveRejected, want: "a@100"},
		{name: "table not running yet waits", req: model.MoveTableRequest{TableID: 3, TargetCapture: "b"}, notRunning: true, wantKept: true, want: "a@100"},
		// Plain dispatch would pick b, the least loaded capture.
		{name: "orphan goes straight to the target", req: model.MoveTableRequest{TableID: 5, TargetCapture: "a"}, wantEvent: EventTableDispatched, want: "a@100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.capture("a", LivenessAlive).capture("b", LivenessAlive).capture("dead", LivenessDead)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, PendingMoves: []model.MoveTableRequest{tc.req}})
			w.status(cf, initialized(100, 1, 2, 3, 4, 5)) // table 5 is an orphan
			w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100, 2, 100, 3, 100)})
			w.task(cf, "b", model.TaskStatus{Tables: replicas(4, 100)})
			running := tsMap(1, 140, 2, 140, 3, 140)
			if tc.notRunning {
				delete(running, 3)
			}
			w.position(cf, "a", model.TaskPosition{ResolvedTs: 140, Running: running})
			w.position(cf, "b", model.TaskPosition{ResolvedTs: 140, Running: tsMap(4, 140)})

			out := w.tick()
			if tc.wantEvent != "" && !hasEvent(out, tc.wantEvent) {
				t.Fatalf("events %v lack %s", eventKinds(out), tc.wantEvent)
			}
			info := w.state().Changefeeds[cf].Info
			if kept := len(info.PendingMoves) == 1; kept != tc.wantKept {
				t.Fatalf("pending moves = %v, want kept=%v", info.PendingMoves, tc.wantKept)
			}
			if tc.wantEvent == EventMoveStarted {
				op := w.state().Changefeeds[cf].Tasks["a"].Status.Operations[3]
				if op == nil || !op.Delete || !op.IsMove || op.TargetCapture != "b" || op.Status != model.OperDispatched || op.BoundaryTs != w.state().Changefeeds[cf].Status.ResolvedTs {
					t.Fatalf("source operation = %+v", op)
				}
				if got := assignment(w.state(), cf)[3]; got != "a@100" {
					t.Fatalf("table left the source before it stopped: %s", got)
				}
				// The processor stops the table at 150, then the owner adds it.
				w.position(cf, "a", model.TaskPosition{ResolvedTs: 150, Running: tsMap(1, 150, 2, 150), Stopped: tsMap(3, 150)})
			}
			w.settle()
			if tc.want != "" {
				if got := assignment(w.state(), cf)[tc.req.TableID]; got != tc.want {
					t.Fatalf("table %d on %s, want %s", tc.req.TableID, got, tc.want)
				}
			}
		})
	}
}

// TestTime checks the checkpoint and resolved ts.
func TestTime(t *testing.T) {
	cases := []struct {
		name         string
		ckpt         model.Ts
		target       model.Ts
		orphans      map[model.TableID]model.Ts
		posA, posB   model.TaskPosition
		startB       model.Ts // start ts of b's table 3 (default 100)
		wantCkpt     model.Ts
		wantResolved model.Ts
	}{
		{name: "minimum over tables and processors", ckpt: 100,
			posA: model.TaskPosition{ResolvedTs: 160, Running: tsMap(1, 150, 2, 130)}, posB: model.TaskPosition{ResolvedTs: 180, Running: tsMap(3, 170)},
			wantCkpt: 130, wantResolved: 160},
		{name: "a table not reported yet counts with its start ts", ckpt: 100,
			posA: model.TaskPosition{ResolvedTs: 160, Running: tsMap(1, 150, 2, 130)}, posB: model.TaskPosition{ResolvedTs: 180},
			wantCkpt: 100, wantResolved: 100},
		// Table 3 just moved to b, starting at the move's boundary (the
		// resolved ts when the move began): the resolved ts stays there
		// instead of collapsing to the checkpoint for the whole move.
		{name: "a moved table not reported yet does not pull resolved back to the checkpoint", ckpt: 100, startB: 175,
			posA: model.TaskPosition{ResolvedTs: 200, Running: tsMap(1, 150, 2, 130)}, posB: model.TaskPosition{ResolvedTs: 100},
			wantCkpt: 130, wantResolved: 175},
		{name: "checkpoint never goes backwards", ckpt: 200,
			posA: model.TaskPosition{ResolvedTs: 160, Running: tsMap(1, 150, 2, 130)}, posB: model.TaskPosition{ResolvedTs: 180, Running: tsMap(3, 170)},
			wantCkpt: 200, wantResolved: 200},
		{name: "resolved is capped at the target ts", ckpt: 100, target: 155,
			posA: model.TaskPosition{ResolvedTs: 160, Running: tsMap(1, 150, 2, 130)}, posB: model.TaskPosition{ResolvedTs: 180, Running: tsMap(3, 170)},
			wantCkpt: 130, wantResolved: 155},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.capture("a", LivenessAlive).capture("b", LivenessAlive)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, TargetTs: tc.target})
			w.status(cf, initialized(tc.ckpt, 1, 2, 3))
			w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100, 2, 100)})
			startB := tc.startB
			if startB == 0 {
				startB = 100
			}
			w.task(cf, "b", model.TaskStatus{Tables: replicas(3, startB)})
			w.position(cf, "a", tc.posA).position(cf, "b", tc.posB)
			out := w.tick()
			st := w.state().Changefeeds[cf].Status
			if st.CheckpointTs != tc.wantCkpt || st.ResolvedTs != tc.wantResolved {
				t.Fatalf("checkpoint/resolved = %d/%d, want %d/%d", st.CheckpointTs, st.ResolvedTs, tc.wantCkpt, tc.wantResolved)
			}
			// Unchanged progress writes nothing.
			if out2 := w.tick(); len(out2.Commands) != 0 {
				t.Fatalf("second tick wrote %d commands: %s", len(out2.Commands), cmdString(out2.Commands[0]))
			}
			_ = out
		})
	}
}

func TestOrphanHoldsCheckpoint(t *testing.T) {
	w := newWorld(t)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	st := initialized(100, 1, 2)
	st.Orphans = tsMap(1, 120, 2, 300)
	w.status(cf, st)
	w.tick() // no capture: nothing dispatched
	got := w.state().Changefeeds[cf].Status
	if got.CheckpointTs != 120 || got.ResolvedTs != 120 || !reflect.DeepEqual(got.Orphans, st.Orphans) {
		t.Fatalf("status = %+v, want checkpoint 120 with orphans kept", got)
	}
}

func TestFinishAtTargetTs(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, TargetTs: 150})
	w.status(cf, initialized(100, 1))
	w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100)})
	w.position(cf, "a", model.TaskPosition{ResolvedTs: 160, Running: tsMap(1, 155)})
	w.tick() // checkpoint 155 ≥ target
	w.tick()
	f := w.state().Changefeeds[cf]
	if f.Info.State != model.StateFinished || len(f.Tasks) != 0 {
		t.Fatalf("state %s with %d tasks, want finished and no tasks", f.Info.State, len(f.Tasks))
	}
}

func TestErrorBackoffAndRetry(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, 1, 2))
	w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100, 2, 100)})
	fail := func() {
		w.position(cf, "a", model.TaskPosition{Running: tsMap(1, 130, 2, 140), Error: &model.RunningError{Code: "sink_unavailable", Message: "connection refused"}})
	}
	fail()
	start := w.now
	out := w.tick()
	f := w.state().Changefeeds[cf]
	if f.Info.State != model.StateError || f.Info.Error == nil || f.Info.Error.Code != "sink_unavailable" || f.Info.Error.Addr != "a" || len(f.Tasks) != 0 {
		t.Fatalf("after a processor error: state %s error %+v tasks %d", f.Info.State, f.Info.Error, len(f.Tasks))
	}
	if !hasEvent(out, EventErrorRecorded) {
		t.Fatalf("events %v lack the error", eventKinds(out))
	}
	steps := []struct {
		after time.Duration
		want  model.FeedState
	}{{9 * time.Second, model.StateError}, {10 * time.Second, model.StateNormal}}
	for _, s := range steps {
		w.now = start.Add(s.after)
		w.tick()
		if got := w.state().Changefeeds[cf].Info.State; got != s.want {
			t.Fatalf("%s after the error: %s, want %s", s.after, got, s.want)
		}
	}
	if st := w.state().Changefeeds[cf].Status; !reflect.DeepEqual(st.Orphans, tsMap(1, 100, 2, 100)) {
		t.Fatalf("retry orphans = %v, want every table at the checkpoint", st.Orphans)
	}
	w.settle()
	// A second error soon after doubles the backoff.
	fail()
	start = w.now
	w.tick()
	if h := w.state().Changefeeds[cf].Info.ErrorHistory; len(h) != 2 {
		t.Fatalf("error history %v, want 2 entries", h)
	}
	for _, s := range []struct {
		after time.Duration
		want  model.FeedState
	}{{19 * time.Second, model.StateError}, {20 * time.Second, model.StateNormal}} {
		w.now = start.Add(s.after)
		w.tick()
		if got := w.state().Changefeeds[cf].Info.State; got != s.want {
			t.Fatalf("%s after the second error: %s, want %s", s.after, got, s.want)
		}
	}
}

// TestUnretryableSinkErrorFailsTheChangefeed: a processor's report that the
// sink refused data it will refuse on every attempt (a Kafka row over
// max-message-bytes) puts the changefeed in failed, which no backoff
// retries, with the processor's message; a resume runs it again.
func TestUnretryableSinkErrorFailsTheChangefeed(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, 1))
	w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100)})
	msg := "table 1: kafka sink: table shop.blobs: a row at commit ts 120 encodes to 9000 bytes, over max-message-bytes=4096"
	w.position(cf, "a", model.TaskPosition{Running: tsMap(1, 110), Error: &model.RunningError{Code: sink.CodeUnretryable, Message: msg}})
	w.tick()
	f := w.state().Changefeeds[cf]
	if f.Info.State != model.StateFailed || f.Info.Error == nil || f.Info.Error.Code != CodeSinkUnretryable || f.Info.Error.Message != msg || len(f.Tasks) != 0 {
		t.Fatalf("after an unretryable sink error: state %s error %+v tasks %d, want failed with the processor's message and no tasks", f.Info.State, f.Info.Error, len(f.Tasks))
	}
	// Far past every backoff an error state would wait: still failed.
	w.now = w.now.Add(24 * time.Hour)
	w.tick()
	if s := w.state().Changefeeds[cf].Info.State; s != model.StateFailed {
		t.Fatalf("a failed changefeed became %s without a resume", s)
	}
	info := w.state().Changefeeds[cf].Info
	info.AdminJob = model.AdminResume
	w.info(*info)
	w.tick()
	if got := w.state().Changefeeds[cf].Info; got.State != model.StateNormal || got.Error != nil {
		t.Fatalf("after a resume: state %s error %+v, want normal with the error cleared", got.State, got.Error)
	}
}

func TestBackoff(t *testing.T) {
	cfg := DefaultConfig()
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, 10 * time.Second}, {1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second}, {6, 320 * time.Second}, {7, 10 * time.Minute}, {50, 10 * time.Minute}} {
		if got := backoff(tc.n, cfg); got != tc.want {
			t.Errorf("backoff(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
	h := trimHistory([]time.Time{t0.Add(-time.Hour), t0.Add(-time.Minute), t0}, t0, cfg)
	if len(h) != 2 {
		t.Errorf("history outside the window kept: %v", h)
	}
}

func TestSnapshotLost(t *testing.T) {
	cases := []struct {
		name  string
		state model.FeedState
		noSt  bool
		posE  bool
	}{
		{name: "normal", state: model.StateNormal},
		{name: "stopped", state: model.StateStopped},
		{name: "error", state: model.StateError},
		{name: "not initialised: start ts below GC", state: model.StateNormal, noSt: true},
		{name: "processor reports snapshot lost", state: model.StateNormal, posE: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.capture("a", LivenessAlive)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: tc.state, ErrorHistory: []time.Time{t0.Add(-time.Hour)}})
			if !tc.noSt {
				w.status(cf, initialized(100, 1))
			}
			if tc.posE {
				w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100)})
				w.position(cf, "a", model.TaskPosition{Error: &model.RunningError{Code: CodeSnapshotLost, Message: "gone"}})
			} else {
				w.upstreamGC["datagen://test"] = 150
			}
			w.tick()
			info := w.state().Changefeeds[cf].Info
			if info.State != model.StateFailed || info.Error == nil || info.Error.Code != CodeSnapshotLost {
				t.Fatalf("state %s error %+v, want failed with snapshot_lost", info.State, info.Error)
			}
			if !tc.posE && (!strings.Contains(info.Error.Message, "100") || !strings.Contains(info.Error.Message, "150")) {
				t.Fatalf("message %q should name the checkpoint and the GC safepoint", info.Error.Message)
			}
			w.now = w.now.Add(time.Hour) // failed is never retried
			w.tick()
			if s := w.state().Changefeeds[cf].Info.State; s != model.StateFailed {
				t.Fatalf("failed changefeed became %s", s)
			}
		})
	}
}

func TestGC(t *testing.T) {
	const u, v = "datagen://u", "datagen://v"
	feed := func(w *world, id string, uri string, state model.FeedState, ckpt model.Ts) {
		w.info(model.ChangefeedInfo{ID: id, SourceURI: uri, StartTs: 10, State: state})
		w.status(id, initialized(ckpt))
	}
	actions := func(out Output) map[string]GCAction {
		m := map[string]GCAction{}
		for _, a := range out.GC {
			m[a.SourceURI] = a
		}
		return m
	}
	t.Run("advance, records, refresh without record", func(t *testing.T) {
		w := newWorld(t)
		w.cfg.ClusterID = "test"
		feed(w, "x", u, model.StateNormal, 100)
		feed(w, "y", u, model.StateNormal, 200)
		feed(w, "z", v, model.StateNormal, 300)
		a := actions(w.tick())
		if a[u].Safepoint != 100 || a[v].Safepoint != 300 || a[u].TTL != w.cfg.GCTTL || a[u].ServiceID != "raftcdc-test" || a[u].Record == nil {
			t.Fatalf("actions = %+v", a)
		}
		rec := w.state().GC[GCKeyFor(u)]
		if rec == nil || rec.Record.Safepoint != 100 || rec.Record.SourceURI != u || rec.Record.ServiceID != "raftcdc-test" {
			t.Fatalf("GC record = %+v", rec)
		}
		if a := actions(w.tick()); a[u].Record != nil || a[u].Safepoint != 100 {
			t.Fatalf("unchanged safepoint should be pushed without a new record: %+v", a[u])
		}
		w.status("x", initialized(250))
		if a := actions(w.tick()); a[u].Safepoint != 200 || a[u].Record == nil {
			t.Fatalf("after x advanced: %+v, want 200 with a record", a[u])
		}
	})
	t.Run("states that hold the safepoint", func(t *testing.T) {
		for state, holds := range map[model.FeedState]bool{
			model.StateNormal: true, model.StateStopped: true, model.StateError: true,
			model.StateFailed: true, model.StateFinished: false, model.StateRemoved: false,
		} {
			w := newWorld(t)
			feed(w, "x", u, state, 100)
			feed(w, "y", u, model.StateNormal, 200)
			want := model.Ts(200)
			if holds {
				want = 100
			}
			if got := actions(w.tick())[u].Safepoint; got != want {
				t.Errorf("%s: safepoint %d, want %d", state, got, want)
			}
		}
	})
	t.Run("uninitialised changefeed holds its start ts", func(t *testing.T) {
		w := newWorld(t)
		w.info(model.ChangefeedInfo{ID: "x", SourceURI: u, StartTs: 42})
		if got := actions(w.tick())[u].Safepoint; got != 42 {
			t.Fatalf("safepoint %d, want 42", got)
		}
	})
	t.Run("cleared when the last changefeed is removed", func(t *testing.T) {
		w := newWorld(t)
		feed(w, "x", u, model.StateNormal, 100)
		w.tick()
		w.info(model.ChangefeedInfo{ID: "x", SourceURI: u, StartTs: 10, State: model.StateNormal, AdminJob: model.AdminRemove})
		a := actions(w.tick()) // the tick that removes it already releases the source
		if a[u].TTL != 0 || a[u].Record == nil {
			t.Fatalf("after removal: %+v, want a clear with the record deleted", a[u])
		}
		if len(w.state().GC) != 0 {
			t.Fatal("GC record not deleted")
		}
		if out := w.tick(); len(out.GC) != 0 {
			t.Fatalf("cleared source still acted on: %+v", out.GC)
		}
	})
	t.Run("snapshot lost stops holding in the same tick", func(t *testing.T) {
		w := newWorld(t)
		feed(w, "x", u, model.StateNormal, 100)
		feed(w, "y", u, model.StateNormal, 200)
		w.upstreamGC[u] = 150
		a := actions(w.tick())
		if a[u].Safepoint != 200 {
			t.Fatalf("safepoint %d, want 200 once x failed", a[u].Safepoint)
		}
		if s := w.state().Changefeeds["x"].Info.State; s != model.StateFailed {
			t.Fatalf("x is %s, want failed", s)
		}
	})
}

// TestGCPerUpstream: the service safepoint belongs to an upstream's
// identity, not to a source URI.
func TestGCPerUpstream(t *testing.T) {
	const u, v = "datagen://?seed=7&tables=4", "datagen://?tables=4&seed=7"
	setup := func(t *testing.T) *world {
		w := newWorld(t)
		w.upstreamIDs[u], w.upstreamIDs[v] = "up-7", "up-7"
		w.info(model.ChangefeedInfo{ID: "x", SourceURI: u, StartTs: 10})
		w.status("x", initialized(100))
		w.info(model.ChangefeedInfo{ID: "y", SourceURI: v, StartTs: 10})
		w.status("y", initialized(300))
		return w
	}
	t.Run("two spellings share one safepoint", func(t *testing.T) {
		w := setup(t)
		out := w.tick()
		if len(out.GC) != 1 || out.GC[0].UpstreamID != "up-7" || out.GC[0].Safepoint != 100 || out.GC[0].TTL == 0 {
			t.Fatalf("GC actions = %+v, want one for up-7 at 100", out.GC)
		}
		if gc := w.state().GC; len(gc) != 1 || gc[GCKeyFor("up-7")] == nil || gc[GCKeyFor("up-7")].Record.UpstreamID != "up-7" {
			t.Fatalf("GC records = %+v, want one under up-7's key", gc)
		}
	})
	t.Run("removing one keeps the other protected", func(t *testing.T) {
		w := setup(t)
		w.tick()
		info := *w.state().Changefeeds["x"].Info
		info.AdminJob = model.AdminRemove
		w.info(info)
		out := w.tick()
		if len(out.GC) != 1 || out.GC[0].TTL == 0 || out.GC[0].Safepoint != 300 {
			t.Fatalf("after removing x: GC actions %+v, want y's checkpoint 300 still held", out.GC)
		}
		if rec := w.state().GC[GCKeyFor("up-7")]; rec == nil || rec.Record.Safepoint != 300 {
			t.Fatalf("GC record %+v, want 300", rec)
		}
	})
	t.Run("a record under a source URI's key is retired without clearing the safepoint", func(t *testing.T) {
		w := setup(t)
		old := meta.GCKey("0123456789abcdef")
		w.owner(old, model.GCSafepoint{ServiceID: "raftcdc-default", SourceURI: u, Safepoint: 50})
		var only *GCAction
		for _, a := range w.tick().GC {
			if a.Record != nil && len(a.Record.Ops) == 1 && a.Record.Ops[0].Key == old {
				only = &a
			}
		}
		if only == nil || !only.RecordOnly {
			t.Fatalf("old record: action %+v, want its record deleted without an upstream call", only)
		}
		if w.state().GC[old] != nil {
			t.Fatal("old record still there")
		}
	})
}

// TestGCTTL: a changefeed that is not running holds its upstream's GC for
// at most its gc-ttl; so does one whose upstream refuses GC updates.
func TestGCTTL(t *testing.T) {
	const u = "datagen://u"
	now := t0
	aged := func(d time.Duration) model.Ts { return model.TsFromTime(now.Add(-d)) }
	setup := func(t *testing.T, state model.FeedState, age time.Duration) *world {
		w := newWorld(t)
		w.now = now
		// An error changefeed retries after a backoff from its last error.
		w.info(model.ChangefeedInfo{ID: "x", SourceURI: u, StartTs: 10, State: state, Config: model.ChangefeedConfig{GCTTL: "1h"}, ErrorHistory: []time.Time{now}})
		w.status("x", initialized(aged(age)))
		w.info(model.ChangefeedInfo{ID: "y", SourceURI: u, StartTs: 10})
		w.status("y", initialized(aged(time.Minute)))
		return w
	}
	for _, state := range []model.FeedState{model.StateStopped, model.StateError, model.StateFailed} {
		t.Run(string(state)+" past its gc-ttl fails and lets go", func(t *testing.T) {
			w := setup(t, state, 61*time.Minute)
			out := w.tick()
			info := w.state().Changefeeds["x"].Info
			if info.State != model.StateFailed || info.Error == nil || info.Error.Code != CodeSnapshotLost || !strings.Contains(info.Error.Message, "gc-ttl 1h0m0s") {
				t.Fatalf("x: state %s error %+v, want failed with snapshot_lost naming the gc-ttl", info.State, info.Error)
			}
			if len(out.GC) != 1 || out.GC[0].Safepoint != aged(time.Minute) {
				t.Fatalf("GC actions %+v, want y's checkpoint only", out.GC)
			}
		})
		t.Run(string(state)+" within its gc-ttl holds", func(t *testing.T) {
			w := setup(t, state, 59*time.Minute)
			out := w.tick()
			if s := w.state().Changefeeds["x"].Info.State; s != state {
				t.Fatalf("x is %s, want still %s", s, state)
			}
			if len(out.GC) != 1 || out.GC[0].Safepoint != aged(59*time.Minute) {
				t.Fatalf("GC actions %+v, want x's checkpoint held", out.GC)
			}
		})
	}
	t.Run("a running changefeed is not aged out", func(t *testing.T) {
		w := setup(t, model.StateNormal, 3*time.Hour)
		w.tick()
		if s := w.state().Changefeeds["x"].Info.State; !isNormal(s) {
			t.Fatalf("x is %s, want normal", s)
		}
	})
	t.Run("GC updates failing longer than gc-ttl fail the changefeeds they protect", func(t *testing.T) {
		w := setup(t, model.StateNormal, time.Minute)
		w.gcFailures[u] = GCFailure{Since: now.Add(-30 * time.Minute), Err: "pd: connection refused"}
		w.tick()
		if s := w.state().Changefeeds["x"].Info.State; !isNormal(s) {
			t.Fatalf("x is %s after 30 minutes of failures, want normal", s)
		}
		w.gcFailures[u] = GCFailure{Since: now.Add(-61 * time.Minute), Err: "pd: connection refused"}
		w.tick()
		st := w.state()
		x, y := st.Changefeeds["x"].Info, st.Changefeeds["y"].Info
		if x.State != model.StateFailed || x.Error == nil || x.Error.Code != CodeGCUpdateFailed || !strings.Contains(x.Error.Message, "pd: connection refused") {
			t.Fatalf("x: state %s error %+v, want failed with the upstream's error", x.State, x.Error)
		}
		if !isNormal(y.State) {
			t.Fatalf("y (default gc-ttl) is %s, want normal", y.State)
		}
	})
}

func TestCorruptKeys(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, 1))
	// The FSM validates task statuses but not positions, so a processor of
	// another version can leave one this build cannot read.
	w.mustApply(fsm.Command{Capture: &fsm.CaptureFence{ID: "a", Incarnation: w.incs["a"]},
		Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.TaskPositionKey(cf, "a"), Value: json.RawMessage(`"not a position"`)}}})
	w.raw(meta.ChangefeedInfoKey("bad"), `[1,2]`)
	w.task("bad", "a", model.TaskStatus{Tables: replicas(7, 1)})
	s := w.state()
	if len(s.Corrupt) != 2 {
		t.Fatalf("problems = %v, want the two bad keys", s.Corrupt)
	}
	w.settle()
	s = w.state()
	if got := assignment(s, cf); got[1] != "a@100" {
		t.Fatalf("table not dispatched next to a corrupt position: %v", got)
	}
	if len(s.Corrupt) != 1 || s.Corrupt[0].Key != meta.ChangefeedInfoKey("bad") {
		t.Fatalf("problems after settling = %v, want only the corrupt info (left alone)", s.Corrupt)
	}
	if got := assignment(s, "bad"); got[7] != "a@1" {
		t.Fatalf("changefeed with corrupt info must be left alone, tasks now %v", got)
	}
}

// TestTickIsPure checks that Tick neither changes its input nor depends on
// anything but it.
func TestTickIsPure(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive).capture("b", LivenessDead).capture("c", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, PendingMoves: []model.MoveTableRequest{{TableID: 2, TargetCapture: "c"}}})
	st := initialized(100, tableRange(6)...)
	st.Orphans = tsMap(6, 120)
	w.status(cf, st)
	w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100, 2, 100), Operations: map[model.TableID]*model.TableOperation{
		1: {Delete: true, IsMove: true, TargetCapture: "c", BoundaryTs: 130, Status: model.OperDispatched}}})
	w.position(cf, "a", model.TaskPosition{Running: tsMap(2, 130), Stopped: tsMap(1, 130)})
	w.task(cf, "other", model.TaskStatus{Tables: replicas(3, 100)})
	w.info(model.ChangefeedInfo{ID: "cf2", StartTs: 100})
	w.status("cf2", initialized(100, 1, 2, 3))

	s := w.state()
	before := jsonString(s)
	out1 := Tick(s, w.inputs())
	if after := jsonString(s); after != before {
		t.Fatalf("Tick changed its input state:\n%s\n%s", before, after)
	}
	out2 := Tick(s, w.inputs())
	if !reflect.DeepEqual(out1, out2) {
		t.Fatal("two ticks over the same input differ")
	}
	if len(out1.Commands) == 0 {
		t.Fatal("expected work in this state")
	}
}

// TestConcurrentAPIWriteWins: an admin job written between the owner's
// snapshot and its command makes that changefeed's command fail instead of
// being overwritten, without blocking the other changefeed; the next tick
// carries the job out.
func TestConcurrentAPIWriteWins(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	for _, id := range []string{"cf1", "cf2"} {
		w.info(model.ChangefeedInfo{ID: id, StartTs: 100})
		w.status(id, initialized(100, 1))
		w.task(id, "a", model.TaskStatus{Tables: replicas(1, 100)})
		w.position(id, "a", model.TaskPosition{ResolvedTs: 200, Running: tsMap(1, 150)})
	}
	out := Tick(w.state(), w.inputs())
	if len(out.Commands) != 2 {
		t.Fatalf("want one command per changefeed, got %d", len(out.Commands))
	}
	w.info(model.ChangefeedInfo{ID: "cf1", StartTs: 100, AdminJob: model.AdminPause})
	var codes []fsm.Code
	for _, c := range out.Commands {
		r := w.applyCmd(c)
		if r.Err != nil {
			codes = append(codes, r.Err.Code)
		} else {
			codes = append(codes, "ok")
		}
	}
	if !reflect.DeepEqual(codes, []fsm.Code{fsm.CodePreconditionFailed, "ok"}) {
		t.Fatalf("results = %v, want cf1 refused and cf2 applied", codes)
	}
	s := w.state()
	if s.Changefeeds["cf1"].Info.AdminJob != model.AdminPause || s.Changefeeds["cf1"].Status.CheckpointTs != 100 {
		t.Fatal("the refused command changed cf1")
	}
	if s.Changefeeds["cf2"].Status.CheckpointTs != 150 {
		t.Fatalf("cf2 checkpoint = %d, want 150", s.Changefeeds["cf2"].Status.CheckpointTs)
	}
	w.tick()
	if st := w.state().Changefeeds["cf1"].Info.State; st != model.StateStopped {
		t.Fatalf("cf1 is %s after re-ticking, want stopped", st)
	}
}

// TestDeposedOwnerCommandsAreRefused: commands built by an owner whose epoch
// was superseded change nothing.
func TestDeposedOwnerCommandsAreRefused(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, 1, 2))
	out := Tick(w.state(), w.inputs())
	w.mustApply(fsm.Command{Kind: fsm.KindClaimOwner, NodeID: "usurper", UnixMilli: 1})
	for _, c := range out.Commands {
		if r := w.applyCmd(c); r.Err == nil || r.Err.Code != fsm.CodeStaleEpoch {
			t.Fatalf("deposed owner's command: %v, want stale_owner_epoch", r.Err)
		}
	}
	if got := assignment(w.state(), cf); len(got) != 0 {
		t.Fatalf("deposed owner assigned tables: %v", got)
	}
}

// rowsWritten is the changefeed's row count as the API reports it: the
// retired count in the status plus every position's count.
func rowsWritten(s *meta.State, id model.ChangefeedID) uint64 {
	f := s.Changefeeds[id]
	var n uint64
	if f.Status != nil {
		n = f.Status.RetiredCount
	}
	for _, task := range f.Tasks {
		if task.Position != nil {
			n += task.Position.Count
		}
	}
	return n
}

// TestRowCountSurvivesTaskCleanup: whenever the owner deletes positions —
// a capture evicted, a pause, an error, a resume — their row counts move into
// the status, so the changefeed's count neither drops nor counts twice.
func TestRowCountSurvivesTaskCleanup(t *testing.T) {
	cases := []struct {
		name  string
		setup func(w *world)
		// wantRetired is the status's retired count after one tick;
		// wantPositions the captures whose positions remain.
		wantRetired   uint64
		wantPositions []model.CaptureID
	}{
		{
			name: "dead capture evicted",
			setup: func(w *world) {
				w.capture("b", LivenessDead)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100)})
				w.position(cf, "b", model.TaskPosition{Running: tsMap(1, 150), Count: 7})
			},
			wantRetired:   40 + 7,
			wantPositions: []model.CaptureID{"a"},
		},
		{
			name: "dead capture evicted from a stopped changefeed",
			setup: func(w *world) {
				w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: model.StateStopped})
				w.capture("b", LivenessDead)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100)})
				w.position(cf, "b", model.TaskPosition{Count: 5})
			},
			// The dead capture's task goes in the eviction pass; the
			// stopped changefeed's own tasks go on the next tick.
			wantRetired:   40 + 5,
			wantPositions: []model.CaptureID{"a"},
		},
		{
			name: "pause",
			setup: func(w *world) {
				w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: model.StateNormal, AdminJob: model.AdminPause})
				w.capture("b", LivenessAlive)
				w.task(cf, "b", model.TaskStatus{Tables: replicas(1, 100)})
				w.position(cf, "b", model.TaskPosition{Running: tsMap(1, 150), Count: 9})
			},
			wantRetired: 40 + 12 + 9,
		},
		{
			name: "error clears the tasks",
			setup: func(w *world) {
				w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: model.StateError,
					Error: &model.RunningError{Code: "x", Message: "x", Time: w.now}})
			},
			wantRetired: 40 + 12,
		},
		{
			name: "resume clears the tasks of the previous run",
			setup: func(w *world) {
				w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: model.StateStopped, AdminJob: model.AdminResume})
			},
			wantRetired: 40 + 12,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.capture("a", LivenessAlive)
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: model.StateNormal})
			st := initialized(100, 1, 2, 3, 4)
			st.RetiredCount = 40
			w.status(cf, st)
			w.task(cf, "a", model.TaskStatus{Tables: replicas(4, 100)})
			w.position(cf, "a", model.TaskPosition{Running: tsMap(4, 150), Count: 12})
			tc.setup(w)
			before := rowsWritten(w.state(), cf)

			w.tick()
			s := w.state()
			if got := rowsWritten(s, cf); got != before {
				t.Fatalf("rows written %d → %d across the cleanup", before, got)
			}
			if got := s.Changefeeds[cf].Status.RetiredCount; got != tc.wantRetired {
				t.Errorf("retired count = %d, want %d", got, tc.wantRetired)
			}
			var withPos []model.CaptureID
			for _, c := range sortedKeys(s.Changefeeds[cf].Tasks) {
				if s.Changefeeds[cf].Tasks[c].Position != nil {
					withPos = append(withPos, c)
				}
			}
			if !reflect.DeepEqual(withPos, tc.wantPositions) {
				t.Errorf("positions left for %v, want %v", withPos, tc.wantPositions)
			}
			// Further ticks (dispatching, the stopped changefeed's own
			// cleanup) never lose or double the count.
			w.settle()
			if got := rowsWritten(w.state(), cf); got != before {
				t.Fatalf("rows written %d → %d after settling", before, got)
			}
		})
	}
}

// TestDelayedReportAcrossPauseAndResume: a processor builds a report just
// before a pause, and it commits only after a resume that overwrote the
// checkpoint and re-dispatched the table to the same capture. The report
// carries the old epoch and is refused, so the table restarts where the
// operator asked and the old run's error does not fail the new run.
func TestDelayedReportAcrossPauseAndResume(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, Epoch: 1})
	w.status(cf, initialized(100, 1))
	w.settle()
	w.processors(cf, func(model.TableID) model.Ts { return 500 })
	w.settle()
	if ckpt := w.state().Changefeeds[cf].Status.CheckpointTs; ckpt != 500 {
		t.Fatalf("checkpoint %d, want 500 before the pause", ckpt)
	}
	// The report the processor has in flight: further progress, and an error.
	late := model.TaskPosition{Epoch: 1, CheckpointTs: 900, ResolvedTs: 900, Running: tsMap(1, 900),
		Error: &model.RunningError{Code: "sink_error", Message: "old run"}}
	lateCmd := fsm.Command{Capture: &fsm.CaptureFence{ID: "a", Incarnation: w.incs["a"]},
		Conds: []fsm.Cond{{Type: fsm.CondExists, Key: meta.TaskStatusKey(cf, "a")}},
		Ops:   []fsm.Op{putJSON(meta.TaskPositionKey(cf, "a"), late)}}

	pause := w.state().Changefeeds[cf].Info
	pause.AdminJob = model.AdminPause
	w.info(*pause)
	w.settle()
	resume := w.state().Changefeeds[cf].Info
	resume.AdminJob, resume.OverwriteCheckpointTs = model.AdminResume, 200
	w.info(*resume)
	w.settle()
	if got := assignment(w.state(), cf); got[1] != "a@200" {
		t.Fatalf("after the resume: assignment %v, want table 1 on a from 200", got)
	}

	res := w.applyCmd(lateCmd)
	var fe *fsm.Error
	if !errors.As(res.Error(), &fe) || fe.Code != meta.CodeStaleFeedEpoch {
		t.Fatalf("the delayed report of epoch 1: %v, want %s", res.Error(), meta.CodeStaleFeedEpoch)
	}
	w.settle()
	f := w.state().Changefeeds[cf]
	if f.Info.State != model.StateNormal || f.Info.Error != nil {
		t.Fatalf("state %s error %+v: the old run's error failed the new run", f.Info.State, f.Info.Error)
	}
	if f.Status.CheckpointTs != 200 || assignment(w.state(), cf)[1] != "a@200" {
		t.Fatalf("checkpoint %d, assignment %v: the replay from 200 was skipped", f.Status.CheckpointTs, assignment(w.state(), cf))
	}
}

// TestTableSetFollowsUpdate: an update of the filter (or the source) of a
// paused changefeed changes its table set on resume: tables no longer
// selected are removed, new ones start at the checkpoint, and the rest of
// its progress (row count) stays. A resume without an update keeps the set.
func TestTableSetFollowsUpdate(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive).capture("b", LivenessAlive)
	w.tables[cf] = TablesResult{Tables: tableNames(1, 2, 3)}
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, Config: model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"db.t1", "db.t2"}}}})
	w.settle()
	w.processors(cf, func(model.TableID) model.Ts { return 500 })
	w.settle()
	st := w.state().Changefeeds[cf].Status
	if st.CheckpointTs != 500 || len(st.Tables) != 2 || st.TableSetKey == "" {
		t.Fatalf("before: status %+v", st)
	}
	setInfo := func(change func(*model.ChangefeedInfo)) {
		info := *w.state().Changefeeds[cf].Info
		change(&info)
		w.info(info)
		w.settle()
	}
	setInfo(func(i *model.ChangefeedInfo) { i.AdminJob = model.AdminPause })
	retired := w.state().Changefeeds[cf].Status.RetiredCount
	// What the API's update writes: the new filter, while paused.
	setInfo(func(i *model.ChangefeedInfo) { i.Config.Filter.Rules = []string{"db.t2", "db.t3"} })
	setInfo(func(i *model.ChangefeedInfo) { i.AdminJob = model.AdminResume })

	f := w.state().Changefeeds[cf]
	var ids []model.TableID
	for _, tn := range f.Status.Tables {
		ids = append(ids, tn.ID)
	}
	if !reflect.DeepEqual(ids, []model.TableID{2, 3}) {
		t.Fatalf("after the update: tables %v, want [2 3]", ids)
	}
	if got := assignment(w.state(), cf); len(got) != 2 || got[1] != "" || !strings.HasSuffix(got[2], "@500") || !strings.HasSuffix(got[3], "@500") {
		t.Fatalf("assignment %v: want t1 gone and t2, t3 starting at the checkpoint 500", got)
	}
	if f.Status.CheckpointTs != 500 || f.Status.RetiredCount != retired {
		t.Fatalf("checkpoint %d retired %d, want 500 and %d", f.Status.CheckpointTs, f.Status.RetiredCount, retired)
	}

	// Pause and resume without an update: no listing, same set.
	setInfo(func(i *model.ChangefeedInfo) { i.AdminJob = model.AdminPause })
	delete(w.tables, cf)
	info := *w.state().Changefeeds[cf].Info
	info.AdminJob = model.AdminResume
	w.info(info)
	for i := 0; i < 3; i++ {
		if out := w.tick(); len(out.NeedTables) > 0 {
			t.Fatalf("a resume without an update asked for the tables again")
		}
	}
	if got := assignment(w.state(), cf); len(got) != 2 || got[2] == "" || got[3] == "" {
		t.Fatalf("assignment %v after a plain resume", got)
	}
}

// TestLostCaptureWaitsOutItsLease: a capture gossip calls dead gets no new
// tables at once, but keeps its tables — it may still be writing — until
// its lease plus the margin have passed since the leader last heard from it
// (or, for an owner that took over since, since it took over). One that
// left cleanly goes at once.
func TestLostCaptureWaitsOutItsLease(t *testing.T) {
	setup := func(t *testing.T, lease time.Duration) *world {
		w := newWorld(t)
		w.cfg.LeaseFence, w.cfg.LeaseMargin = 2*time.Second, time.Second
		w.captureWithLease("a", LivenessAlive, lease).captureWithLease("b", LivenessAlive, lease)
		w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
		w.status(cf, initialized(100, 1, 2, 3, 4))
		w.settle()
		w.processors(cf, func(model.TableID) model.Ts { return 200 })
		w.settle()
		return w
	}
	onA := func(w *world) int { return loads(w.state(), cf)["a"] }
	t.Run("dead: tables stay until fence + margin since last heard", func(t *testing.T) {
		w := setup(t, 0)
		before := onA(w)
		w.live["a"] = LivenessDead
		w.lastHeard = map[model.CaptureID]time.Time{"a": w.now.Add(-2 * time.Second)}
		w.settle()
		if _, ok := w.state().Captures["a"]; !ok || onA(w) != before {
			t.Fatalf("a evicted or its tables moved %v after it was last heard from, before 2s + 1s", time.Second*2)
		}
		w.now = w.now.Add(999 * time.Millisecond)
		w.settle()
		if onA(w) != before {
			t.Fatal("tables moved 1ms before the lease plus margin ended")
		}
		w.now = w.now.Add(time.Millisecond)
		w.settle()
		if _, ok := w.state().Captures["a"]; ok || loads(w.state(), cf)["b"] != 4 {
			t.Fatalf("a not evicted once its lease and the margin passed: loads %v", loads(w.state(), cf))
		}
	})
	t.Run("a longer lease declared by the capture is waited out", func(t *testing.T) {
		w := setup(t, 5*time.Second)
		w.live["a"] = LivenessDead
		w.lastHeard = map[model.CaptureID]time.Time{"a": w.now.Add(-3 * time.Second)}
		w.settle()
		if _, ok := w.state().Captures["a"]; !ok {
			t.Fatal("a evicted before its declared 5s lease ended")
		}
		w.now = w.now.Add(3 * time.Second)
		w.settle()
		if _, ok := w.state().Captures["a"]; ok {
			t.Fatal("a not evicted after 5s + 1s")
		}
	})
	t.Run("a new owner counts from when it took over", func(t *testing.T) {
		w := setup(t, 0)
		w.since = w.now.Add(-500 * time.Millisecond)
		w.cfg.EvictionGrace = time.Millisecond
		w.live["a"] = LivenessDead
		w.settle()
		if _, ok := w.state().Captures["a"]; !ok {
			t.Fatal("a new owner evicted a capture it never heard from before its lease could have ended")
		}
		w.now = w.now.Add(2500 * time.Millisecond)
		w.settle()
		if _, ok := w.state().Captures["a"]; ok {
			t.Fatal("not evicted 3s after the owner took over")
		}
	})
	t.Run("left cleanly: evicted at once", func(t *testing.T) {
		w := setup(t, 0)
		w.live["a"] = LivenessLeft
		w.lastHeard = map[model.CaptureID]time.Time{"a": w.now}
		w.settle()
		if _, ok := w.state().Captures["a"]; ok {
			t.Fatal("a capture that left was not evicted at once")
		}
	})
}

// TestDrainRequest: an operator's drain request empties that incarnation of
// a capture through two-phase moves (each table continues on another
// capture exactly where it stopped), gives it no new tables, and is
// forgotten once the capture restarts.
func TestDrainRequest(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive).capture("b", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, tableRange(6)...))
	runProcessors(t, w, 2)
	w.mustApply(fsm.Command{Ops: []fsm.Op{putJSON(meta.DrainKey("b"), model.DrainRequest{Incarnation: w.incs["b"], Requested: t0})}})
	runProcessors(t, w, 4)
	if l := loads(w.state(), cf); l["a"] != 6 || l["b"] != 0 {
		t.Fatalf("loads %v, want everything off the drained capture", l)
	}
	f := w.state().Changefeeds[cf]
	if len(f.Status.Orphans) != 0 {
		t.Fatalf("orphans %v: a drain must hand every table over, never orphan it", f.Status.Orphans)
	}
	// b restarts: its new incarnation is not drained, the request goes.
	w.capture("b", LivenessAlive)
	w.settle()
	if _, ok := w.state().Drains["b"]; ok {
		t.Fatal("the drain request of b's old incarnation is still there")
	}
	info := *w.state().Changefeeds[cf].Info
	info.RebalanceRequested = true
	w.info(info)
	runProcessors(t, w, 4)
	if l := loads(w.state(), cf); l["b"] == 0 {
		t.Fatalf("loads %v: the restarted capture takes no tables", l)
	}
}

// A status write that only moves progress waits for the pace its size
// allows after the owner's last status write; anything else goes at once.
func TestProgressWritesArePacedBySize(t *testing.T) {
	w := newWorld(t)
	w.cfg.StatusBytesPerSecond = 1000
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, 1))
	w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100)})
	w.tick() // settles the status (its table-set key)
	// The owner wrote a 2,000-byte status just now: the next progress-only
	// write is due in 2 s.
	w.statusWrites = map[model.ChangefeedID]StatusWrite{cf: {At: w.now, Bytes: 2000}}
	w.position(cf, "a", model.TaskPosition{ResolvedTs: 160, Running: tsMap(1, 150)})
	w.tick()
	if got := w.state().Changefeeds[cf].Status; got.CheckpointTs != 100 {
		t.Fatalf("checkpoint written as %d 0 s after a 2,000-byte status at 1,000 B/s; want it held at 100", got.CheckpointTs)
	}
	w.now = w.now.Add(1900 * time.Millisecond)
	w.tick()
	if got := w.state().Changefeeds[cf].Status; got.CheckpointTs != 100 {
		t.Fatalf("checkpoint written as %d after 1.9 s; want it held at 100", got.CheckpointTs)
	}
	w.now = w.now.Add(100 * time.Millisecond)
	w.tick()
	if got := w.state().Changefeeds[cf].Status; got.CheckpointTs != 150 || got.ResolvedTs != 160 {
		t.Fatalf("status after 2 s = checkpoint %d resolved %d, want 150 and 160", got.CheckpointTs, got.ResolvedTs)
	}
	// An orphan is written at once, pace or not.
	w.statusWrites[cf] = StatusWrite{At: w.now, Bytes: 1 << 20}
	w.live["a"] = LivenessLeft
	w.tick() // evicts a
	w.tick()
	if got := w.state().Changefeeds[cf].Status; len(got.Orphans) != 1 {
		t.Fatalf("orphans after eviction %v, want table 1 written at once", got.Orphans)
	}
}

// A large changefeed moves a share of its tables at once (1 in
// MovingShare) rather than MaxMovesPerChangefeed: each step rewrites the
// task statuses of the captures involved.
func TestLargeChangefeedMovesAShareAtOnce(t *testing.T) {
	w := newWorld(t)
	w.cfg.MaxMovesPerChangefeed = 4
	w.capture("a", LivenessAlive).capture("b", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, tableRange(1200)...))
	runProcessors(t, w, 2)
	w.capture("c", LivenessAlive)
	out := w.tick()
	moves := 0
	for _, e := range out.Events {
		if e.Kind == EventMoveStarted {
			moves++
		}
	}
	if moves != 1200/MovingShare {
		t.Fatalf("%d moves started for 1,200 tables after a join, want %d", moves, 1200/MovingShare)
	}
}

// An operator's request is the tick's first command, whatever the
// changefeed's name: the worker applies commands one Raft round trip at a
// time, and under load a remove behind every other changefeed's progress
// waits for all of them.
func TestAdminJobsComeFirst(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	for _, id := range []string{"a1", "a2", "a3"} {
		w.info(model.ChangefeedInfo{ID: id, StartTs: 100})
		w.status(id, initialized(100, 1, 2))
	}
	w.info(model.ChangefeedInfo{ID: "zz", StartTs: 100, AdminJob: model.AdminRemove})
	w.status("zz", initialized(100, 1))
	out := Tick(w.state(), w.inputs())
	if len(out.Commands) < 4 {
		t.Fatalf("%d commands, want one per changefeed", len(out.Commands))
	}
	first := out.Commands[0]
	touches := false
	for _, op := range first.Ops {
		touches = touches || op.Key == meta.ChangefeedInfoKey("zz")
	}
	if !touches {
		t.Fatalf("the first command is not the remove of zz:\n%s", cmdString(first))
	}
}
