package owner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/raftcdc/raftcdc/internal/redact"
	"sort"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// feed runs one changefeed's share of a tick and emits at most one command.
func (t *ticker) feed(f *meta.Feed, cv *captureView) {
	if f.Skipped() {
		// Its info or status does not decode (meta's Tracker reports it):
		// rewriting either key blindly could lose the changefeed or move
		// its checkpoint backwards.
		return
	}
	p := newPlan(f)
	p.split = t.s.SchemaVersion >= meta.TablesSchemaVersion
	if p.split && tablesInline(f) {
		// The cluster has just reached the schema that keeps table sets
		// apart: move this one out with the next write, which is now.
		p.statusDirty = true
	}
	switch {
	case f.Info == nil:
		// Status or tasks without a changefeed: left over, delete them.
		p.statusDelete = p.hasStatusKeys()
		if p.hasTaskKeys() {
			p.clearTasks()
		}
	case p.info.AdminJob != model.AdminNone:
		t.adminJob(p)
	default:
		t.lifecycle(p, cv)
	}
	t.emit(p)
}

func (t *ticker) emit(p *plan) {
	cmd, err := p.command(t.s.OwnerEpoch)
	if err != nil {
		t.event(LogEvent{Kind: EventErrorRecorded, Changefeed: p.f.ID, Message: fmt.Sprintf("building command: %v", err)})
		return
	}
	switch {
	case cmd != nil && p.ddl != nil:
		t.out.DDL = append(t.out.DDL, DDLAction{Changefeed: p.f.ID, SinkURI: p.info.SinkURI, Config: p.info.Config, Event: p.ddl, Skip: p.ddlSkip, Record: *cmd})
	case cmd != nil:
		t.out.Commands = append(t.out.Commands, *cmd)
	}
}

// state is the changefeed's state with the empty value read as normal.
func (p *plan) state() model.FeedState {
	if p.info.State == "" {
		return model.StateNormal
	}
	return p.info.State
}

func (t *ticker) setState(p *plan, s model.FeedState, why string) {
	if p.state() == s {
		return
	}
	t.event(LogEvent{Kind: EventStateChanged, Changefeed: p.f.ID, Message: fmt.Sprintf("%s -> %s: %s", p.state(), s, why)})
	p.info.State = s
	p.infoDirty = true
	if !holdsGC(p.info) {
		t.releasedGC[p.f.ID] = true
	}
}

// adminJob carries out the pending operator request and clears it. Every
// job is idempotent: one that does not fit the current state (including the
// state the same job already produced) is cleared without effect.
func (t *ticker) adminJob(p *plan) {
	job, state := p.info.AdminJob, p.state()
	effect := "none: does not apply in state " + string(state)
	switch job {
	case model.AdminPause:
		if state == model.StateNormal || state == model.StateError {
			t.setState(p, model.StateStopped, "paused")
			p.clearTasks()
			effect = "paused"
		}
	case model.AdminResume:
		if state == model.StateStopped || state == model.StateError || state == model.StateFailed {
			t.resume(p)
			effect = "resumed"
		}
	case model.AdminRemove:
		if state != model.StateRemoved {
			t.setState(p, model.StateRemoved, "removed")
			p.statusDelete = p.hasStatusKeys()
			p.clearTasks()
			effect = "removed"
		}
	case model.AdminFinish:
		switch state {
		case model.StateNormal, model.StateStopped, model.StateError, model.StateFailed:
			t.setState(p, model.StateFinished, "finished by operator")
			p.clearTasks()
			effect = "finished"
		}
	default:
		effect = "none: unknown job"
	}
	t.event(LogEvent{Kind: EventAdminJob, Changefeed: p.f.ID, Message: fmt.Sprintf("%s: %s", job, effect)})
	p.info.AdminJob = model.AdminNone
	p.info.OverwriteCheckpointTs = 0
	p.infoDirty = true
}

func (t *ticker) resume(p *plan) {
	t.setState(p, model.StateNormal, "resumed")
	p.info.Epoch++
	p.info.Error = nil
	p.infoDirty = true
	// Positions of the previous run may carry the error that stopped it.
	p.clearTasks()
	if ts := p.info.OverwriteCheckpointTs; ts != 0 {
		// The one allowed backwards move of the checkpoint.
		if p.status == nil {
			p.status = &model.ChangefeedStatus{}
		}
		p.status.CheckpointTs, p.status.ResolvedTs = ts, ts
		p.statusDirty = true
	}
	if p.status != nil && p.status.Initialized {
		orphanAll(p)
	}
}

// orphanAll makes every table of the changefeed an orphan at its checkpoint.
func orphanAll(p *plan) {
	p.status.Orphans = make(map[model.TableID]model.Ts, len(p.status.Tables))
	for _, tn := range p.status.Tables {
		p.status.Orphans[tn.ID] = p.status.CheckpointTs
	}
	p.statusDirty = true
}

// lifecycle handles a changefeed with no admin job pending.
func (t *ticker) lifecycle(p *plan, cv *captureView) {
	state := p.state()
	if holdsGC(p.info) {
		if t.gcExpired(p) {
			return
		}
		if ckpt, gcTs, lost := t.snapshotLost(p.f); lost {
			t.stopWithError(p, &model.RunningError{
				Addr: t.in.NodeID,
				Code: CodeSnapshotLost,
				Message: fmt.Sprintf("checkpoint %d (%s) is below the upstream GC safepoint %d (%s): the data needed to continue was garbage-collected; recreate the changefeed or resume it with a newer checkpoint",
					ckpt, model.TsTime(ckpt).UTC().Format(time.RFC3339), gcTs, model.TsTime(gcTs).UTC().Format(time.RFC3339)),
				Time: t.in.Now,
			})
			return
		}
	}
	switch state {
	case model.StateRemoved:
		p.statusDelete = p.hasStatusKeys()
		if p.hasTaskKeys() {
			p.clearTasks()
		}
		if !p.info.UpstreamCleaned && !p.dirty() {
			t.cleanupUpstream(p)
		}
	case model.StateStopped, model.StateFailed, model.StateFinished:
		if p.hasTaskKeys() {
			p.clearTasks()
		}
	case model.StateError:
		if p.hasTaskKeys() {
			p.clearTasks()
		}
		if retryAt := t.retryAt(p.info); !t.in.Now.Before(retryAt) {
			t.setState(p, model.StateNormal, "error backoff elapsed")
			p.info.Error = nil
			if p.status != nil && p.status.Initialized {
				orphanAll(p)
			}
		}
	case model.StateNormal:
		t.normal(p, cv)
	default:
		// A state this build does not know (written by a newer node): leave
		// the changefeed alone rather than guess.
	}
}

func (t *ticker) normal(p *plan, cv *captureView) {
	if p.status == nil || !p.status.Initialized {
		t.initialize(p)
		return
	}
	if key := TableSetKey(p.info); p.status.TableSetKey != key {
		if p.status.TableSetKey != "" {
			// An update changed the source or the filter: the table set
			// follows (tables no longer selected go, new ones start at the
			// checkpoint).
			t.initialize(p)
			return
		}
		// Derived before the key was recorded: record it, keep the set.
		p.status.TableSetKey = key
		p.statusDirty = true
	}
	if c, rerr := firstPositionError(p.f); rerr != nil {
		e := *rerr
		if e.Addr == "" {
			e.Addr = c
		}
		if e.Time.IsZero() {
			e.Time = t.in.Now
		}
		t.stopWithError(p, &e)
		return
	}
	if ds, ok := t.in.DDL[p.f.ID]; ok && ds.ExecErr != nil {
		if next, _, _ := t.nextDDL(p); next != nil && next.CommitTs == ds.ExecTs {
			t.stopWithError(p, &model.RunningError{Addr: t.in.NodeID, Code: CodeDDLFailed,
				Message: fmt.Sprintf("executing DDL %q (commit ts %d) downstream: %v", next.Query, next.CommitTs, ds.ExecErr), Time: t.in.Now})
			return
		}
	}
	if p.info.TargetTs != 0 && p.status.CheckpointTs >= p.info.TargetTs {
		t.setState(p, model.StateFinished, fmt.Sprintf("checkpoint %d reached target %d", p.status.CheckpointTs, p.info.TargetTs))
		p.clearTasks()
		return
	}
	t.schedule(p, cv)
}

func firstPositionError(f *meta.Feed) (model.CaptureID, *model.RunningError) {
	for _, c := range sortedKeys(f.Tasks) {
		if pos := f.Tasks[c].Position; pos != nil && pos.Error != nil {
			return c, pos.Error
		}
	}
	return "", nil
}

// initialize lists the source's tables (through the worker), applies the
// filter and writes the first status with every table an orphan.
func (t *ticker) initialize(p *plan) {
	res, ok := t.in.SourceTables[p.f.ID]
	if !ok {
		t.out.NeedTables = append(t.out.NeedTables, p.f.ID)
		return
	}
	if res.Err != nil {
		t.stopWithError(p, &model.RunningError{Addr: t.in.NodeID, Code: CodeListTablesFailed,
			Message: fmt.Sprintf("listing the tables of %s: %v", redact.URI(p.info.SourceURI), redact.Error(res.Err, p.info.SourceURI)), Time: t.in.Now})
		return
	}
	flt, err := filter.New(p.info.Config.Filter)
	if err != nil {
		t.stopWithError(p, &model.RunningError{Addr: t.in.NodeID, Code: CodeInvalidFilter,
			Message: fmt.Sprintf("compiling the table filter: %v", err), Time: t.in.Now})
		return
	}
	seen := map[model.TableID]bool{}
	var tables []model.TableName
	for _, tn := range res.Tables {
		if seen[tn.ID] || !flt.Match(tn) {
			continue
		}
		seen[tn.ID] = true
		tables = append(tables, tn)
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].ID < tables[j].ID })
	start := p.info.StartTs
	if p.status != nil && p.status.CheckpointTs != 0 {
		// A resume with an overwritten checkpoint before initialisation, or
		// progress recorded earlier: never go back to the start ts.
		start = p.status.CheckpointTs
	}
	prev := p.status
	p.status = &model.ChangefeedStatus{
		CheckpointTs: start,
		ResolvedTs:   start,
		Tables:       tables,
		Initialized:  true,
		TableSetKey:  TableSetKey(p.info),
	}
	rederived := prev != nil && prev.Initialized
	if prev != nil {
		// Derived again after an update: what the changefeed has done so
		// far stays. A stream's resume position belongs to its upstream,
		// so it stays only if the source did not change.
		p.status.RetiredCount, p.status.LastDDLTs = prev.RetiredCount, prev.LastDDLTs
		if prev.StreamPosition != nil && sameSource(prev.TableSetKey, p.status.TableSetKey) {
			p.status.StreamPosition = prev.StreamPosition
		}
	}
	if res.Stream {
		// One unit carries the stream and every table (see DESIGN.md).
		p.status.Stream = true
		p.status.StreamTables = tables
		p.status.Tables = []model.TableName{model.StreamUnitName}
	}
	orphanAll(p)
	if p.hasTaskKeys() {
		p.clearTasks()
	}
	msg := fmt.Sprintf("%d of %d tables selected", len(tables), len(res.Tables))
	if rederived {
		added, removed := diffTables(prevTables(prev), tables)
		msg = fmt.Sprintf("table set derived again after an update: %s; %d added, %d removed", msg, len(added), len(removed))
	}
	t.event(LogEvent{Kind: EventInitialized, Changefeed: p.f.ID, Ts: start, Message: msg})
}

// TableSetKey identifies what a changefeed's table set is derived from:
// its source URI and its filter, each as a short hash.
func TableSetKey(info *model.ChangefeedInfo) string {
	src := sha256.Sum256([]byte(info.SourceURI))
	flt, _ := json.Marshal(info.Config.Filter)
	fh := sha256.Sum256(flt)
	return hex.EncodeToString(src[:6]) + "/" + hex.EncodeToString(fh[:6])
}

func sameSource(a, b string) bool {
	as, _, _ := strings.Cut(a, "/")
	bs, _, _ := strings.Cut(b, "/")
	return as == bs
}

// prevTables is the table set a status holds (a stream's tables are
// behind its unit).
func prevTables(st *model.ChangefeedStatus) []model.TableName {
	if st.Stream {
		return st.StreamTables
	}
	return st.Tables
}

// diffTables lists the tables of next that are not in prev, and of prev
// that are not in next, by ID.
func diffTables(prev, next []model.TableName) (added, removed []model.TableName) {
	in := func(set []model.TableName, id model.TableID) bool {
		for _, t := range set {
			if t.ID == id {
				return true
			}
		}
		return false
	}
	for _, t := range next {
		if !in(prev, t.ID) {
			added = append(added, t)
		}
	}
	for _, t := range prev {
		if !in(next, t.ID) {
			removed = append(removed, t)
		}
	}
	return added, removed
}

// stopWithError records err and stops the changefeed: in failed for
// errors that retrying cannot fix, otherwise in error until the backoff
// elapses.
func (t *ticker) stopWithError(p *plan, err *model.RunningError) {
	next := model.StateError
	switch err.Code {
	case CodeSnapshotLost, CodeInvalidFilter, CodeGCUpdateFailed, CodeSinkUnretryable:
		next = model.StateFailed
	}
	p.info.Error = err
	p.info.ErrorHistory = trimHistory(append(p.info.ErrorHistory, t.in.Now), t.in.Now, t.cfg)
	p.infoDirty = true
	t.setState(p, next, err.Code)
	if !holdsGC(p.info) {
		t.releasedGC[p.f.ID] = true
	}
	p.clearTasks()
	t.event(LogEvent{Kind: EventErrorRecorded, Changefeed: p.f.ID, Capture: err.Addr, Message: err.Code + ": " + err.Message})
}

// trimHistory keeps the errors within the window, at most ErrorHistoryMax.
func trimHistory(h []time.Time, now time.Time, cfg Config) []time.Time {
	cut := now.Add(-cfg.ErrorHistoryWindow)
	var out []time.Time
	for _, e := range h {
		if !e.Before(cut) {
			out = append(out, e)
		}
	}
	if len(out) > cfg.ErrorHistoryMax {
		out = out[len(out)-cfg.ErrorHistoryMax:]
	}
	return out
}

// retryAt is when a changefeed in the error state runs again: the last
// error plus a backoff that doubles with every recent error.
func (t *ticker) retryAt(info *model.ChangefeedInfo) time.Time {
	recent := trimHistory(info.ErrorHistory, t.in.Now, t.cfg)
	var last time.Time
	if n := len(info.ErrorHistory); n > 0 {
		last = info.ErrorHistory[n-1]
	} else if info.Error != nil {
		last = info.Error.Time
	}
	return last.Add(backoff(len(recent), t.cfg))
}

func backoff(recentErrors int, cfg Config) time.Duration {
	d := cfg.ErrorBackoffBase
	for i := 1; i < recentErrors; i++ {
		d *= 2
		if d >= cfg.ErrorBackoffMax {
			return cfg.ErrorBackoffMax
		}
	}
	return min(d, cfg.ErrorBackoffMax)
}

// holdsGC reports whether a changefeed still needs its upstream history:
// a running one does, and so do stopped, error and failed ones — they may be
// resumed — for at most their gc-ttl (see gcExpired). One that failed
// because its data is gone, finished or was removed does not.
func holdsGC(info *model.ChangefeedInfo) bool {
	switch info.State {
	case model.StateNormal, "", model.StateStopped, model.StateError:
		return true
	case model.StateFailed:
		return info.Error == nil || info.Error.Code != CodeSnapshotLost
	}
	return false
}

// feedCheckpoint is the ts a changefeed needs upstream history from.
func feedCheckpoint(f *meta.Feed) model.Ts {
	if f.Status != nil && f.Status.CheckpointTs != 0 {
		return f.Status.CheckpointTs
	}
	return f.Info.StartTs
}

func (t *ticker) snapshotLost(f *meta.Feed) (ckpt, gcTs model.Ts, lost bool) {
	uid, ok := t.upstreamOf(f.Info)
	if !ok {
		return 0, 0, false
	}
	gcTs, ok = t.in.UpstreamGC[uid]
	if !ok {
		return 0, 0, false
	}
	ckpt = feedCheckpoint(f)
	return ckpt, gcTs, ckpt < gcTs
}

// cleanupUpstream asks the worker to remove what a removed changefeed keeps
// upstream (a PostgreSQL slot and publication) and then to record that it
// did, guarded by the info's revision. It comes only after the changefeed's
// tasks are gone, so its stream is closing; a slot still in use makes the
// worker retry later.
func (t *ticker) cleanupUpstream(p *plan) {
	info := cloneInfo(p.info)
	info.UpstreamCleaned = true
	op, err := meta.Put(meta.ChangefeedInfoKey(p.f.ID), info)
	if err != nil {
		return
	}
	t.out.Cleanup = append(t.out.Cleanup, CleanupAction{
		Changefeed: p.f.ID,
		SourceURI:  p.info.SourceURI,
		Record: fsm.Command{Kind: fsm.KindTxn, OwnerEpoch: t.s.OwnerEpoch,
			Conds: []fsm.Cond{{Type: fsm.CondModRev, Key: meta.ChangefeedInfoKey(p.f.ID), ModRev: p.f.InfoRev}},
			Ops:   []fsm.Op{op}},
	})
}
