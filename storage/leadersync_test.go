package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

// gatedStore is an in-memory log store whose writes wait at a gate while it
// is shut, and that records each write's indexes, so a test can hold the
// leader's write and see what was written together.
type gatedStore struct {
	mu      sync.Mutex
	logs    map[uint64]raft.Log
	writes  [][]uint64
	gate    chan struct{} // nil: open
	entered chan struct{} // a write is at the gate
	fail    error
}

func newGatedStore() *gatedStore {
	return &gatedStore{logs: map[uint64]raft.Log{}, entered: make(chan struct{}, 16)}
}

func (g *gatedStore) shut() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }
func (g *gatedStore) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gatedStore) StoreLog(l *raft.Log) error { return g.StoreLogs([]*raft.Log{l}) }
func (g *gatedStore) StoreLogs(logs []*raft.Log) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.entered <- struct{}{}
		<-gate
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return g.fail
	}
	var idx []uint64
	for _, l := range logs {
		g.logs[l.Index] = *l
		idx = append(idx, l.Index)
	}
	g.writes = append(g.writes, idx)
	return nil
}
func (g *gatedStore) FirstIndex() (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var first uint64
	for i := range g.logs {
		if first == 0 || i < first {
			first = i
		}
	}
	return first, nil
}
func (g *gatedStore) LastIndex() (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var last uint64
	for i := range g.logs {
		last = max(last, i)
	}
	return last, nil
}
func (g *gatedStore) GetLog(idx uint64, l *raft.Log) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.logs[idx]
	if !ok {
		return raft.ErrLogNotFound
	}
	*l = e
	return nil
}
func (g *gatedStore) DeleteRange(min, max uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := min; i <= max; i++ {
		delete(g.logs, i)
	}
	return nil
}
func (g *gatedStore) written() [][]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]uint64(nil), g.writes...)
}

func entries(first, last uint64) []*raft.Log {
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry-%d", i))})
	}
	return logs
}

// leaderWorld is a parallel log over a gated store, with a switch for
// "this node leads" and the failures it reported.
type leaderWorld struct {
	t      *testing.T
	store  *gatedStore
	log    *parallelLog
	mu     sync.Mutex
	leads  bool
	failed []error
}

func newLeaderWorld(t *testing.T) *leaderWorld {
	w := &leaderWorld{t: t, store: newGatedStore(), leads: true}
	p, err := newParallelLog(w.store, func(err error) { w.mu.Lock(); w.failed = append(w.failed, err); w.mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	p.setLeader(func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.leads })
	w.log = p
	t.Cleanup(func() { w.store.open(); p.close() })
	return w
}

func (w *leaderWorld) setLeads(v bool) { w.mu.Lock(); w.leads = v; w.mu.Unlock() }

func (w *leaderWorld) appendEntries(first, last uint64) {
	w.t.Helper()
	if err := w.log.StoreLogs(entries(first, last)); err != nil {
		w.t.Fatalf("storing %d..%d: %v", first, last, err)
	}
}

func (w *leaderWorld) waitAtGate() {
	w.t.Helper()
	select {
	case <-w.store.entered:
	case <-time.After(10 * time.Second):
		w.t.Fatal("no write reached the store")
	}
}

func (w *leaderWorld) durableWithin(idx uint64, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.log.WaitDurable(ctx, idx)
}

func TestLeaderEntriesAreReadableBeforeTheyAreWritten(t *testing.T) {
	w := newLeaderWorld(t)
	w.store.shut()
	w.appendEntries(1, 3) // returns although the store holds the write
	w.waitAtGate()

	var e raft.Log
	if err := w.log.GetLog(2, &e); err != nil || string(e.Data) != "entry-2" {
		t.Fatalf("GetLog(2) of a queued entry = %+v, %v", e, err)
	}
	if last, _ := w.log.LastIndex(); last != 3 {
		t.Fatalf("LastIndex = %d with 1..3 queued, want 3", last)
	}
	if first, _ := w.log.FirstIndex(); first != 1 {
		t.Fatalf("FirstIndex = %d with 1..3 queued on an empty store, want 1", first)
	}
	if err := w.durableWithin(3, 50*time.Millisecond); err == nil {
		t.Fatal("entry 3 reported durable while the store had not written it")
	}
	w.store.open()
	if err := w.durableWithin(3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := w.store.written(); fmt.Sprint(got) != "[[1 2 3]]" {
		t.Fatalf("store writes %v, want [[1 2 3]]", got)
	}
}

func TestQueuedBatchesAreWrittenTogether(t *testing.T) {
	w := newLeaderWorld(t)
	w.store.shut()
	w.appendEntries(1, 1)
	w.waitAtGate()
	w.appendEntries(2, 2)
	w.appendEntries(3, 4)
	w.appendEntries(5, 5)
	w.store.open()
	if err := w.durableWithin(5, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := w.store.written(); fmt.Sprint(got) != "[[1] [2 3 4 5]]" {
		t.Fatalf("store writes %v, want the first alone and the three queued behind it in one: [[1] [2 3 4 5]]", got)
	}
}

// TestAFollowerWriteWaitsForTheLeadersQueue: a node that stops leading with
// entries still queued writes them before anything it appends as a
// follower, and a follower's StoreLogs returns only once its own entries
// are in the store (its acknowledgement says they are).
func TestAFollowerWriteWaitsForTheLeadersQueue(t *testing.T) {
	w := newLeaderWorld(t)
	w.store.shut()
	w.appendEntries(1, 2)
	w.waitAtGate()
	w.setLeads(false)

	done := make(chan error, 1)
	go func() { done <- w.log.StoreLogs(entries(3, 4)) }()
	select {
	case err := <-done:
		t.Fatalf("a follower's StoreLogs returned (%v) before the queued entries were written", err)
	case <-time.After(100 * time.Millisecond):
	}
	w.store.open()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower's StoreLogs never returned")
	}
	if got := w.store.written(); fmt.Sprint(got) != "[[1 2] [3 4]]" {
		t.Fatalf("store writes %v, want [[1 2] [3 4]]", got)
	}
	if err := w.durableWithin(4, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteRangeWaitsForTheQueueAndForgetsTheTail(t *testing.T) {
	w := newLeaderWorld(t)
	w.appendEntries(1, 5)
	if err := w.durableWithin(5, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	w.setLeads(false)
	// A new leader's log differs from 4 on: the tail goes, and 4 is not
	// durable again until it is written again.
	if err := w.log.DeleteRange(4, 5); err != nil {
		t.Fatal(err)
	}
	if err := w.durableWithin(4, 50*time.Millisecond); err == nil {
		t.Fatal("entry 4 still reported durable after the tail was deleted")
	}
	if err := w.log.StoreLogs(entries(4, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.durableWithin(4, time.Second); err != nil {
		t.Fatal(err)
	}
	// Compaction of the head changes nothing about the tail.
	if err := w.log.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := w.durableWithin(4, time.Second); err != nil {
		t.Fatalf("deleting the head lowered what is durable: %v", err)
	}
}

func TestAFailedLeaderWriteIsReportedAndRefusesMore(t *testing.T) {
	w := newLeaderWorld(t)
	w.store.mu.Lock()
	w.store.fail = errors.New("disk on fire")
	w.store.mu.Unlock()
	w.appendEntries(1, 3)
	err := w.durableWithin(3, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "entries 1 to 3") || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("WaitDurable after a failed write = %v, want the entries and the cause", err)
	}
	w.mu.Lock()
	failed := len(w.failed)
	w.mu.Unlock()
	if failed != 1 {
		t.Fatalf("the failure was reported %d times, want once", failed)
	}
	if err := w.log.StoreLogs(entries(4, 4)); err == nil {
		t.Fatal("StoreLogs accepted entries after a failed write")
	}
}

// TestParallelLeaderSyncKeepsEntriesAcrossReopen: through the real stores,
// entries a leader queued are in the log after WaitDurable, and what is
// still queued at Close is written before the store closes.
func TestParallelLeaderSyncKeepsEntriesAcrossReopen(t *testing.T) {
	for _, kind := range []LogStore{LogStoreWAL, LogStoreBoltDB} {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{LogStore: kind, LeaderSync: LeaderSyncParallel, Logger: zerolog.New(io.Discard)})
			if err != nil {
				t.Fatal(err)
			}
			s.SetLeaderCheck(func() bool { return true })
			writeEntries(t, s, 1, 50)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.WaitDurable(ctx, 50); err != nil {
				t.Fatal(err)
			}
			writeEntries(t, s, 51, 60) // queued; Close must write them
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
