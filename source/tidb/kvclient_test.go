package tidb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/internal/tidbfake"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

const kvTable = "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(32))"

// loaded is an env with table d.t holding n rows written before start.
func loaded(t *testing.T, n int, eo ...envOption) (*env, model.TableName, model.Ts) {
	e := newEnv(t, eo...)
	e.exec("", "CREATE DATABASE d", kvTable)
	start := e.c.Now()
	for i := 0; i < n; i += 50 {
		txn := e.c.Begin()
		for j := i; j < min(i+50, n); j++ {
			txn.Insert("d", "t", j, fmt.Sprintf("init%d", j))
		}
		e.commit(txn)
	}
	return e, e.table("d", "t"), start
}

func TestIncrementalScanThenLiveChanges(t *testing.T) {
	e, tbl, start := loaded(t, 500)
	if err := e.c.SplitTable("d", "t", 0, 500, 4); err != nil {
		t.Fatal(err)
	}
	f := e.subscribe(tbl, start)
	w := e.startWriter("d", "t", 600)
	time.Sleep(300 * time.Millisecond)
	w.finish(t)
	e.checkState(f, "d", "t", e.c.Now())
	if got := e.metric("raftcdc_tidb_incremental_scan_rows_total"); got < 500 {
		t.Fatalf("incremental scan rows metric %v, want at least the 500 pre-written rows", got)
	}
	if got := e.metric("raftcdc_tidb_regions", "table", "d.t"); got != 4 {
		t.Fatalf("regions metric %v, want 4", got)
	}
	// Starting later skips what came before.
	mid := e.c.Now()
	e.commit(e.c.Begin().Update("d", "t", 1, "after-mid"))
	g := e.subscribe(tbl, mid)
	g.waitResolved(e.c.Now(), 20*time.Second)
	if rows := g.rows(^uint64(0)); len(rows) != 1 || rows[0].After[1].Text() != "after-mid" || rows[0].Op != model.OpUpdate || rows[0].Before[1].Text() == "" {
		t.Fatalf("subscription from a later ts got %d rows: %+v", len(rows), rows)
	}
}

func TestCommitsBeforeInitializedAreReplayed(t *testing.T) {
	e, tbl, start := loaded(t, 2000)
	// Slow scans: live changes arrive while the region is still scanning.
	e.c.SetScanDelay(30 * time.Millisecond)
	lock := e.c.Begin().Update("d", "t", 5, "locked-before-subscribe")
	pending, err := lock.Prewrite(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f := e.subscribe(tbl, start)
	eventually(t, 10*time.Second, "the subscription registered", func() (bool, string) {
		return e.c.Subscriptions() > 0, "no subscription yet"
	})
	// The lock is sent by the scan as a PREWRITE; its COMMIT comes live,
	// before INITIALIZED.
	if _, err := pending.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		e.commit(e.c.Begin().Update("d", "t", i, fmt.Sprintf("during-scan-%d", i)))
	}
	if _, before := e.c.ScanStats(); before == 0 {
		t.Fatal("no live change reached the subscription before it was initialized; the test shows nothing")
	}
	e.c.SetScanDelay(0)
	e.checkState(f, "d", "t", e.c.Now())
}

func TestRollbackIsDropped(t *testing.T) {
	e, tbl, start := loaded(t, 10)
	f := e.subscribe(tbl, start)
	f.waitResolved(e.c.Now(), 20*time.Second)
	p, err := e.c.Begin().Update("d", "t", 3, "never").Prewrite(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p.Rollback()
	e.commit(e.c.Begin().Update("d", "t", 4, "kept"))
	e.checkState(f, "d", "t", e.c.Now())
	for _, r := range f.rows(^uint64(0)) {
		if r.After != nil && r.After[1].Text() == "never" {
			t.Fatal("a rolled-back write was emitted")
		}
	}
}

func TestSplitAndMergeResubscribeFromRegionResolvedTs(t *testing.T) {
	e, tbl, start := loaded(t, 300)
	f := e.subscribe(tbl, start)
	f.waitResolved(e.c.Now(), 20*time.Second)
	w := e.startWriter("d", "t", 300)
	var newIDs []uint64
	for _, h := range []int64{50, 100, 150, 200, 250} {
		newIDs = append(newIDs, e.c.Split(tidbfake.RecordKey(tbl.ID, h)))
		time.Sleep(30 * time.Millisecond)
	}
	eventually(t, 10*time.Second, "five more regions", func() (bool, string) {
		n := e.metric("raftcdc_tidb_regions", "table", "d.t")
		return n == 6, fmt.Sprintf("%v regions", n)
	})
	regions, _ := e.c.TableRegions("d", "t")
	for i := len(regions) - 1; i > 0; i -= 2 {
		if err := e.c.Merge(regions[i-1].ID, regions[i].ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	w.finish(t)
	e.checkState(f, "d", "t", e.c.Now())
	if e.metric("raftcdc_tidb_region_reconnects_total", "reason", "epoch_not_match") == 0 ||
		e.metric("raftcdc_tidb_region_reconnects_total", "reason", "region_not_found") == 0 {
		t.Fatal("splits and merges were not seen as epoch_not_match and region_not_found")
	}
	if len(newIDs) != 5 {
		t.Fatal(newIDs)
	}
}

func TestLeaderMovesRetryAtNewLeader(t *testing.T) {
	e, tbl, start := loaded(t, 200)
	if err := e.c.SplitTable("d", "t", 0, 200, 3); err != nil {
		t.Fatal(err)
	}
	f := e.subscribe(tbl, start)
	f.waitResolved(e.c.Now(), 20*time.Second)
	w := e.startWriter("d", "t", 200)
	regions, _ := e.c.TableRegions("d", "t")
	for round := 0; round < 3; round++ {
		for i, r := range regions {
			store := uint64((i+round+1)%3 + 1)
			if err := e.c.TransferLeader(r.ID, store); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.finish(t)
	e.checkState(f, "d", "t", e.c.Now())
	if e.metric("raftcdc_tidb_region_reconnects_total", "reason", "not_leader") == 0 {
		t.Fatal("leader moves were not seen as not_leader")
	}
}

func TestStoreRestartReconnects(t *testing.T) {
	e, tbl, start := loaded(t, 200)
	f := e.subscribe(tbl, start)
	f.waitResolved(e.c.Now(), 20*time.Second)
	regions, _ := e.c.TableRegions("d", "t")
	leader := int(regions[0].Leader) - 1
	w := e.startWriter("d", "t", 200)
	e.c.StopStore(leader, false)
	time.Sleep(500 * time.Millisecond)
	if err := e.c.StartStore(leader); err != nil {
		t.Fatal(err)
	}
	w.finish(t)
	e.checkState(f, "d", "t", e.c.Now())
	if e.metric("raftcdc_tidb_region_reconnects_total", "reason", "store_unreachable")+
		e.metric("raftcdc_tidb_region_reconnects_total", "reason", "stream_closed") == 0 {
		t.Fatal("the restart was not seen as a stream or store failure")
	}
}

func TestStoreDownGoesToOtherPeers(t *testing.T) {
	e, tbl, start := loaded(t, 200)
	f := e.subscribe(tbl, start)
	f.waitResolved(e.c.Now(), 20*time.Second)
	regions, _ := e.c.TableRegions("d", "t")
	leader := int(regions[0].Leader) - 1
	// The store dies for good; Raft elects leaders on the other peers.
	e.c.StopStore(leader, true)
	w := e.startWriter("d", "t", 200)
	time.Sleep(300 * time.Millisecond)
	w.finish(t)
	e.checkState(f, "d", "t", e.c.Now())
	now, _ := e.c.TableRegions("d", "t")
	if int(now[0].Leader)-1 == leader {
		t.Fatal("the leader did not move off the stopped store")
	}
}

func TestRetryableRegionErrors(t *testing.T) {
	for _, kind := range []tidbfake.RegionError{tidbfake.ErrNotLeader, tidbfake.ErrEpochNotMatch, tidbfake.ErrRegionNotFound,
		tidbfake.ErrServerIsBusy, tidbfake.ErrCongested} {
		t.Run(string(kind), func(t *testing.T) {
			e, tbl, start := loaded(t, 100, withStores(1))
			// Every registration fails twice first, then one live
			// subscription is cut with the same error.
			e.c.FailRegistrations(0, kind, 2)
			f := e.subscribe(tbl, start)
			f.waitResolved(e.c.Now(), 20*time.Second)
			if e.c.PendingFaults() != 0 {
				t.Fatal("the injected failures were not all hit")
			}
			regions, _ := e.c.TableRegions("d", "t")
			e.commit(e.c.Begin().Update("d", "t", 7, "before-cut"))
			if n := e.c.SendRegionError(regions[0].ID, kind); n == 0 {
				t.Fatal("no subscription to cut")
			}
			e.commit(e.c.Begin().Update("d", "t", 8, "after-cut"))
			e.checkState(f, "d", "t", e.c.Now())
			if got := e.metric("raftcdc_tidb_region_reconnects_total", "reason", string(kind)); got < 3 {
				t.Fatalf("reconnects for %s: %v, want at least 3", kind, got)
			}
		})
	}
}

func TestFatalRegionErrorsFailTheSubscription(t *testing.T) {
	for kind, want := range map[tidbfake.RegionError]string{
		tidbfake.ErrDuplicateRequest:  "duplicate request",
		tidbfake.ErrCompatibility:     "requires version 99.0.0",
		tidbfake.ErrClusterIDMismatch: "belongs to cluster",
	} {
		t.Run(string(kind), func(t *testing.T) {
			e, tbl, start := loaded(t, 10, withStores(1))
			e.c.FailRegistrations(0, kind, 1)
			sub, err := e.src.SubscribeTxns(context.Background(), tbl, start)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for {
				_, err := sub.Next(ctx)
				if err == nil {
					continue
				}
				if !errors.Is(err, ErrFatalRegion) || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want a fatal region error saying %q", err, want)
				}
				break
			}
		})
	}
}

func TestFallsBackToEventFeedWithoutV2(t *testing.T) {
	e, tbl, start := loaded(t, 100)
	e.c.SetEventFeedV2(false)
	if err := e.c.SplitTable("d", "t", 0, 100, 2); err != nil {
		t.Fatal(err)
	}
	f := e.subscribe(tbl, start)
	// A second table sharing no region, and a second subscription of the
	// same table: with EventFeed a region goes on a stream only once.
	g := e.subscribe(tbl, start)
	e.commit(e.c.Begin().Update("d", "t", 1, "v1-feed"))
	now := e.c.Now()
	e.checkState(f, "d", "t", now)
	e.checkState(g, "d", "t", now)
	if e.metric("raftcdc_tidb_region_reconnects_total", "reason", "eventfeed_v2_unimplemented") == 0 {
		t.Fatal("no fallback was recorded")
	}
}

func TestStalledRegionGetsItsLocksResolved(t *testing.T) {
	e, tbl, start := loaded(t, 50)
	f := e.subscribe(tbl, start)
	f.waitResolved(e.c.Now(), 20*time.Second)
	// A writer crashed after prewrite: its lock lives 1 s.
	dead, err := e.c.Begin().Update("d", "t", 1, "crashed").Prewrite(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Another crashed after committing its primary: its secondary must
	// be committed by lock resolution.
	half, err := e.c.Begin().Update("d", "t", 2, "half-p").Update("d", "t", 3, "half-s").Prewrite(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := half.CommitPrimary(); err != nil {
		t.Fatal(err)
	}
	stuck := dead.StartTs()
	time.Sleep(300 * time.Millisecond)
	f.mu.Lock()
	if f.resolved > stuck {
		f.mu.Unlock()
		t.Fatalf("resolved ts %d passed the lock at %d", f.resolved, stuck)
	}
	f.mu.Unlock()
	eventually(t, 15*time.Second, "a stalled region reported", func() (bool, string) {
		return e.metric("raftcdc_tidb_stalled_regions") > 0 || e.metric("raftcdc_tidb_lock_resolves_total") > 0, "none yet"
	})
	e.checkState(f, "d", "t", e.c.Now())
	if dead.Locked() || half.Locked() {
		t.Fatal("locks still held after resolution")
	}
	st := f.state(^uint64(0))
	if st["1"][1] == "crashed" || st["2"][1] != "half-p" || st["3"][1] != "half-s" {
		t.Fatalf("after lock resolution: %v %v %v", st["1"], st["2"], st["3"])
	}
	if e.metric("raftcdc_tidb_lock_resolves_total") == 0 {
		t.Fatal("no lock resolution was counted")
	}
}

func TestGCSafepointAndSnapshotLost(t *testing.T) {
	e, tbl, start := loaded(t, 5)
	ctx := context.Background()
	id, _ := e.src.UpstreamID(ctx)
	if id != fmt.Sprint(e.c.ClusterID()) {
		t.Fatalf("upstream ID %q, want PD's cluster ID %d", id, e.c.ClusterID())
	}
	min, err := e.src.UpdateServiceGCSafepoint(ctx, "raftcdc-test", time.Hour, start)
	if err != nil || min != start {
		t.Fatalf("service safepoint: %d %v", min, err)
	}
	if got := e.c.RunGC(e.c.Now()); got != start {
		t.Fatalf("GC passed the service safepoint: %d, want %d", got, start)
	}
	if sp := e.c.ServiceSafePoints()["raftcdc-test"]; sp != start {
		t.Fatalf("fake PD holds %d for the service", sp)
	}
	if _, err := e.src.UpdateServiceGCSafepoint(ctx, "raftcdc-test", 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.c.ServiceSafePoints()["raftcdc-test"]; ok {
		t.Fatal("TTL 0 did not remove the service safepoint")
	}
	gc := e.c.RunGC(e.c.Now())
	if got, _ := e.src.GCSafepoint(ctx); got != gc {
		t.Fatalf("GC safepoint %d, want %d", got, gc)
	}
	if _, err := e.src.SubscribeTxns(ctx, tbl, start); !errors.Is(err, source.ErrSnapshotLost) {
		t.Fatalf("subscribing below the GC safepoint: %v", err)
	}
	now, err := e.src.CurrentTs(ctx)
	if err != nil || now <= gc {
		t.Fatalf("current ts %d %v", now, err)
	}
}

// A start is checked against the GC safepoint in force when it is asked
// for, not one read a moment earlier: a subscription right after GC moved
// past its start is refused, though one at the same start was accepted
// just before.
func TestStartBelowGCSafepointRefusedRightAfterGC(t *testing.T) {
	e, tbl, start := loaded(t, 5)
	ctx := context.Background()
	sub, err := e.src.SubscribeTxns(ctx, tbl, start)
	if err != nil {
		t.Fatalf("subscribing above the GC safepoint: %v", err)
	}
	sub.Close()
	if gc := e.c.RunGC(e.c.Now()); gc <= start {
		t.Fatalf("GC safepoint %d did not pass the start %d", gc, start)
	}
	if _, err := e.src.SubscribeTxns(ctx, tbl, start); !errors.Is(err, source.ErrSnapshotLost) {
		t.Fatalf("subscribing right after GC passed the start: %v, want ErrSnapshotLost", err)
	}
	if _, err := e.src.SchemaAt(ctx, tbl, start); !errors.Is(err, source.ErrSnapshotLost) {
		t.Fatalf("schema right after GC passed the start: %v, want ErrSnapshotLost", err)
	}
}

// Region IDs that step by the replica count plus one (PD allocates a
// region's and its peers' IDs together) still reach every worker, about
// evenly, and an ID always reaches the same one.
func TestRegionIDsSpreadOverEveryWorker(t *testing.T) {
	for _, c := range []struct{ step, workers int }{{4, 8}, {2, 8}, {6, 16}, {4, 1}, {4, 3}, {1, 256}} {
		const regions = 4096
		count := make([]int, c.workers)
		for i := 0; i < regions; i++ {
			id := uint64(1000 + i*c.step)
			w := workerIndex(id, c.workers)
			if w < 0 || w >= c.workers || w != workerIndex(id, c.workers) {
				t.Fatalf("step %d, %d workers: region %d went to %d", c.step, c.workers, id, w)
			}
			count[w]++
		}
		even := regions / c.workers
		for w, n := range count {
			if n < even/2 || n > even*2 {
				t.Errorf("step %d, %d workers: worker %d got %d regions (even: %d): %v", c.step, c.workers, w, n, even, count)
				break
			}
		}
	}
}
