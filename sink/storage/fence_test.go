package storage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// The scenarios in this file are the storage sink's downstream fence
// (DESIGN.md, "Fenced writers"): a writer caught between its lease check
// and the link or rename that makes its write visible — a process paused
// there, say — never makes that write visible once the table's next
// writer has opened it.

// stalledLease is a lease (for sink.WithLease) that holds, but whose first
// check blocks until release: the writer then sits between its lease check
// and the write it guards, as a capture frozen there by SIGSTOP does.
type stalledLease struct {
	once     sync.Once
	checking chan struct{}
	unblock  chan struct{}
}

// newStalledLease returns a lease whose first check will stall.
func newStalledLease() *stalledLease {
	return &stalledLease{checking: make(chan struct{}), unblock: make(chan struct{})}
}

// holds is the lease's check, for sink.WithLease.
func (l *stalledLease) holds() bool {
	first := false
	l.once.Do(func() { first = true })
	if first {
		close(l.checking)
		<-l.unblock
	}
	return true
}

// waitChecking waits until the writer is inside its first lease check.
func (l *stalledLease) waitChecking(t testing.TB) {
	t.Helper()
	select {
	case <-l.checking:
	case <-time.After(time.Minute):
		t.Fatal("the writer did not reach its lease check within a minute")
	}
}

// release lets the stalled check return (the lease held).
func (l *stalledLease) release() { close(l.unblock) }

func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not return within 10 s")
		return nil
	}
}

func TestAFenceRevokesAWriteStalledBeforeItsLink(t *testing.T) {
	for _, op := range []string{"create", "put"} {
		t.Run(op, func(t *testing.T) {
			st := &localStore{root: t.TempDir()}
			w := st.Fenced("db/t1")
			name := "db/t1/1/CDC000001.json"
			if op == "put" {
				name = "db/t1/1/" + indexFile
			}
			l := newStalledLease()
			ctx := sink.WithLease(context.Background(), l.holds)
			errc := make(chan error, 1)
			go func() {
				if op == "create" {
					errc <- w.Create(ctx, name, []byte("stale\n"))
				} else {
					errc <- w.Put(ctx, name, []byte("stale\n"))
				}
			}()
			l.waitChecking(t)
			if err := st.Fence(context.Background(), "db/t1"); err != nil {
				t.Fatal(err)
			}
			l.release()
			if err := waitErr(t, errc); !errors.Is(err, sink.ErrFenced) {
				t.Fatalf("the stalled %s returned %v, want sink.ErrFenced", op, err)
			}
			if _, err := st.Get(context.Background(), name); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s after the fence: %v, want it absent", name, err)
			}
		})
	}
}

// Without a fence the same stalled write lands: the test above would see
// it if Fence did nothing.
func TestAStalledWriteLandsWithoutAFence(t *testing.T) {
	st := &localStore{root: t.TempDir()}
	l := newStalledLease()
	ctx := sink.WithLease(context.Background(), l.holds)
	errc := make(chan error, 1)
	go func() { errc <- st.Fenced("db/t1").Create(ctx, "db/t1/1/CDC000001.json", []byte("x\n")) }()
	l.waitChecking(t)
	l.release()
	if err := waitErr(t, errc); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(context.Background(), "db/t1/1/CDC000001.json"); err != nil {
		t.Fatal(err)
	}
}

// A fence revokes only what is in flight in its own directory: a write
// that was visible before stays, another table's writer and an unfenced
// writer (the owner's DDL and checkpoint files) are untouched.
func TestAFenceLeavesVisibleWritesAndOtherWritersAlone(t *testing.T) {
	st := &localStore{root: t.TempDir()}
	ctx := context.Background()
	if err := st.Fenced("db/t1").Create(ctx, "db/t1/1/CDC000001.json", []byte("kept\n")); err != nil {
		t.Fatal(err)
	}
	other, unfenced := newStalledLease(), newStalledLease()
	errc := make(chan error, 2)
	go func() {
		errc <- st.Fenced("db/t2").Create(sink.WithLease(ctx, other.holds), "db/t2/1/CDC000001.json", []byte("t2\n"))
	}()
	go func() {
		errc <- st.Create(sink.WithLease(ctx, unfenced.holds), "db/t1/meta/schema_1_0000000001.json", []byte("{}"))
	}()
	other.waitChecking(t)
	unfenced.waitChecking(t)
	if err := st.Fence(ctx, "db/t1"); err != nil {
		t.Fatal(err)
	}
	other.release()
	unfenced.release()
	for range 2 {
		if err := waitErr(t, errc); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"db/t1/1/CDC000001.json", "db/t2/1/CDC000001.json", "db/t1/meta/schema_1_0000000001.json"} {
		if _, err := st.Get(ctx, n); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	// Fencing a directory nobody wrote, twice, is no error.
	for range 2 {
		if err := st.Fence(ctx, "db/none"); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Fenced("db/t1").Create(ctx, "db/t2/1/CDC000009.json", nil); err == nil {
		t.Fatal("a fenced writer of db/t1 wrote into db/t2")
	}
}

// A new capture's OpenTable fences the table: the old capture's flush,
// stalled between its lease check and its link when the new one opened,
// fails with sink.ErrFenced and leaves no file; the new writer's files
// are the only ones after it.
func TestOpeningATableFencesItsPreviousWriter(t *testing.T) {
	h := testHistory(t, "datagen://?tables=1&rate=20&keys=10&epoch="+testEpoch)
	root := t.TempDir()
	uri := "file://" + root + "?protocol=canal-json&flush-interval=10ms&date-separator=none"
	ctx := context.Background()
	tn := h.TablesAt(0)[0]
	txns := func(from, to model.Ts) []*model.Txn {
		var out []*model.Txn
		h.Txns(tn.ID, from, to, func(txn *model.Txn) bool { out = append(out, txn); return true })
		return out
	}
	oldSink, _ := openTestSink(t, uri)
	old, err := oldSink.OpenTable(ctx, tn, sink.TableOptions{StartTs: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Write(ctx, txns(0, at(h, time.Second))); err != nil {
		t.Fatal(err)
	}
	l := newStalledLease()
	errc := make(chan error, 1)
	go func() { errc <- old.Flush(sink.WithLease(ctx, l.holds), at(h, time.Second)) }()
	l.waitChecking(t)

	newSink, _ := openTestSink(t, uri)
	cur, err := newSink.OpenTable(ctx, tn, sink.TableOptions{StartTs: 0})
	if err != nil {
		t.Fatal(err)
	}
	l.release()
	if err := waitErr(t, errc); !errors.Is(err, sink.ErrFenced) {
		t.Fatalf("the old writer's flush returned %v, want sink.ErrFenced", err)
	}
	dir := filepath.Join(root, "datagen", tn.Table, "0")
	if names, _ := filepath.Glob(filepath.Join(root, "datagen", tn.Table, "*", "CDC*")); len(names) != 0 {
		t.Fatalf("the fenced writer left %v", names)
	}
	if err := cur.Write(ctx, txns(0, at(h, 2*time.Second))); err != nil {
		t.Fatal(err)
	}
	if err := cur.Flush(ctx, at(h, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(root, "datagen", tn.Table, "*", "CDC*"))
	if len(names) != 1 || filepath.Base(names[0]) != "CDC000001.json" {
		t.Fatalf("after the new writer's flush: %v (dir %s)", names, dir)
	}
}

// The commit hook hears the instant the kernel made the file visible (its
// ctime at the link), which the process cannot misreport by being paused
// after it.
func TestTheCommitInstantIsTheFileSystems(t *testing.T) {
	st := &localStore{root: t.TempDir()}
	var got []time.Time
	ctx := sink.WithCommitHook(context.Background(), func(at time.Time) { got = append(got, at) })
	name := "db/t1/1/CDC000001.json"
	// The kernel's file times come from a clock that lags the one
	// time.Now reads by up to a tick.
	before := time.Now().Add(-20 * time.Millisecond)
	if err := st.Fenced("db/t1").Create(ctx, name, []byte("x\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(st.root, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	// The file's ctime now is that of the temporary name's removal, after
	// the link.
	after := time.Unix(fi.Sys().(*syscall.Stat_t).Ctim.Unix())
	if len(got) != 1 || got[0].Before(before) || got[0].After(after) {
		t.Fatalf("commit instants %v, want one between %v and the file's ctime %v", got, before, after)
	}
}
