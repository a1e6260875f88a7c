package owner

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
)

// ddlEvent builds a DDL on db.t<id> at ts; after is the table's new name (or
// ID) where the kind needs one.
func ddlEvent(ts model.Ts, kind model.DDLKind, id model.TableID, after ...model.TableName) *model.DDLEvent {
	tn := model.TableName{ID: id, Schema: "db", Table: fmt.Sprintf("t%d", id)}
	ev := &model.DDLEvent{CommitTs: ts, Kind: kind, Schema: "db", Query: fmt.Sprintf("%s db.t%d", kind, id), Tables: []model.TableName{tn}}
	for _, a := range after {
		ev.After = append(ev.After, &model.TableSchema{Table: a, Version: ts, Columns: []model.Column{{Name: "id", Type: model.ColumnType{Kind: model.TypeInt}}}})
	}
	return ev
}

// ddlWorld is a changefeed on tables 1 (capture a) and 2 (capture b), with
// checkpoint 100 and the given DDLs pending.
func ddlWorld(t *testing.T, pending ...*model.DDLEvent) *world {
	w := newWorld(t)
	w.capture("a", LivenessAlive).capture("b", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(100, 1, 2))
	w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100)})
	w.task(cf, "b", model.TaskStatus{Tables: replicas(2, 100)})
	w.ddl[cf] = DDLState{StartTs: 100, ResolvedTs: 1000, Pending: pending}
	return w
}

func TestDDLBarrier(t *testing.T) {
	cases := []struct {
		name string
		// positions: table 1 on a, table 2 on b
		ckpt1, ckpt2, resolved model.Ts
		ddlResolved            model.Ts
		pending                []*model.DDLEvent
		wantCkpt, wantResolved model.Ts
		wantExecuted           int
	}{
		{name: "no DDL: resolved follows the tables and the DDL puller",
			ckpt1: 150, ckpt2: 140, resolved: 300, ddlResolved: 250,
			wantCkpt: 140, wantResolved: 250},
		{name: "a pending DDL caps resolved at its ts - 1",
			ckpt1: 150, ckpt2: 140, resolved: 300, ddlResolved: 1000, pending: []*model.DDLEvent{ddlEvent(200, model.DDLAddColumn, 1)},
			wantCkpt: 140, wantResolved: 199},
		{name: "tables at different checkpoints: the DDL waits for the slowest",
			ckpt1: 199, ckpt2: 180, resolved: 199, ddlResolved: 1000, pending: []*model.DDLEvent{ddlEvent(200, model.DDLAddColumn, 1)},
			wantCkpt: 180, wantResolved: 199},
		{name: "every table at ts - 1: executed once and recorded",
			ckpt1: 199, ckpt2: 199, resolved: 199, ddlResolved: 1000, pending: []*model.DDLEvent{ddlEvent(200, model.DDLAddColumn, 1)},
			wantCkpt: 199, wantResolved: 199, wantExecuted: 1},
		{name: "a DDL on a table outside the changefeed is recorded, not executed",
			ckpt1: 199, ckpt2: 199, resolved: 199, ddlResolved: 1000, pending: []*model.DDLEvent{ddlEvent(200, model.DDLAddColumn, 9)},
			wantCkpt: 199, wantResolved: 199, wantExecuted: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := ddlWorld(t, tc.pending...)
			d := w.ddl[cf]
			d.ResolvedTs = tc.ddlResolved
			w.ddl[cf] = d
			w.position(cf, "a", model.TaskPosition{ResolvedTs: tc.resolved, Running: tsMap(1, tc.ckpt1)})
			w.position(cf, "b", model.TaskPosition{ResolvedTs: tc.resolved, Running: tsMap(2, tc.ckpt2)})
			w.tick()
			st := w.state().Changefeeds[cf].Status
			if st.CheckpointTs != tc.wantCkpt || st.ResolvedTs != tc.wantResolved {
				t.Fatalf("checkpoint/resolved = %d/%d, want %d/%d", st.CheckpointTs, st.ResolvedTs, tc.wantCkpt, tc.wantResolved)
			}
			if len(w.executed) != tc.wantExecuted {
				t.Fatalf("executed %d DDLs, want %d", len(w.executed), tc.wantExecuted)
			}
			if len(tc.pending) > 0 && tc.ckpt1 == 199 && tc.ckpt2 == 199 {
				if st.LastDDLTs != 200 {
					t.Fatalf("LastDDLTs = %d, want 200", st.LastDDLTs)
				}
				// Done: the barrier moves on, and nothing runs twice.
				w.position(cf, "a", model.TaskPosition{ResolvedTs: 400, Running: tsMap(1, 300)})
				w.position(cf, "b", model.TaskPosition{ResolvedTs: 400, Running: tsMap(2, 300)})
				w.settle()
				st = w.state().Changefeeds[cf].Status
				if st.CheckpointTs != 300 || st.ResolvedTs != 400 {
					t.Fatalf("after the DDL: checkpoint/resolved = %d/%d, want 300/400", st.CheckpointTs, st.ResolvedTs)
				}
				if len(w.executed) != tc.wantExecuted {
					t.Fatalf("executed %d DDLs after settling, want %d", len(w.executed), tc.wantExecuted)
				}
			}
		})
	}
}

// TestDDLBarrierWithoutPuller: until the DDL puller has reported, the
// resolved ts stays at the checkpoint, because a DDL nobody has read yet
// must still be able to stop the tables.
func TestDDLBarrierWithoutPuller(t *testing.T) {
	w := ddlWorld(t)
	delete(w.ddl, cf)
	w.ddl = map[model.ChangefeedID]DDLState{cf: {StartTs: 500, ResolvedTs: 1000}} // started above the checkpoint
	w.position(cf, "a", model.TaskPosition{ResolvedTs: 300, Running: tsMap(1, 150)})
	w.position(cf, "b", model.TaskPosition{ResolvedTs: 300, Running: tsMap(2, 150)})
	w.tick()
	if st := w.state().Changefeeds[cf].Status; st.CheckpointTs != 150 || st.ResolvedTs != 150 {
		t.Fatalf("checkpoint/resolved = %d/%d, want 150/150", st.CheckpointTs, st.ResolvedTs)
	}
}

// TestDDLOwnerChangeBetweenExecuteAndRecord: the owner executes a DDL and
// dies before its record commits. The next owner sees the DDL still pending
// and executes it again (the sink treats "already applied" as success); it
// is recorded exactly once.
func TestDDLOwnerChangeBetweenExecuteAndRecord(t *testing.T) {
	w := ddlWorld(t, ddlEvent(200, model.DDLAddColumn, 1))
	w.position(cf, "a", model.TaskPosition{ResolvedTs: 199, Running: tsMap(1, 199)})
	w.position(cf, "b", model.TaskPosition{ResolvedTs: 199, Running: tsMap(2, 199)})

	// The first owner's tick: execute, but the record never commits.
	out := Tick(w.state(), w.inputs())
	if len(out.DDL) != 1 || out.DDL[0].Event.CommitTs != 200 || out.DDL[0].Skip {
		t.Fatalf("first owner: DDL actions %+v", out.DDL)
	}
	w.executed = append(w.executed, out.DDL[0].Event)

	// A new owner: new epoch, same FSM, its puller reads from the
	// checkpoint again.
	w.newOwner()
	w.settle()
	if len(w.executed) != 2 || w.executed[1].CommitTs != 200 {
		t.Fatalf("executed %v, want the DDL at 200 twice", w.executed)
	}
	if st := w.state().Changefeeds[cf].Status; st.LastDDLTs != 200 {
		t.Fatalf("LastDDLTs = %d, want 200", st.LastDDLTs)
	}
	// The deposed owner's record is refused.
	if r := w.applyCmd(out.DDL[0].Record); r.Err == nil {
		t.Fatal("the deposed owner's DDL record applied")
	}
}

func TestDDLChangesTheTableSet(t *testing.T) {
	t3 := model.TableName{ID: 3, Schema: "db", Table: "t3"}
	t4 := model.TableName{ID: 4, Schema: "db", Table: "t2"}
	renamed := model.TableName{ID: 1, Schema: "db", Table: "t1_new"}
	cases := []struct {
		name       string
		ev         *model.DDLEvent
		wantTables []model.TableID
		wantNames  map[model.TableID]string
		// wantStart is where an added table starts.
		wantStart map[model.TableID]model.Ts
		// wantStopped tables get a delete at a boundary after the DDL.
		wantStopped []model.TableID
	}{
		{name: "create table dispatches the new table at the DDL ts",
			ev: &model.DDLEvent{CommitTs: 200, Kind: model.DDLCreateTable, Schema: "db", Query: "CREATE TABLE db.t3 (id int)",
				Tables: []model.TableName{t3}, After: []*model.TableSchema{{Table: t3, Version: 200, Columns: []model.Column{{Name: "id", Type: model.ColumnType{Kind: model.TypeInt}}}}}},
			wantTables: []model.TableID{1, 2, 3}, wantStart: map[model.TableID]model.Ts{3: 200}},
		{name: "drop table removes it after the DDL",
			ev:         ddlEvent(200, model.DDLDropTable, 2),
			wantTables: []model.TableID{1}, wantStopped: []model.TableID{2}},
		{name: "truncate with a new table ID restarts the table",
			ev:         ddlEvent(200, model.DDLTruncateTable, 2, t4),
			wantTables: []model.TableID{1, 4}, wantStart: map[model.TableID]model.Ts{4: 200}, wantStopped: []model.TableID{2}},
		{name: "rename keeps the pipeline and takes the new name",
			ev:         ddlEvent(200, model.DDLRenameTable, 1, renamed),
			wantTables: []model.TableID{1, 2}, wantNames: map[model.TableID]string{1: "db.t1_new"}},
		{name: "drop schema removes every table of it",
			ev:         &model.DDLEvent{CommitTs: 200, Kind: model.DDLDropSchema, Schema: "db", Query: "DROP DATABASE db"},
			wantTables: nil, wantStopped: []model.TableID{1, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := ddlWorld(t, tc.ev)
			w.position(cf, "a", model.TaskPosition{ResolvedTs: 199, Running: tsMap(1, 199)})
			w.position(cf, "b", model.TaskPosition{ResolvedTs: 199, Running: tsMap(2, 199)})
			w.tick()
			if len(w.executed) != 1 {
				t.Fatalf("executed %d DDLs, want 1", len(w.executed))
			}
			st := w.state().Changefeeds[cf].Status
			var ids []model.TableID
			names := map[model.TableID]string{}
			for _, tn := range st.Tables {
				ids = append(ids, tn.ID)
				names[tn.ID] = tn.String()
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.wantTables) {
				t.Fatalf("tables after the DDL = %v, want %v", ids, tc.wantTables)
			}
			for id, n := range tc.wantNames {
				if names[id] != n {
					t.Fatalf("table %d is named %s, want %s", id, names[id], n)
				}
			}
			w.settle()
			asg := assignment(w.state(), cf)
			for id, ts := range tc.wantStart {
				got := asg[id]
				if got == "" || got[len(got)-3:] != fmt.Sprint(ts) {
					t.Fatalf("table %d assigned %q, want it started at %d", id, got, ts)
				}
			}
			for _, id := range tc.wantStopped {
				for c, task := range w.state().Changefeeds[cf].Tasks {
					if task.Status == nil {
						continue
					}
					if _, held := task.Status.Tables[id]; !held {
						continue
					}
					op := task.Status.Operations[id]
					if op == nil || !op.Delete || op.BoundaryTs < 199 {
						t.Fatalf("table %d on %s after its drop: operation %+v", id, c, op)
					}
				}
			}
		})
	}
}

// TestDDLExecutionFailureStopsTheChangefeed: a sink that refuses a DDL puts
// the changefeed into the error state with the statement named; after the
// backoff it runs again and retries the DDL.
func TestDDLExecutionFailureStopsTheChangefeed(t *testing.T) {
	w := ddlWorld(t, ddlEvent(200, model.DDLAddColumn, 1))
	w.position(cf, "a", model.TaskPosition{ResolvedTs: 199, Running: tsMap(1, 199)})
	w.position(cf, "b", model.TaskPosition{ResolvedTs: 199, Running: tsMap(2, 199)})
	w.failDDL = errors.New("Error 1146: table db.t1 doesn't exist")
	w.tick() // the sink fails
	w.tick() // the failure is recorded
	info := w.state().Changefeeds[cf].Info
	if info.State != model.StateError || info.Error == nil || info.Error.Code != CodeDDLFailed {
		t.Fatalf("state %s error %+v, want error/%s", info.State, info.Error, CodeDDLFailed)
	}
	if want := "add_column db.t1"; !strings.Contains(info.Error.Message, want) || !strings.Contains(info.Error.Message, "1146") {
		t.Fatalf("error message %q does not name the statement and the cause", info.Error.Message)
	}
	d := w.ddl[cf]
	d.ExecErr = nil
	w.ddl[cf] = d
	w.failDDL = nil
	w.now = w.now.Add(time.Hour)
	w.settle()
	if got := w.state().Changefeeds[cf].Info.State; got != model.StateNormal {
		t.Fatalf("state after the backoff: %s", got)
	}
}

// newOwner makes a new owner claim the next epoch, as after a failover.
func (w *world) newOwner() {
	w.epoch = w.mustApply(fsm.Command{Kind: fsm.KindClaimOwner, NodeID: "next-owner", UnixMilli: w.now.UnixMilli()}).Index
}

// A changefeed whose last table a DDL dropped keeps moving: with no table
// to track time, its checkpoint follows the DDL puller up to the next
// DDL, which runs — here a CREATE TABLE that brings a table back, and the
// checkpoint follows that table from then on. (It used to stand still for
// good: seen as a stalled checkpoint in TestTypedHistoryWithDDLThroughFailovers,
// whose datagen history drops every table for a while.)
func TestChangefeedWithoutTablesFollowsTheDDLPuller(t *testing.T) {
	t3 := model.TableName{ID: 3, Schema: "db", Table: "t3"}
	create := &model.DDLEvent{CommitTs: 400, Kind: model.DDLCreateTable, Schema: "db", Query: "CREATE TABLE db.t3 (id int)",
		Tables: []model.TableName{t3}, After: []*model.TableSchema{{Table: t3, Version: 400, Columns: []model.Column{{Name: "id", Type: model.ColumnType{Kind: model.TypeInt}}}}}}
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.status(cf, initialized(200))
	w.ddl[cf] = DDLState{StartTs: 100, ResolvedTs: 300}

	w.tick()
	if st := w.state().Changefeeds[cf].Status; st.CheckpointTs != 300 || st.ResolvedTs != 300 {
		t.Fatalf("no table, no DDL pending, puller at 300: checkpoint/resolved %d/%d, want 300/300", st.CheckpointTs, st.ResolvedTs)
	}

	d := w.ddl[cf]
	d.ResolvedTs, d.Pending = 1000, []*model.DDLEvent{create}
	w.ddl[cf] = d
	w.tick()
	if len(w.executed) != 1 || w.executed[0].CommitTs != 400 {
		t.Fatalf("executed %v, want the CREATE TABLE at 400", w.executed)
	}
	st := w.state().Changefeeds[cf].Status
	if st.CheckpointTs != 399 {
		t.Fatalf("checkpoint %d, want 399 (the DDL's ts − 1)", st.CheckpointTs)
	}
	if len(st.Tables) != 1 || st.Tables[0].ID != 3 {
		t.Fatalf("tables after the CREATE TABLE: %v, want t3", st.Tables)
	}
	w.settle()
	if asg := assignment(w.state(), cf); asg[3] == "" {
		t.Fatalf("the created table is not assigned: %v", asg)
	}
}
