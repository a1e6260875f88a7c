package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

// leaderWorld is a leaderLog over a real WAL in a temporary directory, with
// a switch for "this node leads", a gate in front of the syncer's deferred
// syncs, and what it reported as failed.
type leaderWorld struct {
	t   *testing.T
	dir string
	log *leaderLog
	vfs *deferVFS

	mu      sync.Mutex
	leads   bool
	gate    chan struct{} // nil: deferred syncs run
	syncs   int           // deferred syncs the syncer did
	syncErr error         // what the next deferred sync fails with
	failed  []error
	files   []*deferFile
}

func newLeaderWorld(t *testing.T, segmentSize int) *leaderWorld {
	w := &leaderWorld{t: t, dir: t.TempDir(), leads: true}
	w.vfs = newDeferVFS()
	w.vfs.beforeSync = func() error {
		w.mu.Lock()
		gate := w.gate
		w.mu.Unlock()
		if gate != nil {
			<-gate
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.syncs++
		return w.syncErr
	}
	w.vfs.onCreate = func(f *deferFile) { w.mu.Lock(); w.files = append(w.files, f); w.mu.Unlock() }
	ws, err := openWAL(w.dir, zerolog.New(io.Discard), w.vfs, segmentSize)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLeaderLog(ws, w.vfs, func(err error) { w.mu.Lock(); w.failed = append(w.failed, err); w.mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	l.setLeader(func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.leads })
	w.log = l
	t.Cleanup(func() { w.open(); l.Close() })
	return w
}

func (w *leaderWorld) setLeads(v bool) { w.mu.Lock(); w.leads = v; w.mu.Unlock() }
func (w *leaderWorld) shut()           { w.mu.Lock(); w.gate = make(chan struct{}); w.mu.Unlock() }
func (w *leaderWorld) open() {
	w.mu.Lock()
	if w.gate != nil {
		close(w.gate)
		w.gate = nil
	}
	w.mu.Unlock()
}
func (w *leaderWorld) deferredSyncs() int { w.mu.Lock(); defer w.mu.Unlock(); return w.syncs }

func (w *leaderWorld) appendEntries(first, last uint64, size int) {
	w.t.Helper()
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		data := []byte(fmt.Sprintf("entry-%d;", i))
		if pad := size - len(data); pad > 0 {
			data = append(data, bytes.Repeat([]byte{'.'}, pad)...)
		}
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data})
	}
	if err := w.log.StoreLogs(logs); err != nil {
		w.t.Fatalf("storing %d..%d: %v", first, last, err)
	}
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
	}
}

func (w *leaderWorld) durableWithin(idx uint64, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.log.WaitDurable(ctx, idx)
}

// onDisk says whether the WAL's segment files hold s (the page cache is
// what a second reader sees, as a restarted process would).
func (w *leaderWorld) onDisk(s string) bool {
	w.t.Helper()
	names, err := filepath.Glob(filepath.Join(w.dir, "*.wal"))
	if err != nil || len(names) == 0 {
		w.t.Fatalf("no segment files in %s: %v", w.dir, err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			w.t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// TestLeaderEntriesAreWrittenAtOnceAndSyncedBehind: a leader's StoreLogs
// returns with its entries written to the segment (a crash of the process
// would not lose them) and readable, while their fsync is still to come;
// WaitDurable waits for that fsync.
func TestLeaderEntriesAreWrittenAtOnceAndSyncedBehind(t *testing.T) {
	w := newLeaderWorld(t, walSegmentSize)
	w.appendEntries(1, 3, 0) // the segment's first sync, which also syncs its directory, is never deferred
	if err := w.durableWithin(3, time.Second); err != nil {
		t.Fatalf("the first write, synced on the way: %v", err)
	}
	w.shut()
	w.appendEntries(4, 6, 0) // returns although the syncer is held
	if !w.onDisk("entry-5;") {
		t.Fatal("entry 5 is not in the segment file after StoreLogs returned")
	}
	var e raft.Log
	if err := w.log.GetLog(5, &e); err != nil || !strings.HasPrefix(string(e.Data), "entry-5;") {
		t.Fatalf("GetLog(5) = %q, %v", e.Data, err)
	}
	if err := w.durableWithin(6, 50*time.Millisecond); err == nil {
		t.Fatal("entry 6 reported durable while its fsync was held")
	}
	w.open()
	if err := w.durableWithin(6, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := w.deferredSyncs(); n != 1 {
		t.Fatalf("%d deferred syncs, want 1", n)
	}
}

func TestDeferredSyncsAreCoalesced(t *testing.T) {
	w := newLeaderWorld(t, walSegmentSize)
	w.appendEntries(1, 1, 0)
	w.shut()
	w.appendEntries(2, 2, 0)
	// The syncer takes the first request and waits at the gate; the next
	// three queue behind it and are synced together.
	eventually(t, "the syncer takes the first request", func() bool {
		w.log.mu.Lock()
		defer w.log.mu.Unlock()
		return w.log.busy
	})
	w.appendEntries(3, 3, 0)
	w.appendEntries(4, 5, 0)
	w.appendEntries(6, 6, 0)
	w.open()
	if err := w.durableWithin(6, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := w.deferredSyncs(); n != 2 {
		t.Fatalf("%d deferred syncs for four writes, want 2: the first, then the three queued behind it at once", n)
	}
}

// TestAFollowerWriteWaitsForOutstandingSyncs: a node that stops leading
// with a sync outstanding finishes it before anything it appends as a
// follower, and a follower's StoreLogs returns only once its entries are
// synced (its acknowledgement says they are).
func TestAFollowerWriteWaitsForOutstandingSyncs(t *testing.T) {
	w := newLeaderWorld(t, walSegmentSize)
	w.appendEntries(1, 1, 0)
	w.shut()
	w.appendEntries(2, 3, 0)
	w.setLeads(false)
	done := make(chan error, 1)
	go func() {
		done <- w.log.StoreLogs([]*raft.Log{{Index: 4, Term: 2, Type: raft.LogCommand, Data: []byte("entry-4;")}})
	}()
	select {
	case err := <-done:
		t.Fatalf("a follower's StoreLogs returned (%v) while the leader's sync was outstanding", err)
	case <-time.After(100 * time.Millisecond):
	}
	w.open()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower's StoreLogs never returned")
	}
	if err := w.durableWithin(4, time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestATruncatedTailIsRewrittenAndSynced: a follower's tail replaced by a
// new leader's entries (DeleteRange, then the same indexes written again),
// then led by this node. raft-wal starts a new segment after a tail
// truncation, so the rewrite's first sync is inline; entries after it are
// deferred again and waited for. A head compaction changes nothing about
// what is durable.
func TestATruncatedTailIsRewrittenAndSynced(t *testing.T) {
	w := newLeaderWorld(t, walSegmentSize)
	w.appendEntries(1, 5, 0)
	if err := w.durableWithin(5, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	w.setLeads(false)
	if err := w.log.DeleteRange(4, 5); err != nil {
		t.Fatal(err)
	}
	w.setLeads(true)
	w.shut()
	w.appendEntries(4, 4, 0)
	if err := w.durableWithin(4, 10*time.Second); err != nil {
		t.Fatalf("the rewritten entry 4, synced inline as its segment's first: %v", err)
	}
	w.appendEntries(5, 6, 0)
	if err := w.durableWithin(6, 50*time.Millisecond); err == nil {
		t.Fatal("entry 6 reported durable while its sync was held")
	}
	w.open()
	if err := w.durableWithin(6, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := w.log.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := w.durableWithin(6, time.Second); err != nil {
		t.Fatalf("deleting the head lowered what is durable: %v", err)
	}
	var e raft.Log
	if err := w.log.GetLog(5, &e); err != nil || !strings.HasPrefix(string(e.Data), "entry-5;") {
		t.Fatalf("GetLog(5) after the rewrite = %q, %v", e.Data, err)
	}
}

func TestAFailedDeferredSyncIsReportedAndRefusesMore(t *testing.T) {
	w := newLeaderWorld(t, walSegmentSize)
	w.appendEntries(1, 1, 0)
	w.mu.Lock()
	w.syncErr = errors.New("disk on fire")
	w.mu.Unlock()
	w.appendEntries(2, 3, 0)
	err := w.durableWithin(3, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "up to 3") || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("WaitDurable after a failed sync = %v, want the entries and the cause", err)
	}
	w.mu.Lock()
	failed := len(w.failed)
	w.mu.Unlock()
	if failed != 1 {
		t.Fatalf("the failure was reported %d times, want once", failed)
	}
	if err := w.log.StoreLogs([]*raft.Log{{Index: 4, Term: 1, Type: raft.LogCommand}}); err == nil {
		t.Fatal("StoreLogs accepted entries after a failed sync")
	}
}

// TestSealingSyncIsNeverDeferred: raft-wal records a sealed segment in its
// metadata right after the sync that writes its index block, so that sync
// runs inline even on the leader: with every deferred sync held, each
// segment sealed while writing is fully synced.
func TestSealingSyncIsNeverDeferred(t *testing.T) {
	w := newLeaderWorld(t, 64<<10)
	w.appendEntries(1, 1, 0)
	w.shut()
	for i := uint64(2); i < 2+60; i += 4 {
		w.appendEntries(i, i+3, 4096) // ~240 KiB in all: three or more seals
	}
	// raft-wal rotates on its own goroutine.
	var files []*deferFile
	eventually(t, "four segments from ~240 KiB of 64 KiB segments", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		files = append(files[:0], w.files...)
		return len(files) >= 4
	})
	for i, f := range files[:len(files)-1] {
		f.mu.Lock()
		synced, gen := f.synced, f.gen
		f.mu.Unlock()
		if synced != gen {
			t.Fatalf("sealed segment %d has writes up to generation %d synced only to %d while deferred syncs were held", i, gen, synced)
		}
	}
	w.open()
	if err := w.durableWithin(61, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestParallelLeaderSyncKeepsEntriesAcrossReopen: through Open, entries a
// leader wrote are in the log after WaitDurable, and a sync still
// outstanding at Close is done before the store closes.
func TestParallelLeaderSyncKeepsEntriesAcrossReopen(t *testing.T) {
	for _, kind := range []LogStore{LogStoreWAL, LogStoreBoltDB} {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{LogStore: kind, LeaderSync: LeaderSyncParallel, Logger: zerolog.New(io.Discard)})
			if err != nil {
				t.Fatal(err)
			}
			if (s.leader != nil) != (kind == LogStoreWAL) {
				t.Fatalf("the %s store's leader sync is deferred: %v; want it deferred for wal only", kind, s.leader != nil)
			}
			s.SetLeaderCheck(func() bool { return true })
			writeEntries(t, s, 1, 50)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.WaitDurable(ctx, 50); err != nil {
				t.Fatal(err)
			}
			writeEntries(t, s, 51, 60)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openStores(t, dir, kind)
			defer s.Close()
			checkEntries(t, s, 1, 60)
		})
	}
}

func TestLeaderSyncModesAreParsed(t *testing.T) {
	for in, want := range map[string]LeaderSync{"": LeaderSyncParallel, "parallel": LeaderSyncParallel, "serial": LeaderSyncSerial} {
		if got, err := ParseLeaderSync(in); err != nil || got != want {
			t.Errorf("ParseLeaderSync(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseLeaderSync("fast"); err == nil || !strings.Contains(err.Error(), `--raft-leader-sync "fast"`) {
		t.Errorf("ParseLeaderSync(fast) = %v, want an error naming the flag and value", err)
	}
	if _, err := Open(t.TempDir(), Options{LeaderSync: "fast", Logger: zerolog.New(io.Discard)}); err == nil {
		t.Error("Open accepted an unknown leader sync mode")
	}
}
