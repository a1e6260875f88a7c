package fsm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/model"
	"github.com/rs/zerolog"
)

// harness applies commands at increasing indexes, like Raft would.
type harness struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	f, err := Open(filepath.Join(t.TempDir(), "fsm.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &harness{t: t, f: f}
}

func (h *harness) applyRaw(data []byte) *Result {
	h.index++
	return h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data}).(*Result)
}

func (h *harness) apply(c Command) *Result {
	h.t.Helper()
	b, err := Encode(c)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.applyRaw(b)
}

func (h *harness) mustApply(c Command) *Result {
	h.t.Helper()
	r := h.apply(c)
	if r.Err != nil {
		h.t.Fatalf("apply: %v", r.Err)
	}
	return r
}

func (h *harness) dump() []KV {
	h.t.Helper()
	kvs, err := h.f.List("/")
	if err != nil {
		h.t.Fatal(err)
	}
	return kvs
}

func put(key string, v any) Op {
	b, _ := json.Marshal(v)
	return Op{Type: OpPut, Key: key, Value: b}
}

func (h *harness) claim(node string) uint64 {
	h.t.Helper()
	return h.mustApply(Command{Kind: KindClaimOwner, NodeID: node, UnixMilli: 1}).Index
}

func (h *harness) register(id string, inc uint64) {
	h.t.Helper()
	h.mustApply(Command{Kind: KindRegisterCapture, Ops: []Op{put(model.CaptureKey(id), model.CaptureInfo{ID: id, Incarnation: inc})}})
}

func TestPutDeleteAndRevisions(t *testing.T) {
	h := newHarness(t)
	r1 := h.mustApply(Command{Ops: []Op{put("/kv/a", 1), put("/kv/b", 2)}})
	r2 := h.mustApply(Command{Ops: []Op{put("/kv/a", 3)}})
	kv, ok, _ := h.f.Get("/kv/a")
	if !ok || string(kv.Value) != "3" || kv.CreateRev != r1.Index || kv.ModRev != r2.Index {
		t.Fatalf("a = %+v, want value 3 created at %d modified at %d", kv, r1.Index, r2.Index)
	}
	h.mustApply(Command{Ops: []Op{{Type: OpDelete, Key: "/kv/b"}}})
	if _, ok, _ := h.f.Get("/kv/b"); ok {
		t.Fatal("b still present after delete")
	}
	h.mustApply(Command{Ops: []Op{put("/kv/p/1", 1), put("/kv/p/2", 2), put("/kv/q", 3)}})
	h.mustApply(Command{Ops: []Op{{Type: OpDeletePrefix, Key: "/kv/p/"}}})
	var keys []string
	for _, kv := range h.dump() {
		keys = append(keys, kv.Key)
	}
	if !reflect.DeepEqual(keys, []string{"/kv/a", "/kv/q"}) {
		t.Fatalf("keys after delete_prefix = %v", keys)
	}
	if got := h.f.AppliedIndex(); got != h.index {
		t.Fatalf("applied index %d, want %d", got, h.index)
	}
}

func TestPreconditionFailureChangesNothing(t *testing.T) {
	h := newHarness(t)
	r := h.mustApply(Command{Ops: []Op{put("/kv/a", 1)}})
	cases := []struct {
		name string
		cond Cond
	}{
		{"absent on existing", Cond{Type: CondAbsent, Key: "/kv/a"}},
		{"exists on missing", Cond{Type: CondExists, Key: "/kv/missing"}},
		{"stale mod rev", Cond{Type: CondModRev, Key: "/kv/a", ModRev: r.Index + 7}},
		{"mod rev 0 on existing", Cond{Type: CondModRev, Key: "/kv/a", ModRev: 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.dump()
			res := h.apply(Command{Conds: []Cond{tc.cond}, Ops: []Op{put("/kv/a", 99), put("/kv/new", 1)}})
			if !errors.Is(res.Error(), ErrPreconditionFailed) {
				t.Fatalf("got %v, want precondition_failed", res.Error())
			}
			if after := h.dump(); !reflect.DeepEqual(before, after) {
				t.Fatalf("state changed:\nbefore %v\nafter  %v", before, after)
			}
			if h.f.AppliedIndex() != h.index {
				t.Fatal("a refused command must still advance the applied index")
			}
		})
	}
	// A passing CAS applies.
	h.mustApply(Command{Conds: []Cond{{Type: CondModRev, Key: "/kv/a", ModRev: r.Index}, {Type: CondAbsent, Key: "/kv/new"}}, Ops: []Op{put("/kv/a", 2)}})
}

func TestInvalidCommandsAreRefused(t *testing.T) {
	h := newHarness(t)
	for name, data := range map[string][]byte{
		"not json":       []byte("{"),
		"future version": []byte(`{"v":99,"kind":"txn"}`),
		"unknown kind":   []byte(`{"v":2,"kind":"explode"}`),
		"bad value":      []byte(`{"v":2,"kind":"txn","ops":[{"type":"put","key":"/kv/a"}]}`),
		"unknown op":     []byte(`{"v":2,"kind":"txn","ops":[{"type":"frob","key":"/kv/a"}]}`),
		"relative key":   []byte(`{"v":2,"kind":"txn","ops":[{"type":"put","key":"kv/a","value":1}]}`),
		"outside space":  []byte(`{"v":2,"kind":"txn","ops":[{"type":"put","key":"/etc/a","value":1}]}`),
	} {
		res := h.applyRaw(data)
		if res.Err == nil {
			t.Errorf("%s: applied, want refusal", name)
		}
	}
	if len(h.dump()) != 0 {
		t.Fatalf("refused commands left state: %v", h.dump())
	}
}

func TestDecodeVersion1(t *testing.T) {
	h := newHarness(t)
	res := h.applyRaw([]byte(`{"v":1,"ops":[{"op":"put","k":"/kv/x","val":{"a":1}},{"op":"put","k":"/kv/y","val":2}]}`))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	h.applyRaw([]byte(`{"v":1,"ops":[{"op":"del","k":"/kv/y"}]}`))
	kvs := h.dump()
	if len(kvs) != 1 || kvs[0].Key != "/kv/x" || string(kvs[0].Value) != `{"a":1}` {
		t.Fatalf("state after v1 commands: %+v", kvs)
	}
	c, err := Decode([]byte(`{"v":1,"ops":[{"op":"put","k":"/kv/x","val":1}]}`))
	if err != nil || c.Kind != KindTxn || len(c.Ops) != 1 || c.Ops[0].Type != OpPut {
		t.Fatalf("Decode v1 = %+v, %v", c, err)
	}
}

func TestOwnerEpochFencing(t *testing.T) {
	h := newHarness(t)
	e1 := h.claim("n1")
	h.mustApply(Command{OwnerEpoch: e1, Ops: []Op{put(model.ChangefeedStatusKey("cf"), model.ChangefeedStatus{CheckpointTs: 1})}})
	e2 := h.claim("n2")
	if e2 <= e1 {
		t.Fatalf("epochs must grow: %d then %d", e1, e2)
	}
	o, _ := h.f.Owner()
	if o.Epoch != e2 || o.NodeID != "n2" {
		t.Fatalf("owner = %+v", o)
	}
	before := h.dump()
	res := h.apply(Command{OwnerEpoch: e1, Ops: []Op{put(model.ChangefeedStatusKey("cf"), model.ChangefeedStatus{CheckpointTs: 2})}})
	if !errors.Is(res.Error(), ErrStaleEpoch) {
		t.Fatalf("deposed owner's command: %v, want stale epoch", res.Error())
	}
	if !reflect.DeepEqual(before, h.dump()) {
		t.Fatal("deposed owner's command changed state")
	}
	h.mustApply(Command{OwnerEpoch: e2, Ops: []Op{put(model.ChangefeedStatusKey("cf"), model.ChangefeedStatus{CheckpointTs: 3})}})
}

func TestKeyAccessRules(t *testing.T) {
	h := newHarness(t)
	epoch := h.claim("n1")
	h.register("c1", 10)
	cases := []struct {
		name string
		cmd  Command
		want error
	}{
		{"task status without epoch", Command{Ops: []Op{put(model.TaskStatusKey("cf", "c1"), model.TaskStatus{})}}, ErrForbidden},
		{"changefeed status without epoch", Command{Ops: []Op{put(model.ChangefeedStatusKey("cf"), model.ChangefeedStatus{})}}, ErrForbidden},
		{"owner key by txn", Command{OwnerEpoch: epoch, Ops: []Op{put(model.KeyOwner, model.OwnerInfo{Epoch: 1})}}, ErrForbidden},
		{"position without capture", Command{Ops: []Op{put(model.TaskPositionKey("cf", "c1"), model.TaskPosition{})}}, ErrForbidden},
		{"position of another capture", Command{Capture: &CaptureFence{ID: "c1", Incarnation: 10}, Ops: []Op{put(model.TaskPositionKey("cf", "c2"), model.TaskPosition{})}}, ErrForbidden},
		{"capture record by txn", Command{OwnerEpoch: epoch, Ops: []Op{put(model.CaptureKey("c1"), model.CaptureInfo{ID: "c1", Incarnation: 11})}}, ErrForbidden},
		{"owner writes position", Command{OwnerEpoch: epoch, Ops: []Op{put(model.TaskPositionKey("cf", "c1"), model.TaskPosition{})}}, ErrForbidden},
		{"own position", Command{Capture: &CaptureFence{ID: "c1", Incarnation: 10}, Ops: []Op{put(model.TaskPositionKey("cf", "c1"), model.TaskPosition{CheckpointTs: 5})}}, nil},
		{"owner deletes position", Command{OwnerEpoch: epoch, Ops: []Op{{Type: OpDelete, Key: model.TaskPositionKey("cf", "c1")}}}, nil},
		{"owner removes capture", Command{OwnerEpoch: epoch, Ops: []Op{{Type: OpDelete, Key: model.CaptureKey("c1")}}}, nil},
		{"api writes changefeed info", Command{Ops: []Op{put(model.ChangefeedInfoKey("cf"), model.ChangefeedInfo{ID: "cf"})}}, nil},
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
	old := &CaptureFence{ID: "c1", Incarnation: 1}
	pos := func(ts uint64) Op {
		return put(model.TaskPositionKey("cf", "c1"), model.TaskPosition{CheckpointTs: ts})
	}
	h.mustApply(Command{Capture: old, Ops: []Op{pos(1)}})

	// The owner removes the capture: the old incarnation is fenced.
	h.mustApply(Command{OwnerEpoch: epoch, Ops: []Op{{Type: OpDelete, Key: model.CaptureKey("c1")}}})
	if err := h.apply(Command{Capture: old, Ops: []Op{pos(2)}}).Error(); !errors.Is(err, ErrFenced) {
		t.Fatalf("removed incarnation wrote: %v", err)
	}
	// It re-registers with a new incarnation; the old one stays fenced.
	h.register("c1", 2)
	if err := h.apply(Command{Capture: old, Ops: []Op{pos(3)}}).Error(); !errors.Is(err, ErrFenced) {
		t.Fatalf("replaced incarnation wrote: %v", err)
	}
	h.mustApply(Command{Capture: &CaptureFence{ID: "c1", Incarnation: 2}, Ops: []Op{pos(4)}})
	var p model.TaskPosition
	kv, _, _ := h.f.Get(model.TaskPositionKey("cf", "c1"))
	json.Unmarshal(kv.Value, &p)
	if p.CheckpointTs != 4 {
		t.Fatalf("checkpoint %d, want 4", p.CheckpointTs)
	}
	// Registration must be well formed.
	bad := Command{Kind: KindRegisterCapture, Ops: []Op{put(model.CaptureKey("c9"), model.CaptureInfo{ID: "c8", Incarnation: 1})}}
	if err := h.apply(bad).Error(); !errors.Is(err, ErrInvalid) {
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
	h.mustApply(Command{OwnerEpoch: epoch, Ops: []Op{put(model.TaskStatusKey("cf", "a"), ts(1, 2)), put(model.TaskStatusKey("cf", "b"), ts(3))}})
	// Same table on another capture, in a separate command or in one batch.
	for _, cmd := range []Command{
		{OwnerEpoch: epoch, Ops: []Op{put(model.TaskStatusKey("cf", "b"), ts(3, 2))}},
		{OwnerEpoch: epoch, Ops: []Op{put(model.TaskStatusKey("cf", "c"), ts(5)), put(model.TaskStatusKey("cf", "d"), ts(5))}},
	} {
		before := h.dump()
		if err := h.apply(cmd).Error(); !errors.Is(err, ErrTableConflict) {
			t.Fatalf("got %v, want table conflict", err)
		}
		if !reflect.DeepEqual(before, h.dump()) {
			t.Fatal("conflicting assignment changed state")
		}
	}
	// A move within one batch (remove from a, add to b) is fine, and other
	// changefeeds are independent.
	h.mustApply(Command{OwnerEpoch: epoch, Ops: []Op{put(model.TaskStatusKey("cf", "a"), ts(1)), put(model.TaskStatusKey("cf", "b"), ts(3, 2))}})
	h.mustApply(Command{OwnerEpoch: epoch, Ops: []Op{put(model.TaskStatusKey("other", "a"), ts(2))}})
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := newHarness(t)
	epoch := h.claim("n1")
	h.register("c1", 7)
	for i := 0; i < 50; i++ {
		h.mustApply(Command{Ops: []Op{put("/kv/"+string(rune('a'+i%26))+"/"+time.Duration(i).String(), map[string]int{"i": i})}})
	}
	h.mustApply(Command{OwnerEpoch: epoch, Ops: []Op{put(model.ChangefeedStatusKey("cf"), model.ChangefeedStatus{CheckpointTs: 42})}})
	want := h.dump()

	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	// Writes after the snapshot started must not leak into it.
	h.mustApply(Command{Ops: []Op{put("/kv/late", 1)}})
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	other := newHarness(t)
	other.mustApply(Command{Ops: []Op{put("/kv/junk", 1)}})
	ch, cancel := other.f.Watch("/", 4)
	defer cancel()
	if err := other.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := other.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state differs:\n got %d keys\nwant %d keys", len(got), len(want))
	}
	if other.f.AppliedIndex() != h.index-1 {
		t.Fatalf("restored applied index %d, want %d", other.f.AppliedIndex(), h.index-1)
	}
	select {
	case b := <-ch:
		if !b.Resync {
			t.Fatal("restore must tell watchers to resync")
		}
	default:
		t.Fatal("no watch batch after restore")
	}
	// Fencing state travels with the snapshot.
	if o, _ := other.f.Owner(); o.Epoch != epoch {
		t.Fatalf("restored owner epoch %d, want %d", o.Epoch, epoch)
	}
	if err := other.f.Restore(io.NopCloser(bytes.NewReader([]byte(`{"version":9}`)))); err == nil {
		t.Fatal("restore of an unknown format succeeded")
	}
	if got := other.dump(); !reflect.DeepEqual(got, want) {
		t.Fatal("failed restore changed state")
	}
}

func TestWatchPrefixAndOverflow(t *testing.T) {
	h := newHarness(t)
	ch, cancel := h.f.Watch("/kv/w/", 1)
	defer cancel()
	h.mustApply(Command{Ops: []Op{put("/kv/w/1", 1), put("/kv/other", 1)}})
	b := <-ch
	if len(b.Events) != 1 || b.Events[0].Key != "/kv/w/1" || b.Events[0].ModRev != h.index || b.Resync {
		t.Fatalf("batch = %+v", b)
	}
	// Fill the buffer, then overflow it: the next delivered batch says resync.
	h.mustApply(Command{Ops: []Op{put("/kv/w/2", 1)}})
	h.mustApply(Command{Ops: []Op{put("/kv/w/3", 1)}})
	<-ch
	h.mustApply(Command{Ops: []Op{{Type: OpDelete, Key: "/kv/w/1"}}})
	b = <-ch
	if !b.Resync || len(b.Events) != 1 || !b.Events[0].Deleted {
		t.Fatalf("after overflow: %+v", b)
	}
}

func TestWaitApplied(t *testing.T) {
	h := newHarness(t)
	done := make(chan error, 1)
	go func() { done <- h.f.WaitApplied(context.Background(), 2) }()
	h.mustApply(Command{Ops: []Op{put("/kv/a", 1)}})
	select {
	case err := <-done:
		t.Fatalf("returned before index 2 was applied: %v", err)
	default:
	}
	h.mustApply(Command{Ops: []Op{put("/kv/a", 2)}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.f.WaitApplied(ctx, 100); err == nil {
		t.Fatal("WaitApplied ignored a cancelled context")
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }
