package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/verify"
)

// feedEnv is a three-node cluster replicating one datagen → file
// changefeed, the setting most scenarios share.
type feedEnv struct {
	t      *testing.T
	c      *Cluster
	id     string
	src    string
	dir    string
	tables int
	start  model.Ts
}

// Bounds shared by the scenarios. They are generous for a loaded two-core
// CI machine; the measured values are logged.
const (
	ownerBound      = 15 * time.Second // kill → new agreed owner
	advanceBound    = 30 * time.Second // kill → checkpoint above its pre-kill value
	settleBound     = 45 * time.Second // every table on exactly one live capture
	rejoinBound     = 30 * time.Second // restart → caught up and capture registered
	samplerInterval = 100 * time.Millisecond
)

// startFeed starts three loopback nodes (extra server flags appended) and a
// changefeed of `tables` tables at `rate` rows/s per table, and waits until
// every table runs and the checkpoint has moved.
func startFeed(t *testing.T, tables int, rate string, extra ...string) *feedEnv {
	t.Helper()
	return startFeedWith(t, tables, rate, ClusterOptions{ExtraArgs: extra})
}

// startFeedWith is startFeed with cluster options (TLS, say).
// Every node records its table flushes, so that the scenario can check that
// no table was ever written by two captures at once (finish does).
func startFeedWith(t *testing.T, tables int, rate string, o ClusterOptions) *feedEnv {
	t.Helper()
	flushes := t.TempDir()
	o.ExtraArgs = append([]string{"--log-level", "info", "--record-flushes", flushes}, o.ExtraArgs...)
	c := StartCluster(t, binPath, 3, o)
	c.FlushDir = flushes
	return startFeedOn(t, c, tables, rate)
}

// startFeedOn is startFeed on a cluster the caller started.
func startFeedOn(t *testing.T, c *Cluster, tables int, rate string) *feedEnv {
	t.Helper()
	c.WaitForOwner(30*time.Second, 0)
	e := &feedEnv{t: t, c: c, id: "feed", tables: tables, dir: t.TempDir(),
		src: fmt.Sprintf("datagen://?tables=%d&rate=%s", tables, rate)}
	e.start = model.TsFromTime(time.Now().Add(-time.Second))
	c.CreateChangefeed(api.ChangefeedRequest{ID: e.id, SourceURI: e.src, SinkURI: StorageSinkURI(e.dir), StartTs: e.start})
	for _, p := range c.Procs {
		c.WaitCaptureAlive(p.ID, 0, settleBound)
	}
	c.WaitAllAssignedOnce(e.id, tables, nil, settleBound)
	c.WaitCheckpointAbove(e.id, e.start, advanceBound)
	return e
}

// checkpoint is a consistent read of the checkpoint; it fails the test when
// no node answers.
func (e *feedEnv) checkpoint() model.Ts {
	e.t.Helper()
	var cp model.Ts
	Eventually(e.t, 20*time.Second, "a consistent checkpoint read", func() (bool, string) {
		d, err := e.c.Detail(e.id)
		if err != nil {
			return false, err.Error()
		}
		cp = d.CheckpointTs()
		return true, ""
	})
	return cp
}

// settleAndVerify waits for every table to run exactly once and for the
// checkpoint to pass its current value, then runs the exact verifier up to
// that checkpoint.
func (e *feedEnv) settleAndVerify() verify.StateReport {
	e.t.Helper()
	e.c.WaitAllAssignedOnce(e.id, e.tables, nil, settleBound)
	cp := e.c.WaitCheckpointAbove(e.id, e.checkpoint(), advanceBound)
	return Verify(e.t, e.src, e.dir, e.start, cp)
}

// finish ends a scenario that sampled the checkpoint: it verifies the sink,
// stops the sampler and checks that the checkpoint never went backwards.
func (e *feedEnv) finish(s *Sampler) {
	e.t.Helper()
	rep := e.settleAndVerify()
	s.Stop()
	sr := s.Report()
	sr.Check(e.t)
	w := e.c.CheckWriters()
	e.t.Logf("%d rows verified, %d duplicates; %d checkpoint reads, longest stall %v; %s", rep.Expected, rep.Duplicates, sr.Reads, sr.LongestStall.Round(time.Millisecond), w)
}

// assertNoDoubleAssignment watches the task statuses for d and fails if any
// table is ever held by two captures.
func (e *feedEnv) assertNoDoubleAssignment(d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	reads := 0
	for time.Now().Before(deadline) {
		if det, err := e.c.Detail(e.id); err == nil {
			reads++
			if dbl := DoubleAssigned(det); len(dbl) > 0 {
				e.t.Fatalf("tables on two captures: %v", dbl)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if reads == 0 {
		e.t.Fatal("no changefeed read succeeded while watching for double assignment")
	}
}

// rejoin restarts node i and waits until it has caught up and its capture
// is registered again with a new incarnation.
func (e *feedEnv) rejoin(i int, oldInc uint64) {
	e.t.Helper()
	e.c.Restart(i)
	e.c.WaitCaughtUp(rejoinBound)
	e.c.WaitCaptureAlive(e.c.Procs[i].ID, oldInc, rejoinBound)
}
