package integration

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// upgradeFrom is the earlier commit of main the rolling-upgrade scenario
// starts from: the last one before Raft log stores, schema versions and the
// cluster record (its nodes keep their log in raft.db, gossip no versions,
// and know no /cluster key). Its server speaks every flag the harness uses.
const upgradeFrom = "c50c794334bf221d00b15e5f43037fc3c99d0d8d"

// buildAt builds cmd/raftcdc as it was at commit, from a git worktree of
// this checkout, and returns the binary. A clone without that commit (a
// shallow one) fails the test with what to do.
func buildAt(t *testing.T, commit string) string {
	t.Helper()
	root := repoRoot()
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("the rolling-upgrade test builds raftcdc at %s, an earlier commit of main, but this checkout does not have it (%v: %s). "+
			"A shallow clone lacks the history: fetch it with 'git fetch --unshallow' (or clone with the full history)", commit, err, strings.TrimSpace(string(out)))
	}
	src := filepath.Join(t.TempDir(), "src-"+commit[:7])
	if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", src, commit).CombinedOutput(); err != nil {
		t.Fatalf("checking out %s with git worktree: %v\n%s", commit, err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("git", "-C", root, "worktree", "remove", "--force", src).Run()
		_ = exec.Command("git", "-C", root, "worktree", "prune").Run()
	})
	bin := filepath.Join(t.TempDir(), "raftcdc-"+commit[:7])
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=old-"+commit[:7], "-o", bin, "./cmd/raftcdc")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building raftcdc at %s: %v\n%s", commit, err, out)
	}
	return bin
}

// TestLongRollingUpgradeFromAnEarlierBuild: three nodes of an earlier build
// replicate a changefeed; each is stopped cleanly (SIGTERM: a leader hands
// leadership over first, the node gossips that it is draining; the drain of
// the control-plane issue is not on main yet) and started again with the
// current build on the same data dir, the leader first. The checkpoint never
// stands still longer than stallBound, never goes back, and nothing is
// missing downstream. While any voter runs the old build, the new nodes
// write no cluster record (the old build would refuse it and its replica
// would differ); once all run the new build, the leader records it, and
// every node keeps its old Raft log store.
func TestLongRollingUpgradeFromAnEarlierBuild(t *testing.T) {
	requireLong(t, "rolling upgrade from an earlier build")
	old := buildAt(t, upgradeFrom)
	c := NewClusterFromTemplate(t, old, 3, ClusterOptions{ExtraArgs: []string{"--log-level", "info"}})
	for i := range c.Procs {
		c.Start(i)
	}
	e := startFeedOn(t, c, 6, "50")
	for i := range c.Procs {
		if s, err := c.Status(i); err != nil || s.Version != "old-"+upgradeFrom[:7] {
			t.Fatalf("%s runs %q (%v), not the old build", c.Procs[i].ID, s.Version, err)
		}
	}
	s := c.SampleCheckpoints(e.id, samplerInterval)
	s.ResetStall()
	order := ownerFirst(c)
	for k, i := range order {
		id := c.Procs[i].ID
		inc := c.Incarnation(id)
		c.Kill(i, syscall.SIGTERM)
		c.Procs[i].Bin = binPath
		c.Start(i)
		c.WaitCaptureAlive(id, inc, rejoinBound)
		c.WaitCaughtUp(rejoinBound)
		st, err := c.Status(i)
		if err != nil || st.Version == "old-"+upgradeFrom[:7] || st.LogStore != "boltdb" {
			t.Fatalf("%s after its upgrade: %+v %v (want the new build, keeping its boltdb log)", id, st, err)
		}
		if k < len(order)-1 {
			// Some reconcile passes with an old voter left: no record.
			time.Sleep(5 * time.Second)
			for _, j := range order[:k+1] {
				if st, err := c.Status(j); err == nil && st.ClusterID != "" {
					t.Fatalf("%s reports cluster %s (schema %d) while a voter still runs the old build", c.Procs[j].ID, st.ClusterID, st.SchemaVersion)
				}
			}
		}
		r := s.Report()
		t.Logf("%s upgraded; longest checkpoint stall so far %v", id, r.LongestStall.Round(time.Millisecond))
		if r.LongestStall > stallBound {
			t.Fatalf("the checkpoint stood still for %v (ending %s), more than %v", r.LongestStall, r.StallEnd.Format("15:04:05.000"), stallBound)
		}
	}
	clusterID := c.waitClusterID([]int{0, 1, 2}, 30*time.Second)
	for i := range c.Procs {
		// A status read that fails (the client's timeout on a loaded
		// machine) says nothing about the schema: it is asked again.
		var st Status
		Eventually(t, 20*time.Second, c.Procs[i].ID+"'s status", func() (bool, string) {
			var err error
			st, err = c.Status(i)
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		if st.SchemaVersion != meta.SchemaVersion {
			t.Errorf("%s runs schema %d after the upgrade, want %d", c.Procs[i].ID, st.SchemaVersion, meta.SchemaVersion)
		}
	}
	t.Logf("all nodes upgraded; the cluster recorded itself as %s", clusterID)
	// Not e.finish: its writer check needs --record-flushes, which the
	// earlier build does not know.
	rep := e.settleAndVerify()
	s.Stop()
	s.Report().Check(t)
	t.Logf("%d rows verified, %d duplicates", rep.Expected, rep.Duplicates)
	if r := s.Report(); r.LongestStall > stallBound {
		t.Errorf("the checkpoint stood still for %v, more than %v", r.LongestStall, stallBound)
	}
	// At schema 3 the owner moves the changefeed's table set out of the
	// status, which the old build wrote with its tables inline. (Asked
	// with this build's ctl: the old one has no show-metadata.)
	c.Bin = binPath
	Eventually(t, 30*time.Second, fmt.Sprintf("the table set moved out of the status at schema %d", meta.SchemaVersion), func() (bool, string) {
		var set, status api.Metadata
		if err := c.CtlJSON(0, &set, "cluster", "show-metadata", "--prefix", meta.ChangefeedTablesKey(e.id)); err != nil {
			return false, err.Error()
		}
		if err := c.CtlJSON(0, &status, "cluster", "show-metadata", "--prefix", meta.ChangefeedStatusKey(e.id)); err != nil {
			return false, err.Error()
		}
		var rec model.ChangefeedTables
		var st model.ChangefeedStatus
		switch {
		case len(set.Keys) != 1 || json.Unmarshal(set.Keys[0].Value, &rec) != nil || len(rec.Tables) != 6:
			return false, fmt.Sprintf("table-set record %+v, want the changefeed's 6 tables", set.Keys)
		case len(status.Keys) != 1 || json.Unmarshal(status.Keys[0].Value, &st) != nil || len(st.Tables) != 0:
			return false, fmt.Sprintf("status %+v, want it without its tables", status.Keys)
		}
		return true, ""
	})
}
