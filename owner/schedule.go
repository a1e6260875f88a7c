package owner

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/raftcdc/raftcdc/model"
)

// sched is the scheduling view of one running changefeed within a plan.
type sched struct {
	t  *ticker
	p  *plan
	cv *captureView
	// inSet are the changefeed's tables.
	inSet map[model.TableID]bool
	// orphans are every table no capture holds, with the ts to start it
	// from; durable is the subset to persist in the status (derived orphans
	// at the checkpoint need not be written down: they are derived again).
	orphans, durable map[model.TableID]model.Ts
	// loads are tables per alive or draining capture, counting moves in
	// flight at their destination, so decisions see the future balance.
	loads  map[model.CaptureID]int
	budget int
	// boundary is the ts moves and deletes started now stop at.
	boundary model.Ts
}

// schedule assigns, moves and accounts the tables of a running changefeed.
func (t *ticker) schedule(p *plan, cv *captureView) {
	st := p.status
	// Maps sized up front: at 100,000 tables growing them was a good part
	// of a tick.
	s := &sched{t: t, p: p, cv: cv,
		inSet:   make(map[model.TableID]bool, len(st.Tables)),
		orphans: make(map[model.TableID]model.Ts, len(st.Orphans)),
		durable: make(map[model.TableID]model.Ts, len(st.Orphans)),
	}
	for _, tn := range st.Tables {
		s.inSet[tn.ID] = true
	}
	loc := s.locations()
	for table, ts := range st.Orphans {
		if _, assigned := loc[table]; s.inSet[table] && !assigned {
			s.orphans[table], s.durable[table] = ts, ts
		}
	}
	for table := range s.inSet {
		if _, assigned := loc[table]; !assigned {
			if _, ok := s.orphans[table]; !ok {
				// Safe: the checkpoint is at most any table's progress.
				s.orphans[table] = st.CheckpointTs
			}
		}
	}

	if st.Stream {
		s.recordStreamPosition()
	}
	ckpt, resolved := s.candidates()
	if len(s.inSet) == 0 {
		// No table tracks time (every table dropped, or none matched yet):
		// the DDL puller does. Up to the next pending DDL's ts − 1 nothing
		// is left to write, so the checkpoint follows the puller there and
		// the DDL — a CREATE TABLE that brings a table back — becomes
		// ready. Keeping the checkpoint instead stalled the changefeed
		// for good after its last table was dropped.
		if _, limit, ok := t.nextDDL(p); ok && limit != math.MaxUint64 && limit > ckpt {
			ckpt, resolved = limit, limit
			if target := p.info.TargetTs; target != 0 && ckpt > target {
				ckpt, resolved = maxTs(target, st.CheckpointTs), maxTs(target, st.CheckpointTs)
			}
		}
	}
	newCkpt := maxTs(st.CheckpointTs, ckpt)
	newResolved := maxTs(resolved, newCkpt)
	newResolved = t.ddlBarrier(p, newResolved, newCkpt)
	if target := p.info.TargetTs; target != 0 && newResolved > target {
		// Processors need not flush beyond the target.
		newResolved = maxTs(target, newCkpt)
	}
	s.boundary = newResolved

	if d := t.readyDDL(p, newCkpt); d != nil {
		// Every table is flushed to the DDL's ts − 1: the DDL runs now, and
		// its table-set changes are scheduled in this same plan, which the
		// worker commits only once the DDL is executed downstream.
		p.ddl, p.ddlSkip = d, !s.applyDDL(d)
	}

	s.completeDeletes()
	s.loads = s.countLoads()
	s.budget = t.cfg.movesAllowed(len(st.Tables)) - s.movesInFlight()
	s.pendingMoves()
	s.dispatch()
	s.rebalance()
	s.removeStrays()

	var orphans map[model.TableID]model.Ts
	if len(s.durable) > 0 {
		orphans = s.durable
	}
	progress := newCkpt != st.CheckpointTs || newResolved != st.ResolvedTs
	// Progress alone is paced by the status's size; anything else in the
	// status (orphans, a stream position, a DDL) takes progress with it.
	if !sameOrphans(p.f.Status.Orphans, orphans) || (progress && (p.statusDirty || p.ddl != nil || t.progressDue(p.f.ID))) {
		st.CheckpointTs, st.ResolvedTs, st.Orphans = newCkpt, newResolved, orphans
		p.statusDirty = true
	}
	if p.info.RebalanceRequested != p.f.Info.RebalanceRequested {
		p.infoDirty = true
	}
}

// recordStreamPosition keeps the newest stream position any capture
// reported (the one holding the stream unit, or the one that just stopped
// it for a move) in the status, where the next session resumes from and
// up to which the stream capture confirms upstream. It is recorded before
// the move step below, so a target never starts from an older position
// than the one its source stopped at.
func (s *sched) recordStreamPosition() {
	st := s.p.status
	for _, c := range sortedKeys(s.p.f.Tasks) {
		pos := s.p.position(c)
		if pos == nil || pos.Stream == nil {
			continue
		}
		if st.StreamPosition == nil || pos.Stream.Ts > st.StreamPosition.Ts {
			sp := *pos.Stream
			st.StreamPosition = &sp
			s.p.statusDirty = true
		}
	}
}

func sameOrphans(a, b map[model.TableID]model.Ts) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// locations maps each assigned table to its capture.
func (s *sched) locations() map[model.TableID]model.CaptureID {
	n := 0
	for _, ts := range s.p.tasks {
		n += len(ts.Tables)
	}
	loc := make(map[model.TableID]model.CaptureID, n)
	for c, ts := range s.p.tasks {
		for table := range ts.Tables {
			loc[table] = c
		}
	}
	return loc
}

// candidates computes the checkpoint and resolved ts the tables allow now.
// A table whose holder has not reported it yet (just dispatched or moved)
// counts with its own known progress: everything up to its start ts is
// already downstream, so its resolved ts is at least that. Falling back to
// the changefeed checkpoint instead would pull the flush barrier of every
// table back for the length of each dispatch or move.
func (s *sched) candidates() (ckpt, resolved model.Ts) {
	st := s.p.status
	if len(s.inSet) == 0 {
		// Nothing tracks time; keep what there is.
		return st.CheckpointTs, st.ResolvedTs
	}
	ckpt, resolved = math.MaxUint64, math.MaxUint64
	// Every unassigned table of the set is an orphan by now (schedule).
	for _, ts := range s.orphans {
		ckpt, resolved = minTs(ckpt, ts), minTs(resolved, ts)
	}
	// Assigned tables capture by capture, each task's own maps walked
	// rather than looked up table by table: at 100,000 tables the lookups
	// were half of an owner's tick.
	for c := range s.p.tasks {
		task := s.p.f.Tasks[c]
		if task == nil || task.Status == nil {
			continue
		}
		for table, rep := range task.Status.Tables {
			if !s.inSet[table] {
				continue
			}
			progress, running := progressOf(rep, task.Position, table)
			ckpt = minTs(ckpt, progress)
			if running {
				resolved = minTs(resolved, maxTs(task.Position.ResolvedTs, progress))
			} else {
				resolved = minTs(resolved, progress)
			}
		}
	}
	return ckpt, resolved
}

// completeDeletes finishes the delete operations whose processor reported
// the table stopped: the table leaves the source and, for a move, joins the
// target at the ts it was flushed to, in the same command, so it is never
// on two captures and never lost between them.
func (s *sched) completeDeletes() {
	p := s.p
	for _, c := range sortedKeys(p.tasks) {
		ts := p.tasks[c]
		for _, table := range sortedKeys(ts.Operations) {
			op := ts.Operations[table]
			if !op.Delete {
				continue
			}
			replica, held := ts.Tables[table]
			if !held {
				ts = p.mutable(c)
				delete(ts.Operations, table) // nothing left to stop
				continue
			}
			pos := p.position(c)
			if pos == nil {
				continue
			}
			stopped, ok := pos.Stopped[table]
			if _, running := pos.Running[table]; !ok || running {
				// Still running: a Stopped entry next to a Running one is
				// left over from an earlier stay of the table here.
				continue
			}
			startTs := maxTs(stopped, replica.StartTs)
			ts = p.mutable(c)
			delete(ts.Tables, table)
			delete(ts.Operations, table)
			switch {
			case !s.inSet[table]:
				s.t.event(LogEvent{Kind: EventTableRemoved, Changefeed: p.f.ID, Capture: c, Table: table, Ts: startTs})
			case op.IsMove && op.TargetCapture != c && s.cv.alive[op.TargetCapture]:
				s.assign(op.TargetCapture, table, startTs)
				s.t.event(LogEvent{Kind: EventMoveFinished, Changefeed: p.f.ID, Capture: c, Target: op.TargetCapture, Table: table, Ts: startTs})
			default:
				s.orphans[table], s.durable[table] = startTs, startTs
				s.t.event(LogEvent{Kind: EventTableOrphaned, Changefeed: p.f.ID, Capture: c, Target: op.TargetCapture, Table: table, Ts: startTs,
					Message: "stopped for a move whose target is not alive"})
			}
		}
	}
}

// assign gives a table to a capture, guarded on that capture's incarnation.
func (s *sched) assign(c model.CaptureID, table model.TableID, startTs model.Ts) {
	s.p.mutable(c).Tables[table] = model.TableReplicaInfo{StartTs: startTs}
	s.p.captureRevs[c] = s.t.s.Captures[c].Rev
	delete(s.orphans, table)
	delete(s.durable, table)
	if s.loads != nil {
		s.loads[c]++
	}
}

func (s *sched) countLoads() map[model.CaptureID]int {
	loads := map[model.CaptureID]int{}
	for c := range s.cv.alive {
		loads[c] = 0
	}
	for c := range s.cv.draining {
		loads[c] = 0
	}
	for c, ts := range s.p.tasks {
		for table := range ts.Tables {
			op := ts.Operations[table]
			if op == nil || !op.Delete {
				if _, counted := loads[c]; counted {
					loads[c]++
				}
				continue
			}
			if op.IsMove {
				if _, counted := loads[op.TargetCapture]; counted {
					loads[op.TargetCapture]++
				}
			}
		}
	}
	return loads
}

func (s *sched) movesInFlight() int {
	n := 0
	for _, ts := range s.p.tasks {
		for _, op := range ts.Operations {
			if op.Delete && op.IsMove {
				n++
			}
		}
	}
	return n
}

// movable reports whether a table can start moving off capture c: it has
// no operation in flight and its processor reports it running. The second
// condition makes any later Stopped entry an answer to this move, not a
// leftover from an earlier stay of the table on c.
func (s *sched) movable(c model.CaptureID, table model.TableID) bool {
	ts := s.p.tasks[c]
	if ts == nil {
		return false
	}
	if _, held := ts.Tables[table]; !held || ts.Operations[table] != nil {
		return false
	}
	pos := s.p.position(c)
	if pos == nil {
		return false
	}
	_, running := pos.Running[table]
	return running
}

func (s *sched) startMove(src model.CaptureID, table model.TableID, dst model.CaptureID, why string) {
	s.p.setOp(src, table, &model.TableOperation{
		Delete:        true,
		IsMove:        true,
		TargetCapture: dst,
		BoundaryTs:    s.boundary,
		Status:        model.OperDispatched,
	})
	if _, ok := s.loads[src]; ok {
		s.loads[src]--
	}
	s.loads[dst]++
	s.budget--
	s.t.event(LogEvent{Kind: EventMoveStarted, Changefeed: s.p.f.ID, Capture: src, Target: dst, Table: table, Ts: s.boundary, Message: why})
}

// holder is the capture that holds a table now, in the plan.
func (s *sched) holder(table model.TableID) (model.CaptureID, bool) {
	for _, c := range sortedKeys(s.p.tasks) {
		if _, ok := s.p.tasks[c].Tables[table]; ok {
			return c, true
		}
	}
	return "", false
}

// pendingMoves carries out operator move requests. Invalid ones are dropped
// with an event; valid ones that cannot start yet (operation in flight,
// table not running, move budget spent) stay pending.
func (s *sched) pendingMoves() {
	info := s.p.info
	if len(info.PendingMoves) == 0 {
		return
	}
	var keep []model.MoveTableRequest
	changed := false
	for _, req := range info.PendingMoves {
		reject := func(reason string) {
			changed = true
			s.t.event(LogEvent{Kind: EventMoveRejected, Changefeed: s.p.f.ID, Target: req.TargetCapture, Table: req.TableID, Message: reason})
		}
		if !s.inSet[req.TableID] {
			reject("table is not part of the changefeed")
			continue
		}
		if !s.cv.alive[req.TargetCapture] {
			reject("target capture is not alive")
			continue
		}
		if ts, orphan := s.orphans[req.TableID]; orphan {
			s.assign(req.TargetCapture, req.TableID, ts)
			changed = true
			s.t.event(LogEvent{Kind: EventTableDispatched, Changefeed: s.p.f.ID, Capture: req.TargetCapture, Table: req.TableID, Ts: ts, Message: "requested move of an orphan"})
			continue
		}
		src, _ := s.holder(req.TableID)
		if src == req.TargetCapture && s.p.tasks[src].Operations[req.TableID] == nil {
			reject("table is already on the target capture")
			continue
		}
		if s.budget <= 0 || !s.movable(src, req.TableID) {
			keep = append(keep, req)
			continue
		}
		s.startMove(src, req.TableID, req.TargetCapture, "requested")
		changed = true
	}
	if changed {
		info.PendingMoves = keep
		s.p.infoDirty = true
	}
}

// leastLoaded is the alive capture with the fewest tables (ties by ID).
func (s *sched) leastLoaded() (model.CaptureID, bool) {
	best, found := "", false
	for _, c := range sortedKeys(s.cv.alive) {
		if !found || s.loads[c] < s.loads[best] {
			best, found = c, true
		}
	}
	return best, found
}

// dispatch gives every orphan to the least loaded alive capture, which keeps
// the captures within one table of each other.
func (s *sched) dispatch() {
	for _, table := range sortedKeys(s.orphans) {
		c, ok := s.leastLoaded()
		if !ok {
			return
		}
		ts := s.orphans[table]
		s.assign(c, table, ts)
		s.t.event(LogEvent{Kind: EventTableDispatched, Changefeed: s.p.f.ID, Capture: c, Table: table, Ts: ts})
	}
}

// rebalance moves tables off draining captures and, when asked (or when a
// capture sits empty while another carries two more than the mean), evens
// the alive captures out to within one table. The request stays set in the
// info until the balance is reached, so a new owner carries on with it.
func (s *sched) rebalance() {
	alive := sortedKeys(s.cv.alive)
	if len(alive) == 0 {
		return
	}
	info := s.p.info
	drainingBusy := false
	for c := range s.cv.draining {
		if s.loads[c] > 0 {
			drainingBusy = true
		}
	}
	if !info.RebalanceRequested && !drainingBusy {
		total, empty, maxLoad := 0, false, 0
		for _, c := range alive {
			total += s.loads[c]
			empty = empty || s.loads[c] == 0
			maxLoad = max(maxLoad, s.loads[c])
		}
		mean := float64(total) / float64(len(alive))
		if !empty || float64(maxLoad) < mean+2 {
			return
		}
		info.RebalanceRequested = true
		s.t.event(LogEvent{Kind: EventRebalance, Changefeed: s.p.f.ID, Message: fmt.Sprintf("an alive capture has no tables while another has %d (mean %.1f)", maxLoad, mean)})
	}
	for s.budget > 0 {
		dst, _ := s.leastLoaded()
		src, table, ok := s.drainingSource()
		why := "draining"
		if !ok {
			src, table, ok = s.heaviestSource(dst)
			why = "rebalance"
		}
		if !ok {
			break
		}
		s.startMove(src, table, dst, why)
	}
	if info.RebalanceRequested && s.balanced(alive) {
		info.RebalanceRequested = false
		s.t.event(LogEvent{Kind: EventRebalance, Changefeed: s.p.f.ID, Message: "balanced"})
	}
}

func (s *sched) drainingSource() (model.CaptureID, model.TableID, bool) {
	for _, c := range sortedKeys(s.cv.draining) {
		if table, ok := s.movableTable(c); ok {
			return c, table, true
		}
	}
	return "", 0, false
}

// heaviestSource is the most loaded alive capture that is at least two
// tables above dst and has a table that can move.
func (s *sched) heaviestSource(dst model.CaptureID) (model.CaptureID, model.TableID, bool) {
	cands := sortedKeys(s.cv.alive)
	sort.SliceStable(cands, func(i, j int) bool { return s.loads[cands[i]] > s.loads[cands[j]] })
	for _, c := range cands {
		if s.loads[c]-s.loads[dst] < 2 {
			return "", 0, false
		}
		if table, ok := s.movableTable(c); ok {
			return c, table, true
		}
	}
	return "", 0, false
}

// movableTable picks the table to move off c: the highest ID that can move,
// which is deterministic and tends to undo the latest dispatch.
func (s *sched) movableTable(c model.CaptureID) (model.TableID, bool) {
	ts := s.p.tasks[c]
	if ts == nil {
		return 0, false
	}
	tables := sortedKeys(ts.Tables)
	for i := len(tables) - 1; i >= 0; i-- {
		if s.movable(c, tables[i]) {
			return tables[i], true
		}
	}
	return 0, false
}

func (s *sched) balanced(alive []model.CaptureID) bool {
	for c := range s.cv.draining {
		if s.loads[c] > 0 {
			return false
		}
	}
	lo, hi := math.MaxInt, 0
	for _, c := range alive {
		lo, hi = min(lo, s.loads[c]), max(hi, s.loads[c])
	}
	return hi-lo <= 1
}

// removeStrays stops tables a capture runs that are not part of the
// changefeed (plain deletes, without a move).
func (s *sched) removeStrays() {
	// Every table of every task is visited, but only the strays (usually
	// none) are sorted: sorting 33,000 IDs per capture per tick was a
	// share of a 100,000-table owner's tick (issue 16).
	var strays []model.TableID
	for _, c := range sortedKeys(s.p.tasks) {
		ts := s.p.tasks[c]
		strays = strays[:0]
		for table := range ts.Tables {
			if !s.inSet[table] && ts.Operations[table] == nil {
				strays = append(strays, table)
			}
		}
		slices.Sort(strays)
		for _, table := range strays {
			s.p.setOp(c, table, &model.TableOperation{Delete: true, BoundaryTs: s.boundary, Status: model.OperDispatched})
			s.t.event(LogEvent{Kind: EventTableRemoved, Changefeed: s.p.f.ID, Capture: c, Table: table, Ts: s.boundary, Message: "not part of the changefeed; stopping"})
		}
	}
}
