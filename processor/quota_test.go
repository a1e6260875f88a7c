package processor

import (
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

const (
	quotaUsedGauge  = "raftcdc_processor_memory_quota_used_bytes"
	quotaLimitGauge = "raftcdc_processor_memory_quota_limit_bytes"
)

// TestQuotaGaugesFollowWhatIsBuffered: the limit gauge reports the
// changefeed's memory-quota, and the used gauge rises while rows are read
// but cannot be flushed (they are above the changefeed's flush barrier),
// then falls back once the barrier lets them be flushed.
func TestQuotaGaugesFollowWhatIsBuffered(t *testing.T) {
	const quota = 64 << 20
	c := newCluster(t)
	start := time.Now().Add(-2 * time.Second)
	f := newFeed(t, "tables=1&rate=200&resolve-interval=10ms", model.TsFromTime(start))
	f.config.MemoryQuota = quota
	barrier := model.TsFromTime(start.Add(500 * time.Millisecond))
	f.create(c, barrier, 1)
	e := startManager(t, c, nil)

	waitUntil(t, "the limit gauge reports the changefeed's quota", func() bool {
		v, ok := e.feedGauge(t, quotaLimitGauge)
		return ok && v == quota
	})
	c.waitPosition("the table flushed to the barrier", func(p model.TaskPosition) bool { return p.Running[1] == barrier })
	// Rows keep coming above the barrier, where nothing can be flushed:
	// the gauge goes past 256 KiB, and then higher still.
	var first float64
	waitUntil(t, "rows held in memory", func() bool {
		first, _ = e.feedGauge(t, quotaUsedGauge)
		return first >= 256<<10
	})
	var held float64
	waitUntil(t, "the used gauge rises while the rows cannot be flushed", func() bool {
		held, _ = e.feedGauge(t, quotaUsedGauge)
		return held > first
	})
	if held > quota {
		t.Fatalf("the used gauge reads %.0f bytes, above the %d-byte quota, for a table that is ahead of the barrier", held, quota)
	}
	f.checkSink(t, 1, barrier, barrier)

	c.setBarrier(f, maxTs)
	now := model.TsFromTime(time.Now())
	pos := c.waitPosition("the held rows flushed", func(p model.TaskPosition) bool { return p.Running[1] >= now })
	f.checkSink(t, 1, pos.Running[1], 0)
	// Flushed, the rows are released: what stays is what came since the
	// last flush (tens of milliseconds of a 200 rows/s table).
	var after float64
	waitUntil(t, "the used gauge back below a tenth of what was held", func() bool {
		after, _ = e.feedGauge(t, quotaUsedGauge)
		return after < held/10
	})
	t.Logf("used %.0f bytes then %.0f while the rows were above the barrier, %.0f once they were flushed", first, held, after)
	if v, _ := e.feedGauge(t, quotaLimitGauge); v != quota {
		t.Fatalf("the limit gauge reads %v after the flush, want %d", v, quota)
	}
}

// TestQuotaLimitGaugeDefaultsToOneGiB: a changefeed whose config sets no
// memory-quota runs with 1 GiB, and the limit gauge says so.
func TestQuotaLimitGaugeDefaultsToOneGiB(t *testing.T) {
	c := newCluster(t)
	f := newFeed(t, fastSource, pastTs(time.Second))
	f.create(c, maxTs, 1)
	e := startManager(t, c, nil)
	var limit float64
	waitUntil(t, "the limit gauge is reported", func() bool {
		var ok bool
		limit, ok = e.feedGauge(t, quotaLimitGauge)
		return ok
	})
	if limit != 1<<30 {
		t.Fatalf("the limit gauge reads %v bytes for a changefeed without a memory-quota, want 1 GiB (%d)", limit, 1<<30)
	}
}

// TestOneSinkPerChangefeedAndCapture: a capture running many tables of a
// changefeed opens the changefeed's sink once; every table sink is opened
// on that one instance, also for tables that are added later.
func TestOneSinkPerChangefeedAndCapture(t *testing.T) {
	const tables = 24
	c := newCluster(t)
	f := newFeed(t, "tables=24&rate=50&resolve-interval=10ms", pastTs(time.Second))
	ids := make([]model.TableID, 0, tables)
	for i := 1; i <= tables; i++ {
		ids = append(ids, model.TableID(i))
	}
	// Two thirds of the tables first, the rest once those run.
	f.create(c, maxTs, ids[:16]...)
	e := startManager(t, c, nil)
	c.waitPosition("the first 16 tables running", func(p model.TaskPosition) bool { return len(p.Running) == 16 })
	task := c.task()
	for _, id := range ids[16:] {
		task.Tables[id] = model.TableReplicaInfo{StartTs: f.startTs}
	}
	c.setTask(task)
	now := model.TsFromTime(time.Now())
	pos := c.waitPosition("all tables running and past the present", func(p model.TaskPosition) bool {
		return len(p.Running) == tables && p.CheckpointTs >= now
	})
	f.checkSink(t, ids[tables-1], pos.Running[ids[tables-1]], 0)

	if n := e.probe.sinksOpened.Load(); n != 1 {
		t.Fatalf("the changefeed sink was opened %d times for one capture running %d tables, want once", n, tables)
	}
	opened := e.probe.openedTables()
	if len(opened) < tables {
		t.Fatalf("%d table sinks opened, want at least one for each of the %d tables", len(opened), tables)
	}
	for _, pt := range opened {
		if pt.sink != 1 {
			t.Fatalf("a table sink was opened on changefeed sink #%d, want every one on the single instance #1", pt.sink)
		}
	}
}
