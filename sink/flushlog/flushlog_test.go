package flushlog

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// stepSink is a sink whose Flush the test steers: it commits (or fails)
// and can wait on a gate before and after the commit.
type stepSink struct {
	sink.NopDDL
	sink.NopCheckpoint
	before, after chan struct{} // closed to let a Flush go on
	// in, when set, is sent to as a Flush stops at a gate: the test
	// knows it is inside the flush (before: not committed yet; after:
	// committed) without sleeping.
	in   chan struct{}
	fail error
	// reports makes it a sink.CommitReporter; empty makes a Flush find
	// nothing pending and return without a commit, as the storage sink's.
	reports, empty bool
}

func (s *stepSink) ReportsCommits() bool { return s.reports }

func (s *stepSink) arrived() {
	if s.in != nil {
		s.in <- struct{}{}
	}
}

// gated is a sink whose Flush stops at the gate before its commit (or,
// with afterCommit, after it) and says so on in.
func gated(afterCommit bool) *stepSink {
	s := &stepSink{in: make(chan struct{}, 1)}
	if afterCommit {
		s.after = make(chan struct{})
	} else {
		s.before = make(chan struct{})
	}
	return s
}

func (s *stepSink) OpenTable(context.Context, model.TableName, sink.TableOptions) (sink.TableSink, error) {
	return &stepTable{s}, nil
}
func (s *stepSink) Close() error { return nil }

type stepTable struct{ s *stepSink }

func (t *stepTable) Write(context.Context, []*model.Txn) error { return nil }
func (t *stepTable) Close() error                              { return nil }
func (t *stepTable) Flush(ctx context.Context, _ model.Ts) error {
	if t.s.before != nil {
		t.s.arrived()
		<-t.s.before
	}
	if t.s.fail != nil {
		return t.s.fail
	}
	if t.s.empty {
		return nil
	}
	sink.CommittedAt(ctx, time.Now())
	if t.s.after != nil {
		t.s.arrived()
		<-t.s.after
	}
	return nil
}

var table = model.TableName{ID: 1, Schema: "db", Table: "t1"}

func writerCtx(capture string, inc uint64) context.Context {
	return sink.WithWriter(context.Background(), sink.Writer{Capture: capture, Incarnation: inc})
}

func openTable(t *testing.T, dir, node string, inner sink.Sink) sink.TableSink {
	t.Helper()
	l, err := Open(dir, node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ts, err := l.Wrap("cf", inner).OpenTable(context.Background(), table, sink.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func check(t *testing.T, dir string) Report {
	t.Helper()
	rep, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestTakeoverAfterTheLastFlushIsNoOverlap(t *testing.T) {
	dir := t.TempDir()
	a := openTable(t, dir, "n1", &stepSink{})
	b := openTable(t, dir, "n2", &stepSink{})
	for i := 0; i < 3; i++ {
		if err := a.Flush(writerCtx("n1", 7), model.Ts(i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Millisecond)
	if err := b.Flush(writerCtx("n2", 9), 5); err != nil {
		t.Fatal(err)
	}
	if rep := check(t, dir); rep.Flushes != 4 || rep.Writers != 2 || rep.Files != 2 || len(rep.Overlaps) != 0 {
		t.Fatalf("report: %s", rep)
	}
}

func TestConcurrentWritersOverlap(t *testing.T) {
	dir := t.TempDir()
	slow := gated(false)
	a := openTable(t, dir, "n1", slow)
	b := openTable(t, dir, "n2", &stepSink{})
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Flush(writerCtx("n1", 7), 1) })
	<-slow.in // a is inside its flush
	if err := b.Flush(writerCtx("n2", 9), 2); err != nil {
		t.Fatal(err)
	}
	close(slow.before)
	wg.Wait()
	rep := check(t, dir)
	if len(rep.Overlaps) != 1 || !strings.Contains(rep.String(), "n1/7") || !strings.Contains(rep.String(), "n2/9") {
		t.Fatalf("report: %s", rep)
	}
	// The same capture's two incarnations are two writers too.
	dir2 := t.TempDir()
	slow2 := gated(false)
	c := openTable(t, dir2, "n1", slow2)
	d := openTable(t, dir2, "n1", &stepSink{})
	wg.Go(func() { _ = c.Flush(writerCtx("n1", 7), 1) })
	<-slow2.in
	_ = d.Flush(writerCtx("n1", 8), 2)
	close(slow2.before)
	wg.Wait()
	if rep := check(t, dir2); len(rep.Overlaps) != 1 {
		t.Fatalf("two incarnations: %s", rep)
	}
}

// A flush ends when its data became visible (the sink's commit), not when
// the call returns; and one that failed without committing wrote nothing.
func TestCommitInstantAndAbortedFlushes(t *testing.T) {
	dir := t.TempDir()
	lingering := gated(true)
	a := openTable(t, dir, "n1", lingering)
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Flush(writerCtx("n1", 7), 1) })
	<-lingering.in // committed, still inside Flush
	b := openTable(t, dir, "n2", &stepSink{})
	_ = b.Flush(writerCtx("n2", 9), 2)
	close(lingering.after)
	wg.Wait()
	aborted := openTable(t, dir, "n3", &stepSink{before: nil, fail: sink.ErrLeaseExpired})
	blocked := gated(false)
	blocked.fail = sink.ErrLeaseExpired
	c := openTable(t, dir, "n3", blocked)
	wg.Go(func() { _ = c.Flush(writerCtx("n3", 1), 3) })
	<-blocked.in
	_ = aborted.Flush(writerCtx("n3", 2), 3)
	_ = b.Flush(writerCtx("n2", 9), 4)
	close(blocked.before)
	wg.Wait()
	if rep := check(t, dir); len(rep.Overlaps) != 0 || rep.Flushes != 3 || rep.Fenced != 0 {
		t.Fatalf("report: %s", rep)
	}
	// A flush the downstream's fence refused wrote nothing, and is counted.
	fenced := openTable(t, dir, "n4", &stepSink{fail: fmt.Errorf("flush: %w", sink.ErrFenced)})
	_ = fenced.Flush(writerCtx("n4", 1), 5)
	if rep := check(t, dir); len(rep.Overlaps) != 0 || rep.Flushes != 3 || rep.Fenced != 1 || !strings.Contains(rep.String(), "1 flushes refused by a writer fence") {
		t.Fatalf("report after a fenced flush: %s", rep)
	}
}

func TestTornLastLineIsTolerated(t *testing.T) {
	dir := t.TempDir()
	a := openTable(t, dir, "n1", &stepSink{})
	_ = a.Flush(writerCtx("n1", 7), 1)
	files, _ := os.ReadDir(dir)
	f, err := os.OpenFile(dir+"/"+files[0].Name(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"changefeed":"cf","tab`)
	f.Close()
	if rep := check(t, dir); rep.Flushes != 1 {
		t.Fatalf("report: %s", rep)
	}
	// A torn line in the middle is corruption.
	f, _ = os.OpenFile(dir+"/"+files[0].Name(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("\n{}\n")
	f.Close()
	if _, err := Check(dir); err == nil {
		t.Fatal("a broken line in the middle passed")
	}
}

// A table sink that flushes again after another writer began on the table
// is stale — the capture missed its replacement — even though no two
// flushes ran at once. A table moved back to the first capture comes back
// through a new table sink, which is not.
func TestStaleWriteAfterTakeover(t *testing.T) {
	dir := t.TempDir()
	l1, err := Open(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	snk1 := l1.Wrap("cf", &stepSink{})
	a, _ := snk1.OpenTable(context.Background(), table, sink.TableOptions{})
	b := openTable(t, dir, "n2", &stepSink{})
	_ = a.Flush(writerCtx("n1", 7), 1)
	_ = b.Flush(writerCtx("n2", 9), 2)
	// Moved back: a new table sink on n1.
	again, _ := snk1.OpenTable(context.Background(), table, sink.TableOptions{})
	_ = again.Flush(writerCtx("n1", 7), 3)
	if rep := check(t, dir); len(rep.Overlaps) != 0 {
		t.Fatalf("a move back reported: %s", rep)
	}
	// The first table sink flushes again: stale.
	_ = a.Flush(writerCtx("n1", 7), 4)
	rep := check(t, dir)
	if len(rep.Overlaps) != 2 {
		t.Fatalf("stale flush: %s, want it overlapping both later stays", rep)
	}
}

// TestEmptyFlushOfAReportingSinkIsNoWriter: a sink that reports its commits
// and returns from a flush without one wrote nothing — a frozen capture
// whose empty flush returns after another took the table is no second
// writer — while the same flush with data pending is one.
func TestEmptyFlushOfAReportingSinkIsNoWriter(t *testing.T) {
	for _, pending := range []bool{false, true} {
		dir := t.TempDir()
		frozen := gated(false)
		frozen.reports, frozen.empty = true, !pending
		a := openTable(t, dir, "n1", frozen)
		b := openTable(t, dir, "n2", &stepSink{})
		var wg sync.WaitGroup
		wg.Go(func() { _ = a.Flush(writerCtx("n1", 7), 1) })
		<-frozen.in
		if err := b.Flush(writerCtx("n2", 9), 2); err != nil {
			t.Fatal(err)
		}
		close(frozen.before)
		wg.Wait()
		rep := check(t, dir)
		if want := map[bool]int{false: 0, true: 1}[pending]; len(rep.Overlaps) != want {
			t.Fatalf("pending %v: %d overlaps, want %d: %s", pending, len(rep.Overlaps), want, rep)
		}
	}
}
