package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// The scenarios in this file show the lease rule (processor/DESIGN.md,
// "Writers are fenced"): a capture that is frozen, cut off or killed never
// flushes a table while another capture flushes it. Every node records its
// table flushes (--record-flushes); CheckWriters fails on any overlap.

// TestNoTwoWritersWhileFollowerFrozen freezes a follower (not the owner)
// with SIGSTOP for 0.5, 1, 2, 3, 5 and 8 seconds, one after the other, and
// lets it go on. Short freezes end before its lease, long ones after the
// owner has given its tables to the others; in between, the follower's
// buffered rows must not reach the sink after it was replaced, and its
// flushes must never overlap another capture's on the same table.
func TestNoTwoWritersWhileFollowerFrozen(t *testing.T) {
	e := startFeed(t, 12, "20")
	c := e.c
	s := c.SampleCheckpoints(e.id, samplerInterval)
	for _, d := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second, 5 * time.Second, 8 * time.Second} {
		o := c.WaitForOwner(ownerBound, 0)
		victim := (o.Index + 1) % len(c.Procs)
		id := c.Procs[victim].ID
		inc := c.Incarnation(id)
		c.Pause(victim)
		stopped := time.Now()
		time.Sleep(d)
		c.Resume(victim)
		c.WaitCheckpointAbove(e.id, model.TsFromTime(stopped), advanceBound)
		c.WaitCaughtUp(rejoinBound)
		now := c.WaitCaptureAlive(id, 0, rejoinBound)
		rep := c.CheckWriters()
		t.Logf("%s frozen %v: incarnation %s; back and caught up after %v; %s", id, d,
			map[bool]string{true: "kept", false: "replaced"}[now == inc], time.Since(stopped).Round(time.Millisecond), rep)
	}
	e.assertNoDoubleAssignment(time.Second)
	e.finish(s)
}

// TestNoTwoWritersOnLeaderKill kills the leader (and owner) with SIGKILL
// twice; its tables move to the others, and no table is flushed by two
// captures at once.
func TestNoTwoWritersOnLeaderKill(t *testing.T) {
	e := startFeed(t, 12, "20")
	c := e.c
	s := c.SampleCheckpoints(e.id, samplerInterval)
	for k := 0; k < 2; k++ {
		o := c.WaitForOwner(ownerBound, 0)
		inc := c.Incarnation(o.ID)
		c.Kill(o.Index, syscall.SIGKILL)
		killed := time.Now()
		n := c.WaitForOwner(ownerBound, o.Epoch)
		newOwner := time.Since(killed)
		c.WaitCheckpointAbove(e.id, model.TsFromTime(killed), advanceBound)
		t.Logf("kill %d: %s → owner %s after %v; checkpoint past the kill after %v; %s", k+1, o.ID, n.ID,
			newOwner.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), c.CheckWriters())
		e.rejoin(o.Index, inc)
	}
	e.finish(s)
}

// TestNoTwoWritersWhenFollowerPartitioned cuts a follower's network link
// (network namespaces) while the sink stays reachable to it. The follower
// loses its lease and stops writing; only after its lease and the margin
// have passed does the owner give its tables to the others; when the link
// comes back it is proven current (or fenced) before it writes again.
func TestNoTwoWritersWhenFollowerPartitioned(t *testing.T) {
	lab := newNetLab(t, 3)
	c := startNetCluster(t, lab)
	e := startFeedOn(t, c, 12, "20")
	s := c.SampleCheckpoints(e.id, samplerInterval)
	o := c.WaitForOwner(ownerBound, 0)
	victim := (o.Index + 1) % len(c.Procs)
	id := c.Procs[victim].ID
	var others []string
	for i, p := range c.Procs {
		if i != victim {
			others = append(others, p.ID)
		}
	}
	lab.Cut(victim)
	cut := time.Now()
	c.WaitAllAssignedOnce(e.id, e.tables, others, settleBound)
	moved := time.Since(cut)
	c.WaitCheckpointAbove(e.id, model.TsFromTime(cut), advanceBound)
	t.Logf("%s cut off; its tables on %v after %v; checkpoint past the cut after %v", id, others, moved.Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	lab.Heal(victim)
	c.WaitCaughtUp(rejoinBound)
	c.WaitCaptureAlive(id, 0, rejoinBound)
	e.assertNoDoubleAssignment(time.Second)
	e.finish(s)
}
