package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/verify"
)

// waitClusterID waits until every given node reports the same cluster ID
// and returns it.
func (c *Cluster) waitClusterID(nodes []int, timeout time.Duration) string {
	c.t.Helper()
	var id string
	Eventually(c.t, timeout, "one cluster ID on every node", func() (bool, string) {
		id = ""
		for _, i := range nodes {
			s, err := c.Status(i)
			if err != nil || s.ClusterID == "" || (id != "" && s.ClusterID != id) {
				return false, fmt.Sprintf("%s: %+v %v", c.Procs[i].ID, s, err)
			}
			id = s.ClusterID
		}
		return true, ""
	})
	return id
}

// TestLongRecoverFromQuorumLoss: two of three nodes are lost for good while
// a changefeed runs. The survivor cannot write without a quorum; stopped,
// its Raft configuration is rewritten to itself alone (tools recover), it
// restarts as a one-node cluster, two fresh nodes join it, and the
// changefeed continues on the three live nodes with every row at or below
// its checkpoint in the sink.
func TestLongRecoverFromQuorumLoss(t *testing.T) {
	requireLong(t, "recover from quorum loss")
	e := startFeed(t, 6, "50")
	c := e.c
	before := e.checkpoint()

	c.Kill(1, syscall.SIGKILL)
	c.Kill(2, syscall.SIGKILL)
	// Alone, node1 has no quorum: no writes go through.
	time.Sleep(2 * time.Second)
	if err := c.Put(0, "during-quorum-loss", 1); err == nil {
		t.Fatal("a write went through with two of three nodes gone")
	}
	c.Kill(0, syscall.SIGTERM)

	ctx, cancel := Ctx(time.Minute)
	defer cancel()
	out, err := c.Tool(ctx, "tools", "recover", "--data-dir", c.Procs[0].DataDir, "--peers", "node1="+c.Procs[0].RaftAddr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "it is now node1="+c.Procs[0].RaftAddr) {
		t.Fatalf("recover said: %s", out)
	}
	t.Logf("%s", out)
	// The lost nodes are gone: node1 starts without joining them.
	c.SetFlag(0, "--join", "")
	c.Start(0)
	WaitFor(t, 30*time.Second, "node1 leading alone", func() bool {
		s, err := c.Status(0)
		return err == nil && s.RaftState == "Leader"
	})
	c.Barrier(30 * time.Second)

	n4 := c.AddProc("node4", []string{c.Procs[0].GossipAddr}, "--bootstrap-expect", "3")
	n5 := c.AddProc("node5", []string{c.Procs[0].GossipAddr}, "--bootstrap-expect", "3")
	c.Start(n4)
	c.Start(n5)
	c.WaitVoters(0, []string{"node1", "node4", "node5"}, 60*time.Second)
	cp, rep := e.continuesOn(c, []string{"node1", "node4", "node5"}, before)
	t.Logf("after recovery: %d rows verified up to %d (checkpoint before the loss %d)", rep.Expected, cp, before)
}

// TestLongRestoreIntoANewCluster: a backup of a running cluster is saved
// with ctl, the cluster is lost, and a new cluster of three new nodes is
// seeded from the backup with tools restore. The new cluster has a new
// identity that names the old one, its own upstream GC service, and the
// changefeed continues from its checkpoint with nothing missing downstream.
func TestLongRestoreIntoANewCluster(t *testing.T) {
	requireLong(t, "restore into a new cluster")
	e := startFeed(t, 6, "50")
	c := e.c
	oldID := c.waitClusterID([]int{0, 1, 2}, 30*time.Second)
	file := filepath.Join(t.TempDir(), "backup.jsonl")
	ctx, cancel := Ctx(2 * time.Minute)
	defer cancel()
	if _, err := c.Ctl(ctx, 1, "cluster", "snapshot", "save", file); err != nil {
		t.Fatal(err)
	}
	atBackup := e.checkpoint()
	for i := range c.Procs {
		c.Kill(i, syscall.SIGKILL)
	}

	// Three new nodes: r1 is seeded, r2 and r3 join it.
	nc := NewCluster(t, c.Bin, nil)
	r1 := nc.AddProc("r1", nil)
	nc.SetFlag(r1, "--join", "")
	out, err := nc.Tool(ctx, "tools", "restore", file, "--data-dir", nc.Procs[r1].DataDir, "--node-id", "r1", "--raft-addr", nc.Procs[r1].RaftAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", out)
	nc.Start(r1)
	r2 := nc.AddProc("r2", []string{nc.Procs[r1].GossipAddr}, "--bootstrap-expect", "3")
	r3 := nc.AddProc("r3", []string{nc.Procs[r1].GossipAddr}, "--bootstrap-expect", "3")
	nc.Start(r2)
	nc.Start(r3)
	nc.WaitVoters(r1, []string{"r1", "r2", "r3"}, 60*time.Second)

	newID := nc.waitClusterID([]int{r1, r2, r3}, 30*time.Second)
	if newID == oldID {
		t.Fatalf("the restored cluster kept the old identity %s", oldID)
	}
	var cl api.Metadata
	if err := nc.CtlJSON(r2, &cl, "cluster", "show-metadata", "--prefix", meta.KeyCluster); err != nil {
		t.Fatal(err)
	}
	var rec model.ClusterInfo
	if len(cl.Keys) != 1 || json.Unmarshal(cl.Keys[0].Value, &rec) != nil || rec.RestoredFrom != oldID || rec.ID != newID {
		t.Fatalf("cluster record %+v", cl.Keys)
	}

	cp, rep := e.continuesOn(nc, []string{"r1", "r2", "r3"}, atBackup)
	t.Logf("restored cluster %s (from %s): %d rows verified up to %d (checkpoint at the backup %d)", newID, oldID, rep.Expected, cp, atBackup)

	// Its upstream GC service is its own, not the old cluster's.
	var gc api.Metadata
	Eventually(t, 30*time.Second, "a GC record of the restored cluster", func() (bool, string) {
		if err := nc.CtlJSON(r1, &gc, "cluster", "show-metadata", "--prefix", meta.PrefixGC); err != nil {
			return false, err.Error()
		}
		for _, k := range gc.Keys {
			var g model.GCSafepoint
			if json.Unmarshal(k.Value, &g) == nil && strings.Contains(g.ServiceID, newID) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", gc.Keys)
	})
}

// continuesOn waits until the captures ids are alive and hold every table
// of e's changefeed on cluster c, and the checkpoint has moved on twice
// from from; then it verifies the sink there.
func (e *feedEnv) continuesOn(c *Cluster, ids []string, from model.Ts) (model.Ts, verify.StateReport) {
	e.t.Helper()
	for _, id := range ids {
		c.WaitCaptureAlive(id, 0, settleBound)
	}
	c.WaitAllAssignedOnce(e.id, e.tables, ids, 90*time.Second)
	cp := c.WaitCheckpointAbove(e.id, from, advanceBound)
	cp = c.WaitCheckpointAbove(e.id, cp, advanceBound)
	return cp, Verify(e.t, e.src, e.dir, e.start, cp)
}

// requireLong skips a test that takes minutes unless RAFTCDC_LONG_TESTS is
// set, as `make test-long` and CI (.ci/run) do: the default run stays
// short, and CI still runs every test.
func requireLong(t *testing.T, how string) {
	t.Helper()
	if os.Getenv("RAFTCDC_LONG_TESTS") == "" {
		t.Skipf("long test (%s): run it with make test-long, as CI does (or RAFTCDC_LONG_TESTS=1)", how)
	}
}
