package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
)

// TestTypedHistoryWithDDLThroughFailovers replicates datagen's typed history
// — every MySQL type, 3-row transactions over 3 tables, a DDL every 5 s
// (add and drop column, truncate, rename, drop and create table) — into the
// storage sink as canal-json, while the leader is killed twice and a
// follower is frozen with SIGSTOP. The downstream state at the checkpoint
// equals datagen's, and every DDL is there exactly once and in order.
func TestTypedHistoryWithDDLThroughFailovers(t *testing.T) {
	c := StartCluster(t, binPath, 3, ClusterOptions{ExtraArgs: []string{"--log-level", "info"}})
	c.WaitForOwner(30*time.Second, 0)
	const id = "typed"
	src := "datagen://?tables=6&rate=20&txn-rows=3&txn-tables=3&ddl-every=5s"
	dir := t.TempDir()
	start := model.TsFromTime(time.Now().Add(-time.Second))
	c.CreateChangefeed(api.ChangefeedRequest{ID: id, SourceURI: src, SinkURI: StorageSinkURI(dir), StartTs: start})
	c.WaitCheckpointAbove(id, start, advanceBound)
	s := c.SampleCheckpoints(id, samplerInterval)

	for k := 0; k < 2; k++ {
		leader := c.WaitForLeader(ownerBound)
		killed := time.Now()
		c.Kill(leader, syscall.SIGKILL)
		o := c.WaitForOwner(ownerBound, 0)
		c.WaitCheckpointAbove(id, model.TsFromTime(killed), advanceBound)
		t.Logf("leader kill %d: %s → owner %s; checkpoint past the kill after %v", k+1, c.Procs[leader].ID, o.ID, time.Since(killed).Round(time.Millisecond))
		c.Restart(leader)
		time.Sleep(2 * time.Second)
	}

	leader := c.WaitForLeader(ownerBound)
	follower := (leader + 1) % len(c.Procs)
	c.Pause(follower)
	paused := time.Now()
	c.WaitCheckpointAbove(id, model.TsFromTime(paused), advanceBound)
	time.Sleep(3 * time.Second)
	c.Resume(follower)
	t.Logf("%s frozen for %v", c.Procs[follower].ID, time.Since(paused).Round(time.Millisecond))

	// Long enough for several DDLs of every kind to have gone through.
	until := model.TsFromTime(time.Now().Add(5 * time.Second))
	cp := c.WaitCheckpointAbove(id, until, 2*advanceBound)
	rep := Verify(t, src, dir, start, cp)
	if rep.DDLs < 3 {
		t.Fatalf("only %d DDLs up to the checkpoint: the test did not exercise the barrier", rep.DDLs)
	}
	if rep.DDLsFound != rep.DDLs || rep.DDLDuplicates != 0 {
		t.Fatalf("DDLs: %d expected, %d found, %d written more than once", rep.DDLs, rep.DDLsFound, rep.DDLDuplicates)
	}
	// In order too: per table, the files read in order show the DDL
	// messages by commit ts and no row older than a DDL before it.
	if rep.DDLOrderViolations != 0 {
		t.Fatalf("DDLs out of order in the files: %d violations, the first: %s", rep.DDLOrderViolations, rep.DDLOrderExample)
	}
	s.Stop()
	sr := s.Report()
	sr.Check(t)
	t.Logf("%d rows and %d DDLs verified; %d duplicate change events; longest checkpoint stall %v", rep.Expected, rep.DDLs, rep.Duplicates, sr.LongestStall.Round(time.Millisecond))
}
