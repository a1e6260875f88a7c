package integration

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/model"
)

// stallBound is the longest the checkpoint may stand still during a rolling
// restart: a clean stop moves tables away before the process goes.
const stallBound = 10 * time.Second

// Scenario 5: every node is stopped with SIGTERM and started again, one at a
// time, the leader first. SIGTERM first drains the node (--drain-timeout):
// the owner moves its tables to the others in two phases, each continuing
// exactly where it stopped, so no capture is evicted with tables and no
// table replays from its checkpoint — the restarts add no duplicate row.
// The checkpoint never stands still for longer than stallBound; a leader
// hands leadership over before it exits, so each change of leader is one
// term (the target starts its election at once on TimeoutNow, with no
// election timeout), and a node that restarts as a follower does not
// disturb the term at all.
func TestRollingRestart(t *testing.T) {
	rollingRestart(t, true)
}

// TestRollingRestartWithoutDrain is the same restart with --drain-timeout 0,
// the behaviour before drains: for comparing stalls and duplicates
// (-rolling-compare), not part of the default run.
func TestRollingRestartWithoutDrain(t *testing.T) {
	if !*flagRollingCompare {
		t.Skip("-rolling-compare runs the rolling restart without drains, for comparison")
	}
	rollingRestart(t, false)
}

// ownerFirst is every node's index, the current owner's first: the order
// of a rolling restart that begins with the leader.
func ownerFirst(c *Cluster) []int {
	first := c.WaitForOwner(ownerBound, 0).Index
	order := []int{first}
	for i := range c.Procs {
		if i != first {
			order = append(order, i)
		}
	}
	return order
}

func rollingRestart(t *testing.T, drain bool) {
	var extra []string
	if !drain {
		extra = []string{"--drain-timeout", "0"}
	}
	e := startFeed(t, 12, "20", extra...)
	c := e.c
	s := c.SampleCheckpoints(e.id, samplerInterval)
	s.ResetStall()
	order := ownerFirst(c)
	logStart := make([]int64, len(c.Procs))
	for i := range c.Procs {
		logStart[i] = c.LogSize(i)
	}
	dups := e.settleAndVerify().Duplicates
	var stalls, dupsPer []string
	transfers := 0
	for _, i := range order {
		id := c.Procs[i].ID
		l := c.WaitForLeader(ownerBound)
		before, err := c.Status(l)
		if err != nil {
			t.Fatal(err)
		}
		inc := c.Incarnation(id)
		logOff := c.LogSize(i)
		s.ResetStall()
		stopped := time.Now()
		c.Kill(i, syscall.SIGTERM)
		exit := time.Since(stopped)
		if drain && !strings.Contains(c.LogSince(i, logOff), `"drained: this capture holds no table"`) {
			t.Errorf("%s stopped without draining", id)
		}
		if l == i {
			transfers++
			n := c.WaitForOwner(ownerBound, before.OwnerEpoch)
			handover := time.Since(stopped)
			if n.Term != before.Term+1 {
				t.Errorf("leader %s stopped at term %d; new leader %s has term %d, want exactly one more (a transfer, not an election)", id, before.Term, n.ID, n.Term)
			}
			if !strings.Contains(c.LogSince(i, logOff), `"leadership transferred before shutdown"`) {
				t.Errorf("%s's log does not show a leadership transfer before shutdown", id)
			}
			t.Logf("leader %s SIGTERM: exited after %v, %s owner at term %d after %v", id, exit.Round(time.Millisecond), n.ID, n.Term, handover.Round(time.Millisecond))
		} else {
			t.Logf("follower %s SIGTERM: exited after %v", id, exit.Round(time.Millisecond))
		}
		c.WaitCheckpointAbove(e.id, model.TsFromTime(stopped), stallBound)
		e.rejoin(i, inc)
		// A restarted follower rejoins without an election (pre-vote).
		after := c.WaitForOwner(ownerBound, 0)
		if l != i && after.Term != before.Term {
			t.Errorf("restarting follower %s changed the term %d → %d", id, before.Term, after.Term)
		}
		stall := s.Report().LongestStall
		now := e.settleAndVerify().Duplicates
		stalls = append(stalls, fmt.Sprintf("%s %v", id, stall.Round(time.Millisecond)))
		dupsPer = append(dupsPer, fmt.Sprintf("%s %d", id, now-dups))
		dups = now
	}
	if transfers == 0 {
		t.Fatal("no restart hit the leader; the scenario tested no transfer")
	}
	// Evicting a capture that still held tables makes them orphans that
	// restart from the checkpoint; the owner logs each one.
	orphaned := 0
	for i := range c.Procs {
		orphaned += strings.Count(c.LogSince(i, logStart[i]), `"capture gone"`)
	}
	e.assertNoDoubleAssignment(2 * time.Second)
	rep := e.settleAndVerify()
	s.Stop()
	sr := s.Report()
	sr.Check(t)
	t.Logf("drain %v: %d transfers; checkpoint stall per restart: %s; duplicate rows per restart: %s; tables orphaned by evictions: %d; %d rows verified, %d duplicates in all; %s",
		drain, transfers, strings.Join(stalls, ", "), strings.Join(dupsPer, ", "), orphaned, rep.Expected, rep.Duplicates, c.CheckWriters())
	if !drain {
		return
	}
	if orphaned > 0 {
		t.Errorf("%d tables were orphaned by evicting a capture that still held them; a drained restart evicts none", orphaned)
	}
	if sr.LongestStall > stallBound {
		t.Fatalf("the checkpoint stood still for %v during the rolling restart; bound %v", sr.LongestStall, stallBound)
	}
}

// Scenario 6: the whole cluster is stopped (SIGTERM to all three at once)
// and started again. Both changefeeds resume from their checkpoints: the
// checkpoint is not lower than before, it moves past the restart, and no
// row at or below the pre-stop checkpoint is written again by the new run.
func TestFullStopAndStart(t *testing.T) {
	e := startFeed(t, 12, "20")
	c := e.c
	second := &feedEnv{t: t, c: c, id: "second", tables: 4, dir: t.TempDir(), src: "datagen://?tables=4&rate=50&seed=7", start: e.start}
	c.CreateChangefeed(api.ChangefeedRequest{ID: second.id, SourceURI: second.src, SinkURI: StorageSinkURI(second.dir), StartTs: second.start})
	c.WaitAllAssignedOnce(second.id, second.tables, nil, settleBound)
	feeds := []*feedEnv{e, second}
	var samplers []*Sampler
	for _, f := range feeds {
		samplers = append(samplers, c.SampleCheckpoints(f.id, samplerInterval))
		c.WaitCheckpointAbove(f.id, model.TsFromTime(time.Now().Add(time.Second)), advanceBound)
	}

	var wg sync.WaitGroup
	for i := range c.Procs {
		wg.Add(1)
		go func() { defer wg.Done(); c.Kill(i, syscall.SIGTERM) }()
	}
	wg.Wait()
	// Every checkpoint a node showed was committed, so the highest one seen
	// is at or below the last one the stopped cluster holds.
	var before []model.Ts
	for k, s := range samplers {
		s.Stop()
		r := s.Report()
		r.Check(t)
		before = append(before, r.Max)
		t.Logf("%s: checkpoint before the stop %d (%s)", feeds[k].id, r.Max, model.TsTime(r.Max).Format("15:04:05.000"))
	}

	restarted := time.Now()
	for i := range c.Procs {
		c.Start(i)
	}
	c.WaitForOwner(ownerBound, 0)
	// The first consistent read after the election must already see every
	// checkpoint committed before the stop (a new leader answers read-index
	// only after its barrier).
	for k, f := range feeds {
		// The first read that succeeds: right after an election a node may
		// answer 503 (no leader yet in its view, a read-index cut short)
		// or not within the client's timeout on a loaded machine. A
		// failed read shows nothing stale, so it is asked again.
		d := c.DetailEventually(f.id, 30*time.Second)
		if d.CheckpointTs() < before[k] {
			t.Fatalf("stale consistent read right after the election: %s checkpoint %d, below %d seen before the stop", f.id, d.CheckpointTs(), before[k])
		}
	}
	for k, f := range feeds {
		if cp := f.checkpoint(); cp < before[k] {
			t.Fatalf("%s: checkpoint %d after the restart is below %d seen before the stop", f.id, cp, before[k])
		}
		c.WaitCheckpointAbove(f.id, model.TsFromTime(restarted), advanceBound)
		c.WaitAllAssignedOnce(f.id, f.tables, nil, settleBound)
		t.Logf("%s: checkpoint past the restart after %v", f.id, time.Since(restarted).Round(time.Millisecond))
	}
	var replayed []string
	for k, f := range feeds {
		rep := f.settleAndVerify()
		files, rows, below := replayedBelow(t, f.dir, restarted, before[k])
		t.Logf("%s: %d rows verified (%d duplicates overall); the new run wrote %d files, %d rows, %d at or below %d",
			f.id, rep.Expected, rep.Duplicates, files, rows, below, before[k])
		if files == 0 {
			t.Fatalf("%s: no file written after the restart: the duplicate check saw nothing", f.id)
		}
		if below > 0 {
			replayed = append(replayed, fmt.Sprintf("%s: %d rows at or below the pre-stop checkpoint %d written again after the restart", f.id, below, before[k]))
		}
	}
	if len(replayed) > 0 {
		t.Fatal(strings.Join(replayed, "\n"))
	}
}

// replayedBelow scans the storage sink for data files modified at or after
// since and counts them, their row messages, and those with commit ts <= cp.
func replayedBelow(t *testing.T, dir string, since time.Time, cp model.Ts) (files, rows, below int) {
	t.Helper()
	var examples []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "CDC") || !strings.HasSuffix(d.Name(), ".json") {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().Before(since) {
			return nil
		}
		files++
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
		n := 0
		defer func() {
			if n > 0 && len(examples) < 10 {
				rel, _ := filepath.Rel(dir, path)
				examples = append(examples, fmt.Sprintf("%s (modified %s): %d rows at or below %d", rel, info.ModTime().Format("15:04:05.000"), n, cp))
			}
		}()
		for sc.Scan() {
			m, err := canal.Decode(sc.Bytes())
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if m.Kind() != canal.KindRow {
				continue
			}
			rows++
			if m.CommitTs() <= cp {
				below++
				n++
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range examples {
		t.Logf("written again after the restart: %s", ex)
	}
	return files, rows, below
}
