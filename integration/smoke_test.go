package integration

import (
	"syscall"
	"testing"
	"time"
)

// Three processes form a cluster with --join; kill -9 of the leader leaves a
// new leader and the write made before the kill.
func TestSmokeKillLeader(t *testing.T) {
	c := StartCluster(t, binPath, 3, ClusterOptions{Order: []int{2, 0, 1}})
	leader := c.WaitForLeader(30 * time.Second)
	if err := c.Put(leader, "before-kill", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	c.Kill(leader, syscall.SIGKILL)
	killed := time.Now()
	newLeader := c.WaitForLeader(15 * time.Second)
	if newLeader == leader {
		t.Fatal("killed process reported as leader")
	}
	t.Logf("new leader %s after %v", c.Procs[newLeader].ID, time.Since(killed))
	for i := range c.Procs {
		if !c.Running(i) {
			continue
		}
		v, err := c.Get(i, "before-kill", true)
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		if string(v) != `{"n":1}` {
			t.Fatalf("node %d: before-kill = %s", i+1, v)
		}
	}
	// The dead node comes back with its data dir and catches up.
	if err := c.Put(newLeader, "after-kill", 2); err != nil {
		t.Fatal(err)
	}
	c.Restart(leader)
	WaitFor(t, 20*time.Second, "restarted node to catch up", func() bool {
		v, err := c.Get(leader, "after-kill", false)
		return err == nil && string(v) == "2"
	})
}
