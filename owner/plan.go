package owner

import (
	"slices"

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
	// tasks are the task statuses, keyed by capture: the snapshot's own
	// until the plan changes one (mutable), then a copy. Copying every
	// status up front cost a 100,000-table owner ~10 ms a tick for the
	// usual tick that changes none of them.
	tasks map[model.CaptureID]*model.TaskStatus
	// owned are the captures whose entry in tasks is the plan's copy.
	owned map[model.CaptureID]bool

	infoDirty, statusDirty, statusDelete bool
	// split keeps the table set in its own record (the cluster runs at
	// meta.TablesSchemaVersion or later).
	split     bool
	taskDirty map[model.CaptureID]bool
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
		owned:       map[model.CaptureID]bool{},
		taskDirty:   map[model.CaptureID]bool{},
		captureRevs: map[model.CaptureID]uint64{},
	}
	if f.Info != nil {
		p.info = cloneInfo(f.Info)
	}
	for c, task := range f.Tasks {
		if task.Status == nil {
			continue
		}
		p.tasks[c] = task.Status
		if hasNilOperation(task.Status) {
			// The copy drops them, so that readers need no nil checks.
			p.tasks[c], p.owned[c] = cloneTaskStatus(task.Status), true
		}
	}
	return p
}

func hasNilOperation(ts *model.TaskStatus) bool {
	for _, op := range ts.Operations {
		if op == nil {
			return true
		}
	}
	return false
}

// mutable returns capture c's task status for the plan to change: its own
// copy, made on first use (an empty status if c has none), and marked to
// be written.
func (p *plan) mutable(c model.CaptureID) *model.TaskStatus {
	p.taskDirty[c] = true
	ts := p.tasks[c]
	if !p.owned[c] {
		if ts == nil {
			ts = &model.TaskStatus{}
		} else {
			ts = cloneTaskStatus(ts)
		}
		p.tasks[c], p.owned[c] = ts, true
	}
	if ts.Tables == nil {
		ts.Tables = map[model.TableID]model.TableReplicaInfo{}
	}
	return ts
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
	p.owned = map[model.CaptureID]bool{}
	p.taskDirty = map[model.CaptureID]bool{}
}

// hasTaskKeys reports whether any task key of the changefeed exists.
func (p *plan) hasTaskKeys() bool { return len(p.f.Tasks) > 0 || len(p.f.CorruptTaskKeys) > 0 }

// hasStatusKeys reports whether the changefeed's status or its table-set
// record exists (the record counts only where the plan may write it: below
// schema 3 the key cannot be deleted either).
func (p *plan) hasStatusKeys() bool { return p.f.Status != nil || p.holdsTableSet() }

// holdsTableSet reports whether the changefeed has a table-set record the
// plan may write or delete.
func (p *plan) holdsTableSet() bool { return p.split && p.f.TablesRev != 0 }

func (p *plan) setOp(c model.CaptureID, table model.TableID, op *model.TableOperation) {
	ts := p.mutable(c)
	if ts.Operations == nil {
		ts.Operations = map[model.TableID]*model.TableOperation{}
	}
	ts.Operations[table] = op
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
		if p.holdsTableSet() {
			cond(meta.ChangefeedTablesKey(cf), p.f.TablesRev)
			cmd.Ops = append(cmd.Ops, fsm.Op{Type: fsm.OpDelete, Key: meta.ChangefeedTablesKey(cf)})
		}
	case p.statusDirty:
		ops, conds, err := statusOps(p.f, p.status, p.split)
		if err != nil {
			return nil, err
		}
		cmd.Ops = append(cmd.Ops, ops...)
		cmd.Conds = append(cmd.Conds, conds...)
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

// statusOps store st as f's status. With split (schema 3 on) the table set
// goes to its own record, written only when it differs from the stored
// one, and the status is stored without it: a checkpoint advance then
// writes a few hundred bytes however many tables the changefeed has. A
// status written before the split keeps its lists inline until this first
// moves them.
func statusOps(f *meta.Feed, st *model.ChangefeedStatus, split bool) ([]fsm.Op, []fsm.Cond, error) {
	if !split {
		op, err := meta.Put(meta.ChangefeedStatusKey(f.ID), st)
		return []fsm.Op{op}, nil, err
	}
	var ops []fsm.Op
	var conds []fsm.Cond
	set := model.ChangefeedTables{Tables: st.Tables, StreamTables: st.StreamTables}
	if !sameTableSet(f.Tables, &set) {
		op, err := meta.Put(meta.ChangefeedTablesKey(f.ID), set)
		if err != nil {
			return nil, nil, err
		}
		ops = append(ops, op)
		conds = append(conds, fsm.Cond{Type: fsm.CondModRev, Key: meta.ChangefeedTablesKey(f.ID), ModRev: f.TablesRev})
	}
	stored := *st
	stored.Tables, stored.StreamTables = nil, nil
	if len(st.Orphans) > 0 {
		// A start-up orphans every table at one ts: one group.
		stored.OrphansGrouped, stored.Orphans = model.GroupedTableTs(st.Orphans), nil
	}
	op, err := meta.Put(meta.ChangefeedStatusKey(f.ID), &stored)
	if err != nil {
		return nil, nil, err
	}
	return append(ops, op), conds, nil
}

// sameTableSet says whether the stored record (nil: none) already holds
// set. No record and an empty set are the same: nothing to write.
func sameTableSet(stored, set *model.ChangefeedTables) bool {
	if stored == nil {
		return len(set.Tables) == 0 && len(set.StreamTables) == 0
	}
	return sameNames(stored.Tables, set.Tables) && sameNames(stored.StreamTables, set.StreamTables)
}

// sameNames is slices.Equal with a shortcut for the usual case: the plan's
// list is still the stored one (cloneStatus shares it).
func sameNames(a, b []model.TableName) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return slices.Equal(a, b)
}

// tablesInline says whether f's stored status still carries its table set
// (written before the split): at schema 3 the owner moves it out.
func tablesInline(f *meta.Feed) bool {
	return f.Tables == nil && f.Status != nil && (len(f.Status.Tables) > 0 || len(f.Status.StreamTables) > 0)
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
