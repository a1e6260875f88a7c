package owner

import (
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// plan is the change a tick makes to one changefeed. It works on copies and
// turns into exactly one command, guarded by the revisions of every key the
// decision read, so one changefeed's conflict never blocks another's.
type plan struct {
	f      *meta.Feed
	info   *model.ChangefeedInfo
	status *model.ChangefeedStatus
	// tasks are copies of the task statuses, keyed by capture.
	tasks map[model.CaptureID]*model.TaskStatus

	infoDirty, statusDirty, statusDelete bool
	taskDirty                            map[model.CaptureID]bool
	// cleanTasks deletes every task status, position and workload of the
	// changefeed by prefix, which also catches a position a processor
	// writes between this tick's snapshot and the command's apply.
	cleanTasks bool
	// captureRevs are capture records the plan gives tables to: if the
	// capture re-registered meanwhile, the command must be refused.
	captureRevs map[model.CaptureID]uint64
	// ddl, when set, is executed downstream before the plan's command is
	// applied (see ddl.go); ddlSkip marks one that is only recorded.
	ddl     *model.DDLEvent
	ddlSkip bool
}

func newPlan(f *meta.Feed) *plan {
	p := &plan{
		f:           f,
		status:      cloneStatus(f.Status),
		tasks:       map[model.CaptureID]*model.TaskStatus{},
		taskDirty:   map[model.CaptureID]bool{},
		captureRevs: map[model.CaptureID]uint64{},
	}
	if f.Info != nil {
		p.info = cloneInfo(f.Info)
	}
	for c, task := range f.Tasks {
		if task.Status != nil {
			p.tasks[c] = cloneTaskStatus(task.Status)
		}
	}
	return p
}

// position is a capture's last reported progress, unless the plan already
// deletes it.
func (p *plan) position(c model.CaptureID) *model.TaskPosition {
	if p.cleanTasks {
		return nil
	}
	if task := p.f.Tasks[c]; task != nil {
		return task.Position
	}
	return nil
}

// clearTasks drops every task of the changefeed. The row counts of the
// positions it deletes move into the status (when there is one to keep).
func (p *plan) clearTasks() {
	if !p.cleanTasks && p.status != nil {
		if n := retiredCount(p.f, sortedKeys(p.f.Tasks)); n > 0 {
			p.status.RetiredCount += n
			p.statusDirty = true
		}
	}
	p.cleanTasks = true
	p.tasks = map[model.CaptureID]*model.TaskStatus{}
	p.taskDirty = map[model.CaptureID]bool{}
}

// hasTaskKeys reports whether any task key of the changefeed exists.
func (p *plan) hasTaskKeys() bool { return len(p.f.Tasks) > 0 || len(p.f.CorruptTaskKeys) > 0 }

// task returns capture c's task status, creating an empty one.
func (p *plan) task(c model.CaptureID) *model.TaskStatus {
	ts := p.tasks[c]
	if ts == nil {
		ts = &model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{}}
		p.tasks[c] = ts
	}
	if ts.Tables == nil {
		ts.Tables = map[model.TableID]model.TableReplicaInfo{}
	}
	return ts
}

func (p *plan) setOp(c model.CaptureID, table model.TableID, op *model.TableOperation) {
	ts := p.task(c)
	if ts.Operations == nil {
		ts.Operations = map[model.TableID]*model.TableOperation{}
	}
	ts.Operations[table] = op
	p.taskDirty[c] = true
}

func (p *plan) dirty() bool {
	if p.infoDirty || p.statusDirty || p.statusDelete || p.cleanTasks || len(p.f.CorruptTaskKeys) > 0 {
		return true
	}
	for _, d := range p.taskDirty {
		if d {
			return true
		}
	}
	return false
}

// command builds the plan's command, or nil when nothing changes.
func (p *plan) command(epoch uint64) (*fsm.Command, error) {
	if !p.dirty() {
		return nil, nil
	}
	cf := p.f.ID
	cmd := &fsm.Command{Kind: fsm.KindTxn, OwnerEpoch: epoch}
	cond := func(key string, rev uint64) {
		cmd.Conds = append(cmd.Conds, fsm.Cond{Type: fsm.CondModRev, Key: key, ModRev: rev})
	}
	// Everything below was decided from the info, the status and the whole
	// assignment, so all of them guard the command. Positions do not: only
	// processors write them and every value in them only grows (or, for
	// Stopped, stays), so acting on an older one is merely conservative,
	// and guarding on them would make the owner lose most races against
	// busy processors.
	cond(meta.ChangefeedInfoKey(cf), p.f.InfoRev)
	cond(meta.ChangefeedStatusKey(cf), p.f.StatusRev)
	for _, c := range sortedKeys(p.f.Tasks) {
		cond(meta.TaskStatusKey(cf, c), p.f.Tasks[c].StatusRev)
	}
	for _, c := range sortedKeys(p.taskDirty) {
		if p.f.Tasks[c] == nil {
			cond(meta.TaskStatusKey(cf, c), 0)
		}
	}
	for _, c := range sortedKeys(p.captureRevs) {
		cond(meta.CaptureKey(c), p.captureRevs[c])
	}

	if p.infoDirty {
		op, err := meta.Put(meta.ChangefeedInfoKey(cf), p.info)
		if err != nil {
			return nil, err
		}
		cmd.Ops = append(cmd.Ops, op)
	}
	switch {
	case p.statusDelete:
		cmd.Ops = append(cmd.Ops, fsm.Op{Type: fsm.OpDelete, Key: meta.ChangefeedStatusKey(cf)})
	case p.statusDirty:
		op, err := meta.Put(meta.ChangefeedStatusKey(cf), p.status)
		if err != nil {
			return nil, err
		}
		cmd.Ops = append(cmd.Ops, op)
	}
	if p.cleanTasks {
		for _, prefix := range []string{meta.TaskStatusPrefix(cf), meta.TaskPositionPrefix(cf), meta.TaskWorkloadPrefix(cf)} {
			cmd.Ops = append(cmd.Ops, fsm.Op{Type: fsm.OpDeletePrefix, Key: prefix})
		}
	} else {
		for _, key := range sortedKeys(p.f.CorruptTaskKeys) {
			cond(key, p.f.CorruptTaskKeys[key])
			cmd.Ops = append(cmd.Ops, fsm.Op{Type: fsm.OpDelete, Key: key})
		}
	}
	for _, c := range sortedKeys(p.taskDirty) {
		ts := p.tasks[c]
		if len(ts.Operations) == 0 {
			ts.Operations = nil
		}
		op, err := meta.Put(meta.TaskStatusKey(cf, c), ts)
		if err != nil {
			return nil, err
		}
		cmd.Ops = append(cmd.Ops, op)
	}
	return cmd, nil
}

// retiredCount sums the row counts in the positions of captures cs. Only
// the snapshot's values are known: rows a processor reports between the
// snapshot and the command that deletes its position are not carried over.
func retiredCount(f *meta.Feed, cs []model.CaptureID) uint64 {
	var n uint64
	for _, c := range cs {
		if task := f.Tasks[c]; task != nil && task.Position != nil {
			n += task.Position.Count
		}
	}
	return n
}
