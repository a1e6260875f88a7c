package meta

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
	"github.com/rs/zerolog"
)

// harness is a real FSM with these rules, applying commands at increasing
// indexes like Raft would.
type harness struct {
	t     *testing.T
	f     *fsm.FSM
	index uint64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	f, err := fsm.Open(filepath.Join(t.TempDir(), "fsm.db"), fsm.Options{Rules: Rules{}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &harness{t: t, f: f}
}

func (h *harness) applyRaw(data []byte) *fsm.Result {
	h.index++
	return h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data}).(*fsm.Result)
}

func (h *harness) apply(c fsm.Command) *fsm.Result {
	h.t.Helper()
	b, err := fsm.Encode(c)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.applyRaw(b)
}

func (h *harness) mustApply(c fsm.Command) *fsm.Result {
	h.t.Helper()
	r := h.apply(c)
	if r.Err != nil {
		h.t.Fatalf("apply: %v", r.Err)
	}
	return r
}

func (h *harness) dump() []fsm.KV {
	h.t.Helper()
	kvs, err := h.f.List("/")
	if err != nil {
		h.t.Fatal(err)
	}
	return kvs
}

// put stores v as JSON.
func put(key string, v any) fsm.Op {
	b, _ := json.Marshal(v)
	return fsm.Op{Type: fsm.OpPut, Key: key, Value: b}
}

func (h *harness) claim(node string) uint64 {
	h.t.Helper()
	return h.mustApply(fsm.Command{Kind: fsm.KindClaimOwner, NodeID: node, UnixMilli: 1}).Index
}

func (h *harness) register(id string, inc uint64) {
	h.t.Helper()
	h.mustApply(fsm.Command{Kind: fsm.KindRegisterCapture, Ops: []fsm.Op{put(CaptureKey(id), model.CaptureInfo{ID: id, Incarnation: inc})}})
}

func TestOwnerEpochFencing(t *testing.T) {
	h := newHarness(t)
	e1 := h.claim("n1")
	h.mustApply(fsm.Command{OwnerEpoch: e1, Ops: []fsm.Op{put(ChangefeedStatusKey("cf"), model.ChangefeedStatus{CheckpointTs: 1})}})
	e2 := h.claim("n2")
	if e2 <= e1 {
		t.Fatalf("epochs must grow: %d then %d", e1, e2)
	}
	o, _ := ReadOwner(h.f)
	if o.Epoch != e2 || o.NodeID != "n2" {
		t.Fatalf("owner = %+v", o)
	}
	before := h.dump()
	res := h.apply(fsm.Command{OwnerEpoch: e1, Ops: []fsm.Op{put(ChangefeedStatusKey("cf"), model.ChangefeedStatus{CheckpointTs: 2})}})
	if !errors.Is(res.Error(), fsm.ErrStaleEpoch) {
		t.Fatalf("deposed owner's command: %v, want stale epoch", res.Error())
	}
	if !reflect.DeepEqual(before, h.dump()) {
		t.Fatal("deposed owner's command changed state")
	}
	h.mustApply(fsm.Command{OwnerEpoch: e2, Ops: []fsm.Op{put(ChangefeedStatusKey("cf"), model.ChangefeedStatus{CheckpointTs: 3})}})
}

func TestKeyAccessRules(t *testing.T) {
	h := newHarness(t)
	epoch := h.claim("n1")
	h.register("c1", 10)
	h.mustApply(fsm.Command{Ops: []fsm.Op{put(ChangefeedInfoKey("cf"), model.ChangefeedInfo{ID: "cf"})}})
	cases := []struct {
		name string
		cmd  fsm.Command
		want error
	}{
		{"task status without epoch", fsm.Command{Ops: []fsm.Op{put(TaskStatusKey("cf", "c1"), model.TaskStatus{})}}, fsm.ErrForbidden},
		{"changefeed status without epoch", fsm.Command{Ops: []fsm.Op{put(ChangefeedStatusKey("cf"), model.ChangefeedStatus{})}}, fsm.ErrForbidden},
		{"owner key by txn", fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(KeyOwner, model.OwnerInfo{Epoch: 1})}}, fsm.ErrForbidden},
		{"position without capture", fsm.Command{Ops: []fsm.Op{put(TaskPositionKey("cf", "c1"), model.TaskPosition{})}}, fsm.ErrForbidden},
		{"position of another capture", fsm.Command{Capture: &fsm.CaptureFence{ID: "c1", Incarnation: 10}, Ops: []fsm.Op{put(TaskPositionKey("cf", "c2"), model.TaskPosition{})}}, fsm.ErrForbidden},
		{"capture record by txn", fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(CaptureKey("c1"), model.CaptureInfo{ID: "c1", Incarnation: 11})}}, fsm.ErrForbidden},
		{"owner writes position", fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(TaskPositionKey("cf", "c1"), model.TaskPosition{})}}, fsm.ErrForbidden},
		{"own position", fsm.Command{Capture: &fsm.CaptureFence{ID: "c1", Incarnation: 10}, Ops: []fsm.Op{put(TaskPositionKey("cf", "c1"), model.TaskPosition{CheckpointTs: 5})}}, nil},
		{"capture writes the cluster record", fsm.Command{Capture: &fsm.CaptureFence{ID: "c1", Incarnation: 10}, Ops: []fsm.Op{put(KeyCluster, model.ClusterInfo{ID: "c", SchemaVersion: 2})}}, fsm.ErrForbidden},
		{"owner deletes position", fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{{Type: fsm.OpDelete, Key: TaskPositionKey("cf", "c1")}}}, nil},
		{"owner removes capture", fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{{Type: fsm.OpDelete, Key: CaptureKey("c1")}}}, nil},
		{"api writes changefeed info", fsm.Command{Ops: []fsm.Op{put(ChangefeedInfoKey("cf"), model.ChangefeedInfo{ID: "cf"})}}, nil},
		{"owner writes the cluster record", fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(KeyCluster, model.ClusterInfo{ID: "c", SchemaVersion: 2})}}, fsm.ErrForbidden},
		{"leader node writes the cluster record", fsm.Command{Conds: []fsm.Cond{{Type: fsm.CondAbsent, Key: KeyCluster}}, Ops: []fsm.Op{put(KeyCluster, model.ClusterInfo{ID: "c", SchemaVersion: 2})}}, nil},
		{"cluster record deleted", fsm.Command{Ops: []fsm.Op{{Type: fsm.OpDelete, Key: KeyCluster}}}, fsm.ErrForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.dump()
			err := h.apply(tc.cmd).Error()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !reflect.DeepEqual(before, h.dump()) {
				t.Fatal("refused command changed state")
			}
		})
	}
}

func TestCaptureIncarnationFencing(t *testing.T) {
	h := newHarness(t)
	epoch := h.claim("n1")
	h.register("c1", 1)
	h.mustApply(fsm.Command{Ops: []fsm.Op{put(ChangefeedInfoKey("cf"), model.ChangefeedInfo{ID: "cf"})}})
	old := &fsm.CaptureFence{ID: "c1", Incarnation: 1}
	pos := func(ts uint64) fsm.Op {
		return put(TaskPositionKey("cf", "c1"), model.TaskPosition{CheckpointTs: ts})
	}
	h.mustApply(fsm.Command{Capture: old, Ops: []fsm.Op{pos(1)}})

	// The owner removes the capture: the old incarnation is fenced.
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{{Type: fsm.OpDelete, Key: CaptureKey("c1")}}})
	if err := h.apply(fsm.Command{Capture: old, Ops: []fsm.Op{pos(2)}}).Error(); !errors.Is(err, fsm.ErrFenced) {
		t.Fatalf("removed incarnation wrote: %v", err)
	}
	// It re-registers with a new incarnation; the old one stays fenced.
	h.register("c1", 2)
	if err := h.apply(fsm.Command{Capture: old, Ops: []fsm.Op{pos(3)}}).Error(); !errors.Is(err, fsm.ErrFenced) {
		t.Fatalf("replaced incarnation wrote: %v", err)
	}
	h.mustApply(fsm.Command{Capture: &fsm.CaptureFence{ID: "c1", Incarnation: 2}, Ops: []fsm.Op{pos(4)}})
	var p model.TaskPosition
	kv, _, _ := h.f.Get(TaskPositionKey("cf", "c1"))
	json.Unmarshal(kv.Value, &p)
	if p.CheckpointTs != 4 {
		t.Fatalf("checkpoint %d, want 4", p.CheckpointTs)
	}
	// Registration must be well formed.
	bad := fsm.Command{Kind: fsm.KindRegisterCapture, Ops: []fsm.Op{put(CaptureKey("c9"), model.CaptureInfo{ID: "c8", Incarnation: 1})}}
	if err := h.apply(bad).Error(); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("mismatched registration: %v", err)
	}
}

func TestTableAssignedToOneCapture(t *testing.T) {
	h := newHarness(t)
	epoch := h.claim("n1")
	ts := func(tables ...int64) model.TaskStatus {
		s := model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{}}
		for _, t := range tables {
			s.Tables[t] = model.TableReplicaInfo{StartTs: 1}
		}
		return s
	}
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(TaskStatusKey("cf", "a"), ts(1, 2)), put(TaskStatusKey("cf", "b"), ts(3))}})
	// Same table on another capture, in a separate command or in one batch.
	for _, cmd := range []fsm.Command{
		{OwnerEpoch: epoch, Ops: []fsm.Op{put(TaskStatusKey("cf", "b"), ts(3, 2))}},
		{OwnerEpoch: epoch, Ops: []fsm.Op{put(TaskStatusKey("cf", "c"), ts(5)), put(TaskStatusKey("cf", "d"), ts(5))}},
	} {
		before := h.dump()
		if err := h.apply(cmd).Error(); !errors.Is(err, fsm.ErrTableConflict) {
			t.Fatalf("got %v, want table conflict", err)
		}
		if !reflect.DeepEqual(before, h.dump()) {
			t.Fatal("conflicting assignment changed state")
		}
	}
	// A move within one batch (remove from a, add to b) is fine, and other
	// changefeeds are independent.
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(TaskStatusKey("cf", "a"), ts(1)), put(TaskStatusKey("cf", "b"), ts(3, 2))}})
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(TaskStatusKey("other", "a"), ts(2))}})
}

func TestPrefixDeleteRules(t *testing.T) {
	h := newHarness(t)
	epoch := h.claim("n1")
	for _, tc := range []struct {
		prefix string
		owner  bool
		want   error
	}{
		{TaskStatusPrefix("cf"), true, nil},
		{TaskPositionPrefix("cf"), true, nil},
		{TaskStatusPrefix("cf"), false, fsm.ErrForbidden},
		{PrefixTaskStatus, true, fsm.ErrInvalid},
		{PrefixCapture, true, fsm.ErrForbidden},
		{PrefixChangefeedInfo, true, fsm.ErrForbidden},
		{"/kv/p/", false, nil},
		{"/", true, fsm.ErrInvalid},
	} {
		cmd := fsm.Command{Ops: []fsm.Op{{Type: fsm.OpDeletePrefix, Key: tc.prefix}}}
		if tc.owner {
			cmd.OwnerEpoch = epoch
		}
		if err := h.apply(cmd).Error(); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("delete prefix %s (owner %v): %v, want %v", tc.prefix, tc.owner, err, tc.want)
		}
	}
}

// A position carries the epoch of the run of its changefeed that wrote it;
// one from an earlier run is refused.
func TestPositionOfAnEarlierEpochIsRefused(t *testing.T) {
	h := newHarness(t)
	h.register("c1", 1)
	fence := &fsm.CaptureFence{ID: "c1", Incarnation: 1}
	info := model.ChangefeedInfo{ID: "cf", Epoch: 4}
	h.mustApply(fsm.Command{Ops: []fsm.Op{put(ChangefeedInfoKey("cf"), info)}})
	pos := func(epoch uint64, ts model.Ts) fsm.Command {
		return fsm.Command{Capture: fence, Ops: []fsm.Op{put(TaskPositionKey("cf", "c1"), model.TaskPosition{Epoch: epoch, CheckpointTs: ts})}}
	}
	h.mustApply(pos(4, 10))
	for _, stale := range []uint64{0, 3, 5} {
		before := h.dump()
		err := h.apply(pos(stale, 99)).Error()
		var fe *fsm.Error
		if !errors.As(err, &fe) || fe.Code != CodeStaleFeedEpoch {
			t.Fatalf("position of epoch %d at changefeed epoch 4: %v, want %s", stale, err, CodeStaleFeedEpoch)
		}
		if !reflect.DeepEqual(before, h.dump()) {
			t.Fatal("a refused position changed state")
		}
	}
	// No changefeed, no position.
	if err := h.apply(fsm.Command{Capture: fence, Ops: []fsm.Op{put(TaskPositionKey("gone", "c1"), model.TaskPosition{})}}).Error(); err == nil {
		t.Fatal("a position of a changefeed that does not exist applied")
	}
}

// A changefeed's table-set key exists only from schema 3 on: below it a
// replica of an older build would refuse the key, so every replica must.
// It is the owner's, like the status.
func TestTableSetKeyFollowsTheSchema(t *testing.T) {
	h := newHarness(t)
	epoch := h.claim("n1")
	set := ChangefeedTablesKey("cf")
	putSet := func(owner bool) error {
		cmd := fsm.Command{Ops: []fsm.Op{put(set, model.ChangefeedTables{Tables: []model.TableName{{ID: 1, Schema: "db", Table: "t"}}})}}
		if owner {
			cmd.OwnerEpoch = epoch
		}
		return h.apply(cmd).Error()
	}
	if err := putSet(true); !errors.Is(err, fsm.ErrForbidden) {
		t.Fatalf("put without a cluster record (schema 1): %v, want forbidden", err)
	}
	h.mustApply(fsm.Command{Ops: []fsm.Op{put(KeyCluster, model.ClusterInfo{ID: "c", SchemaVersion: 2})}})
	if err := putSet(true); !errors.Is(err, fsm.ErrForbidden) {
		t.Fatalf("put at schema 2: %v, want forbidden", err)
	}
	h.mustApply(fsm.Command{Ops: []fsm.Op{put(KeyCluster, model.ClusterInfo{ID: "c", SchemaVersion: TablesSchemaVersion})}})
	if err := putSet(false); !errors.Is(err, fsm.ErrForbidden) {
		t.Fatalf("put by a non-owner at schema 3: %v, want forbidden", err)
	}
	if err := putSet(true); err != nil {
		t.Fatalf("put by the owner at schema 3: %v", err)
	}
	k, err := ParseKey(set)
	if err != nil || k.Kind != KindChangefeedTables || k.Changefeed != "cf" {
		t.Fatalf("ParseKey(%s) = %+v, %v", set, k, err)
	}
	if _, err := Decode(set, []byte(`{"tables":"x"}`)); err == nil {
		t.Fatal("a table set whose tables are not a list decoded")
	}
}
