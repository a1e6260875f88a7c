package owner

import (
	"testing"

	"github.com/raftcdc/raftcdc/model"
)

// TestStreamChangefeedIsOneUnit: a single-stream source's changefeed is
// scheduled as one stream unit holding every table; the owner records the
// stream position its capture reports, keeps it across the capture's
// eviction, and runs no DDL puller barrier for it.
func TestStreamChangefeedIsOneUnit(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive).capture("b", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, SourceURI: "postgres://u@h/db"})
	w.tables[cf] = TablesResult{Tables: tableNames(1, 2, 3), Stream: true}
	delete(w.ddl, cf)
	w.ddl = map[model.ChangefeedID]DDLState{} // no puller runs for a stream
	w.settle()
	s := w.state()
	st := s.Changefeeds[cf].Status
	if !st.Stream || len(st.Tables) != 1 || st.Tables[0].ID != model.StreamUnitID || len(st.StreamTables) != 3 {
		t.Fatalf("status %+v", st)
	}
	asg := assignment(s, cf)
	holder := asg[model.StreamUnitID]
	if len(asg) != 1 || holder == "" {
		t.Fatalf("assignment %v: want exactly the stream unit", asg)
	}
	c := model.CaptureID(holder[:1])
	w.position(cf, c, model.TaskPosition{ResolvedTs: 300, Running: map[model.TableID]model.Ts{model.StreamUnitID: 250},
		Stream: &model.StreamPosition{Ts: 240, Position: `{"lsn":"0/16"}`}})
	w.tick()
	st = w.state().Changefeeds[cf].Status
	if st.StreamPosition == nil || st.StreamPosition.Ts != 240 || st.CheckpointTs != 250 || st.ResolvedTs != 300 {
		t.Fatalf("after the report: position %+v checkpoint %d resolved %d", st.StreamPosition, st.CheckpointTs, st.ResolvedTs)
	}
	// The capture dies: the unit goes elsewhere and the position stays.
	w.live[c] = LivenessDead
	w.settle()
	s = w.state()
	st = s.Changefeeds[cf].Status
	if st.StreamPosition == nil || st.StreamPosition.Ts != 240 {
		t.Fatalf("position after eviction: %+v", st.StreamPosition)
	}
	if h := assignment(s, cf)[model.StreamUnitID]; h == "" || model.CaptureID(h[:1]) == c {
		t.Fatalf("stream unit on %q after %s died", h, c)
	}
	// An older report never moves the position back.
	other := model.CaptureID("a")
	if c == "a" {
		other = "b"
	}
	w.position(cf, other, model.TaskPosition{ResolvedTs: 300, Running: map[model.TableID]model.Ts{model.StreamUnitID: 250},
		Stream: &model.StreamPosition{Ts: 200, Position: `{"lsn":"0/10"}`}})
	w.tick()
	if sp := w.state().Changefeeds[cf].Status.StreamPosition; sp.Ts != 240 {
		t.Fatalf("position moved back to %+v", sp)
	}
}

// TestRemovedChangefeedCleansUpstream: a removed changefeed's upstream
// state is removed once its tasks are gone, and that is recorded once.
func TestRemovedChangefeedCleansUpstream(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive)
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100, State: model.StateNormal, AdminJob: model.AdminRemove})
	w.status(cf, initialized(100, 1))
	w.task(cf, "a", model.TaskStatus{Tables: replicas(1, 100)})
	out := w.tick() // remove: tasks cleared
	if len(out.Cleanup) != 0 {
		t.Fatal("cleanup asked for while the changefeed still had tasks")
	}
	out = Tick(w.state(), w.inputs())
	if len(out.Cleanup) != 1 || out.Cleanup[0].Changefeed != cf {
		t.Fatalf("cleanup actions %+v", out.Cleanup)
	}
	if r := w.applyCmd(out.Cleanup[0].Record); r.Err != nil {
		t.Fatal(r.Err)
	}
	if !w.state().Changefeeds[cf].Info.UpstreamCleaned {
		t.Fatal("cleanup not recorded")
	}
	if out := Tick(w.state(), w.inputs()); len(out.Cleanup) != 0 {
		t.Fatal("cleanup asked for again after it was recorded")
	}
}
