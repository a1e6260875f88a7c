package owner

import (
	"sort"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// CaptureLiveness is what the membership layer says about a capture.
type CaptureLiveness string

const (
	// LivenessAlive: the capture takes new tables.
	LivenessAlive CaptureLiveness = "alive"
	// LivenessSuspect: gossip has not heard from it lately. It keeps its
	// tables (it may come back) but gets no new ones.
	LivenessSuspect CaptureLiveness = "suspect"
	// LivenessDead and LivenessLeft: evicted at once.
	LivenessDead CaptureLiveness = "dead"
	LivenessLeft CaptureLiveness = "left"
	// LivenessUnknown: not in gossip at all; evicted after the grace period.
	LivenessUnknown CaptureLiveness = "unknown"
	// LivenessDraining: shutting down on purpose. It gets no new tables and
	// its tables are moved away while alive captures exist.
	LivenessDraining CaptureLiveness = "draining"
)

// Error codes the owner records in ChangefeedInfo.Error.
const (
	// CodeSnapshotLost: the checkpoint fell below the upstream GC
	// safepoint. Not retried: the changefeed goes to failed.
	CodeSnapshotLost = "snapshot_lost"
	// CodeGCUpdateFailed: the upstream's service GC safepoint could not be
	// updated for longer than the changefeed's gc-ttl. Not retried.
	CodeGCUpdateFailed = "gc_update_failed"
	// CodeListTablesFailed: the source could not list its tables.
	CodeListTablesFailed = "list_tables_failed"
	// CodeInvalidFilter: the filter rules do not compile. Not retried:
	// retrying cannot fix a configuration.
	CodeInvalidFilter = "invalid_filter"
	// CodeSinkUnretryable: a processor reports that the sink refused data
	// it will refuse on every attempt (a Kafka row over max-message-bytes
	// with large-message-handle-option=none). Not retried: the user
	// changes the configuration and resumes.
	CodeSinkUnretryable = sink.CodeUnretryable
)

// TablesResult is the worker's answer to Output.NeedTables.
type TablesResult struct {
	Tables []model.TableName
	// Stream: the source is a single stream; the changefeed is scheduled
	// as one stream unit.
	Stream bool
	Err    error
}

// Inputs is everything a tick decides from besides the FSM state.
type Inputs struct {
	Now time.Time
	// OwnerSince is when this owner established; see Config.EvictionGrace.
	OwnerSince time.Time
	// NodeID is recorded as the address of errors the owner itself raises.
	NodeID     string
	Membership map[model.CaptureID]CaptureLiveness
	// LastHeard is when the leader last heard from each capture (a lease
	// renewal); a capture gossip calls dead is evicted only once its lease
	// must have ended (see evictable).
	LastHeard map[model.CaptureID]time.Time
	// SourceTables holds tables listed for changefeeds that asked in an
	// earlier Output.NeedTables.
	SourceTables map[model.ChangefeedID]TablesResult
	// UpstreamIDs maps each source URI to its upstream's identity, for the
	// URIs the worker has asked about; GC is kept per identity.
	UpstreamIDs map[string]string
	// UpstreamGC is, per upstream identity, the upstream GC safepoint the
	// worker last saw.
	UpstreamGC map[string]model.Ts
	// GCFailures lists the upstreams whose service safepoint the worker
	// has failed to update since some time, without a success since.
	GCFailures map[string]GCFailure
	// DDL is what the DDL puller of each running changefeed knows.
	DDL map[model.ChangefeedID]DDLState
	// StatusWrites is when this owner last wrote each changefeed's status
	// and how big it was: a write that only moves progress waits until the
	// size allows (Config.StatusBytesPerSecond). Missing: write at once.
	StatusWrites map[model.ChangefeedID]StatusWrite
	Config       Config
}

// StatusWrite is one status write of the owner.
type StatusWrite struct {
	At    time.Time
	Bytes int
}

// progressDue says whether a status write that only moves a changefeed's
// checkpoint and resolved ts may go out now.
func (t *ticker) progressDue(id model.ChangefeedID) bool {
	w, ok := t.in.StatusWrites[id]
	if !ok {
		return true
	}
	pace := time.Duration(w.Bytes) * time.Second / time.Duration(t.cfg.StatusBytesPerSecond)
	return !t.in.Now.Before(w.At.Add(pace))
}

// GCAction asks the worker to set (or, with TTL 0, clear) this cluster's
// service GC safepoint on one upstream.
type GCAction struct {
	UpstreamID string
	// SourceURI is how the worker reaches the upstream.
	SourceURI string
	ServiceID string
	Safepoint model.Ts
	TTL       time.Duration
	// Record, when set, stores the new value under /gc/ (or deletes it).
	// The worker applies it only after the upstream call succeeded, so the
	// record never claims a safepoint that was not pushed (or cleared)
	// upstream.
	Record *fsm.Command
	// RecordOnly: apply Record without calling the upstream (a record left
	// under an old key of an upstream that is still protected).
	RecordOnly bool
}

// EventKind names something worth logging.
type EventKind string

const (
	EventCaptureEvicted  EventKind = "capture_evicted"
	EventTableOrphaned   EventKind = "table_orphaned"
	EventTableDispatched EventKind = "table_dispatched"
	EventTableRemoved    EventKind = "table_removed"
	EventMoveStarted     EventKind = "move_started"
	EventMoveFinished    EventKind = "move_finished"
	EventMoveRejected    EventKind = "move_rejected"
	EventRebalance       EventKind = "rebalance"
	EventInitialized     EventKind = "changefeed_initialized"
	EventStateChanged    EventKind = "changefeed_state_changed"
	EventErrorRecorded   EventKind = "changefeed_error_recorded"
	EventAdminJob        EventKind = "admin_job"
	EventCleanup         EventKind = "stale_keys_deleted"
)

// LogEvent is one decision of a tick, for the worker to log. Zero fields do
// not apply.
type LogEvent struct {
	Kind       EventKind
	Changefeed model.ChangefeedID
	Capture    model.CaptureID
	Target     model.CaptureID
	Table      model.TableID
	Ts         model.Ts
	Message    string
}

// Output is what a tick decided.
type Output struct {
	// Commands are independent: each guards its own preconditions, so the
	// worker applies them in order and a refused one does not stop the rest.
	Commands   []fsm.Command
	GC         []GCAction
	NeedTables []model.ChangefeedID
	// DDL are DDLs to execute downstream, each with the command that
	// records it; the worker applies that command only after the sink
	// succeeded.
	DDL []DDLAction
	// Cleanup removes what removed changefeeds keep upstream.
	Cleanup []CleanupAction
	Events  []LogEvent
}

// CleanupAction asks the worker to remove a removed changefeed's upstream
// state (source.UpstreamRemover), then apply Record.
type CleanupAction struct {
	Changefeed model.ChangefeedID
	SourceURI  string
	Record     fsm.Command
}

// captureView classifies the registered captures for one tick.
type captureView struct {
	alive    map[model.CaptureID]bool // registered and alive: may take tables
	draining map[model.CaptureID]bool // registered and draining: to be emptied
	evict    map[model.CaptureID]CaptureLiveness
	// present captures keep their tables: registered and not evicted.
	present map[model.CaptureID]bool
}

// ticker carries one tick's inputs and collects its output.
type ticker struct {
	s   *meta.State
	in  Inputs
	cfg Config
	out Output
	// failedNow are changefeeds this tick moves out of the states that hold
	// the upstream GC safepoint.
	releasedGC map[model.ChangefeedID]bool
}

// Tick is the owner's reactor: given a consistent snapshot of the FSM and
// the membership view, it returns the commands that move the cluster
// towards the desired state. It keeps no memory between calls, so a new
// owner's first tick continues exactly where the last owner stopped. It
// never modifies s.
func Tick(s *meta.State, in Inputs) Output {
	t := &ticker{s: s, in: in, cfg: in.Config.withDefaults(), releasedGC: map[model.ChangefeedID]bool{}}
	cv := t.classifyCaptures()
	t.cleanDrains()
	touched := t.evict(cv)
	// Operators' requests first: the worker applies commands in order, one
	// Raft round trip each, so under load a remove or pause behind every
	// other changefeed's progress would wait for all of them.
	ids := s.FeedIDs()
	sort.SliceStable(ids, func(i, j int) bool { return hasAdminJob(s.Changefeeds[ids[i]]) && !hasAdminJob(s.Changefeeds[ids[j]]) })
	for _, id := range ids {
		if touched[id] {
			// The eviction command changes this changefeed's keys; anything
			// decided from the old revisions would be refused. Next tick.
			continue
		}
		t.feed(s.Changefeeds[id], cv)
	}
	t.gc()
	return t.out
}

func hasAdminJob(f *meta.Feed) bool {
	return f.Info != nil && !f.Skipped() && f.Info.AdminJob != model.AdminNone
}

func (t *ticker) event(e LogEvent) { t.out.Events = append(t.out.Events, e) }

func (t *ticker) classifyCaptures() *captureView {
	cv := &captureView{
		alive:    map[model.CaptureID]bool{},
		draining: map[model.CaptureID]bool{},
		evict:    map[model.CaptureID]CaptureLiveness{},
		present:  map[model.CaptureID]bool{},
	}
	graceOver := t.in.Now.Sub(t.in.OwnerSince) >= t.cfg.EvictionGrace
	for id, c := range t.s.Captures {
		l, ok := t.in.Membership[id]
		if !ok || l == "" {
			l = LivenessUnknown
		}
		switch l {
		case LivenessLeft:
			// A node leaves gossip only after its processors stopped: none
			// of its writes can still be in flight.
			cv.evict[id] = l
			continue
		case LivenessDead:
			if t.leaseOver(id, c) {
				cv.evict[id] = l
				continue
			}
			// Unschedulable at once, but its tables stay until its lease
			// has certainly ended: it may still be writing.
		case LivenessUnknown:
			if graceOver && t.leaseOver(id, c) {
				cv.evict[id] = l
				continue
			}
		case LivenessAlive:
			if d := t.s.Drains[id]; d != nil && d.Request.Incarnation == c.Info.Incarnation {
				// An operator asked to drain this incarnation.
				cv.draining[id] = true
			} else {
				cv.alive[id] = true
			}
		case LivenessDraining:
			cv.draining[id] = true
		}
		cv.present[id] = true
	}
	return cv
}

// cleanDrains deletes drain requests whose incarnation is gone: a drained
// capture that restarted takes tables again.
func (t *ticker) cleanDrains() {
	cmd := fsm.Command{Kind: fsm.KindTxn, OwnerEpoch: t.s.OwnerEpoch}
	for _, id := range sortedKeys(t.s.Drains) {
		d := t.s.Drains[id]
		if c := t.s.Captures[id]; c != nil && c.Info.Incarnation == d.Request.Incarnation {
			continue
		}
		key := meta.DrainKey(id)
		cmd.Conds = append(cmd.Conds, fsm.Cond{Type: fsm.CondModRev, Key: key, ModRev: d.Rev})
		cmd.Ops = append(cmd.Ops, fsm.Op{Type: fsm.OpDelete, Key: key})
		t.event(LogEvent{Kind: EventCleanup, Capture: id, Message: "drain request of an incarnation that is gone"})
	}
	if len(cmd.Ops) > 0 {
		t.out.Commands = append(t.out.Commands, cmd)
	}
}

// leaseOver reports whether capture c's lease to write to sinks has
// certainly ended: fence + margin have passed since the leader last heard
// from it, by this owner's clock. A new owner does not know what the last
// one heard, and counts from when it took over (the capture's last lease
// renewal was confirmed by a quorum that elected this leader afterwards).
func (t *ticker) leaseOver(id model.CaptureID, c *meta.Capture) bool {
	heard := t.in.OwnerSince
	if at, ok := t.in.LastHeard[id]; ok && at.After(heard) {
		heard = at
	}
	fence := t.cfg.LeaseFence
	if d := time.Duration(c.Info.LeaseMillis) * time.Millisecond; d > fence {
		fence = d
	}
	return !t.in.Now.Before(heard.Add(fence + t.cfg.LeaseMargin))
}

func maxTs(a, b model.Ts) model.Ts {
	if a > b {
		return a
	}
	return b
}

func minTs(a, b model.Ts) model.Ts {
	if a < b {
		return a
	}
	return b
}
