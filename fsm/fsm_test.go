package fsm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

// kvRules is a schema of free-form keys under /kv/, with one invariant
// to show that a refusal after the operations rolls them back: no key may
// hold the value "forbidden".
type kvRules struct{}

func (kvRules) Admit(r Reader, cmd Command, index uint64) ([]Op, *Error) {
	if cmd.Kind != KindTxn && cmd.Kind != "" {
		return nil, Errorf(CodeInvalid, "", "this schema has no %s", cmd.Kind)
	}
	for _, op := range cmd.Ops {
		if !strings.HasPrefix(op.Key, "/kv/") {
			return nil, Errorf(CodeForbidden, op.Key, "outside /kv/")
		}
	}
	return cmd.Ops, nil
}

func (kvRules) Check(r Reader, changed []string) *Error {
	for _, k := range changed {
		if kv, ok := r.Get(k); ok && string(kv.Value) == `"forbidden"` {
			return Errorf(CodeInvalid, k, "holds the forbidden value")
		}
	}
	return nil
}

// harness applies commands at increasing indexes, like Raft would.
type harness struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	f, err := Open(filepath.Join(t.TempDir(), "fsm.db"), Options{Rules: kvRules{}, Logger: zerolog.Nop()})
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
		"not json":      []byte("{"),
		"unknown kind":  []byte(`{"v":2,"kind":"explode"}`),
		"bad value":     []byte(`{"v":2,"kind":"txn","ops":[{"type":"put","key":"/kv/a"}]}`),
		"unknown op":    []byte(`{"v":2,"kind":"txn","ops":[{"type":"frob","key":"/kv/a"}]}`),
		"relative key":  []byte(`{"v":2,"kind":"txn","ops":[{"type":"put","key":"kv/a","value":1}]}`),
		"outside space": []byte(`{"v":2,"kind":"txn","ops":[{"type":"put","key":"/etc/a","value":1}]}`),
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

// TestNewerCommandFormatHaltsTheReplica: an entry in a command format this
// build does not know was appended by a newer build's leader and is applied
// by the replicas that know it. Refusing it here would leave this replica's
// state different from theirs, and guessing could apply it wrongly; the
// replica stops instead, with an error log that says to upgrade, and with
// its state and applied index as they were.
func TestNewerCommandFormatHaltsTheReplica(t *testing.T) {
	var logs bytes.Buffer
	var seen error
	f, err := Open(filepath.Join(t.TempDir(), "fsm.db"), Options{Rules: kvRules{}, Logger: zerolog.New(&logs),
		OnUnknownCommand: func(_ uint64, err error) { seen = err }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := &harness{t: t, f: f}
	h.mustApply(Command{Ops: []Op{put("/kv/a", 1)}})
	before, applied := h.dump(), f.AppliedIndex()
	var panicked any
	func() {
		defer func() { panicked = recover() }()
		h.applyRaw([]byte(`{"v":3,"kind":"txn","ops":[{"type":"put","key":"/kv/a","value":2}],"a_v3_field":true}`))
	}()
	if panicked == nil {
		t.Fatal("a version 3 command was applied or refused; the replica must stop")
	}
	var ve *VersionError
	if !errors.As(seen, &ve) || ve.Version != 3 {
		t.Errorf("OnUnknownCommand got %v", seen)
	}
	if !strings.Contains(fmt.Sprint(panicked), "upgrade this node") {
		t.Errorf("panic %q does not say what to do", panicked)
	}
	line := logs.String()
	if !strings.Contains(line, `"level":"error"`) || !strings.Contains(line, `"index":2`) || !strings.Contains(line, "command format version 3 is not known to this build (newest known: 2); upgrade this node") {
		t.Errorf("log does not say clearly what happened: %s", line)
	}
	if !reflect.DeepEqual(before, h.dump()) || f.AppliedIndex() != applied {
		t.Error("the unknown entry changed the state or moved the applied index")
	}
}

func TestOpenNeedsRules(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "fsm.db"), Options{}); err == nil || !strings.Contains(err.Error(), "Rules is required") {
		t.Fatalf("Open without rules: %v", err)
	}
}

// The schema's Check runs after the operations, with the keys they changed,
// and its refusal rolls back everything the command did.
func TestRulesCheckRefusalRollsBack(t *testing.T) {
	h := newHarness(t)
	h.mustApply(Command{Ops: []Op{put("/kv/a", 1)}})
	before := h.dump()
	res := h.apply(Command{Ops: []Op{put("/kv/a", 2), put("/kv/b", "forbidden")}})
	if !errors.Is(res.Error(), ErrInvalid) || res.Err.Key != "/kv/b" {
		t.Fatalf("got %v, want invalid_command on /kv/b", res.Error())
	}
	if !reflect.DeepEqual(before, h.dump()) {
		t.Fatal("a command refused by Check changed state")
	}
	if h.f.AppliedIndex() != h.index {
		t.Fatal("a refused command must still advance the applied index")
	}
	// Admit sees the command before anything applied.
	if err := h.apply(Command{Ops: []Op{put("/kv/c", 1), put("/etc/x", 1)}}).Error(); !errors.Is(err, ErrForbidden) {
		t.Fatalf("got %v, want forbidden_key", err)
	}
	if _, ok, _ := h.f.Get("/kv/c"); ok {
		t.Fatal("a command refused by Admit changed state")
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

// TestDecodeCurrentVersionInOnePass: Encode's output starts with the
// prefix Decode's one-pass path looks for, and a document whose first "v"
// a later one overrides is decided by its last, as encoding/json reads it.
func TestDecodeCurrentVersionInOnePass(t *testing.T) {
	b, err := Encode(Command{Ops: []Op{{Type: OpPut, Key: "/kv/x", Value: []byte(`1`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(currentPrefix)) {
		t.Fatalf("Encode wrote %s; Decode's fast path expects the prefix %s", b, currentPrefix)
	}
	c, err := Decode(b)
	if err != nil || c.Version != CommandVersion || len(c.Ops) != 1 || string(c.Ops[0].Value) != "1" {
		t.Fatalf("Decode(%s) = %+v, %v", b, c, err)
	}
	_, err = Decode([]byte(`{"v":2,"kind":"txn","v":99}`))
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Version != 99 {
		t.Fatalf("a command whose last \"v\" is 99 decoded with error %v, want a VersionError for 99", err)
	}
	if _, err := Decode([]byte(`{"v":2,"ops":[`)); err == nil {
		t.Fatal("a truncated command decoded")
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 50; i++ {
		h.mustApply(Command{Ops: []Op{put("/kv/"+string(rune('a'+i%26))+"/"+time.Duration(i).String(), map[string]int{"i": i})}})
	}
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
	// Revisions travel with the snapshot, so compare-and-set keeps working.
	kv, _, _ := other.f.Get("/kv/a/0s")
	if kv.CreateRev != 1 || kv.ModRev != 1 {
		t.Fatalf("restored revisions %d/%d, want 1/1", kv.CreateRev, kv.ModRev)
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

// TestABatchAppliesAsEntryByEntry: ApplyBatch gives the results, the state,
// the watch events and the applied index that applying its entries one at
// a time gives — with every command accepted (one transaction) and with a
// refusal in the middle (which must roll back alone), next to a
// configuration entry the state machine ignores.
func TestABatchAppliesAsEntryByEntry(t *testing.T) {
	enc := func(c Command) []byte {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	batches := map[string][]Command{
		"all accepted": {
			{Ops: []Op{put("/kv/a", 1)}},
			{Ops: []Op{put("/kv/b", 2), put("/kv/a", 3)}},
			{Conds: []Cond{{Type: CondExists, Key: "/kv/b"}}, Ops: []Op{{Type: OpDelete, Key: "/kv/b"}}},
			{Ops: []Op{put("/kv/c", 4)}},
		},
		"a refusal in the middle": {
			{Ops: []Op{put("/kv/a", 1)}},
			{Conds: []Cond{{Type: CondAbsent, Key: "/kv/a"}}, Ops: []Op{put("/kv/x", 9)}},
			{Ops: []Op{put("/kv/b", 2)}},
		},
	}
	for name, cmds := range batches {
		t.Run(name, func(t *testing.T) {
			one, all := newHarness(t), newHarness(t)
			oneCh, cancelOne := one.f.Watch("/", 16)
			defer cancelOne()
			allCh, cancelAll := all.f.Watch("/", 16)
			defer cancelAll()
			var want []*Result
			logs := []*raft.Log{{Index: 1, Type: raft.LogConfiguration}}
			one.index = 1
			for i, c := range cmds {
				want = append(want, one.apply(c))
				logs = append(logs, &raft.Log{Index: uint64(i + 2), Type: raft.LogCommand, Data: enc(c)})
			}
			got := all.f.ApplyBatch(logs)
			if got[0] != nil {
				t.Fatalf("the configuration entry's result is %v", got[0])
			}
			for i, w := range want {
				g := got[i+1].(*Result)
				if g.Index != w.Index || (g.Err == nil) != (w.Err == nil) || (g.Err != nil && g.Err.Code != w.Err.Code) {
					t.Fatalf("entry %d: batch result %+v, one at a time %+v", i+2, g, w)
				}
			}
			if a, b := all.dump(), one.dump(); !reflect.DeepEqual(a, b) {
				t.Fatalf("state after the batch %+v, one at a time %+v", a, b)
			}
			if a, b := all.f.AppliedIndex(), one.f.AppliedIndex(); a != b || a != uint64(len(logs)) {
				t.Fatalf("applied index after the batch %d, one at a time %d, want %d", a, b, len(logs))
			}
			if name == "all accepted" {
				// One transaction, not one per entry: fewer page writes.
				sa, sb := all.f.db.Stats(), one.f.db.Stats()
				if a, b := sa.TxStats.GetWrite(), sb.TxStats.GetWrite(); a >= b {
					t.Fatalf("the batch wrote %d pages, one at a time %d: not one transaction", a, b)
				}
			}
			for range cmds {
				var a, b WatchBatch
				select {
				case a = <-allCh:
				default:
				}
				select {
				case b = <-oneCh:
				default:
				}
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("watch batch after the batch %+v, one at a time %+v", a, b)
				}
			}
		})
	}
}
