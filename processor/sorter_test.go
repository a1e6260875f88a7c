package processor

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/raftcdc/raftcdc/model"
)

var sorterSchema = &model.TableSchema{
	Table:   model.TableName{ID: 7, Schema: "s", Table: "t"},
	Version: 3,
	Columns: []model.Column{{Name: "id", Type: model.ColumnType{Kind: model.TypeBigInt}}, {Name: "v", Type: model.ColumnType{Kind: model.TypeVarbinary, Length: 10}, Nullable: true}},
	Indexes: []model.Index{{Name: "PRIMARY", Columns: []string{"id"}, Primary: true}},
}

// sorterTxn is a transaction of n rows whose ids encode (commit ts, fragment
// start) so the output order can be checked row by row.
func sorterTxn(commitTs model.Ts, first, n int) *model.Txn {
	t := &model.Txn{StartTs: commitTs - 1, CommitTs: commitTs}
	for i := 0; i < n; i++ {
		t.Rows = append(t.Rows, &model.RowChange{Schema: sorterSchema, StartTs: commitTs - 1, CommitTs: commitTs, Op: model.OpInsert,
			After: []model.Value{model.IntValue(int64(commitTs)*1_000_000 + int64(first+i)), model.BytesValue([]byte{0, byte(i), 0})}})
	}
	return t
}

// drain releases up to upto and flattens what comes out.
func drain(t *testing.T, s *sorter, upto model.Ts) (ids []int64, writes int) {
	t.Helper()
	_, _, err := s.release(upto, func(txns []*model.Txn) error {
		writes++
		n := 0
		for _, tx := range txns {
			for _, r := range tx.Rows {
				if r.CommitTs != tx.CommitTs || r.Schema != sorterSchema {
					t.Fatalf("row %v lost its commit ts or schema", r.After[0])
				}
				if r.After[1].Kind != model.ValueBytes || len(r.After[1].B) != 3 || r.After[1].B[0] != 0 {
					t.Fatalf("binary value did not survive the spill: %#v", r.After[1])
				}
				ids = append(ids, r.After[0].I)
				n++
			}
		}
		if n > releaseChunkRows {
			t.Fatalf("one write carried %d rows, above %d", n, releaseChunkRows)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, writes
}

func TestSorterReleasesInCommitOrderAcrossSpills(t *testing.T) {
	dir := t.TempDir()
	s := newSorter(filepath.Join(dir, "spill"))
	defer s.close()
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[model.Ts][]int64{}
	// Fragments of one transaction arrive in order; transactions arrive in
	// any order; spills happen at random points.
	for i := 0; i < 300; i++ {
		ts := model.Ts(100 + rng.IntN(50))
		first := len(want[ts])
		n := 1 + rng.IntN(30)
		tx := sorterTxn(ts, first, n)
		for _, r := range tx.Rows {
			want[ts] = append(want[ts], r.After[0].I)
		}
		s.add(pendingTxn{txn: tx, bytes: int64(tx.ApproxSize())})
		if rng.IntN(10) == 0 {
			if _, err := s.spill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(s.runs) == 0 {
		t.Fatal("no spill happened; the test proves nothing")
	}
	var got []int64
	for _, upto := range []model.Ts{120, 120, 135, 200} {
		ids, _ := drain(t, s, upto)
		for _, id := range ids {
			if model.Ts(id/1_000_000) > upto {
				t.Fatalf("row of ts %d released at upto %d", id/1_000_000, upto)
			}
		}
		got = append(got, ids...)
	}
	var flat []int64
	for ts := model.Ts(100); ts < 150; ts++ {
		flat = append(flat, want[ts]...)
	}
	if fmt.Sprint(got) != fmt.Sprint(flat) {
		t.Fatalf("released order differs from commit order with fragments in arrival order:\n got %v\nwant %v", got, flat)
	}
	if !s.empty() || s.memBytes != 0 {
		t.Fatalf("sorter not empty after releasing everything: %d in memory, %d runs", len(s.mem), len(s.runs))
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "spill"))
	if len(entries) != 0 {
		t.Fatalf("%d run files left after every run was consumed", len(entries))
	}
}

// TestSorterSplitsALargeTransaction: a transaction far above the chunk size
// leaves the sorter as consecutive fragments with its key, from memory and
// from disk alike.
func TestSorterSplitsALargeTransaction(t *testing.T) {
	for _, spill := range []bool{false, true} {
		t.Run(fmt.Sprintf("spilled=%v", spill), func(t *testing.T) {
			s := newSorter(t.TempDir())
			defer s.close()
			big := sorterTxn(200, 0, 3*releaseChunkRows+17)
			s.add(pendingTxn{txn: sorterTxn(100, 0, 5), bytes: 1})
			s.add(pendingTxn{txn: big, bytes: 2})
			if spill {
				if freed, err := s.spill(); err != nil || freed != 3 {
					t.Fatalf("spill freed %d, %v", freed, err)
				}
			}
			ids, writes := drain(t, s, 300)
			if len(ids) != 5+len(big.Rows) || writes < 4 {
				t.Fatalf("%d rows in %d writes", len(ids), writes)
			}
			for i := 1; i < len(ids); i++ {
				if ids[i] <= ids[i-1] {
					t.Fatalf("row %d out of order: %d after %d", i, ids[i], ids[i-1])
				}
			}
		})
	}
}

// TestSorterKeepsTheSnapshotMarkAcrossASpill: rows of a source's snapshot
// leave the sorter marked, and streamed rows unmarked, whether they waited
// in memory or on disk (the Debezium protocol writes the first as op "r").
func TestSorterKeepsTheSnapshotMarkAcrossASpill(t *testing.T) {
	for _, spill := range []bool{false, true} {
		t.Run(fmt.Sprintf("spilled=%v", spill), func(t *testing.T) {
			s := newSorter(t.TempDir())
			defer s.close()
			copied := sorterTxn(100, 0, spillFragmentRows+3) // more than one spilled fragment
			for _, r := range copied.Rows {
				r.Snapshot = true
			}
			s.add(pendingTxn{txn: copied, bytes: 1})
			s.add(pendingTxn{txn: sorterTxn(102, 0, 4), bytes: 1})
			if spill {
				if _, err := s.spill(); err != nil {
					t.Fatal(err)
				}
				if s.spilledRows() == 0 {
					t.Fatal("nothing was spilled; the test proves nothing")
				}
			}
			var marked, plain int
			_, _, err := s.release(200, func(txns []*model.Txn) error {
				for _, tx := range txns {
					for _, r := range tx.Rows {
						if r.Snapshot != (tx.CommitTs == 100) {
							t.Fatalf("row %v at %d: snapshot mark %v", r.After[0], tx.CommitTs, r.Snapshot)
						}
						if r.Snapshot {
							marked++
						} else {
							plain++
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if marked != len(copied.Rows) || plain != 4 {
				t.Fatalf("released %d marked and %d plain rows, want %d and 4", marked, plain, len(copied.Rows))
			}
		})
	}
}

func TestSorterCloseRemovesRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
	s := newSorter(dir)
	s.add(pendingTxn{txn: sorterTxn(100, 0, 10), bytes: 1})
	if _, err := s.spill(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d run files after one spill", len(entries))
	}
	s.close()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("%d run files after close", len(entries))
	}
}

func TestMemQuotaForcedAcquireAndWakeup(t *testing.T) {
	q := newMemQuota(100, 0)
	ctx := t.Context()
	if err := q.acquire(ctx, 80, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	// Over the limit, but the caller holds the barrier back.
	if err := q.acquire(ctx, 50, nil, func() bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	if used, peak, _ := q.usage(); used != 130 || peak != 130 {
		t.Fatalf("used %d peak %d", used, peak)
	}
	done := make(chan error, 1)
	go func() { done <- q.acquire(ctx, 40, nil, func() bool { return false }, nil) }()
	select {
	case <-done:
		t.Fatal("acquire went through over the limit")
	default:
	}
	q.release(100)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if used, _, _ := q.usage(); used != 70 {
		t.Fatalf("used %d after release and acquire, want 70", used)
	}
}

// TestMemQuotaTablesAheadStopAtTheReadAhead: a table ahead of the barrier
// waits once the read-ahead is used, and says so; one holding the barrier
// back reads on up to the quota and past it.
func TestMemQuotaTablesAheadStopAtTheReadAhead(t *testing.T) {
	q := newMemQuota(100, 30)
	ctx := t.Context()
	ahead, holds := func() bool { return false }, func() bool { return true }
	if err := q.acquire(ctx, 20, nil, ahead, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.acquire(ctx, 20, nil, ahead, nil) }()
	select {
	case <-q.blocked:
	case err := <-done:
		t.Fatalf("a table ahead of the barrier read past the read-ahead (err %v)", err)
	}
	waitUntil(t, "the acquirer counted as waiting", func() bool { return q.waiters() == 1 })
	if err := q.acquire(ctx, 60, nil, holds, nil); err != nil {
		t.Fatal(err)
	}
	if err := q.acquire(ctx, 40, nil, holds, nil); err != nil { // past the quota: spills
		t.Fatal(err)
	}
	if used, _, _ := q.usage(); used != 120 {
		t.Fatalf("used %d, want 120", used)
	}
	select {
	case err := <-done:
		t.Fatalf("the table ahead went through at 120 of 30 bytes (err %v)", err)
	default:
	}
	q.release(110)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if used, _, _ := q.usage(); used != 30 || q.waiters() != 0 {
		t.Fatalf("used %d, %d waiting; want 30, 0", used, q.waiters())
	}
}

// TestSorterAppendsInOrderSpillsToOneRun: a transaction spilled batch after
// batch (as a huge one is) makes one run, not one file per batch, and a
// release of an earlier ts takes what is due from the run being written.
func TestSorterAppendsInOrderSpillsToOneRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
	s := newSorter(dir)
	defer s.close()
	s.add(pendingTxn{txn: sorterTxn(100, 0, 10), bytes: 1})
	for i := 0; i < 50; i++ {
		s.add(pendingTxn{txn: sorterTxn(200, i*100, 100), bytes: 1})
		if _, err := s.spill(); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d run files for in-order spills, want 1", len(entries))
	}
	ids, _ := drain(t, s, 150)
	if len(ids) != 10 {
		t.Fatalf("released %d rows up to 150, want the 10 of ts 100 (the rest is at 200)", len(ids))
	}
	ids, _ = drain(t, s, 250)
	if len(ids) != 5000 {
		t.Fatalf("released %d rows up to 250, want 5000", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("fragment order lost at %d: %d after %d", i, ids[i], ids[i-1])
		}
	}
}

// TestMemQuotaTablesNearTheBarrierReadUpToThreeQuarters: a table within
// the read window of the barrier reads past the read-ahead, but only up to
// three quarters of the quota: the last quarter is for the tables holding
// the barrier back. Once memory is released it goes on.
func TestMemQuotaTablesNearTheBarrierReadUpToThreeQuarters(t *testing.T) {
	q := newMemQuota(100, 30)
	ctx := t.Context()
	near, far, holds := func() bool { return true }, func() bool { return false }, func() bool { return true }
	if err := q.acquire(ctx, 30, nil, far, nil); err != nil {
		t.Fatal(err)
	}
	if err := q.acquire(ctx, 40, near, far, nil); err != nil {
		t.Fatalf("a table near the barrier could not read past the read-ahead: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- q.acquire(ctx, 10, near, far, nil) }()
	select {
	case <-q.blocked:
	case err := <-done:
		t.Fatalf("a table near the barrier read into the last quarter of the quota (err %v)", err)
	}
	// The table holding the barrier back reads into the reserve at once.
	if err := q.acquire(ctx, 25, nil, holds, nil); err != nil {
		t.Fatal(err)
	}
	farDone := make(chan error, 1)
	go func() { farDone <- q.acquire(ctx, 5, nil, far, nil) }()
	waitUntil(t, "both acquirers waiting", func() bool { return q.waiters() == 2 })
	q.release(35) // 60 used: room under three quarters, none under the read-ahead
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-farDone:
		t.Fatalf("a table far from the barrier read at %d of 30 bytes (err %v)", 70, err)
	default:
	}
	q.release(70)
	if err := <-farDone; err != nil {
		t.Fatal(err)
	}
	if used, _, _ := q.usage(); used != 5 {
		t.Fatalf("used %d, want 5", used)
	}
}

// TestMemQuotaTablesNearTheBarrierSpillOnlyPastTheReserve: over the limit,
// a table far from the barrier spills at once; one near it, whose rows are
// flushed next, only once the quota is over by the reserve as well.
func TestMemQuotaTablesNearTheBarrierSpillOnlyPastTheReserve(t *testing.T) {
	q := newMemQuota(100, 30)
	near, far := func() bool { return true }, func() bool { return false }
	if q.overLimit(far) || q.overLimit(near) {
		t.Fatal("an empty quota says spill")
	}
	q.acquire(t.Context(), 110, nil, near, nil) // a table holding the barrier back forces past the limit
	if !q.overLimit(far) || !q.overLimit(nil) {
		t.Fatal("at 110 of 100 bytes a table far from the barrier (or with no read window) does not spill")
	}
	if q.overLimit(near) {
		t.Fatal("at 110 of 100 bytes a table near the barrier spills, within the reserve of 25")
	}
	q.acquire(t.Context(), 20, nil, near, nil)
	if !q.overLimit(near) {
		t.Fatal("at 130 of 100 bytes a table near the barrier does not spill")
	}
}
