package owner

import (
	"fmt"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// evict removes the captures that are gone, together with every task a
// capture that is not registered any more still holds (the stale tasks a new
// owner finds), in one command: deleting the capture record fences its
// incarnation, so the same command that hands its tables to others also
// guarantees that its processors can no longer report progress. It returns
// the changefeeds the command touches.
func (t *ticker) evict(cv *captureView) map[model.ChangefeedID]bool {
	touched := map[model.ChangefeedID]bool{}
	// Stale holders: captures to evict, and task owners with no record.
	stale := func(c model.CaptureID) bool {
		if _, ok := cv.evict[c]; ok {
			return true
		}
		_, registered := t.s.Captures[c]
		return !registered
	}
	cmd := fsm.Command{Kind: fsm.KindTxn, OwnerEpoch: t.s.OwnerEpoch}
	cond := func(key string, rev uint64) {
		cmd.Conds = append(cmd.Conds, fsm.Cond{Type: fsm.CondModRev, Key: key, ModRev: rev})
	}
	for _, c := range sortedKeys(cv.evict) {
		key := meta.CaptureKey(c)
		cond(key, t.s.Captures[c].Rev)
		cmd.Ops = append(cmd.Ops, fsm.Op{Type: fsm.OpDelete, Key: key})
		t.event(LogEvent{Kind: EventCaptureEvicted, Capture: c, Message: fmt.Sprintf("liveness %s", cv.evict[c])})
	}
	for _, id := range t.s.FeedIDs() {
		f := t.s.Changefeeds[id]
		var holders []model.CaptureID
		for _, c := range sortedKeys(f.Tasks) {
			if stale(c) {
				holders = append(holders, c)
			}
		}
		if len(holders) == 0 {
			continue
		}
		touched[id] = true
		// Tables go back to the changefeed as orphans only while it runs;
		// any other state re-derives its tables when it runs again.
		// The status keeps the row counts of the positions deleted below.
		var status *model.ChangefeedStatus
		if f.Status != nil && f.Info != nil {
			status = cloneStatus(f.Status)
			status.RetiredCount += retiredCount(f, holders)
		}
		orphaning := status != nil && isNormal(f.Info.State) && status.Initialized
		inSet := map[model.TableID]bool{}
		if orphaning {
			for _, tn := range status.Tables {
				inSet[tn.ID] = true
			}
		}
		for _, c := range holders {
			task := f.Tasks[c]
			if task.Status != nil {
				cond(meta.TaskStatusKey(id, c), task.StatusRev)
				if orphaning {
					for _, table := range sortedKeys(task.Status.Tables) {
						if !inSet[table] {
							continue // not part of the changefeed any more: just dropped
						}
						ts := tableProgress(task, table)
						if old, ok := status.Orphans[table]; ok {
							// Both assigned and orphaned should not happen;
							// the lower ts is the one that loses nothing.
							ts = minTs(ts, old)
						}
						status.Orphans[table] = ts
						t.event(LogEvent{Kind: EventTableOrphaned, Changefeed: id, Capture: c, Table: table, Ts: ts, Message: "capture gone"})
					}
				}
			}
			for _, key := range []string{meta.TaskStatusKey(id, c), meta.TaskPositionKey(id, c), meta.TaskWorkloadKey(id, c)} {
				cmd.Ops = append(cmd.Ops, fsm.Op{Type: fsm.OpDelete, Key: key})
			}
		}
		if status != nil && (orphaning || status.RetiredCount != f.Status.RetiredCount) {
			cond(meta.ChangefeedStatusKey(id), f.StatusRev)
			ops, conds, err := statusOps(f, status, t.s.SchemaVersion >= meta.TablesSchemaVersion)
			if err != nil {
				t.event(LogEvent{Kind: EventCleanup, Changefeed: id, Message: err.Error()})
				continue
			}
			cmd.Ops = append(cmd.Ops, ops...)
			cmd.Conds = append(cmd.Conds, conds...)
		}
		t.event(LogEvent{Kind: EventCleanup, Changefeed: id, Message: fmt.Sprintf("deleted the tasks of %v", holders)})
	}
	if len(cmd.Ops) > 0 {
		t.out.Commands = append(t.out.Commands, cmd)
	}
	return touched
}

// tableProgress is the ts a table assigned to a task can safely restart
// from: its start ts, raised by what the processor reported for it. The
// capture-wide position checkpoint is deliberately not used: a table added
// after that checkpoint was computed would be skipped ahead past rows it
// never replicated.
func tableProgress(task *meta.Task, table model.TableID) model.Ts {
	ts, _ := progressOf(task.Status.Tables[table], task.Position, table)
	return ts
}

// progressOf is tableProgress from the table's replica and its holder's
// position (nil: none yet), and whether the position lists the table
// running. Callers that walk a task's tables pass what they already hold.
func progressOf(rep model.TableReplicaInfo, pos *model.TaskPosition, table model.TableID) (ts model.Ts, running bool) {
	ts = rep.StartTs
	if pos == nil {
		return ts, false
	}
	if r, ok := pos.Running[table]; ok {
		ts, running = maxTs(ts, r), true
	}
	if len(pos.Stopped) > 0 {
		if s, ok := pos.Stopped[table]; ok {
			// A stop left over from an earlier stay of the table on this
			// capture is at most the current start ts, so max is harmless.
			ts = maxTs(ts, s)
		}
	}
	return ts, running
}

func isNormal(s model.FeedState) bool { return s == model.StateNormal || s == "" }
