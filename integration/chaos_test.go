package integration

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// TestChaosShort is the chaos run of the default test run.
func TestChaosShort(t *testing.T) {
	if *flagChaosShort <= 0 {
		t.Skip("-chaos-short=0")
	}
	runChaos(t, *flagChaosShort, 16)
}

// TestChaosLong is `make chaos DURATION=30m`: the same run for as long as
// -chaos-duration says, on 32 tables.
func TestChaosLong(t *testing.T) {
	if *flagChaosDuration <= 0 {
		t.Skip("set -chaos-duration (make chaos DURATION=30m) to run it")
	}
	runChaos(t, *flagChaosDuration, 32)
}

// fault is one kind of trouble the chaos run causes.
type fault string

const (
	faultKill  fault = "kill -9"
	faultStop  fault = "SIGSTOP/SIGCONT"
	faultTerm  fault = "SIGTERM" // drains the node first (--drain-timeout)
	faultDrain fault = "drain"   // ctl capture drain, then SIGTERM and back
	faultQuiet fault = "none"    // a stretch of plain replication
)

// chaosStats is what the run measured.
type chaosStats struct {
	faults     map[string]int // "kill -9 leader" → count
	failovers  durations      // leader fault → new agreed owner
	recoveries durations      // fault → checkpoint past the fault
	rejoins    durations      // node back → caught up and capture registered
	drains     durations      // drain request → capture holds no table
}

// runChaos replicates a changefeed while, one node at a time, it kills
// (-9), freezes (SIGSTOP, then SIGCONT), stops (SIGTERM, which drains it
// first) or drains through the API and then stops a random node, leader or
// not, and brings it back. Between faults the cluster is whole
// again, so never more than one of three nodes is down. Every fault must be
// followed by an owner and by the checkpoint passing the fault's start within
// the scenario bounds; the checkpoint no node shows may ever go down; at
// the end the verifier must pass, and no table may ever have been flushed
// by two captures at once (every node records its flushes). It logs a
// summary.
func runChaos(t *testing.T, d time.Duration, tables int) {
	seed := *flagChaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos: %v on %d tables, seed %d (repeat with -chaos-seed=%d), TLS %v", d, tables, seed, seed, *flagChaosTLS)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	e := startFeedWith(t, tables, "20", ClusterOptions{TLS: *flagChaosTLS})
	c := e.c
	s := c.SampleCheckpoints(e.id, samplerInterval)
	s.ResetStall()
	st := chaosStats{faults: map[string]int{}}
	began := time.Now()
	for time.Since(began) < d {
		kind := []fault{faultKill, faultKill, faultKill, faultStop, faultStop, faultTerm, faultDrain, faultQuiet}[rng.IntN(8)]
		o := c.WaitForOwner(ownerBound, 0)
		victim := rng.IntN(len(c.Procs))
		if rng.IntN(2) == 0 {
			victim = o.Index // half the faults hit the owner
		}
		role := "follower"
		if victim == o.Index {
			role = "leader"
		}
		if kind == faultQuiet {
			time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
			st.faults[string(kind)]++
			continue
		}
		st.faults[fmt.Sprintf("%s %s", kind, role)]++
		id := c.Procs[victim].ID
		inc := c.Incarnation(id)
		var others []int
		for i := range c.Procs {
			if i != victim {
				others = append(others, i)
			}
		}
		start := time.Now()
		down := time.Duration(300+rng.IntN(4700)) * time.Millisecond
		switch kind {
		case faultKill, faultTerm:
			sig := syscall.SIGKILL
			if kind == faultTerm {
				sig = syscall.SIGTERM
			}
			c.Kill(victim, sig)
			if victim == o.Index {
				c.WaitForOwnerAmong(ownerBound, o.Epoch, others)
				st.failovers = append(st.failovers, time.Since(start))
			}
			// The checkpoint passes the fault while the node is still
			// down: its tables run elsewhere.
			c.WaitCheckpointAbove(e.id, model.TsFromTime(start), advanceBound)
			st.recoveries = append(st.recoveries, time.Since(start))
			if rest := down - time.Since(start); rest > 0 {
				time.Sleep(rest)
			}
			back := time.Now()
			e.rejoin(victim, inc)
			st.rejoins = append(st.rejoins, time.Since(back))
		case faultDrain:
			// What a rolling upgrade does: empty the capture through the
			// API, then stop the node (nothing left to drain) and start it.
			c.DrainCapture(id, settleBound)
			st.drains = append(st.drains, time.Since(start))
			c.Kill(victim, syscall.SIGTERM)
			if victim == o.Index {
				c.WaitForOwnerAmong(ownerBound, o.Epoch, others)
				st.failovers = append(st.failovers, time.Since(start))
			}
			c.WaitCheckpointAbove(e.id, model.TsFromTime(start), advanceBound)
			st.recoveries = append(st.recoveries, time.Since(start))
			back := time.Now()
			e.rejoin(victim, inc)
			st.rejoins = append(st.rejoins, time.Since(back))
		case faultStop:
			c.Pause(victim)
			failedOver := false
			deadline := time.Now().Add(down)
			for time.Now().Before(deadline) {
				if victim == o.Index && !failedOver {
					if n, ok := c.CurrentOwner(others...); ok && n.Epoch > o.Epoch {
						failedOver = true
						st.failovers = append(st.failovers, time.Since(start))
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			c.Resume(victim)
			back := time.Now()
			c.WaitCheckpointAbove(e.id, model.TsFromTime(start), advanceBound)
			st.recoveries = append(st.recoveries, time.Since(start))
			c.WaitCaughtUp(rejoinBound)
			// Frozen long enough, its capture was evicted and it
			// registers again; either way it ends up alive.
			c.WaitCaptureAlive(id, 0, rejoinBound)
			st.rejoins = append(st.rejoins, time.Since(back))
		}
		t.Logf("%6.1fs %-15s %s (%s) for %v", time.Since(began).Seconds(), kind, id, role, time.Since(start).Round(time.Millisecond))
	}
	rep := e.settleAndVerify()
	e.assertNoDoubleAssignment(time.Second)
	s.Stop()
	sr := s.Report()
	sr.Check(t)
	// The writer check reads every flush every node made: it fails the run
	// on any table flushed by two captures at once.
	wr := c.CheckWriters()

	var kinds []string
	total := 0
	for k, n := range st.faults {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
		if k != string(faultQuiet) {
			total += n
		}
	}
	sort.Strings(kinds)
	summary := []string{
		fmt.Sprintf("chaos summary: %v, %d tables, seed %d, mutual TLS %v", time.Since(began).Round(time.Second), tables, seed, *flagChaosTLS),
		fmt.Sprintf("  faults: %d (%s)", total, strings.Join(kinds, ", ")),
		fmt.Sprintf("  failover (leader fault → new agreed owner): %v", st.failovers),
		fmt.Sprintf("  recovery (fault → checkpoint past it): %v", st.recoveries),
		fmt.Sprintf("  rejoin (node back → caught up, capture registered): %v", st.rejoins),
		fmt.Sprintf("  drain (request → capture holds no table): %v", st.drains),
		fmt.Sprintf("  writers: %d table flushes by %d capture incarnations, %d overlaps (two writers on one table), %d flushes refused by a writer fence", wr.Flushes, wr.Writers, len(wr.Overlaps), wr.Fenced),
		fmt.Sprintf("  checkpoint stalls over %v: %d, longest %v; %d checkpoint reads, 0 decreases", stallThreshold, len(sr.Stalls), sr.LongestStall.Round(time.Millisecond), sr.Reads),
		fmt.Sprintf("  rows verified: %d (all present), change events: %d, duplicates: %d, DDLs: %d", rep.Expected, rep.Events, rep.Duplicates, rep.DDLs),
	}
	t.Log("\n" + strings.Join(summary, "\n"))
	if total == 0 {
		t.Fatal("the chaos run caused no fault")
	}
}
