package owner

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// rawKey is a key's stored value and revision (nil, 0 when absent).
func (w *world) rawKey(key string) (json.RawMessage, uint64) {
	w.t.Helper()
	var v json.RawMessage
	var rev uint64
	w.f.View(func(r fsm.Reader, _ uint64) error {
		if kv, ok := r.Get(key); ok {
			v, rev = append(json.RawMessage(nil), kv.Value...), kv.ModRev
		}
		return nil
	})
	return v, rev
}

// storedStatusTables counts the tables the status lists as stored, before
// meta merges the table-set record in.
func (w *world) storedStatusTables(cf model.ChangefeedID) int {
	w.t.Helper()
	v, _ := w.rawKey(meta.ChangefeedStatusKey(cf))
	var st model.ChangefeedStatus
	if err := json.Unmarshal(v, &st); err != nil {
		w.t.Fatalf("stored status %s: %v", v, err)
	}
	return len(st.Tables) + len(st.StreamTables)
}

func tableIDs(tns []model.TableName) []model.TableID {
	var ids []model.TableID
	for _, tn := range tns {
		ids = append(ids, tn.ID)
	}
	return ids
}

// At schema 3 a changefeed's table set is written once, to its own key,
// and a checkpoint advance rewrites only the small status; readers still
// see the set as the status's Tables.
func TestTableSetIsWrittenApartFromProgress(t *testing.T) {
	w := newWorld(t)
	w.capture("a", LivenessAlive).capture("b", LivenessAlive)
	w.tables[cf] = TablesResult{Tables: tableNames(1, 2, 3, 4)}
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.settle()
	_, setRev := w.rawKey(meta.ChangefeedTablesKey(cf))
	if setRev == 0 {
		t.Fatal("no table-set record after initialisation at schema 3")
	}
	if n := w.storedStatusTables(cf); n != 0 {
		t.Fatalf("the stored status still lists %d tables", n)
	}
	if got := tableIDs(w.state().Changefeeds[cf].Status.Tables); !reflect.DeepEqual(got, []model.TableID{1, 2, 3, 4}) {
		t.Fatalf("tables seen through the status: %v", got)
	}
	_, statusRev := w.rawKey(meta.ChangefeedStatusKey(cf))
	for _, ts := range []model.Ts{300, 500} {
		w.processors(cf, func(model.TableID) model.Ts { return ts })
		w.settle()
	}
	_, newStatusRev := w.rawKey(meta.ChangefeedStatusKey(cf))
	_, newSetRev := w.rawKey(meta.ChangefeedTablesKey(cf))
	if st := w.state().Changefeeds[cf].Status; st.CheckpointTs != 500 || newStatusRev == statusRev {
		t.Fatalf("checkpoint %d (status rev %d -> %d): want it advanced to 500", st.CheckpointTs, statusRev, newStatusRev)
	}
	if newSetRev != setRev {
		t.Fatalf("checkpoint advances rewrote the table set (rev %d -> %d)", setRev, newSetRev)
	}
	// The API's and the processors' reader sees the same.
	w.f.View(func(r fsm.Reader, _ uint64) error {
		st, _, ok, err := meta.GetStatus(r, cf)
		if err != nil || !ok || len(st.Tables) != 4 || st.CheckpointTs != 500 {
			t.Errorf("meta.GetStatus = %+v %v %v", st, ok, err)
		}
		return nil
	})

	// A new table set (an update of the filter) is a new record.
	info := *w.state().Changefeeds[cf].Info
	info.AdminJob = model.AdminPause
	w.info(info)
	w.settle()
	info = *w.state().Changefeeds[cf].Info
	info.Config.Filter.Rules = []string{"db.t2"}
	info.AdminJob = model.AdminResume
	w.info(info)
	w.settle()
	if got := tableIDs(w.state().Changefeeds[cf].Status.Tables); !reflect.DeepEqual(got, []model.TableID{2}) {
		t.Fatalf("tables after the update: %v, want [2]", got)
	}
	if _, rev := w.rawKey(meta.ChangefeedTablesKey(cf)); rev == setRev {
		t.Fatal("the update did not rewrite the table-set record")
	}

	// Removing the changefeed removes its table set with its status.
	info = *w.state().Changefeeds[cf].Info
	info.AdminJob = model.AdminRemove
	w.info(info)
	w.settle()
	if v, _ := w.rawKey(meta.ChangefeedTablesKey(cf)); v != nil {
		t.Fatalf("table-set record left after remove: %s", v)
	}
	if v, _ := w.rawKey(meta.ChangefeedStatusKey(cf)); v != nil {
		t.Fatalf("status left after remove: %s", v)
	}
}

// Below schema 3 the set stays in the status (a replica of an older build
// would refuse the key); once the cluster's schema is raised, the owner's
// next pass moves it out, and nothing about the changefeed changes.
func TestTableSetMovesOutWhenTheSchemaIsRaised(t *testing.T) {
	w := newWorld(t).schema(2)
	w.capture("a", LivenessAlive)
	w.tables[cf] = TablesResult{Tables: tableNames(1, 2, 3)}
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.settle()
	w.processors(cf, func(model.TableID) model.Ts { return 400 })
	w.settle()
	if v, _ := w.rawKey(meta.ChangefeedTablesKey(cf)); v != nil {
		t.Fatalf("a table-set record at schema 2: %s", v)
	}
	if n := w.storedStatusTables(cf); n != 3 {
		t.Fatalf("the stored status lists %d tables at schema 2, want 3", n)
	}
	before := w.state().Changefeeds[cf]

	w.schema(3)
	w.settle()
	after := w.state().Changefeeds[cf]
	if after.TablesRev == 0 || w.storedStatusTables(cf) != 0 {
		t.Fatalf("after the raise: table-set rev %d, stored status lists %d tables; want the set moved out", after.TablesRev, w.storedStatusTables(cf))
	}
	if !reflect.DeepEqual(after.Status.Tables, before.Status.Tables) || after.Status.CheckpointTs != before.Status.CheckpointTs {
		t.Fatalf("the move changed the status: %+v -> %+v", before.Status, after.Status)
	}
	if !reflect.DeepEqual(assignment(w.state(), cf), assignment(&meta.State{Changefeeds: map[model.ChangefeedID]*meta.Feed{cf: before}}, cf)) {
		t.Fatal("the move changed the assignment")
	}
	// Progress goes on without touching the set again.
	rev := after.TablesRev
	w.processors(cf, func(model.TableID) model.Ts { return 600 })
	w.settle()
	if f := w.state().Changefeeds[cf]; f.Status.CheckpointTs != 600 || f.TablesRev != rev {
		t.Fatalf("checkpoint %d, table-set rev %d -> %d", f.Status.CheckpointTs, rev, f.TablesRev)
	}
}

// A table-set record whose changefeed is gone is deleted like a left-over
// status; one that does not decode makes the changefeed skipped, as a
// corrupt status does (its tables are unknown).
func TestLeftOverAndCorruptTableSets(t *testing.T) {
	w := newWorld(t)
	w.owner(meta.ChangefeedTablesKey("gone"), model.ChangefeedTables{Tables: tableNames(1)})
	w.settle()
	if v, _ := w.rawKey(meta.ChangefeedTablesKey("gone")); v != nil {
		t.Fatalf("left-over table set kept: %s", v)
	}

	w.capture("a", LivenessAlive)
	w.tables[cf] = TablesResult{Tables: tableNames(1, 2)}
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.settle()
	w.raw(meta.ChangefeedTablesKey(cf), `{"tables": 7}`)
	f := w.state().Changefeeds[cf]
	if !f.Skipped() || !f.TablesCorrupt {
		t.Fatalf("corrupt table set: skipped=%v", f.Skipped())
	}
	if out := w.tick(); len(out.Commands) != 0 {
		t.Fatalf("the owner acted on a changefeed whose table set does not decode: %s", cmdString(out.Commands[0]))
	}
}

// At schema 3 orphans are stored grouped by ts: a start-up orphans every
// table at the start ts, and a 100,000-entry map was megabytes.
func TestOrphansAreStoredGrouped(t *testing.T) {
	w := newWorld(t)
	w.tables[cf] = TablesResult{Tables: tableNames(1, 2, 3, 4)}
	w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
	w.settle() // no capture: every table stays an orphan
	raw, _ := w.rawKey(meta.ChangefeedStatusKey(cf))
	if !strings.Contains(string(raw), `"orphans_grouped":[{"ts":100,"ids":"1..4"}]`) || strings.Contains(string(raw), `"orphans":`) {
		t.Fatalf("stored status %s: want the orphans grouped", raw)
	}
	if got := w.state().Changefeeds[cf].Status.Orphans; !reflect.DeepEqual(got, tsMap(1, 100, 2, 100, 3, 100, 4, 100)) {
		t.Fatalf("orphans read back as %v", got)
	}
}
