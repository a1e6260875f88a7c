package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/raftcdc/raftcdc/internal/redact"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/admission"
	"github.com/raftcdc/raftcdc/connector"
	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// CDC is what the changefeed routes need beyond Store.
type CDC interface {
	// Upstream opens (or reuses) the source behind a URI, to list tables and
	// check the GC safepoint.
	Upstream(ctx context.Context, uri string) (source.Upstream, error)
	// UpstreamFor opens the instance a changefeed reads through (for a
	// PostgreSQL source, the one that knows the changefeed's slot).
	UpstreamFor(ctx context.Context, changefeedID, uri string) (source.Upstream, error)
	// CaptureLiveness is gossip's view of every node: alive, suspect, dead,
	// left.
	CaptureLiveness() map[string]string
	// ValidateSinkURI checks a sink URI without touching the downstream,
	// including this node's sink roots for local directories.
	ValidateSinkURI(uri string) error
	// TableBudget is this node's table budget: admission control counts a
	// live node whose capture has not registered yet with it.
	TableBudget() int
}

// Error codes of the changefeed routes.
const (
	CodeChangefeedExists   = "changefeed_exists"
	CodeChangefeedNotFound = "changefeed_not_found"
	CodeChangefeedRemoved  = "changefeed_removed"
	CodeWrongState         = "wrong_state"
	CodeAdminJobPending    = "admin_job_pending"
	CodeInvalidURI         = "invalid_uri"
	CodeInvalidTs          = "invalid_ts"
	CodeInvalidConfig      = "invalid_config"
	CodeCaptureNotFound    = "capture_not_found"
	CodeTableNotFound      = "table_not_found"
	CodeSnapshotLost       = "snapshot_lost"
	// CodeOverCapacity refuses a changefeed whose tables do not fit in the
	// cluster's table capacity beside the running ones (package admission).
	CodeOverCapacity = "over_capacity"
)

// EnableCDC registers the changefeed, capture and processor routes.
func (h *Handler) EnableCDC(cdc CDC) {
	h.cdc = cdc
	h.handle("GET /api/v1/changefeeds", h.listChangefeeds)
	h.handle("POST /api/v1/changefeeds", h.createChangefeed)
	h.handle("POST /api/v1/changefeeds/preview", h.previewChangefeed)
	h.handle("GET /api/v1/changefeeds/{id}", h.getChangefeed)
	h.handle("PUT /api/v1/changefeeds/{id}", h.updateChangefeed)
	h.handle("DELETE /api/v1/changefeeds/{id}", h.removeChangefeed)
	h.handle("POST /api/v1/changefeeds/{id}/pause", h.pauseChangefeed)
	h.handle("POST /api/v1/changefeeds/{id}/resume", h.resumeChangefeed)
	h.handle("POST /api/v1/changefeeds/{id}/rebalance", h.rebalanceChangefeed)
	h.handle("POST /api/v1/changefeeds/{id}/move-table", h.moveTable)
	h.handle("GET /api/v1/captures", h.listCaptures)
	h.handle("POST /api/v1/captures/{id}/drain", h.drainCapture)
	h.handle("GET /api/v1/processors", h.listProcessors)
	h.handle("GET /api/v1/processors/{changefeed}/{capture}", h.getProcessor)
	h.handle("GET /api/v1/tso", h.tso)
}

// ChangefeedRequest creates or updates a changefeed. In an update, empty
// fields keep their values.
type ChangefeedRequest struct {
	ID        string                  `json:"id,omitempty"`
	SourceURI string                  `json:"source_uri,omitempty"`
	SinkURI   string                  `json:"sink_uri,omitempty"`
	StartTs   model.Ts                `json:"start_ts,omitempty"`
	TargetTs  model.Ts                `json:"target_ts,omitempty"`
	Config    *model.ChangefeedConfig `json:"config,omitempty"`
}

// TimeInfo shows a ts as TSO and as wall time.
type TimeInfo struct {
	TSO  model.Ts  `json:"tso"`
	Time time.Time `json:"time"`
}

func timeInfo(ts model.Ts) *TimeInfo {
	if ts == 0 {
		return nil
	}
	return &TimeInfo{TSO: ts, Time: model.TsTime(ts).UTC()}
}

// ChangefeedSummary is one row of the changefeed list.
type ChangefeedSummary struct {
	ID                string              `json:"id"`
	State             model.FeedState     `json:"state"`
	SourceURI         string              `json:"source_uri"`
	SinkURI           string              `json:"sink_uri"`
	Checkpoint        *TimeInfo           `json:"checkpoint,omitempty"`
	Resolved          *TimeInfo           `json:"resolved,omitempty"`
	CheckpointLagSecs float64             `json:"checkpoint_lag_seconds"`
	ResolvedLagSecs   float64             `json:"resolved_lag_seconds"`
	Tables            int                 `json:"tables"`
	Error             *model.RunningError `json:"error,omitempty"`
	AdminJob          model.AdminJobType  `json:"admin_job,omitempty"`
}

// ChangefeedDetail is a changefeed with everything known about it.
type ChangefeedDetail struct {
	ChangefeedSummary
	Info         model.ChangefeedInfo           `json:"info"`
	Status       *model.ChangefeedStatus        `json:"status,omitempty"`
	Tasks        map[string]*model.TaskStatus   `json:"tasks,omitempty"`
	Positions    map[string]*model.TaskPosition `json:"positions,omitempty"`
	Count        uint64                         `json:"rows_written"`
	InfoRevision uint64                         `json:"info_revision"`
	// CorruptKeys are the changefeed's task keys that do not decode; they
	// are skipped, and the owner deletes them.
	CorruptKeys []meta.CorruptKey `json:"corrupt_keys,omitempty"`
	// Snapshot is the initial copy's progress while a source copies
	// existing rows (PostgreSQL's initial snapshot).
	Snapshot *model.SnapshotProgress `json:"snapshot,omitempty"`
	// Upstream is what the source keeps upstream for the changefeed (a
	// PostgreSQL slot: retained WAL, confirmed position), read live;
	// Warnings lists what needs an operator.
	Upstream any      `json:"upstream,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// sourceURI is the unredacted source URI, for reading the upstream.
	sourceURI string
}

// redactedInfo is a changefeed's definition as the API shows it: every
// password and secret parameter in its URIs replaced. Writes (create,
// update) take the URIs in full; nothing the API returns carries a secret.
func redactedInfo(in model.ChangefeedInfo) model.ChangefeedInfo {
	in.Error = redactedError(in.Error, in.SourceURI, in.SinkURI)
	in.SourceURI, in.SinkURI = redact.URI(in.SourceURI), redact.URI(in.SinkURI)
	return in
}

// redactedError hides the URIs' secrets in an error a connector raised (a
// driver may quote its connection string).
func redactedError(e *model.RunningError, uris ...string) *model.RunningError {
	if e == nil {
		return nil
	}
	c := *e
	c.Message = redact.Text(c.Message, uris...)
	return &c
}

// CheckpointTs is the changefeed's checkpoint, 0 before the owner has
// written a status.
func (d ChangefeedDetail) CheckpointTs() model.Ts {
	if d.Status == nil {
		return 0
	}
	return d.Status.CheckpointTs
}

// Assignments maps each table to the captures whose task status holds it,
// sorted. More than one capture for a table is a scheduling fault that
// callers (renderers, tests) want to see, so none is dropped.
func (d ChangefeedDetail) Assignments() map[model.TableID][]string {
	out := map[model.TableID][]string{}
	for capture, ts := range d.Tasks {
		if ts == nil {
			continue
		}
		for table := range ts.Tables {
			out[table] = append(out[table], capture)
		}
	}
	for _, cs := range out {
		sort.Strings(cs)
	}
	return out
}

type feedView struct {
	info    model.ChangefeedInfo
	infoRev uint64
	status  *model.ChangefeedStatus
	tasks   map[string]*model.TaskStatus
	pos     map[string]*model.TaskPosition
	// corrupt are the changefeed's keys that do not decode; they are
	// skipped (see meta/DESIGN.md) and shown.
	corrupt []meta.CorruptKey
}

// CodeMetadataCorrupt answers a request about a changefeed whose info or
// status does not decode.
const CodeMetadataCorrupt = "metadata_corrupt"

// readFeed reads one changefeed. Keys that do not decode are skipped, as
// everywhere (package meta); a changefeed whose own info or status does not
// decode is skipped by the owner and the processors, and reading it is an
// error that names the keys, rather than an answer that looks whole. With
// tasks false only the changefeed's own keys are read (a list's summary).
// Records are decoded through the handler's cache and shared between
// requests: nothing here may modify them.
func (h *Handler) readFeed(r fsm.Reader, id string, tasks bool) (*feedView, bool, error) {
	mf, found, corrupt := meta.LoadFeedCached(r, id, h.decoded, tasks)
	if !found {
		return nil, false, nil
	}
	if mf.Skipped() {
		keys := make([]string, 0, len(corrupt))
		for _, c := range corrupt {
			keys = append(keys, c.Key+" ("+c.Reason+")")
		}
		return nil, true, Errorf(http.StatusInternalServerError, CodeMetadataCorrupt,
			"changefeed %q is skipped by the cluster: its metadata does not decode: %s; 'ctl cluster status' lists every corrupt key, and 'ctl changefeed remove --force' removes it", id, strings.Join(keys, "; "))
	}
	if mf.Info == nil {
		return nil, false, nil // left-over status or tasks; the owner deletes them
	}
	f := &feedView{info: *mf.Info, infoRev: mf.InfoRev, status: mf.Status, tasks: map[string]*model.TaskStatus{}, pos: map[string]*model.TaskPosition{}, corrupt: corrupt}
	for c, t := range mf.Tasks {
		if t.Status != nil {
			f.tasks[c] = t.Status
		}
		if t.Position != nil {
			f.pos[c] = t.Position
		}
	}
	return f, true, nil
}

func (f *feedView) summary(now time.Time) ChangefeedSummary {
	s := ChangefeedSummary{ID: f.info.ID, State: f.info.State, SourceURI: redact.URI(f.info.SourceURI), SinkURI: redact.URI(f.info.SinkURI), Error: redactedError(f.info.Error, f.info.SourceURI, f.info.SinkURI), AdminJob: f.info.AdminJob}
	if f.status != nil {
		s.Checkpoint, s.Resolved = timeInfo(f.status.CheckpointTs), timeInfo(f.status.ResolvedTs)
		if f.status.CheckpointTs != 0 {
			s.CheckpointLagSecs = model.LagSeconds(f.status.CheckpointTs, now)
			s.ResolvedLagSecs = model.LagSeconds(f.status.ResolvedTs, now)
		}
		s.Tables = len(f.status.Tables)
	} else {
		s.Checkpoint = timeInfo(f.info.StartTs)
	}
	return s
}

func (h *Handler) feedID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := validateChangefeedID(id); err != nil {
		return "", err
	}
	return id, nil
}

// loadFeed reads one changefeed, honouring ?consistent=true.
func (h *Handler) loadFeed(r *http.Request, id string) (*feedView, error) {
	if err := h.consistentRead(r); err != nil {
		return nil, err
	}
	f, found, err := h.viewFeed(id)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, Errorf(http.StatusNotFound, CodeChangefeedNotFound, "changefeed %q does not exist; 'ctl changefeed list --all' shows every changefeed", id)
	}
	return f, nil
}

// viewFeed reads one changefeed from one consistent view of the local state.
func (h *Handler) viewFeed(id string) (f *feedView, found bool, err error) {
	h.decoded.SweepEvery(decodeSweep, time.Now())
	err = h.store.View(func(rd fsm.Reader, _ uint64) error {
		var rerr error
		f, found, rerr = h.readFeed(rd, id, true)
		return rerr
	})
	return f, found, err
}

func (h *Handler) listChangefeeds(w http.ResponseWriter, r *http.Request) error {
	all, err := BoolParam(r, "all")
	if err != nil {
		return err
	}
	if err := h.consistentRead(r); err != nil {
		return err
	}
	out := []ChangefeedSummary{}
	now := time.Now()
	h.decoded.SweepEvery(decodeSweep, now)
	err = h.store.View(func(rd fsm.Reader, _ uint64) error {
		for _, kv := range rd.List(meta.PrefixChangefeedInfo) {
			k, err := meta.ParseKey(kv.Key)
			if err != nil {
				continue
			}
			f, ok, err := h.readFeed(rd, k.Changefeed, false)
			if err != nil || !ok {
				continue
			}
			if !all && (f.info.State == model.StateRemoved || f.info.State == model.StateFinished) {
				continue
			}
			out = append(out, f.summary(now))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, map[string]any{"changefeeds": out})
}

func (h *Handler) getChangefeed(w http.ResponseWriter, r *http.Request) error {
	id, err := h.feedID(r)
	if err != nil {
		return err
	}
	f, err := h.loadFeed(r, id)
	if err != nil {
		return err
	}
	pos := make(map[string]*model.TaskPosition, len(f.pos))
	for c, p := range f.pos {
		cp := *p
		cp.Error = redactedError(p.Error, f.info.SourceURI, f.info.SinkURI)
		pos[c] = &cp
	}
	d := ChangefeedDetail{ChangefeedSummary: f.summary(time.Now()), Info: redactedInfo(f.info), Status: f.status, Tasks: f.tasks, Positions: pos, InfoRevision: f.infoRev, CorruptKeys: f.corrupt}
	// Counts of positions the owner deleted live on in the status.
	if f.status != nil {
		d.Count = f.status.RetiredCount
	}
	for _, p := range f.pos {
		d.Count += p.Count
		if p.Snapshot != nil {
			d.Snapshot = p.Snapshot
		}
	}
	d.sourceURI = f.info.SourceURI
	h.upstreamStatus(r.Context(), &d)
	return WriteJSON(w, http.StatusOK, d)
}

// upstreamStatus adds, for sources that keep state upstream, that state
// and its warnings, read live with a short timeout; a failure to read it is
// a warning, not an error of the query.
func (h *Handler) upstreamStatus(ctx context.Context, d *ChangefeedDetail) {
	if d.Info.State == model.StateRemoved || h.cdc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	src, err := h.cdc.UpstreamFor(ctx, d.Info.ID, d.sourceURI)
	if err != nil {
		return
	}
	r, ok := src.(source.StatusReporter)
	if !ok {
		return
	}
	st, warning, err := r.UpstreamStatus(ctx)
	if err != nil {
		d.Warnings = append(d.Warnings, "reading the upstream state: "+redact.Text(err.Error(), d.sourceURI))
		return
	}
	d.Upstream = st
	if warning != "" {
		d.Warnings = append(d.Warnings, warning)
	}
}

func newFeedID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "cf-" + hex.EncodeToString(b)
}

// validateSpec checks URIs, ts and config; it reaches the upstream to check
// the GC safepoint and that the filter leaves at least one table. It answers
// the tables the filter selects, in the order the source lists them, and how
// many tables the source has.
func (h *Handler) validateSpec(ctx context.Context, info *model.ChangefeedInfo, checkStart bool) (matched []model.TableName, total int, err error) {
	if info.SourceURI == "" {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidURI, "source_uri is required (for example datagen://?tables=8)")
	}
	if info.SinkURI == "" {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidURI, "sink_uri is required (for example file:///tmp/out or blackhole://)")
	}
	if err := connector.ValidateSourceURI(info.SourceURI); err != nil {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidURI, "%v", err)
	}
	// The CDC side checks the sink against this node's policy too: a
	// file:// directory must be inside the sink roots.
	if err := h.cdc.ValidateSinkURI(info.SinkURI); err != nil {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidURI, "%v", err)
	}
	if err := filter.ValidateConfig(info.Config); err != nil {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidConfig, "%v", err)
	}
	if err := info.Config.Validate(); err != nil {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidConfig, "%v", err)
	}
	flt, err := filter.New(info.Config.Filter)
	if err != nil {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidConfig, "%v", err)
	}
	if info.StartTs > model.TsFromTime(time.Now().Add(time.Minute)) {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidTs, "start_ts %d (%s) is in the future", info.StartTs, model.TsTime(info.StartTs).UTC().Format(time.RFC3339))
	}
	if info.TargetTs != 0 && info.TargetTs <= info.StartTs {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidTs, "target_ts %d must be after start_ts %d", info.TargetTs, info.StartTs)
	}
	src, err := h.cdc.Upstream(ctx, info.SourceURI)
	if err != nil {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidURI, "opening source %s: %v", redact.URI(info.SourceURI), redact.Error(err, info.SourceURI))
	}
	if checkStart {
		gc, err := src.GCSafepoint(ctx)
		if err != nil {
			return nil, 0, Errorf(http.StatusServiceUnavailable, CodeUnavailable, "reading the upstream GC safepoint: %v", err)
		}
		if info.StartTs < gc {
			return nil, 0, Errorf(http.StatusBadRequest, CodeSnapshotLost, "start_ts %d (%s) is below the upstream GC safepoint %d (%s): that data is gone; choose a later start ts",
				info.StartTs, model.TsTime(info.StartTs).UTC().Format(time.RFC3339), gc, model.TsTime(gc).UTC().Format(time.RFC3339))
		}
	}
	tables, err := src.TablesAt(ctx, info.StartTs)
	if err != nil {
		return nil, 0, Errorf(http.StatusServiceUnavailable, CodeUnavailable, "listing upstream tables: %v", err)
	}
	for _, t := range tables {
		if flt.Match(t) {
			matched = append(matched, t)
		}
	}
	if len(matched) == 0 {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidConfig, "the filter rules %q match none of the %d upstream tables", info.Config.Filter.Rules, len(tables))
	}
	id := info.ID
	if id == "" {
		id = "preview"
	}
	if err := connector.CheckSource(ctx, id, info.SourceURI, flt.Match); err != nil {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidURI, "checking the source: %v", redact.Error(err, info.SourceURI))
	}
	// The downstream: reachable, the right server, and the privileges the
	// sink needs on every database the tables go to. Creates nothing.
	dbs := map[string]bool{}
	var databases []string
	for _, tn := range matched {
		if !dbs[tn.Schema] {
			dbs[tn.Schema] = true
			databases = append(databases, tn.Schema)
		}
	}
	if _, err := connector.CheckSink(ctx, info.SinkURI, databases); err != nil {
		return nil, 0, Errorf(http.StatusBadRequest, CodeInvalidURI, "checking the sink: %v", redact.Error(err, info.SinkURI))
	}
	return matched, len(tables), nil
}

// createPlan is what a create writes once every check has passed.
type createPlan struct {
	info model.ChangefeedInfo
	// cond makes the write fail if another create took the ID meanwhile:
	// the ID is absent, or still holds the removed changefeed's tombstone
	// that was read.
	cond    fsm.Cond
	matched []model.TableName
	total   int
}

// planCreate runs every check of a create without writing anything. Create
// and preview both go through it, so that a preview that passes means the
// create would pass too (short of a concurrent change). An empty req.ID
// skips the ID checks: create generates an ID before calling this, preview
// leaves it empty.
func (h *Handler) planCreate(ctx context.Context, req ChangefeedRequest) (*createPlan, error) {
	if req.ID != "" {
		if err := validateChangefeedID(req.ID); err != nil {
			return nil, err
		}
	}
	info := model.ChangefeedInfo{ID: req.ID, SourceURI: req.SourceURI, SinkURI: req.SinkURI, StartTs: req.StartTs, TargetTs: req.TargetTs, State: model.StateNormal, CreateTime: time.Now().UTC()}
	if req.Config != nil {
		info.Config = *req.Config
	}
	if info.StartTs == 0 {
		info.StartTs = model.TsFromTime(time.Now())
	}
	matched, total, err := h.validateSpec(ctx, &info, true)
	if err != nil {
		return nil, err
	}
	info.AdmittedTables = len(matched)
	if err := h.admit(ctx, "create", info.ID, "", len(matched)); err != nil {
		return nil, err
	}
	p := &createPlan{info: info, matched: matched, total: total}
	if req.ID == "" {
		return p, nil
	}
	// A removed changefeed's tombstone may be replaced; anything else with
	// the same ID may not.
	p.cond = fsm.Cond{Type: fsm.CondAbsent, Key: meta.ChangefeedInfoKey(info.ID)}
	existing, _, err := h.viewFeed(info.ID)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		if existing.info.State != model.StateRemoved {
			return nil, Errorf(http.StatusConflict, CodeChangefeedExists, "changefeed %q already exists (state %s); pick another ID or remove it first", info.ID, existing.info.State)
		}
		p.cond = fsm.Cond{Type: fsm.CondModRev, Key: meta.ChangefeedInfoKey(info.ID), ModRev: existing.infoRev}
	}
	return p, nil
}

func (h *Handler) createChangefeed(w http.ResponseWriter, r *http.Request) error {
	var req ChangefeedRequest
	if err := DecodeBody(r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = newFeedID()
	}
	p, err := h.planCreate(r.Context(), req)
	if err != nil {
		return err
	}
	val, _ := json.Marshal(p.info)
	res, err := h.apply(r.Context(), fsm.Command{Conds: []fsm.Cond{p.cond}, Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.ChangefeedInfoKey(p.info.ID), Value: val}}})
	if err != nil {
		if errors.Is(err, fsm.ErrPreconditionFailed) {
			return Errorf(http.StatusConflict, CodeChangefeedExists, "changefeed %q was created concurrently", p.info.ID)
		}
		return err
	}
	return WriteJSON(w, http.StatusCreated, map[string]any{"id": p.info.ID, "start_ts": timeInfo(p.info.StartTs), "index": res.Index})
}

// previewChangefeed answers what a create with the same body would do. It
// runs on the node that receives it, not the leader: it writes nothing, and
// the source is reached from a node, where its network access and
// credentials are, rather than from the operator's machine.
func (h *Handler) previewChangefeed(w http.ResponseWriter, r *http.Request) error {
	var req ChangefeedRequest
	if err := DecodeBody(r, &req); err != nil {
		return err
	}
	p, err := h.planCreate(r.Context(), req)
	if err != nil {
		return err
	}
	names := make([]string, len(p.matched))
	for i, t := range p.matched {
		names[i] = t.String()
	}
	return WriteJSON(w, http.StatusOK, ChangefeedPreview{ID: p.info.ID, StartTs: timeInfo(p.info.StartTs), TargetTs: timeInfo(p.info.TargetTs), Tables: names, TotalTables: p.total})
}

// admit refuses a changefeed (action on id) whose asked tables do not fit
// beside the tables of the running changefeeds other than exclude, in the
// capacity of the live captures. It reads this node's replica and gossip
// view; two creates racing on different nodes can both pass (see
// admission/DESIGN.md).
func (h *Handler) admit(ctx context.Context, action, id, exclude string, asked int) error {
	h.catchUp(ctx)
	var u admission.Usage
	live := h.cdc.CaptureLiveness()
	if err := h.store.View(func(rd fsm.Reader, _ uint64) error {
		u = admission.Measure(rd, live, exclude, h.cdc.TableBudget())
		return nil
	}); err != nil {
		return err
	}
	if err := u.Check(action, id, asked); err != nil {
		return Errorf(http.StatusConflict, CodeOverCapacity, "%v", err)
	}
	return nil
}

// catchUp brings this replica up to every write the leader acknowledged
// before an operator request decides on it. A follower may not yet have
// applied what another node already answered (the owner settling a pause,
// a create, a capture registering), and the request would be refused on
// state the caller knows is gone. Without a leader the local state is used:
// a preview needs none, and a write fails anyway, with the local state
// still giving a refusal its reason.
func (h *Handler) catchUp(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = h.store.ReadIndex(rctx)
	cancel()
}

func (h *Handler) apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := h.store.Apply(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// changeInfo applies fn to a changefeed's info with compare-and-set, so an
// operator request never overwrites the owner's concurrent change.
// fn decides on a caught-up replica (see catchUp).
func (h *Handler) changeInfo(ctx context.Context, id string, fn func(f *feedView) error) (*feedView, error) {
	h.catchUp(ctx)
	for attempt := 0; ; attempt++ {
		f, found, err := h.viewFeed(id)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, Errorf(http.StatusNotFound, CodeChangefeedNotFound, "changefeed %q does not exist", id)
		}
		if err := fn(f); err != nil {
			return nil, err
		}
		val, _ := json.Marshal(f.info)
		_, err = h.apply(ctx, fsm.Command{
			Conds: []fsm.Cond{{Type: fsm.CondModRev, Key: meta.ChangefeedInfoKey(id), ModRev: f.infoRev}},
			Ops:   []fsm.Op{{Type: fsm.OpPut, Key: meta.ChangefeedInfoKey(id), Value: val}},
		})
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fsm.ErrPreconditionFailed) || attempt >= 5 {
			return nil, err
		}
		// Our read was older than the follower's apply; a read-index brings
		// it up to date before the retry.
		_ = h.store.ReadIndex(ctx)
	}
}

func wrongState(id string, state model.FeedState, action, hint string) error {
	return Errorf(http.StatusConflict, CodeWrongState, "cannot %s changefeed %q in state %s%s", action, id, state, hint)
}

func checkNotGone(f *feedView, action string) error {
	switch f.info.State {
	case model.StateRemoved:
		return Errorf(http.StatusConflict, CodeChangefeedRemoved, "cannot %s changefeed %q: it was removed; create it again instead", action, f.info.ID)
	case model.StateFinished:
		return wrongState(f.info.ID, f.info.State, action, ": it reached its target ts")
	}
	if f.info.AdminJob != model.AdminNone {
		return Errorf(http.StatusConflict, CodeAdminJobPending, "changefeed %q already has a pending %s request; retry when the owner has carried it out", f.info.ID, f.info.AdminJob)
	}
	return nil
}

func (h *Handler) adminJob(w http.ResponseWriter, r *http.Request, job model.AdminJobType, check func(f *feedView) error) error {
	id, err := h.feedID(r)
	if err != nil {
		return err
	}
	f, err := h.changeInfo(r.Context(), id, func(f *feedView) error {
		if err := checkNotGone(f, string(job)); err != nil {
			return err
		}
		if err := check(f); err != nil {
			return err
		}
		f.info.AdminJob = job
		return nil
	})
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "admin_job": job, "state": f.info.State})
}

func (h *Handler) pauseChangefeed(w http.ResponseWriter, r *http.Request) error {
	return h.adminJob(w, r, model.AdminPause, func(f *feedView) error {
		if f.info.State == model.StateStopped {
			return wrongState(f.info.ID, f.info.State, "pause", ": it is already paused")
		}
		return nil
	})
}

// ResumeRequest optionally moves the checkpoint.
type ResumeRequest struct {
	OverwriteCheckpointTs model.Ts `json:"overwrite_checkpoint_ts,omitempty"`
}

func (h *Handler) resumeChangefeed(w http.ResponseWriter, r *http.Request) error {
	var req ResumeRequest
	if r.ContentLength != 0 {
		if err := DecodeBody(r, &req); err != nil {
			return err
		}
	}
	return h.adminJob(w, r, model.AdminResume, func(f *feedView) error {
		if f.info.State == model.StateNormal {
			return wrongState(f.info.ID, f.info.State, "resume", ": it is running")
		}
		// An errored changefeed already holds its share (it runs again by
		// itself); any other comes back and must fit.
		if f.info.State != model.StateError {
			if err := h.admit(r.Context(), "resume", f.info.ID, f.info.ID, admission.Tables(&f.info, f.status)); err != nil {
				return err
			}
		}
		if req.OverwriteCheckpointTs != 0 {
			src, err := h.cdc.Upstream(r.Context(), f.info.SourceURI)
			if err != nil {
				return Errorf(http.StatusServiceUnavailable, CodeUnavailable, "opening source: %v", err)
			}
			gc, err := src.GCSafepoint(r.Context())
			if err != nil {
				return Errorf(http.StatusServiceUnavailable, CodeUnavailable, "reading the upstream GC safepoint: %v", err)
			}
			if req.OverwriteCheckpointTs < gc {
				return Errorf(http.StatusBadRequest, CodeSnapshotLost, "overwrite_checkpoint_ts %d is below the upstream GC safepoint %d", req.OverwriteCheckpointTs, gc)
			}
			if req.OverwriteCheckpointTs > model.TsFromTime(time.Now().Add(time.Minute)) {
				return Errorf(http.StatusBadRequest, CodeInvalidTs, "overwrite_checkpoint_ts %d is in the future", req.OverwriteCheckpointTs)
			}
			if f.info.TargetTs != 0 && req.OverwriteCheckpointTs >= f.info.TargetTs {
				return Errorf(http.StatusBadRequest, CodeInvalidTs, "overwrite_checkpoint_ts %d is not before target_ts %d", req.OverwriteCheckpointTs, f.info.TargetTs)
			}
			f.info.OverwriteCheckpointTs = req.OverwriteCheckpointTs
		}
		return nil
	})
}

// removeChangefeed asks the owner to remove a changefeed. With ?force=true
// it also removes one whose metadata does not decode (see meta/DESIGN.md):
// such a changefeed is skipped by everyone, so no admin job on it would ever
// be carried out, and the operator is the one who must decide.
func (h *Handler) removeChangefeed(w http.ResponseWriter, r *http.Request) error {
	force, err := BoolParam(r, "force")
	if err != nil {
		return err
	}
	err = h.adminJob(w, r, model.AdminRemove, func(*feedView) error { return nil })
	var e *Error
	if !force || !errors.As(err, &e) || e.Code != CodeMetadataCorrupt {
		return err
	}
	id, _ := h.feedID(r) // adminJob checked it
	return h.forceRemove(w, r, id)
}

// ForceRemoveResult answers a forced removal of a changefeed whose
// metadata does not decode.
type ForceRemoveResult struct {
	ID       string          `json:"id"`
	AdminJob string          `json:"admin_job"`
	State    model.FeedState `json:"state"`
	// Replaced is the info key that was overwritten with a removed
	// changefeed's record (or written, when it was missing).
	Replaced string `json:"replaced"`
	// UpstreamCleanup says whether the owner will clean the upstream (a
	// source URI could be read from the old record) or not.
	UpstreamCleanup string `json:"upstream_cleanup"`
	// CorruptLeft are keys the owner still cannot read: a changefeed with a
	// corrupt status stays skipped until that key is repaired.
	CorruptLeft []string `json:"corrupt_left,omitempty"`
}

// forceRemove replaces the changefeed's info with a valid record in state
// removed, compare-and-set on exactly the value it read. The owner then
// does what it does for every removed changefeed: deletes its status and
// tasks and cleans the upstream. Nothing of the old record is trusted
// except a source URI that validates, which the clean-up needs.
func (h *Handler) forceRemove(w http.ResponseWriter, r *http.Request, id string) error {
	key := meta.ChangefeedInfoKey(id)
	for attempt := 0; ; attempt++ {
		var (
			kv    fsm.KV
			found bool
			left  []string
		)
		err := h.store.View(func(rd fsm.Reader, _ uint64) error {
			kv, found = rd.Get(key)
			_, _, corrupt := meta.LoadFeed(rd, id)
			for _, c := range corrupt {
				if c.Key != key {
					left = append(left, c.Key)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		tomb := model.ChangefeedInfo{ID: id, State: model.StateRemoved, CreateTime: time.Now().UTC()}
		cond := fsm.Cond{Type: fsm.CondAbsent, Key: key}
		if found {
			cond = fsm.Cond{Type: fsm.CondModRev, Key: key, ModRev: kv.ModRev}
			if v, err := meta.Decode(key, kv.Value); err == nil {
				if info, ok := v.(*model.ChangefeedInfo); ok {
					tomb = *info // readable: only the status is corrupt
					tomb.State, tomb.AdminJob = model.StateRemoved, model.AdminNone
				}
			} else {
				var old model.ChangefeedInfo
				if json.Unmarshal(kv.Value, &old) == nil {
					if old.SourceURI != "" && connector.ValidateSourceURI(old.SourceURI) == nil {
						tomb.SourceURI = old.SourceURI
					}
					if old.SinkURI != "" && connector.ValidateSinkURI(old.SinkURI) == nil {
						tomb.SinkURI = old.SinkURI
					}
				}
			}
		}
		res := ForceRemoveResult{ID: id, AdminJob: string(model.AdminRemove), State: model.StateRemoved, Replaced: key, CorruptLeft: left,
			UpstreamCleanup: "by the owner, on " + redact.URI(tomb.SourceURI)}
		if tomb.SourceURI == "" {
			// Nothing says which upstream it used: whatever it kept there (a
			// replication slot) must be removed by hand.
			tomb.UpstreamCleaned = true
			res.UpstreamCleanup = "not possible: the old record names no readable source; remove anything it kept upstream (a replication slot) by hand"
		}
		val, err := json.Marshal(tomb)
		if err != nil {
			return err
		}
		_, err = h.apply(r.Context(), fsm.Command{Conds: []fsm.Cond{cond}, Ops: []fsm.Op{{Type: fsm.OpPut, Key: key, Value: val}}})
		if err == nil {
			return WriteJSON(w, http.StatusAccepted, res)
		}
		if !errors.Is(err, fsm.ErrPreconditionFailed) || attempt >= 5 {
			return err
		}
		_ = h.store.ReadIndex(r.Context())
	}
}

func (h *Handler) rebalanceChangefeed(w http.ResponseWriter, r *http.Request) error {
	id, err := h.feedID(r)
	if err != nil {
		return err
	}
	_, err = h.changeInfo(r.Context(), id, func(f *feedView) error {
		if err := checkNotGone(f, "rebalance"); err != nil {
			return err
		}
		if f.info.State != model.StateNormal {
			return wrongState(id, f.info.State, "rebalance", ": resume it first")
		}
		f.info.RebalanceRequested = true
		return nil
	})
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "rebalance": "requested"})
}

// MoveTableRequest moves one table to a capture.
type MoveTableRequest struct {
	TableID       model.TableID `json:"table_id"`
	TargetCapture string        `json:"target_capture"`
}

func (h *Handler) moveTable(w http.ResponseWriter, r *http.Request) error {
	id, err := h.feedID(r)
	if err != nil {
		return err
	}
	var req MoveTableRequest
	if err := DecodeBody(r, &req); err != nil {
		return err
	}
	if err := validateNodeID("target_capture", req.TargetCapture); err != nil {
		return err
	}
	var captureKnown bool
	err = h.store.View(func(rd fsm.Reader, _ uint64) error {
		_, captureKnown = rd.Get(meta.CaptureKey(req.TargetCapture))
		return nil
	})
	if err != nil {
		return err
	}
	if !captureKnown || h.cdc.CaptureLiveness()[req.TargetCapture] != "alive" {
		return Errorf(http.StatusBadRequest, CodeCaptureNotFound, "capture %q is not a live capture of this cluster; 'ctl capture list' shows them", req.TargetCapture)
	}
	_, err = h.changeInfo(r.Context(), id, func(f *feedView) error {
		if err := checkNotGone(f, "move a table of"); err != nil {
			return err
		}
		if f.info.State != model.StateNormal {
			return wrongState(id, f.info.State, "move a table of", ": resume it first")
		}
		found := false
		if f.status != nil {
			for _, t := range f.status.Tables {
				found = found || t.ID == req.TableID
			}
		}
		if !found {
			return Errorf(http.StatusBadRequest, CodeTableNotFound, "table %d is not replicated by changefeed %q", req.TableID, id)
		}
		f.info.PendingMoves = append(f.info.PendingMoves, model.MoveTableRequest{TableID: req.TableID, TargetCapture: req.TargetCapture})
		return nil
	})
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "table_id": req.TableID, "target_capture": req.TargetCapture})
}

func (h *Handler) updateChangefeed(w http.ResponseWriter, r *http.Request) error {
	id, err := h.feedID(r)
	if err != nil {
		return err
	}
	dryRun := false
	switch v := r.URL.Query().Get("dry_run"); v {
	case "", "false":
	case "true":
		dryRun = true
	default:
		return Errorf(http.StatusBadRequest, CodeBadRequest, "dry_run must be true or false, not %q", v)
	}
	var req ChangefeedRequest
	if err := DecodeBody(r, &req); err != nil {
		return err
	}
	if req.ID != "" && req.ID != id {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "the body's id %s differs from the path's %q; a changefeed cannot be renamed", quoteClip(req.ID), id)
	}
	if req.StartTs != 0 {
		return Errorf(http.StatusBadRequest, CodeInvalidTs, "start_ts cannot be updated; use resume with overwrite_checkpoint_ts")
	}
	var (
		before  model.ChangefeedInfo
		current []model.TableName
		matched []model.TableName
	)
	change := func(f *feedView) error {
		before = f.info
		if err := checkNotGone(f, "update"); err != nil {
			return err
		}
		switch f.info.State {
		case model.StateStopped, model.StateFailed, model.StateError:
		default:
			return wrongState(id, f.info.State, "update", ": pause it first")
		}
		if req.SourceURI != "" {
			f.info.SourceURI = req.SourceURI
		}
		if req.SinkURI != "" {
			f.info.SinkURI = req.SinkURI
		}
		if req.TargetTs != 0 {
			f.info.TargetTs = req.TargetTs
		}
		if req.Config != nil {
			f.info.Config = *req.Config
		}
		// The table set is derived again, at the checkpoint, when the
		// changefeed runs next (see owner/DESIGN.md).
		start := f.info.StartTs
		current = nil
		if f.status != nil && f.status.CheckpointTs > start {
			start = f.status.CheckpointTs
		}
		if f.status != nil && f.status.Initialized {
			current = f.status.Tables
			if f.status.Stream {
				current = f.status.StreamTables
			}
		}
		probe := f.info
		probe.StartTs = start
		var err error
		matched, _, err = h.validateSpec(r.Context(), &probe, false)
		if err != nil {
			return err
		}
		// An update that adds tables must fit, whatever the state: a
		// stopped changefeed would be refused at its resume anyway, and
		// saying so now is kinder.
		if len(matched) > admission.Tables(&before, f.status) {
			if err := h.admit(r.Context(), "update", id, id, len(matched)); err != nil {
				return err
			}
		}
		f.info.AdmittedTables = len(matched)
		return nil
	}
	var f *feedView
	if dryRun {
		var found bool
		if f, found, err = h.viewFeed(id); err != nil {
			return err
		}
		if !found {
			return Errorf(http.StatusNotFound, CodeChangefeedNotFound, "changefeed %q does not exist", id)
		}
		if err := change(f); err != nil {
			return err
		}
	} else if f, err = h.changeInfo(r.Context(), id, change); err != nil {
		return err
	}
	resp := UpdateChangefeedResponse{ID: id, Before: redactedInfo(before), After: redactedInfo(f.info), DryRun: dryRun}
	if before.SourceURI != f.info.SourceURI || !reflect.DeepEqual(before.Config.Filter, f.info.Config.Filter) {
		resp.TablesAdded, resp.TablesRemoved = tableDiff(current, matched)
	}
	return WriteJSON(w, http.StatusOK, resp)
}

// tableDiff names the tables of next missing from prev (added) and of prev
// missing from next (removed), by ID, in the order given.
func tableDiff(prev, next []model.TableName) (added, removed []string) {
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
			added = append(added, t.String())
		}
	}
	for _, t := range prev {
		if !in(next, t.ID) {
			removed = append(removed, t.String())
		}
	}
	return added, removed
}

// CaptureView is one capture for the API.
type CaptureView struct {
	ID          string    `json:"id"`
	Address     string    `json:"address"`
	Version     string    `json:"version"`
	StartTime   time.Time `json:"start_time"`
	Incarnation uint64    `json:"incarnation"`
	IsOwner     bool      `json:"is_owner"`
	Liveness    string    `json:"liveness"`
	Tables      int       `json:"tables"`
	// Draining is set while an operator's drain request for this
	// incarnation stands (liveness says when the node drains itself).
	Draining bool `json:"draining,omitempty"`
	// TableBudget is the tables the capture declares it carries (its
	// node's --table-budget); the cluster's capacity is the sum over the
	// live captures.
	TableBudget int `json:"table_budget"`
}

func (h *Handler) listCaptures(w http.ResponseWriter, r *http.Request) error {
	if err := h.consistentRead(r); err != nil {
		return err
	}
	live := h.cdc.CaptureLiveness()
	out := []CaptureView{}
	err := h.store.View(func(rd fsm.Reader, _ uint64) error {
		owner, _ := meta.GetOwner(rd)
		tables := map[string]int{}
		rd.Range(meta.PrefixTaskStatus, func(kv fsm.KV) bool {
			if v, err := meta.Decode(kv.Key, kv.Value); err == nil {
				k, _ := meta.ParseKey(kv.Key)
				tables[k.Capture] += len(v.(*model.TaskStatus).Tables)
			}
			return true
		})
		for _, kv := range rd.List(meta.PrefixCapture) {
			v, err := meta.Decode(kv.Key, kv.Value)
			if err != nil {
				continue
			}
			ci := v.(*model.CaptureInfo)
			l := live[ci.ID]
			if l == "" {
				l = "unknown"
			}
			cv := CaptureView{ID: ci.ID, Address: ci.AdvertiseAddr, Version: ci.Version, StartTime: ci.StartTime, Incarnation: ci.Incarnation,
				IsOwner: ci.ID == owner.NodeID, Liveness: l, Tables: tables[ci.ID], TableBudget: admission.BudgetOf(ci)}
			if kv, ok := rd.Get(meta.DrainKey(ci.ID)); ok {
				if v, err := meta.Decode(kv.Key, kv.Value); err == nil && v.(*model.DrainRequest).Incarnation == ci.Incarnation {
					cv.Draining = true
				}
			}
			out = append(out, cv)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return WriteJSON(w, http.StatusOK, map[string]any{"captures": out})
}

// drainCapture records a drain request for the capture's current
// incarnation; the owner moves its tables off (see owner/DESIGN.md).
func (h *Handler) drainCapture(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := model.ValidateNodeID(id); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "capture: %v", err)
	}
	h.catchUp(r.Context())
	live := h.cdc.CaptureLiveness()
	var (
		ci      *model.CaptureInfo
		rev     uint64
		tables  int
		another bool
	)
	err := h.store.View(func(rd fsm.Reader, _ uint64) error {
		var ok bool
		var err error
		if ci, rev, ok, err = meta.GetCapture(rd, id); err != nil || !ok {
			ci = nil
			return nil
		}
		rd.Range(meta.PrefixTaskStatus, func(kv fsm.KV) bool {
			if k, err := meta.ParseKey(kv.Key); err == nil && k.Capture == id {
				if v, err := meta.Decode(kv.Key, kv.Value); err == nil {
					tables += len(v.(*model.TaskStatus).Tables)
				}
			}
			return true
		})
		rd.Range(meta.PrefixCapture, func(kv fsm.KV) bool {
			k, err := meta.ParseKey(kv.Key)
			if err != nil || k.Capture == id || live[k.Capture] != "alive" {
				return true
			}
			if _, ok := rd.Get(meta.DrainKey(k.Capture)); ok {
				return true // being drained too
			}
			another = true
			return true
		})
		return nil
	})
	if err != nil {
		return err
	}
	if ci == nil {
		return Errorf(http.StatusNotFound, CodeCaptureNotFound, "capture %q is not registered; 'ctl capture list' shows the captures", id)
	}
	if !another && tables > 0 {
		return Errorf(http.StatusConflict, CodeConflict, "no other live capture could take the %d tables of %s; start another node first", tables, id)
	}
	op, err := meta.Put(meta.DrainKey(id), model.DrainRequest{Incarnation: ci.Incarnation, Requested: time.Now().UTC()})
	if err != nil {
		return err
	}
	// Guarded by the capture record's revision: the request drains the
	// incarnation that was read, not one that registered meanwhile.
	if _, err := h.apply(r.Context(), fsm.Command{Conds: []fsm.Cond{{Type: fsm.CondModRev, Key: meta.CaptureKey(id), ModRev: rev}}, Ops: []fsm.Op{op}}); err != nil {
		if errors.Is(err, fsm.ErrPreconditionFailed) {
			return Errorf(http.StatusConflict, CodeConflict, "capture %s registered again while the drain was requested; ask again", id)
		}
		return err
	}
	return WriteJSON(w, http.StatusAccepted, DrainCaptureResponse{CaptureID: id, Incarnation: ci.Incarnation, TablesRemaining: tables})
}

// ProcessorView is one (changefeed, capture) pair.
type ProcessorView struct {
	Changefeed string              `json:"changefeed"`
	Capture    string              `json:"capture"`
	Status     *model.TaskStatus   `json:"status,omitempty"`
	Position   *model.TaskPosition `json:"position,omitempty"`
	Workload   model.TaskWorkload  `json:"workload,omitempty"`
	Checkpoint *TimeInfo           `json:"checkpoint,omitempty"`
	Tables     int                 `json:"tables"`
}

func readProcessors(rd fsm.Reader, cfFilter, capFilter string) []ProcessorView {
	byKey := map[[2]string]*ProcessorView{}
	var order [][2]string
	get := func(cf, c string) *ProcessorView {
		k := [2]string{cf, c}
		if p, ok := byKey[k]; ok {
			return p
		}
		p := &ProcessorView{Changefeed: cf, Capture: c}
		byKey[k] = p
		order = append(order, k)
		return p
	}
	// each walks one kind of per-(changefeed, capture) key under the filters.
	// each walks one kind of per-(changefeed, capture) key under the
	// filters; keys that do not decode are skipped.
	each := func(prefix string, fn func(p *ProcessorView, v any)) {
		rd.Range(prefix, func(kv fsm.KV) bool {
			k, err := meta.ParseKey(kv.Key)
			if err != nil || (cfFilter != "" && k.Changefeed != cfFilter) || (capFilter != "" && k.Capture != capFilter) {
				return true
			}
			v, err := meta.Decode(kv.Key, kv.Value)
			if err != nil {
				return true
			}
			fn(get(k.Changefeed, k.Capture), v)
			return true
		})
	}
	each(meta.PrefixTaskStatus, func(p *ProcessorView, v any) {
		p.Status = v.(*model.TaskStatus)
		p.Tables = len(p.Status.Tables)
	})
	each(meta.PrefixTaskPosition, func(p *ProcessorView, v any) {
		p.Position = v.(*model.TaskPosition)
		p.Checkpoint = timeInfo(p.Position.CheckpointTs)
	})
	each(meta.PrefixTaskWorkload, func(p *ProcessorView, v any) {
		p.Workload = v.(model.TaskWorkload)
	})
	out := make([]ProcessorView, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Changefeed != out[j].Changefeed {
			return out[i].Changefeed < out[j].Changefeed
		}
		return out[i].Capture < out[j].Capture
	})
	return out
}

func (h *Handler) listProcessors(w http.ResponseWriter, r *http.Request) error {
	if err := h.consistentRead(r); err != nil {
		return err
	}
	var out []ProcessorView
	err := h.store.View(func(rd fsm.Reader, _ uint64) error {
		out = readProcessors(rd, "", "")
		for i := range out {
			out[i].Status, out[i].Position, out[i].Workload = nil, nil, nil // the list is a summary
		}
		return nil
	})
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, map[string]any{"processors": out})
}

func (h *Handler) getProcessor(w http.ResponseWriter, r *http.Request) error {
	cf, c := r.PathValue("changefeed"), r.PathValue("capture")
	if err := validateChangefeedID(cf); err != nil {
		return err
	}
	if err := validateNodeID("capture", c); err != nil {
		return err
	}
	if err := h.consistentRead(r); err != nil {
		return err
	}
	var out []ProcessorView
	err := h.store.View(func(rd fsm.Reader, _ uint64) error {
		out = readProcessors(rd, cf, c)
		return nil
	})
	if err != nil {
		return err
	}
	if len(out) == 0 {
		return Errorf(http.StatusNotFound, CodeNotFound, "no processor of changefeed %q runs on capture %q", cf, c)
	}
	return WriteJSON(w, http.StatusOK, out[0])
}

func (h *Handler) tso(w http.ResponseWriter, r *http.Request) error {
	now := time.Now()
	ts := model.TsFromTime(now)
	return WriteJSON(w, http.StatusOK, map[string]any{"tso": ts, "time": now.UTC(), "physical_ms": now.UnixMilli(), "text": strconv.FormatUint(ts, 10)})
}
