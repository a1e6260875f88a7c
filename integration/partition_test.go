package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// Scenario 8: the leader's network link is cut, so it is alone and the two
// others are a majority. The majority elects a new owner and takes over the
// isolated node's tables; the isolated node steps down and, after the
// quorum-loss bound, stops writing to the sink (its sink directory is still
// reachable: the partition is only between nodes). When the link comes
// back it follows the new leader, finds its capture fenced and registers
// again; no table runs on two captures and the verifier passes.
func TestLeaderPartitioned(t *testing.T) {
	lab := newNetLab(t, 3)
	c := startNetCluster(t, lab)
	e := startFeedOn(t, c, 12, "20")
	s := c.SampleCheckpoints(e.id, samplerInterval)
	o := c.WaitForOwner(ownerBound, 0)
	oldInc := c.Incarnation(o.ID)
	fencedBefore, _, err := c.Metric(o.Index, "raftcdc_processor_fenced_total")
	if err != nil {
		t.Fatal(err)
	}
	var majority []int
	var majorityIDs []string
	for i, p := range c.Procs {
		if i != o.Index {
			majority, majorityIDs = append(majority, i), append(majorityIDs, p.ID)
		}
	}

	lab.Cut(o.Index)
	cut := time.Now()
	n := c.WaitForOwnerAmong(ownerBound, o.Epoch, majority)
	t.Logf("cut %s (owner epoch %d, term %d); %s owner (epoch %d, term %d) after %v",
		o.ID, o.Epoch, o.Term, n.ID, n.Epoch, n.Term, time.Since(cut).Round(time.Millisecond))
	Eventually(t, ownerBound, o.ID+" to step down", func() (bool, string) {
		st, err := c.Status(o.Index)
		return err == nil && st.RaftState != "Leader", fmt.Sprintf("%+v %v", st, err)
	})
	// The isolated node closes its local fence: its sink writes stop.
	Eventually(t, 20*time.Second, o.ID+"'s local fence", func() (bool, string) {
		g, _, err := c.Metric(o.Index, "raftcdc_processor_local_fence")
		return err == nil && g == 1, fmt.Sprintf("raftcdc_processor_local_fence %v %v", g, err)
	})
	fenced := time.Since(cut)
	c.WaitAllAssignedOnce(e.id, e.tables, majorityIDs, settleBound)
	c.WaitCheckpointAbove(e.id, model.TsFromTime(cut), advanceBound)
	t.Logf("%s fenced locally after %v; its tables run on %v; checkpoint past the cut after %v",
		o.ID, fenced.Round(time.Millisecond), majorityIDs, time.Since(cut).Round(time.Millisecond))
	// Still cut off: nothing more reaches the sink from it. The count is
	// read only now: a flush that committed just before its lease ended
	// may count a moment after the fence gauge reads 1, and sink calls end
	// by their lease's deadline, long past once the tables moved.
	flushed, _, err := c.Metric(o.Index, "raftcdc_processor_rows_flushed_total", "changefeed="+e.id)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if f, _, err := c.Metric(o.Index, "raftcdc_processor_rows_flushed_total", "changefeed="+e.id); err != nil || f != flushed {
		t.Fatalf("%s flushed rows while fenced: %v → %v (%v)", o.ID, flushed, f, err)
	}

	lab.Heal(o.Index)
	healed := time.Now()
	Eventually(t, ownerBound, o.ID+" to follow the new leader", func() (bool, string) {
		st, err := c.Status(o.Index)
		if err != nil {
			return false, err.Error()
		}
		cur, ok := c.CurrentOwner()
		return ok && st.RaftState == "Follower" && st.LeaderID == cur.ID && cur.Index != o.Index, fmt.Sprintf("%+v", st)
	})
	Eventually(t, rejoinBound, o.ID+" fenced, re-registered and unfenced", func() (bool, string) {
		f, _, err1 := c.Metric(o.Index, "raftcdc_processor_fenced_total")
		g, _, err2 := c.Metric(o.Index, "raftcdc_processor_local_fence")
		return err1 == nil && err2 == nil && f > fencedBefore && g == 0, fmt.Sprintf("fenced_total %v (was %v), local_fence %v", f, fencedBefore, g)
	})
	c.WaitCaptureAlive(o.ID, oldInc, rejoinBound)
	t.Logf("%s back %v after the heal", o.ID, time.Since(healed).Round(time.Millisecond))
	e.assertNoDoubleAssignment(2 * time.Second)
	e.finish(s)
}
