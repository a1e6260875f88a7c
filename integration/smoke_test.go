package integration

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// Three processes form a cluster with --join; kill -9 of the leader leaves a
// new leader and the write made before the kill.
func TestSmokeKillLeader(t *testing.T) {
	c := StartCluster(t, binPath, 3, ClusterOptions{Order: []int{2, 0, 1}})
	c.WaitForLeader(30 * time.Second)
	// Puts and consistent reads are asked again after a failure (a lost
	// leader, a 503, the client's timeout on a loaded machine): a put of
	// the same value is harmless to repeat, and a failed read shows
	// nothing.
	c.PutEventually("before-kill", map[string]int{"n": 1}, 30*time.Second)
	// The leader as it is now: it may have changed during the put.
	leader := c.WaitForLeader(30 * time.Second)
	c.Kill(leader, syscall.SIGKILL)
	killed := time.Now()
	// An election with gossip's and Raft's timeouts: 30 s on a loaded
	// two-core machine under -race.
	newLeader := c.WaitForLeader(30 * time.Second)
	if newLeader == leader {
		t.Fatal("killed process reported as leader")
	}
	t.Logf("new leader %s after %v", c.Procs[newLeader].ID, time.Since(killed))
	for i := range c.Procs {
		if !c.Running(i) {
			continue
		}
		var v []byte
		Eventually(t, 30*time.Second, fmt.Sprintf("a consistent read on node %d", i+1), func() (bool, string) {
			var err error
			v, err = c.Get(i, "before-kill", true)
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		if string(v) != `{"n":1}` {
			t.Fatalf("node %d: before-kill = %s", i+1, v)
		}
	}
	// The dead node comes back with its data dir and catches up.
	c.PutEventually("after-kill", 2, 30*time.Second)
	c.Restart(leader)
	WaitFor(t, 20*time.Second, "restarted node to catch up", func() bool {
		v, err := c.Get(leader, "after-kill", false)
		return err == nil && string(v) == "2"
	})
}
