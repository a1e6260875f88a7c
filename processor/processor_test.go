package processor

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

const fastSource = "tables=3&rate=200&resolve-interval=10ms"

func TestReplicatesAssignedTables(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	f.create(c, maxTs, 1, 2, 3)
	// No leader at first: registration has to retry.
	c.setFailNext(3)
	e := startManager(t, c, nil)

	caughtUp := model.TsFromTime(time.Now())
	pos := c.waitPosition("all three tables past the present", func(p model.TaskPosition) bool {
		return len(p.Running) == 3 && p.CheckpointTs >= caughtUp
	})
	if pos.Error != nil || pos.Count == 0 || pos.ResolvedTs < pos.CheckpointTs {
		t.Fatalf("position %+v", pos)
	}
	// At schema 3 the stored form is grouped by checkpoint.
	if raw := c.rawPosition(); !strings.Contains(raw, `"running_grouped":[`) || strings.Contains(raw, `"running":`) {
		t.Fatalf("stored position %s: want the running tables grouped", raw)
	}
	for id, cp := range pos.Running {
		if cp < pos.CheckpointTs {
			t.Fatalf("table %d checkpoint %d below the processor checkpoint %d", id, cp, pos.CheckpointTs)
		}
		// Rows flushed after the report may be there too, but nothing
		// beyond what the source has produced by now.
		f.checkSink(t, id, cp, 0)
	}

	var wl model.TaskWorkload
	waitUntil(t, "the workload lists every table", func() bool {
		return c.get(meta.TaskWorkloadKey(testFeed, testCapture), &wl) && len(wl) == 3
	})
	infos := e.m.Processors()
	if len(infos) != 1 || infos[0].Changefeed != testFeed || len(infos[0].Tables) != 3 || infos[0].State != StateRunning {
		t.Fatalf("Processors() = %+v", infos)
	}
	if e.m.Incarnation() == 0 {
		t.Fatal("no incarnation after registration")
	}
	var ci model.CaptureInfo
	if !c.get(meta.CaptureKey(testCapture), &ci) || ci.Incarnation != e.m.Incarnation() || ci.AdvertiseAddr != "127.0.0.1:8300" {
		t.Fatalf("capture record %+v, manager incarnation %d", ci, e.m.Incarnation())
	}
}

func TestCheckpointNeverPassesFlush(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	f.create(c, maxTs, 1)
	release := make(chan struct{})
	// The block is in place before the pipeline can flush anything.
	e := startManager(t, c, nil, func(p *probe) { p.setBlock(release) })

	c.waitPosition("rows resolved while the flush is held", func(p model.TaskPosition) bool {
		return len(p.Running) == 1 && p.ResolvedTs > f.startTs
	})
	waitUntil(t, "a flush is held", func() bool { return e.probe.entered.Load() > 0 })
	// Several report intervals pass; the checkpoint must stay where the
	// last completed flush left it: the start.
	hold := time.Now().Add(10 * e.m.cfg.FlushInterval)
	for time.Now().Before(hold) {
		pos, _ := c.position()
		if pos.Running[1] != f.startTs || pos.CheckpointTs != f.startTs {
			t.Fatalf("checkpoint moved to %d (table %d) while the flush was held; start %d", pos.CheckpointTs, pos.Running[1], f.startTs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rows := f.sinkRows(t, 1); len(rows) != 0 {
		t.Fatalf("%d rows reached the sink before any flush completed", len(rows))
	}

	e.probe.setBlock(nil)
	close(release)
	pos := c.waitPosition("checkpoint advances once flushes complete", func(p model.TaskPosition) bool {
		return p.Running[1] > f.startTs
	})
	f.checkSink(t, 1, pos.Running[1], 0)
}

func TestFlushBarrierCapsCheckpoint(t *testing.T) {
	c := newCluster(t)
	start := time.Now().Add(-2 * time.Second)
	f := newFeed(t, fastSource, model.TsFromTime(start))
	barrier := model.TsFromTime(start.Add(time.Second))
	f.create(c, barrier, 1)
	startManager(t, c, nil)

	c.waitPosition("table resolved past the barrier, flushed exactly to it", func(p model.TaskPosition) bool {
		return p.Running[1] == barrier && p.ResolvedTs > barrier
	})
	f.checkSink(t, 1, barrier, barrier)

	c.setBarrier(f, maxTs)
	now := model.TsFromTime(time.Now())
	pos := c.waitPosition("checkpoint follows the raised barrier", func(p model.TaskPosition) bool {
		return p.Running[1] >= now
	})
	f.checkSink(t, 1, pos.Running[1], 0)
}

// TestIdleTableFollowsTheBarrierWithoutFlushing: a table with nothing
// buffered is not woken, and its sink not called, to flush nothing at every
// barrier step; its checkpoint follows the barrier all the same, stands
// still while the capture has no lease, and moves on when it is back.
func TestIdleTableFollowsTheBarrierWithoutFlushing(t *testing.T) {
	c := newCluster(t)
	start := time.Now().Add(-2 * time.Second)
	// One row per table every ~3 hours: the tables are idle throughout.
	f := newFeed(t, "tables=2&rate=0.0001&resolve-interval=10ms", model.TsFromTime(start))
	barrier := model.TsFromTime(start.Add(time.Second))
	f.create(c, barrier, 1, 2)
	e := startManager(t, c, nil)
	c.waitPosition("both tables at the first barrier", func(p model.TaskPosition) bool {
		return len(p.Running) == 2 && p.CheckpointTs == barrier
	})
	flushes := e.probe.flushes.Load()

	for step := range 5 {
		barrier = model.TsFromTime(start.Add(time.Second + time.Duration(step+1)*100*time.Millisecond))
		c.setBarrier(f, barrier)
		c.waitPosition("both tables follow the barrier step", func(p model.TaskPosition) bool {
			return p.Running[1] == barrier && p.Running[2] == barrier
		})
	}
	if n := e.probe.flushes.Load() - flushes; n != 0 {
		t.Fatalf("%d sink flushes while the tables had nothing to flush", n)
	}
	e.lease.setCut(true)
	waitUntil(t, "sink writes paused", e.m.gate.drained)
	held := barrier
	c.setBarrier(f, model.TsFromTime(start.Add(1900*time.Millisecond)))
	hold := time.Now().Add(10 * e.m.cfg.FlushInterval)
	for time.Now().Before(hold) {
		if pos, _ := c.position(); pos.CheckpointTs != held {
			t.Fatalf("checkpoint moved from %d to %d without a lease", held, pos.CheckpointTs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.lease.setCut(false)
	c.waitPosition("the checkpoint follows the barrier once the lease is back", func(p model.TaskPosition) bool {
		return p.CheckpointTs == model.TsFromTime(start.Add(1900*time.Millisecond))
	})
}

// TestTablesIdleBetweenRowsLoseNothing: at a few rows a second each
// table spends most of its time idle (its checkpoint settled without a
// flush) and wakes for every row; every row still arrives, exactly once.
func TestTablesIdleBetweenRowsLoseNothing(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, "tables=3&rate=5&resolve-interval=10ms", pastTs(3*time.Second))
	f.create(c, maxTs, 1, 2, 3)
	startManager(t, c, nil)
	target := model.TsFromTime(time.Now().Add(2 * time.Second))
	pos := c.waitPosition("every table two seconds past the present", func(p model.TaskPosition) bool {
		return len(p.Running) == 3 && p.CheckpointTs >= target
	})
	for id, cp := range pos.Running {
		f.checkSink(t, id, cp, 0)
	}
}

// TestARestartReplaysWhatTheLastAttemptReadButDidNotFlush: a table reads
// rows past the barrier, its flush fails, and the pipeline restarts from
// the checkpoint; the rows the failed attempt had read come again and are
// flushed. (An idle table once settled its checkpoint on the resolved ts
// the failed attempt had reached, and the new attempt dropped the replayed
// rows as already resolved.)
func TestARestartReplaysWhatTheLastAttemptReadButDidNotFlush(t *testing.T) {
	c := newCluster(t)
	start := time.Now().Add(-3 * time.Second)
	f := newFeed(t, "tables=1&rate=50&resolve-interval=10ms", model.TsFromTime(start))
	barrier := model.TsFromTime(start.Add(time.Second))
	f.create(c, barrier, 1)
	e := startManager(t, c, nil)
	ahead := model.TsFromTime(start.Add(2 * time.Second))
	c.waitPosition("flushed to the barrier, read a second past it", func(p model.TaskPosition) bool {
		return p.Running[1] == barrier && p.ResolvedTs > ahead
	})
	e.probe.failFlushes.Store(1)
	c.setBarrier(f, maxTs)
	target := model.TsFromTime(time.Now())
	pos := c.waitPosition("past the present after the restart", func(p model.TaskPosition) bool { return p.Running[1] > target })
	if e.probe.failFlushes.Load() != 0 {
		t.Fatal("the injected flush failure was not used")
	}
	f.checkSink(t, 1, pos.Running[1], 0)
}

// TestReportsComePromptlyWhileMemoryIsShort: once a table ahead of the
// barrier has used the read-ahead it waits, and only the barrier moving
// frees memory, which takes a report; the report goes out within a tenth
// of the flush interval instead of at the next one (here 60 s away, past
// the test's deadline).
func TestReportsComePromptlyWhileMemoryIsShort(t *testing.T) {
	c := newCluster(t)
	start := time.Now().Add(-20 * time.Second)
	f := newFeed(t, "tables=1&rate=2000&resolve-interval=10ms", model.TsFromTime(start))
	f.config.MemoryQuota = model.MinMemoryQuota
	barrier := model.TsFromTime(start.Add(time.Second))
	f.create(c, barrier, 1)
	startManager(t, c, func(cfg *Config) { cfg.FlushInterval = time.Minute })
	pos := c.waitPosition("the table's progress past the barrier reported", func(p model.TaskPosition) bool {
		return p.ResolvedTs > barrier
	})
	if pos.Running[1] != barrier {
		t.Fatalf("table flushed to %d, want the barrier %d", pos.Running[1], barrier)
	}
}

func TestDeleteOperationStopsAtBoundary(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	f.create(c, maxTs, 1, 2)
	startManager(t, c, nil)
	c.waitPosition("both tables running", func(p model.TaskPosition) bool {
		return len(p.Running) == 2 && p.CheckpointTs > f.startTs
	})

	// Move table 1 away at a boundary a little in the future, the way the
	// owner does: the table stays in Tables with a delete operation beside
	// it until the processor reports it stopped.
	boundary := model.TsFromTime(time.Now().Add(300 * time.Millisecond))
	task := c.task()
	task.Operations = map[model.TableID]*model.TableOperation{1: {Delete: true, IsMove: true, TargetCapture: "c2", BoundaryTs: boundary, Status: model.OperDispatched}}
	c.setTask(task)
	pos := c.waitPosition("table 1 reported stopped", func(p model.TaskPosition) bool {
		_, ok := p.Stopped[1]
		return ok
	})
	if pos.Stopped[1] != boundary {
		t.Fatalf("table 1 stopped at %d, want exactly the boundary %d", pos.Stopped[1], boundary)
	}
	if _, running := pos.Running[1]; running || len(pos.Running) != 1 {
		t.Fatalf("Running = %v after table 1 stopped", pos.Running)
	}
	// Table 2 keeps going well past the boundary; table 1's sink must hold
	// exactly its rows up to the stop point and nothing after.
	later := model.TsFromTime(time.Now().Add(200 * time.Millisecond))
	c.waitPosition("table 2 past the boundary", func(p model.TaskPosition) bool { return p.Running[2] > later })
	f.checkSink(t, 1, boundary, boundary)

	// A delete whose boundary the table is already past stops it at once,
	// at its checkpoint. This one also leaves Tables at once, as TiCDC v4's
	// owner did; the processor honours both forms.
	task = c.task()
	delete(task.Tables, 2)
	task.Operations[2] = &model.TableOperation{Delete: true, BoundaryTs: f.startTs + 1, Status: model.OperDispatched}
	c.setTask(task)
	pos = c.waitPosition("table 2 reported stopped", func(p model.TaskPosition) bool {
		_, ok := p.Stopped[2]
		return ok
	})
	if pos.Stopped[2] < later || len(pos.Running) != 0 {
		t.Fatalf("table 2 stopped at %d (want >= %d), running %v", pos.Stopped[2], later, pos.Running)
	}
	f.checkSink(t, 2, pos.Stopped[2], pos.Stopped[2])

	// The owner finishes the move of table 1: table and operation go, and
	// so does the Stopped entry; then table 1 comes back from the boundary.
	task = c.task()
	delete(task.Tables, 1)
	delete(task.Operations, 1)
	c.setTask(task)
	c.waitPosition("Stopped forgets table 1", func(p model.TaskPosition) bool {
		_, ok := p.Stopped[1]
		return !ok && p.Stopped[2] != 0
	})
	task.Tables[1] = model.TableReplicaInfo{StartTs: boundary}
	c.setTask(task)
	now := model.TsFromTime(time.Now())
	pos = c.waitPosition("table 1 runs again from the boundary", func(p model.TaskPosition) bool { return p.Running[1] > now })
	f.checkSink(t, 1, pos.Running[1], 0)

	// Assigned and deleted in one go, below its start: it never runs and
	// reports its start ts as the stop point.
	task = c.task()
	task.Tables[3] = model.TableReplicaInfo{StartTs: now}
	task.Operations[3] = &model.TableOperation{Delete: true, BoundaryTs: now - 1, Status: model.OperDispatched}
	c.setTask(task)
	pos = c.waitPosition("table 3 stopped at its start", func(p model.TaskPosition) bool {
		_, ok := p.Stopped[3]
		return ok
	})
	if _, running := pos.Running[3]; running || pos.Stopped[3] != now {
		t.Fatalf("table 3: running %v, stopped at %d, want stopped at %d", pos.Running, pos.Stopped[3], now)
	}
	if rows := f.sinkRows(t, 3); len(rows) != 0 {
		t.Fatalf("table 3 wrote %d rows", len(rows))
	}

	// A table dropped from the task altogether stops at once and leaves
	// the position.
	c.setTask(model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{}})
	c.waitPosition("every table gone", func(p model.TaskPosition) bool { return len(p.Running) == 0 && len(p.Stopped) == 0 })
}

func TestFencedCaptureResets(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	f.create(c, maxTs, 1, 2)
	e := startManager(t, c, nil)
	c.waitPosition("tables running", func(p model.TaskPosition) bool {
		return len(p.Running) == 2 && p.CheckpointTs > f.startTs
	})
	inc1 := e.m.Incarnation()
	before := e.probe.openedTables()

	// The owner removes this incarnation.
	c.owner(fsm.Op{Type: fsm.OpDelete, Key: meta.CaptureKey(testCapture)})
	var ci model.CaptureInfo
	waitUntil(t, "the capture registers again", func() bool {
		return c.get(meta.CaptureKey(testCapture), &ci) && ci.Incarnation != inc1 && e.m.Incarnation() == ci.Incarnation
	})
	for i, pt := range before {
		if !pt.closed.Load() {
			t.Fatalf("table sink %d of the fenced incarnation is still open", i)
		}
	}
	if got := e.fencedTotal(t); got != 1 {
		t.Fatalf("raftcdc_processor_fenced_total = %v, want 1", got)
	}
	// A late write of the old incarnation is refused.
	val, _ := json.Marshal(model.TaskPosition{CheckpointTs: maxTs})
	res, err := c.Apply(context.Background(), fsm.Command{
		Capture: &fsm.CaptureFence{ID: testCapture, Incarnation: inc1},
		Ops:     []fsm.Op{{Type: fsm.OpPut, Key: meta.TaskPositionKey(testFeed, testCapture), Value: val}},
	})
	if err != nil || !errors.Is(res.Error(), fsm.ErrFenced) {
		t.Fatalf("old incarnation write: %v %v, want capture_fenced", err, res.Error())
	}
	// The task is still assigned, so the new incarnation runs it again.
	now := model.TsFromTime(time.Now())
	c.waitPosition("the new incarnation replicates", func(p model.TaskPosition) bool {
		return len(p.Running) == 2 && p.CheckpointTs > now
	})

	// A write refused as fenced has the same effect as the record going.
	inc2 := e.m.Incarnation()
	c.setRefuse(func(cmd fsm.Command) *fsm.Error {
		if cmd.Capture != nil && cmd.Capture.Incarnation == inc2 && len(cmd.Ops) > 0 {
			return &fsm.Error{Code: fsm.CodeFenced, Message: "test"}
		}
		return nil
	})
	waitUntil(t, "reset after a fenced write", func() bool {
		inc := e.m.Incarnation()
		return inc != 0 && inc != inc2
	})
	c.setRefuse(nil)
	if got := e.fencedTotal(t); got != 2 {
		t.Fatalf("raftcdc_processor_fenced_total = %v, want 2", got)
	}
}

// TestLeaseLapsePausesFlushes: without its lease the capture stops writing
// to sinks, and a lease taken anew opens them again only after a fenced
// probe through the leader proved the capture current.
func TestLeaseLapsePausesFlushes(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	f.create(c, maxTs, 1, 2)
	e := startManager(t, c, nil)
	c.waitPosition("tables running", func(p model.TaskPosition) bool {
		return len(p.Running) == 2 && p.CheckpointTs > f.startTs
	})

	e.lease.setCut(true)
	waitUntil(t, "sink writes paused with none in flight", e.m.gate.drained)
	flushes := e.probe.flushes.Load()
	// No table can flush now, so what they hold in memory is final; the
	// report catches up with it and must then stay.
	held := e.m.Processors()[0].CheckpointTs
	paused := c.waitPosition("the report reaches the held checkpoint", func(p model.TaskPosition) bool { return p.CheckpointTs == held })
	hold := time.Now().Add(10 * e.m.cfg.FlushInterval)
	for time.Now().Before(hold) {
		if n := e.probe.flushes.Load(); n != flushes {
			t.Fatalf("%d flushes while locally fenced", n-flushes)
		}
		if pos, _ := c.position(); pos.CheckpointTs != paused.CheckpointTs {
			t.Fatalf("checkpoint moved from %d to %d while locally fenced", paused.CheckpointTs, pos.CheckpointTs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if infos := e.m.Processors(); len(infos) != 1 || infos[0].State != StatePaused {
		t.Fatalf("Processors() = %+v, want paused", infos)
	}

	probes := c.probeCount()
	e.lease.setCut(false)
	c.waitPosition("checkpoint moves again after the lease returns", func(p model.TaskPosition) bool {
		return p.CheckpointTs > paused.CheckpointTs
	})
	if e.probe.flushes.Load() == flushes {
		t.Fatal("checkpoint moved without a flush")
	}
	if c.probeCount() == probes {
		t.Fatal("writes resumed without a fencing probe through the leader")
	}
	if got := e.fencedTotal(t); got != 0 {
		t.Fatalf("raftcdc_processor_fenced_total = %v after a pause that was not a fence", got)
	}
}

// TestATableIsOpenedOnlyUnderTheLease: opening a table may claim it
// downstream (a sink's writer fence), so it waits at the lease gate like a
// flush does, and happens once the lease is back and proven.
func TestATableIsOpenedOnlyUnderTheLease(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	e := startManager(t, c, nil)
	e.lease.setCut(true)
	f.create(c, maxTs, 1, 2)
	opened := func() int {
		e.probe.mu.Lock()
		defer e.probe.mu.Unlock()
		return len(e.probe.tables)
	}
	// Nothing to poll for: the tables must not open however long we wait.
	hold := time.Now().Add(10 * e.m.cfg.FlushInterval)
	for time.Now().Before(hold) {
		if n := opened(); n != 0 {
			t.Fatalf("%d tables opened in the sink without a lease", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.lease.setCut(false)
	c.waitPosition("tables running once the lease is back", func(p model.TaskPosition) bool {
		return len(p.Running) == 2 && p.CheckpointTs > f.startTs
	})
	if n := opened(); n != 2 {
		t.Fatalf("%d tables opened, want 2", n)
	}
}

func TestSnapshotLostIsReported(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource+"&gc-life=1m", pastTs(time.Hour))
	f.create(c, maxTs, 1)
	e := startManager(t, c, nil)
	pos := c.waitPosition("an error in the position", func(p model.TaskPosition) bool { return p.Error != nil })
	if pos.Error.Code != CodeSnapshotLost || pos.Error.Addr != "127.0.0.1:8300" {
		t.Fatalf("position error %+v, want %s from this capture", pos.Error, CodeSnapshotLost)
	}
	// The failed table still holds the changefeed back at its start.
	if pos.Running[1] != f.startTs {
		t.Fatalf("Running = %v, want table 1 held at %d", pos.Running, f.startTs)
	}
	if infos := e.m.Processors(); len(infos) != 1 || infos[0].State != StateError || infos[0].Tables[0].State != TableFailed {
		t.Fatalf("Processors() = %+v", infos)
	}
}

// TestUnretryableSinkErrorIsReportedWithoutRestarts: a sink error marked
// unretryable (a row the sink will refuse on every attempt) is reported at
// once with its own code, without restarting the table; an ordinary sink
// error is retried MaxRetries times first.
func TestUnretryableSinkErrorIsReportedWithoutRestarts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		code     string
		attempts int
	}{
		{"unretryable", sink.Unretryable(errors.New("probe: a row the sink refuses for good")), CodeSinkUnretryable, 1},
		{"ordinary", errors.New("probe: the sink failed this time"), CodeSinkError, 4}, // MaxRetries 3: the first attempt and 3 restarts
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			f := newFeed(t, fastSource, pastTs(time.Minute))
			f.create(c, maxTs, 1)
			e := startManager(t, c, nil, func(p *probe) { p.flushErr = tc.err })
			pos := c.waitPosition("an error in the position", func(p model.TaskPosition) bool { return p.Error != nil })
			if pos.Error.Code != tc.code || !strings.Contains(pos.Error.Message, tc.err.Error()) {
				t.Fatalf("position error %+v, want code %s with the sink's message", pos.Error, tc.code)
			}
			if n := len(e.probe.openedTables()); n != tc.attempts {
				t.Fatalf("the table was opened %d times, want %d", n, tc.attempts)
			}
		})
	}
}

func TestProcessorFollowsTaskAndChangefeedState(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	f.create(c, maxTs, 1)
	e := startManager(t, c, nil)
	c.waitPosition("table running", func(p model.TaskPosition) bool { return p.Running[1] > f.startTs })

	// Paused by an operator: the processor stops and closes its tables.
	var info model.ChangefeedInfo
	c.get(meta.ChangefeedInfoKey(testFeed), &info)
	info.State = model.StateStopped
	res, err := c.Apply(context.Background(), fsm.Command{Ops: []fsm.Op{put(t, meta.ChangefeedInfoKey(testFeed), info)}})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Error())
	}
	waitUntil(t, "the processor stops", func() bool { return len(e.m.Processors()) == 0 })
	// The manager forgets a processor before it has finished stopping; its
	// table sinks close as the stop completes.
	waitUntil(t, "every table sink is closed after the pause", func() bool {
		for _, pt := range e.probe.openedTables() {
			if !pt.closed.Load() {
				return false
			}
		}
		return true
	})

	// Resumed with a new epoch: it runs again.
	info.State, info.Epoch = model.StateNormal, 2
	res, err = c.Apply(context.Background(), fsm.Command{Ops: []fsm.Op{put(t, meta.ChangefeedInfoKey(testFeed), info)}})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Error())
	}
	waitUntil(t, "the processor runs again", func() bool { return len(e.m.Processors()) == 1 })

	// The owner takes the task away and cleans up: no late report may bring
	// the position back.
	c.owner(
		fsm.Op{Type: fsm.OpDelete, Key: meta.TaskStatusKey(testFeed, testCapture)},
		fsm.Op{Type: fsm.OpDelete, Key: meta.TaskPositionKey(testFeed, testCapture)},
	)
	waitUntil(t, "the processor stops", func() bool { return len(e.m.Processors()) == 0 })
	hold := time.Now().Add(10 * e.m.cfg.FlushInterval)
	for time.Now().Before(hold) {
		if pos, ok := c.position(); ok {
			t.Fatalf("position %+v written after the task was removed", pos)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRowCountContinuesAcrossRestart: a processor restarted on the same
// capture (here: paused, then resumed with a new epoch, its position left in
// place) continues the row count it finds in its position instead of
// starting again from zero.
func TestRowCountContinuesAcrossRestart(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	f.create(c, maxTs, 1, 2)
	e := startManager(t, c, nil)
	c.waitPosition("rows counted", func(p model.TaskPosition) bool { return p.Count > 0 })

	var info model.ChangefeedInfo
	c.get(meta.ChangefeedInfoKey(testFeed), &info)
	info.State = model.StateStopped
	if res, err := c.Apply(context.Background(), fsm.Command{Ops: []fsm.Op{put(t, meta.ChangefeedInfoKey(testFeed), info)}}); err != nil || res.Err != nil {
		t.Fatal(err, res.Error())
	}
	waitUntil(t, "the processor stops", func() bool { return len(e.m.Processors()) == 0 })
	before, ok := c.position()
	if !ok {
		t.Fatal("no position after the stop")
	}

	// Running again in the same epoch (a resume would start a new epoch,
	// whose positions the owner clears after moving their counts into the
	// status): the new processor continues the capture's count.
	info.State = model.StateNormal
	if res, err := c.Apply(context.Background(), fsm.Command{Ops: []fsm.Op{put(t, meta.ChangefeedInfoKey(testFeed), info)}}); err != nil || res.Err != nil {
		t.Fatal(err, res.Error())
	}
	// Every report of the new processor is at or above the old count; wait
	// for one that counts new rows.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pos, _ := c.position()
		if pos.Count < before.Count {
			t.Fatalf("row count fell from %d to %d after the restart", before.Count, pos.Count)
		}
		if pos.Count > before.Count {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new rows counted after the restart (count %d)", pos.Count)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestPositionCarriesTheChangefeedEpoch: every report names the run
// (epoch) of the changefeed it belongs to, so the state machine can refuse
// one that outlived its run.
func TestPositionCarriesTheChangefeedEpoch(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(2*time.Second))
	f.create(c, maxTs, 1)
	var info model.ChangefeedInfo
	c.get(meta.ChangefeedInfoKey(testFeed), &info)
	info.Epoch = 3
	if res, err := c.Apply(context.Background(), fsm.Command{Ops: []fsm.Op{put(t, meta.ChangefeedInfoKey(testFeed), info)}}); err != nil || res.Err != nil {
		t.Fatal(err, res.Error())
	}
	startManager(t, c, nil)
	pos := c.waitPosition("table 1 running", func(p model.TaskPosition) bool { return p.Running[1] > f.startTs })
	if pos.Epoch != 3 {
		t.Fatalf("position epoch %d, want the changefeed's epoch 3", pos.Epoch)
	}
}

// TestResetIsRateLimited: an owner that evicts the capture as soon as it
// registers (gossip calls it dead while Raft still reaches it) does not make
// it loop: it registers at most once per reset interval, less often as the
// fences keep coming.
func TestResetIsRateLimited(t *testing.T) {
	c := newCluster(t)
	const interval = 100 * time.Millisecond
	e := startManager(t, c, func(cfg *Config) { cfg.ResetInterval = interval; cfg.MaxRetryBackoff = 800 * time.Millisecond })
	waitUntil(t, "registered", func() bool { return e.m.Incarnation() != 0 })
	watch, cancelWatch := c.f.Watch(meta.CaptureKey(testCapture), 64)
	defer cancelWatch()
	stop := make(chan struct{})
	evicted := make(chan int, 1)
	go func() {
		n := 0
		defer func() { evicted <- n }()
		for {
			var ci model.CaptureInfo
			if c.get(meta.CaptureKey(testCapture), &ci) {
				c.owner(fsm.Op{Type: fsm.OpDelete, Key: meta.CaptureKey(testCapture)})
				n++
			}
			select {
			case <-stop:
				return
			case <-watch:
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	const run = 2 * time.Second
	time.Sleep(run)
	close(stop)
	n := <-evicted
	// 100, 200, 400, 800, 800 ms between registrations: about 6 in 2 s; one
	// registration per interval would be 20, and no limit hundreds.
	if n < 2 || n > 8 {
		t.Fatalf("%d registrations evicted in %v, want 2 to 8 (reset interval %v, doubling)", n, run, interval)
	}
	t.Logf("%d registrations in %v", n, run)
}

// A position is paced by its size: with a budget of 1,000 bytes a second a
// ~150-byte position of three tables goes out about every 150 ms, not every
// 20 ms flush interval, and the checkpoint still moves.
// TestUrgentReportsArePacedToo: a report the owner acts on (here: a
// failed table, which keeps every report urgent) goes out sooner than the
// size pacing allows, but not at every flush interval: at a quarter of the
// pace. Unpaced, a large capture's start-up (its running count changing at
// every interval) flooded Raft.
func TestUrgentReportsArePacedToo(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource+"&gc-life=1m", pastTs(time.Second))
	f.create(c, maxTs, 2, 3)
	task := c.task()
	task.Tables[1] = model.TableReplicaInfo{StartTs: pastTs(time.Hour)} // below the GC safepoint: fails
	c.setTask(task)
	writes := c.countPositionWrites()
	const rate = 100 // bytes a second: a ~200-byte position every ~2 s unless urgent
	startManager(t, c, func(cfg *Config) { cfg.ReportBytesPerSecond = rate })
	c.waitPosition("the failed table reported", func(p model.TaskPosition) bool { return p.Error != nil && len(p.Running) == 3 })
	n0, t0 := writes.Load(), time.Now()
	time.Sleep(4 * time.Second) // the window the writes are counted over, not a wait for a condition
	n, elapsed := writes.Load()-n0, time.Since(t0)
	size := c.rawPosition() // as stored: grouped at this schema
	urgentPace := time.Duration(len(size)) * time.Second / (urgentReportFactor * rate)
	most := int64(elapsed/urgentPace) + 2
	// The plain pacing (a ~460-byte position at 100 B/s: one report in
	// 4.6 s) would allow one write in the window at most.
	least := int64(2)
	if n > most || n < least {
		t.Fatalf("%d position writes in %v with an error pending (%d-byte position, urgent pace %v); want %d..%d",
			n, elapsed.Round(time.Millisecond), len(size), urgentPace, least, most)
	}
}

// pacedReports runs a three-table capture configured by cfg and counts
// its position writes over 2 s once all three tables run. It returns the
// count, the window, the stored position's size, and fails the test if
// the checkpoint did not move meanwhile.
func pacedReports(t *testing.T, cfg func(*Config)) (n int64, elapsed time.Duration, size int) {
	t.Helper()
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(time.Second))
	f.create(c, maxTs, 1, 2, 3)
	writes := c.countPositionWrites()
	startManager(t, c, cfg)
	first := c.waitPosition("all three tables running", func(p model.TaskPosition) bool { return len(p.Running) == 3 })
	n0, t0 := writes.Load(), time.Now()
	time.Sleep(2 * time.Second) // the window the writes are counted over, not a wait for a condition
	n, elapsed = writes.Load()-n0, time.Since(t0)
	if pos, _ := c.position(); pos.CheckpointTs <= first.CheckpointTs {
		t.Fatalf("checkpoint did not move: %d then %d", first.CheckpointTs, pos.CheckpointTs)
	}
	return n, elapsed, len(c.rawPosition()) // as stored: grouped at this schema
}

func TestPositionReportsArePacedBySize(t *testing.T) {
	n, elapsed, size := pacedReports(t, func(cfg *Config) { cfg.ReportBytesPerSecond = 1000 })
	// Unpaced: one write per 20 ms flush interval (100 in 2 s).
	most := int64(elapsed*1000/time.Duration(size)/time.Second) + 3
	if n > most || n < 2 {
		t.Fatalf("%d position writes in %v for a %d-byte position at 1,000 B/s; want 2..%d", n, elapsed.Round(time.Millisecond), size, most)
	}
}

// A grouped position is small whatever its table count, but building and
// expanding it costs per table: reports are paced by the tables they list
// too. Three tables at 10 tables a second are one report per 300 ms.
func TestPositionReportsArePacedByTables(t *testing.T) {
	n, elapsed, _ := pacedReports(t, func(cfg *Config) { cfg.ReportTablesPerSecond = 10 })
	// Unpaced: one write per 20 ms flush interval (100 in 2 s); by bytes
	// alone (~150 bytes at the default 256 KiB/s) the same.
	most := int64(elapsed/(300*time.Millisecond)) + 2
	if n > most || n < 2 {
		t.Fatalf("%d position writes in %v for three tables at 10 tables/s; want 2..%d", n, elapsed.Round(time.Millisecond), most)
	}
}

// TestStatusChangesDoNotWalkEveryTable: the changefeed's status changes
// with every checkpoint advance; a processor does its table-by-table
// reconcile only when its task status changes (or a table stops), so the
// barrier moving many times costs no walk, and an assignment change still
// starts the new table.
func TestStatusChangesDoNotWalkEveryTable(t *testing.T) {
	c := newCluster(t)
	start := time.Now().Add(-2 * time.Second)
	f := newFeed(t, fastSource, model.TsFromTime(start))
	barrier := model.TsFromTime(start.Add(100 * time.Millisecond))
	f.create(c, barrier, 1, 2)
	e := startManager(t, c, nil)
	c.waitPosition("both tables flushed to the barrier", func(p model.TaskPosition) bool {
		return p.Running[1] == barrier && p.Running[2] == barrier
	})
	walks := e.counter(t, "raftcdc_processor_reconcile_walks_total")
	if walks == 0 {
		t.Fatal("no reconcile walk counted for the first assignment")
	}
	for i := 1; i <= 10; i++ {
		b := model.TsFromTime(start.Add(time.Duration(100+100*i) * time.Millisecond))
		c.setBarrier(f, b)
		c.waitPosition("the tables follow the moved barrier", func(p model.TaskPosition) bool {
			return p.Running[1] == b && p.Running[2] == b
		})
	}
	if got := e.counter(t, "raftcdc_processor_reconcile_walks_total"); got != walks {
		t.Fatalf("ten status changes walked the tables %v times, want none", got-walks)
	}
	task := c.task()
	task.Tables[3] = model.TableReplicaInfo{StartTs: f.startTs}
	c.setTask(task)
	c.waitPosition("the newly assigned table runs", func(p model.TaskPosition) bool {
		_, ok := p.Running[3]
		return ok
	})
	if got := e.counter(t, "raftcdc_processor_reconcile_walks_total"); got <= walks {
		t.Fatalf("a task status change was not walked (walks %v, before %v)", got, walks)
	}
}
