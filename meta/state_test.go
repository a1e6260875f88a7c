package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
	"github.com/rs/zerolog"
)

func raw(key, v string) fsm.Op { return fsm.Op{Type: fsm.OpPut, Key: key, Value: json.RawMessage(v)} }

// corruptWorld holds one healthy changefeed and one of every kind of
// corrupt key, written the way a bug or another build could.
func corruptWorld(t *testing.T) (*harness, uint64) {
	h := newHarness(t)
	epoch := h.claim("n1")
	h.register("c1", 1)
	h.mustApply(fsm.Command{Ops: []fsm.Op{
		put(ChangefeedInfoKey("good"), model.ChangefeedInfo{ID: "good", StartTs: 1}),
		raw(ChangefeedInfoKey("badinfo"), `{"id":"badinfo","start_ts":"yesterday"}`),
		put(ChangefeedInfoKey("badstatus"), model.ChangefeedInfo{ID: "badstatus"}),
	}})
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{
		put(ChangefeedStatusKey("good"), model.ChangefeedStatus{CheckpointTs: 5}),
		put(TaskStatusKey("good", "c1"), model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{1: {StartTs: 5}}}),
		raw(TaskStatusKey("good", "c2"), `{"tables":[1,2]}`),
		raw(ChangefeedStatusKey("badstatus"), `{"checkpoint_ts":-1}`),
		raw(GCKey("x"), `"gone"`),
	}})
	h.mustApply(fsm.Command{Capture: &fsm.CaptureFence{ID: "c1", Incarnation: 1}, Ops: []fsm.Op{
		raw(TaskPositionKey("good", "c1"), `{"running":{"1":"ten"}}`),
	}})
	return h, epoch
}

func TestLoadSkipsCorruptKeysConsistently(t *testing.T) {
	h, epoch := corruptWorld(t)
	var s *State
	if err := h.f.View(func(r fsm.Reader, _ uint64) error {
		var err error
		s, err = Load(r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if s.OwnerEpoch != epoch {
		t.Fatalf("owner epoch %d, want %d", s.OwnerEpoch, epoch)
	}
	var keys []string
	for _, c := range s.Corrupt {
		keys = append(keys, c.Key)
		if c.ModRev == 0 || c.Reason == "" {
			t.Errorf("corrupt key without revision or reason: %+v", c)
		}
	}
	want := []string{ChangefeedInfoKey("badinfo"), ChangefeedStatusKey("badstatus"), GCKey("x"), TaskPositionKey("good", "c1"), TaskStatusKey("good", "c2")}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("corrupt keys\n got %v\nwant %v", keys, want)
	}
	if f := s.Changefeeds["badinfo"]; !f.Skipped() || f.Info != nil || !f.InfoCorrupt {
		t.Fatalf("badinfo = %+v, want skipped with no info", f)
	}
	if f := s.Changefeeds["badstatus"]; !f.Skipped() || f.Info == nil || f.Status != nil {
		t.Fatalf("badstatus = %+v, want skipped, info kept", f)
	}
	good := s.Changefeeds["good"]
	if good.Skipped() || good.Status.CheckpointTs != 5 || len(good.Tasks) != 1 || good.Tasks["c1"].Position != nil {
		t.Fatalf("good = %+v tasks %v, want its status and c1's task, without the corrupt position", good, good.Tasks)
	}
	if len(good.CorruptTaskKeys) != 2 {
		t.Fatalf("good's corrupt task keys = %v, want the position and c2's status", good.CorruptTaskKeys)
	}
	if g := s.GC[GCKey("x")]; g == nil || g.Rev == 0 || g.Record.SourceURI != "" {
		t.Fatalf("corrupt GC record = %+v, want kept with its revision", g)
	}

	// LoadFeed answers the same for one changefeed.
	_ = h.f.View(func(r fsm.Reader, _ uint64) error {
		f, found, corrupt := LoadFeed(r, "good")
		if !found || f.Skipped() || len(f.Tasks) != 1 || len(corrupt) != 2 {
			t.Fatalf("LoadFeed(good) = %+v, %v, %v", f, found, corrupt)
		}
		if f, found, corrupt := LoadFeed(r, "badinfo"); !found || !f.Skipped() || len(corrupt) != 1 {
			t.Fatalf("LoadFeed(badinfo) = %+v, %v, %v", f, found, corrupt)
		}
		if _, found, _ := LoadFeed(r, "nothing"); found {
			t.Fatal("LoadFeed found a changefeed with no keys")
		}
		return nil
	})
}

// A corrupt task status holds no tables: it neither blocks the owner's
// other assignments nor counts in the one-capture-per-table check.
func TestCorruptTaskStatusDoesNotBlockAssignments(t *testing.T) {
	h, epoch := corruptWorld(t)
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{
		put(TaskStatusKey("good", "c3"), model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{2: {StartTs: 5}}}),
	}})
	// And the owner can delete it.
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{{Type: fsm.OpDelete, Key: TaskStatusKey("good", "c2")}}})
}

func TestTrackerReportsEachCorruptKeyOnce(t *testing.T) {
	h, epoch := corruptWorld(t)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	tr, err := NewTracker(zerolog.New(&logs), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, h.f) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the five corrupt keys", func() bool { return len(tr.Corrupt()) == 5 })
	if got := gaugeValue(t, reg); got != 5 {
		t.Fatalf("gauge = %v, want 5", got)
	}
	// Rewriting a corrupt key with another bad value at a new revision is
	// not news; each key is logged once.
	for i := 0; i < 3; i++ {
		h.mustApply(fsm.Command{Ops: []fsm.Op{raw(ChangefeedInfoKey("badinfo"), `{"id":"badinfo","start_ts":"yesterday"}`)}})
	}
	// Repairs and removals are noticed.
	h.mustApply(fsm.Command{Ops: []fsm.Op{put(ChangefeedInfoKey("badinfo"), model.ChangefeedInfo{ID: "badinfo"})}})
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{{Type: fsm.OpDeletePrefix, Key: TaskStatusPrefix("good")}}})
	waitFor(t, "three corrupt keys left", func() bool { return len(tr.Corrupt()) == 3 })
	// A new one appears.
	h.mustApply(fsm.Command{Ops: []fsm.Op{raw(ChangefeedInfoKey("new"), `{"id":7}`)}})
	waitFor(t, "the new corrupt key", func() bool { return len(tr.Corrupt()) == 4 })
	if got := gaugeValue(t, reg); got != 4 {
		t.Fatalf("gauge = %v, want 4", got)
	}
	out := logs.String()
	if n := strings.Count(out, `"key":"`+ChangefeedInfoKey("badinfo")+`"`); n != 2 {
		t.Fatalf("badinfo logged %d times, want once corrupt and once repaired:\n%s", n, out)
	}
	if n := strings.Count(out, "does not decode"); n != 6 {
		t.Fatalf("%d corrupt reports, want 6 (five at start, one new):\n%s", n, out)
	}

	// A snapshot restore makes the tracker look again.
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf memSink
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	h.mustApply(fsm.Command{Ops: []fsm.Op{put(ChangefeedInfoKey("new"), model.ChangefeedInfo{ID: "new"})}})
	waitFor(t, "the repair", func() bool { return len(tr.Corrupt()) == 3 })
	if err := h.f.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restored corrupt key", func() bool { return len(tr.Corrupt()) == 4 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

func gaugeValue(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "raftcdc_metadata_corrupt_keys" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("raftcdc_metadata_corrupt_keys is not registered")
	return 0
}
