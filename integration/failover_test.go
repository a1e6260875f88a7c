package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// Scenario 2: a 32-table changefeed keeps replicating while the leader (and
// owner) is killed with SIGKILL again and again, the dead node restarted
// each time. After each kill a new owner appears and the checkpoint moves
// past the moment of the kill within a bound; the checkpoint each node shows never goes down; at
// the end no row at or below the final checkpoint is missing.
func TestLeaderKillLoop(t *testing.T) {
	e := startFeed(t, 32, "20")
	c := e.c
	s := c.SampleCheckpoints(e.id, samplerInterval)
	var failovers, recoveries durations
	for k := 0; k < *flagKills; k++ {
		o := c.WaitForOwner(ownerBound, 0)
		before := e.checkpoint()
		inc := c.Incarnation(o.ID)
		c.Kill(o.Index, syscall.SIGKILL)
		killed := time.Now()
		n := c.WaitForOwner(ownerBound, o.Epoch)
		failovers = append(failovers, time.Since(killed))
		if n.Index == o.Index {
			t.Fatalf("kill %d: the killed node %s is owner again", k+1, o.ID)
		}
		if n.Term <= o.Term {
			t.Fatalf("kill %d: new owner %s has term %d, not above the old %d", k+1, n.ID, n.Term, o.Term)
		}
		// Above the moment of the kill, not just above the last value read:
		// that needs the dead capture's tables replicating elsewhere.
		cp := c.WaitCheckpointAbove(e.id, model.TsFromTime(killed), advanceBound)
		recoveries = append(recoveries, time.Since(killed))
		t.Logf("kill %d: %s (epoch %d, term %d) → owner %s (epoch %d, term %d) in %v; checkpoint %d → %d after %v",
			k+1, o.ID, o.Epoch, o.Term, n.ID, n.Epoch, n.Term, failovers[k].Round(time.Millisecond), before, cp, recoveries[k].Round(time.Millisecond))
		e.rejoin(o.Index, inc)
	}
	rep := e.settleAndVerify()
	s.Stop()
	sr := s.Report()
	sr.Check(t)
	t.Logf("%d kills: failover %v; checkpoint moving again %v; %d checkpoint reads, longest stall %v; %d rows verified, %d duplicates",
		*flagKills, failovers, recoveries, sr.Reads, sr.LongestStall.Round(time.Millisecond), rep.Expected, rep.Duplicates)
}
