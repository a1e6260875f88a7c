package owner

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
)

// The DDL barrier (TiCDC's semantics, see DESIGN.md "DDL barrier"):
//
//   - The changefeed resolved ts never passes the next pending DDL's ts − 1,
//     nor the DDL puller's resolved ts (a DDL the owner has not seen yet must
//     still be able to stop the tables).
//   - Once every table's progress is at ddlTs − 1 (the checkpoint is), the
//     tick asks the worker to execute the DDL once through the owner's sink
//     and hands it the command that records the DDL as done
//     (Status.LastDDLTs) together with the table-set changes it makes. The
//     worker applies that command only after the sink succeeded, so the
//     record never claims a DDL that was not executed. An owner that dies in
//     between leaves the DDL pending; its successor executes it again, which
//     the sink treats as already applied.

// DDLState is what the worker's DDL puller knows about one changefeed.
type DDLState struct {
	// StartTs is where the puller started reading: DDLs at or below it are
	// not in Pending.
	StartTs model.Ts
	// ResolvedTs: no DDL with CommitTs <= ResolvedTs is missing from Pending.
	ResolvedTs model.Ts
	// Pending are the DDLs read and not yet known to be done, in commit-ts
	// order.
	Pending []*model.DDLEvent
	// Err is the puller's last error, if it is failing.
	Err error
	// ExecErr is the last failure to execute Pending's first DDL; ExecTs is
	// that DDL's commit ts.
	ExecErr error
	ExecTs  model.Ts
}

// DDLAction asks the worker to execute one DDL through the changefeed's sink
// and then apply Record.
type DDLAction struct {
	Changefeed model.ChangefeedID
	SinkURI    string
	// Config is the changefeed's config: sinks route by it (Kafka's
	// dispatchers decide which topics a DDL goes to).
	Config model.ChangefeedConfig
	Event  *model.DDLEvent
	// Skip marks a DDL that touches nothing the changefeed replicates: it is
	// only recorded, not executed.
	Skip   bool
	Record fsm.Command
}

// CodeDDLFailed: executing a DDL downstream failed; retried after the
// error backoff like any other error.
const CodeDDLFailed = "ddl_failed"

// nextDDL is the changefeed's first DDL not yet done, and the ts the
// changefeed's resolved ts may not pass. ok is false while the puller has
// not reported for this changefeed.
func (t *ticker) nextDDL(p *plan) (next *model.DDLEvent, limit model.Ts, ok bool) {
	if p.status.Stream {
		// The stream unit holds the DDL barrier on its own capture.
		return nil, math.MaxUint64, true
	}
	ds, ok := t.in.DDL[p.f.ID]
	if !ok || ds.StartTs > p.status.CheckpointTs {
		// No puller yet, or one that started above the checkpoint (a resume
		// moved the checkpoint back): it may have missed a DDL.
		return nil, 0, false
	}
	done := maxTs(p.status.LastDDLTs, p.status.CheckpointTs)
	for _, d := range ds.Pending {
		if d.CommitTs > done {
			return d, minTs(d.CommitTs-1, ds.ResolvedTs), true
		}
	}
	return nil, ds.ResolvedTs, true
}

// ddlBarrier caps the candidate resolved ts by the DDL barrier.
func (t *ticker) ddlBarrier(p *plan, resolved, ckpt model.Ts) model.Ts {
	_, limit, ok := t.nextDDL(p)
	if !ok {
		return ckpt
	}
	return maxTs(minTs(resolved, limit), ckpt)
}

// readyDDL reports the DDL to execute now: every table has flushed up to its
// ts − 1.
func (t *ticker) readyDDL(p *plan, ckpt model.Ts) *model.DDLEvent {
	next, _, ok := t.nextDDL(p)
	if !ok || next == nil || ckpt < next.CommitTs-1 {
		return nil
	}
	return next
}

// applyDDL makes the table-set changes of a DDL at its ts and records it
// as done. It reports whether the DDL touches the changefeed at all.
func (s *sched) applyDDL(d *model.DDLEvent) (relevant bool) {
	st := s.p.status
	flt, err := filter.New(s.p.info.Config.Filter)
	if err != nil {
		flt = nil // lifecycle already fails such a changefeed
	}
	match := func(tn model.TableName) bool { return flt != nil && flt.Match(tn) }
	has := func(id model.TableID) bool { return s.inSet[id] }
	remove := func(id model.TableID) {
		if !s.inSet[id] {
			return
		}
		delete(s.inSet, id)
		delete(s.orphans, id)
		delete(s.durable, id)
		out := st.Tables[:0:0]
		for _, tn := range st.Tables {
			if tn.ID != id {
				out = append(out, tn)
			}
		}
		st.Tables = out
		s.t.event(LogEvent{Kind: EventTableRemoved, Changefeed: s.p.f.ID, Table: id, Ts: d.CommitTs, Message: fmt.Sprintf("removed by DDL %s", d.Kind)})
	}
	add := func(tn model.TableName) {
		if s.inSet[tn.ID] || !match(tn) {
			return
		}
		s.inSet[tn.ID] = true
		st.Tables = append(st.Tables, tn)
		sort.Slice(st.Tables, func(i, j int) bool { return st.Tables[i].ID < st.Tables[j].ID })
		// The new table's first row commits after the DDL.
		s.orphans[tn.ID], s.durable[tn.ID] = d.CommitTs, d.CommitTs
		s.t.event(LogEvent{Kind: EventTableOrphaned, Changefeed: s.p.f.ID, Table: tn.ID, Ts: d.CommitTs, Message: fmt.Sprintf("added by DDL %s", d.Kind)})
	}
	rename := func(id model.TableID, to model.TableName) {
		// st.Tables may be the snapshot's own list (cloneStatus): changed
		// in place only after a copy.
		copied := false
		for i := range st.Tables {
			if st.Tables[i].ID == id {
				if !copied {
					st.Tables, copied = slices.Clone(st.Tables), true
				}
				st.Tables[i] = to
			}
		}
	}
	after := func(i int) *model.TableSchema {
		if i < len(d.After) {
			return d.After[i]
		}
		return nil
	}

	switch d.Kind {
	case model.DDLCreateSchema:
		relevant = flt != nil && flt.MatchSchema(d.Schema)
	case model.DDLDropSchema:
		relevant = flt != nil && flt.MatchSchema(d.Schema)
		for _, tn := range append([]model.TableName(nil), st.Tables...) {
			if tn.Schema == d.Schema {
				remove(tn.ID)
			}
		}
	case model.DDLCreateTable:
		for i := range d.Tables {
			if a := after(i); a != nil && match(a.Table) {
				relevant = true
				add(a.Table)
			}
		}
	case model.DDLDropTable:
		for _, tn := range d.Tables {
			if has(tn.ID) {
				relevant = true
				remove(tn.ID)
			}
		}
	case model.DDLTruncateTable:
		for i, tn := range d.Tables {
			if !has(tn.ID) {
				continue
			}
			relevant = true
			a := after(i)
			if a == nil || a.Table.ID == tn.ID {
				continue // same table ID: the pipeline carries on
			}
			remove(tn.ID)
			add(a.Table)
		}
	case model.DDLRenameTable:
		for i, tn := range d.Tables {
			if !has(tn.ID) {
				continue
			}
			relevant = true
			if a := after(i); a != nil {
				// The table keeps its pipeline; rows after the DDL carry the
				// new name in their schema.
				rename(tn.ID, a.Table)
			}
		}
	default:
		for _, tn := range d.Tables {
			if has(tn.ID) {
				relevant = true
			}
		}
	}
	st.LastDDLTs = maxTs(st.LastDDLTs, d.CommitTs)
	s.p.statusDirty = true
	return relevant
}
