package owner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
	"github.com/rs/zerolog"
)

// Proposer applies a command through Raft on the local leader and returns
// the state machine's result (whose Err is a deterministic refusal).
type Proposer interface {
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
}

// StateSource is the local state machine: *fsm.FSM implements it.
type StateSource interface {
	View(fn func(r fsm.Reader, appliedIndex uint64) error) error
	Watch(prefix string, buffer int) (<-chan fsm.WatchBatch, func())
}

// LeaseView says when the leader last heard from each capture (a round
// trip that renews its lease); server.Node implements it.
type LeaseView interface {
	LastHeard() map[string]time.Time
}

// MembershipView reports the liveness of every capture gossip knows.
type MembershipView interface {
	Liveness() map[model.CaptureID]CaptureLiveness
}

// Upstreams opens (and may cache) the sources changefeeds read from.
type Upstreams interface {
	// Source is the shared instance for upstream-wide calls (GC, DDL).
	Source(ctx context.Context, uri string) (source.Upstream, error)
	// SourceFor is the instance a changefeed reads through.
	SourceFor(ctx context.Context, changefeedID, uri string) (source.Upstream, error)
}

// Sinks opens the owner's own sink of a changefeed, through which it
// executes DDL and publishes checkpoints.
type Sinks interface {
	// OpenChangefeedSink opens a changefeed's sink with its config (sink
	// routing such as Kafka's dispatchers lives there).
	OpenChangefeedSink(ctx context.Context, id model.ChangefeedID, uri string, cfg model.ChangefeedConfig) (sink.Sink, error)
}

// Deps is what Run needs.
type Deps struct {
	NodeID   string
	Proposer Proposer
	State    StateSource
	Members  MembershipView
	// Leases may be nil: then only the owner's own start counts as having
	// heard from a capture.
	Leases    LeaseView
	Upstreams Upstreams
	// Sinks may be nil: then DDLs are recorded without being executed and
	// no checkpoint is published (tests of the scheduling alone).
	Sinks  Sinks
	Config Config
	Logger zerolog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// MemberEvents, if set, is poked on every membership change.
	MemberEvents <-chan struct{}
	// Now, if set, replaces time.Now (tests).
	Now func() time.Time
	// Resign, if set, hands leadership to another voter; the owner calls it
	// after Config.ResignAfter ticks in a row in which every upstream call
	// failed, so that one node with a broken path to the upstream does not
	// stay owner.
	Resign func(ctx context.Context) error
}

// ioHealth is how one tick's upstream calls went.
type ioHealth struct{ ok, failed bool }

func (h *ioHealth) note(err error) {
	if err != nil {
		h.failed = true
	} else {
		h.ok = true
	}
}

// ErrDeposed reports that another owner claimed a newer epoch.
var ErrDeposed = errors.New("owner deposed by a newer epoch")

// gcPush is the last successful push of a service safepoint.
type gcPush struct {
	safepoint model.Ts
	ttl       time.Duration
	at        time.Time
}

type worker struct {
	d     Deps
	cfg   Config
	log   zerolog.Logger
	now   func() time.Time
	epoch uint64
	since time.Time

	// tables are table listings for changefeeds waiting to initialise.
	tables map[model.ChangefeedID]TablesResult
	// upstreams caches each source URI's upstream identity; the GC maps
	// below are keyed by identity.
	upstreams *upstreamIDs
	// upstreamGC is the upstream GC safepoint each push returned.
	upstreamGC map[string]model.Ts
	gcPushed   map[string]gcPush
	// gcFailing are upstreams whose pushes fail, since when; gcRetryAt
	// paces the retries so that a dead upstream does not slow every tick.
	gcFailing map[string]GCFailure
	gcRetryAt map[string]time.Time
	// io says how this tick's upstream calls went; failedTicks counts the
	// ticks in a row whose upstream calls all failed (see Config.ResignAfter).
	io          ioHealth
	failedTicks int
	// ddl runs one DDL puller per running changefeed; sinks holds the
	// owner's sink of each changefeed.
	ddl   *ddlPullers
	sinks *ownerSinks
	// cleanupAt spaces out retries of a failing upstream cleanup.
	cleanupAt map[model.ChangefeedID]cleanupRetry
	// statusWrites are this owner's last status write per changefeed
	// (Inputs.StatusWrites).
	statusWrites map[model.ChangefeedID]StatusWrite
	// cache keeps decoded records between ticks: a tick decodes only the
	// keys that changed since the last one.
	cache *meta.Cache
}

// noteStatusWrites records the status puts of an applied command.
func (w *worker) noteStatusWrites(cmd fsm.Command) {
	for _, op := range cmd.Ops {
		if op.Type == fsm.OpPut && strings.HasPrefix(op.Key, meta.PrefixChangefeedStatus) {
			w.statusWrites[strings.TrimPrefix(op.Key, meta.PrefixChangefeedStatus)] = StatusWrite{At: w.now(), Bytes: len(op.Value)}
		}
	}
}

type cleanupRetry struct {
	at   time.Time
	wait time.Duration
}

// runCleanup removes removed changefeeds' upstream state and records it.
// A failure (a slot still in use while its stream closes, an unreachable
// server) is retried with backoff, by this owner or the next.
func (w *worker) runCleanup(ctx context.Context, actions []CleanupAction) error {
	now := w.now()
	for _, a := range actions {
		r := w.cleanupAt[a.Changefeed]
		if now.Before(r.at) {
			continue
		}
		err := w.removeUpstream(ctx, a)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.wait = min(max(2*r.wait, time.Second), time.Minute)
			r.at = now.Add(r.wait)
			w.cleanupAt[a.Changefeed] = r
			w.log.Warn().Err(err).Str("changefeed", a.Changefeed).Dur("retry_in", r.wait).Msg("removing the changefeed's upstream state failed")
			continue
		}
		delete(w.cleanupAt, a.Changefeed)
		if _, err := w.apply(ctx, a.Record); err != nil {
			return err
		}
	}
	return nil
}

func (w *worker) removeUpstream(ctx context.Context, a CleanupAction) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.IOTimeout)
	defer cancel()
	src, err := w.d.Upstreams.SourceFor(ctx, a.Changefeed, a.SourceURI)
	if err != nil {
		return fmt.Errorf("opening the source: %w", err)
	}
	r, ok := src.(source.UpstreamRemover)
	if !ok {
		return nil
	}
	if err := r.RemoveUpstreamState(ctx); err != nil {
		return err
	}
	w.log.Info().Str("changefeed", a.Changefeed).Msg("removed the changefeed's upstream state")
	return nil
}

// Run claims ownership and runs the owner until ctx is cancelled (then it
// returns nil) or until it finds itself deposed (an error wrapping
// ErrDeposed). Call it only on the Raft leader, after a barrier, and wait
// for it to return before doing anything else on leadership loss.
func Run(ctx context.Context, d Deps) error {
	if d.Proposer == nil || d.State == nil || d.Members == nil || d.Upstreams == nil {
		return errors.New("starting owner: proposer, state, members and upstreams are all required")
	}
	if d.NodeID == "" {
		return errors.New("starting owner: node ID is required")
	}
	if err := d.Config.Validate(); err != nil {
		return fmt.Errorf("starting owner: %w", err)
	}
	w := &worker{
		d:          d,
		cfg:        d.Config.withDefaults(),
		log:        d.Logger.With().Str("component", "owner").Logger(),
		now:        d.Now,
		tables:     map[model.ChangefeedID]TablesResult{},
		upstreamGC: map[string]model.Ts{},
		gcPushed:   map[string]gcPush{},
		cleanupAt:  map[model.ChangefeedID]cleanupRetry{},

		statusWrites: map[model.ChangefeedID]StatusWrite{},
		cache:        meta.NewCache(),
		gcFailing:    map[string]GCFailure{},
		gcRetryAt:    map[string]time.Time{},
	}
	w.upstreams = newUpstreamIDs(d.Upstreams, w.cfg.IOTimeout)
	if w.now == nil {
		w.now = time.Now
	}
	defer d.Metrics.reset()
	w.ddl = newDDLPullers(d.Upstreams, w.log, w.cfg)
	defer w.ddl.close()
	w.sinks = newOwnerSinks(d.Sinks, w.log, w.cfg)
	defer w.sinks.close()

	// Subscribe before claiming, so no change after the claim is missed.
	watch, cancelWatch := d.State.Watch("/", 256)
	defer cancelWatch()

	if err := w.claim(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return w.loop(ctx, watch)
}

func (w *worker) claim(ctx context.Context) error {
	now := w.now()
	res, err := w.d.Proposer.Apply(ctx, fsm.Command{Kind: fsm.KindClaimOwner, NodeID: w.d.NodeID, UnixMilli: now.UnixMilli()})
	if err != nil {
		return fmt.Errorf("claiming ownership: %w", err)
	}
	if res.Err != nil {
		return fmt.Errorf("claiming ownership: %w", res.Err)
	}
	w.epoch, w.since = res.Index, now
	w.d.Metrics.setEpoch(w.epoch)
	w.log = w.log.With().Uint64("owner_epoch", w.epoch).Logger()
	w.log.Info().Msg("owner established")
	return nil
}

func (w *worker) loop(ctx context.Context, watch <-chan fsm.WatchBatch) error {
	timer := time.NewTicker(w.cfg.TickInterval)
	defer timer.Stop()
	pending := true // the first tick is the establish pass
	var last time.Time
	var cost time.Duration // what the last tick took
	for {
		if pending {
			if wait := tickGap(w.cfg.MinTickInterval, cost) - time.Since(last); wait > 0 {
				// Coalesce a burst of changes into one tick.
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
			last = time.Now()
			retick, err := w.tick(ctx)
			cost = time.Since(last)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			pending = retick
			if pending {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-watch:
			if !ok {
				return errors.New("owner: the state watch was closed")
			}
			pending = true
		case <-w.d.MemberEvents:
			pending = true
		case <-w.ddl.wake:
			pending = true
		case <-timer.C:
			pending = true
		}
	}
}

// tickGap is the least time from the start of one tick to the start of
// the next: minGap, or twice what the last tick took. Processors report
// all the time, so with many tables a tick is always pending; ticking
// again as soon as one ends kept the owner ticking all the time (at
// 25,000 tables: 264 ticks of 113 ms in 30 s), and Raft's heartbeats and
// the pipelines queued behind it. Twice the cost keeps the owner under
// half a core (0.40 of the same 30 s), and delays a checkpoint advance or
// an admin command by at most one tick's time.
func tickGap(minGap, cost time.Duration) time.Duration {
	return max(minGap, 2*cost)
}

// tick runs one reactor pass and carries out its output. retick asks for
// another pass soon: a command lost a race, or new inputs arrived.
func (w *worker) tick(ctx context.Context) (retick bool, err error) {
	start := time.Now()
	defer func() { w.d.Metrics.observeTick(time.Since(start)) }()
	w.io = ioHealth{}
	defer w.judgeIO(ctx)

	var s *meta.State
	err = w.d.State.View(func(r fsm.Reader, applied uint64) error {
		var err error
		s, err = meta.LoadCached(r, w.cache)
		if s != nil {
			s.AppliedIndex = applied
		}
		return err
	})
	w.cache.Sweep()
	if err != nil {
		return false, fmt.Errorf("reading the owner state: %w", err)
	}
	switch {
	case s.OwnerEpoch > w.epoch:
		return false, fmt.Errorf("%w: epoch %d claimed by %s, ours is %d", ErrDeposed, s.OwnerEpoch, s.Owner.NodeID, w.epoch)
	case s.OwnerEpoch < w.epoch:
		// Our claim is not applied here yet; the watch will wake us.
		return false, nil
	}

	now := w.now()
	in := Inputs{
		Now:          now,
		OwnerSince:   w.since,
		NodeID:       w.d.NodeID,
		Membership:   w.d.Members.Liveness(),
		LastHeard:    w.lastHeard(),
		SourceTables: w.tables,
		UpstreamIDs:  w.upstreams.resolve(ctx, s, now, &w.io),
		UpstreamGC:   w.upstreamGC,
		GCFailures:   w.gcFailing,
		DDL:          w.ddl.sync(ctx, s),
		StatusWrites: w.statusWrites,
		Config:       w.cfg,
	}
	out := Tick(s, in)
	for _, e := range out.Events {
		w.logEvent(e)
	}
	for _, cmd := range out.Commands {
		res, err := w.apply(ctx, cmd)
		if err != nil {
			return false, err
		}
		if res == applyFailed {
			// Raft cannot commit right now; the rest would fail the same
			// way. The timer brings the next attempt.
			return false, nil
		}
		if res == applyOK {
			w.noteStatusWrites(cmd)
		}
		retick = retick || res == applyRefused
	}
	for _, a := range out.DDL {
		res, err := w.runDDL(ctx, a)
		if err != nil {
			return false, err
		}
		if res == applyFailed {
			return false, nil
		}
		retick = retick || res == applyRefused || res == applyOK
	}
	if err := w.runGC(ctx, out.GC); err != nil {
		return false, err
	}
	if err := w.runCleanup(ctx, out.Cleanup); err != nil {
		return false, err
	}
	w.sinks.publishCheckpoints(ctx, s, w.now())
	if w.listTables(ctx, s, out.NeedTables) {
		retick = true
	}
	w.d.Metrics.observeState(s, now)
	return retick, nil
}

type applyResult int

const (
	applyOK       applyResult = iota
	applyRefused              // lost a race: decide again soon
	applyRejected             // refused for another reason: logged, retried on the timer
	applyFailed               // not committed (leadership moving, timeout)
)

// apply proposes one command. Its error is non-nil only when this owner is
// deposed.
func (w *worker) apply(ctx context.Context, cmd fsm.Command) (applyResult, error) {
	res, err := w.d.Proposer.Apply(ctx, cmd)
	if err != nil {
		if ctx.Err() == nil {
			// The leader loop cancels us if leadership is gone.
			w.log.Warn().Err(err).Msg("owner command not applied")
		}
		return applyFailed, nil
	}
	if res.Err == nil {
		return applyOK, nil
	}
	w.d.Metrics.refusedCommand(string(res.Err.Code))
	switch res.Err.Code {
	case fsm.CodeStaleEpoch:
		return applyRefused, fmt.Errorf("%w: %v", ErrDeposed, res.Err)
	case fsm.CodePreconditionFailed:
		// Normal: somebody (the API, a processor) changed a key this
		// decision read. Decide again from the new state.
		w.log.Debug().Str("key", res.Err.Key).Msg("owner command lost a race; re-ticking")
		return applyRefused, nil
	default:
		// A bug on one side or the other; re-ticking at once would only
		// repeat it, so this waits for the timer.
		w.log.Error().Str("code", string(res.Err.Code)).Str("key", res.Err.Key).Str("reason", res.Err.Message).Msg("owner command refused")
		return applyRejected, nil
	}
}

func (w *worker) lastHeard() map[model.CaptureID]time.Time {
	if w.d.Leases == nil {
		return nil
	}
	return w.d.Leases.LastHeard()
}

// judgeIO counts ticks whose upstream calls all failed and, after
// ResignAfter of them in a row, hands leadership to another voter: an owner
// whose node cannot reach the upstream should not stay owner when another
// node could. A tick with one successful call resets the count; one with
// no call leaves it.
func (w *worker) judgeIO(ctx context.Context) {
	switch {
	case w.io.ok:
		w.failedTicks = 0
	case w.io.failed:
		w.failedTicks++
	}
	if w.cfg.ResignAfter <= 0 || w.d.Resign == nil || w.failedTicks < w.cfg.ResignAfter || ctx.Err() != nil {
		return
	}
	n := w.failedTicks
	w.failedTicks = 0
	w.log.Warn().Int("failed_ticks", n).Msg("every upstream call failed for this many ticks in a row; resigning ownership to another voter")
	if err := w.d.Resign(ctx); err != nil && ctx.Err() == nil {
		w.log.Warn().Err(err).Msg("resigning ownership failed; staying owner")
	}
}

// runGC pushes service safepoints upstream. Unchanged values are pushed
// again only every GCRefreshInterval (or a third of their TTL, if that is
// shorter), to keep their TTL alive. A failing upstream is retried at most
// once a second, and how long it has been failing goes into the next
// tick's inputs (a changefeed fails once that passes its gc-ttl).
func (w *worker) runGC(ctx context.Context, actions []GCAction) error {
	for _, a := range actions {
		if a.RecordOnly {
			if _, err := w.apply(ctx, *a.Record); err != nil {
				return err
			}
			continue
		}
		now := w.now()
		if at, waiting := w.gcRetryAt[a.UpstreamID]; waiting && now.Before(at) {
			continue
		}
		last, pushed := w.gcPushed[a.UpstreamID]
		refresh := min(w.cfg.GCRefreshInterval, a.TTL/3)
		if a.Record == nil && pushed && last.safepoint == a.Safepoint && last.ttl == a.TTL && now.Sub(last.at) < refresh {
			continue
		}
		actual, err := w.pushGC(ctx, a)
		if ctx.Err() == nil {
			w.io.note(err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if _, failing := w.gcFailing[a.UpstreamID]; !failing {
				w.gcFailing[a.UpstreamID] = GCFailure{Since: now, Err: err.Error()}
			} else {
				w.gcFailing[a.UpstreamID] = GCFailure{Since: w.gcFailing[a.UpstreamID].Since, Err: err.Error()}
			}
			w.gcRetryAt[a.UpstreamID] = now.Add(time.Second)
			w.log.Warn().Err(err).Str("upstream_id", a.UpstreamID).Str("service_id", a.ServiceID).Uint64("safepoint", a.Safepoint).
				Dur("failing_for", now.Sub(w.gcFailing[a.UpstreamID].Since)).Msg("upstream GC safepoint not updated")
			continue
		}
		if f, failing := w.gcFailing[a.UpstreamID]; failing {
			w.log.Info().Str("upstream_id", a.UpstreamID).Dur("failed_for", now.Sub(f.Since)).Msg("upstream GC safepoint updated again")
		}
		delete(w.gcFailing, a.UpstreamID)
		delete(w.gcRetryAt, a.UpstreamID)
		if a.TTL > 0 {
			w.upstreamGC[a.UpstreamID] = actual
			w.gcPushed[a.UpstreamID] = gcPush{safepoint: a.Safepoint, ttl: a.TTL, at: now}
			if actual > a.Safepoint {
				w.log.Warn().Str("upstream_id", a.UpstreamID).Uint64("safepoint", a.Safepoint).Uint64("upstream_gc_safepoint", actual).Msg("upstream GC is past the owner's safepoint")
			}
		} else {
			delete(w.upstreamGC, a.UpstreamID)
			delete(w.gcPushed, a.UpstreamID)
			w.log.Info().Str("upstream_id", a.UpstreamID).Str("service_id", a.ServiceID).Msg("upstream GC safepoint cleared: no changefeed needs the upstream")
		}
		if a.Record != nil {
			if _, err := w.apply(ctx, *a.Record); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *worker) pushGC(ctx context.Context, a GCAction) (model.Ts, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.IOTimeout)
	defer cancel()
	src, err := w.d.Upstreams.Source(ctx, a.SourceURI)
	if err != nil {
		return 0, fmt.Errorf("opening the source to update its GC safepoint: %w", err)
	}
	actual, err := src.UpdateServiceGCSafepoint(ctx, a.ServiceID, a.TTL, a.Safepoint)
	if err != nil {
		return 0, fmt.Errorf("updating the service GC safepoint: %w", err)
	}
	return actual, nil
}

// upstreamIDs learns, once per source URI, the identity of the upstream
// behind it (it does not change), retrying a failed lookup at most once a
// second.
type upstreamIDs struct {
	ups     Upstreams
	timeout time.Duration
	known   map[string]string
	retryAt map[string]time.Time
}

func newUpstreamIDs(ups Upstreams, timeout time.Duration) *upstreamIDs {
	return &upstreamIDs{ups: ups, timeout: timeout, known: map[string]string{}, retryAt: map[string]time.Time{}}
}

// resolve looks up the URIs of the changefeeds in s that it does not know
// yet and returns what it knows.
func (u *upstreamIDs) resolve(ctx context.Context, s *meta.State, now time.Time, io *ioHealth) map[string]string {
	for _, f := range s.Changefeeds {
		if f.Info == nil || !holdsGC(f.Info) {
			continue
		}
		uri := f.Info.SourceURI
		if _, ok := u.known[uri]; ok || now.Before(u.retryAt[uri]) {
			continue
		}
		id, err := u.lookup(ctx, uri)
		if ctx.Err() == nil {
			io.note(err)
		}
		if err != nil || id == "" {
			u.retryAt[uri] = now.Add(time.Second)
			continue
		}
		u.known[uri] = id
		delete(u.retryAt, uri)
	}
	out := make(map[string]string, len(u.known))
	for k, v := range u.known {
		out[k] = v
	}
	return out
}

func (u *upstreamIDs) lookup(ctx context.Context, uri string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	src, err := u.ups.Source(ctx, uri)
	if err != nil {
		return "", err
	}
	return src.UpstreamID(ctx)
}

// listTables lists the source tables of changefeeds waiting to initialise
// and forgets listings nobody waits for any more. It reports whether it
// listed anything new.
func (w *worker) listTables(ctx context.Context, s *meta.State, need []model.ChangefeedID) bool {
	wanted := map[model.ChangefeedID]bool{}
	listed := false
	for _, id := range need {
		wanted[id] = true
		if _, done := w.tables[id]; done {
			continue
		}
		f := s.Changefeeds[id]
		if f == nil || f.Info == nil {
			continue
		}
		at := f.Info.StartTs
		if f.Status != nil && f.Status.CheckpointTs != 0 {
			at = f.Status.CheckpointTs
		}
		tables, stream, err := w.sourceTables(ctx, id, f.Info.SourceURI, at)
		if ctx.Err() != nil {
			return false // cancelled: not the source's fault
		}
		w.io.note(err)
		if err != nil {
			w.log.Warn().Err(err).Str("changefeed", id).Msg("listing source tables failed")
		}
		w.tables[id] = TablesResult{Tables: tables, Stream: stream, Err: err}
		listed = true
	}
	for id := range w.tables {
		if !wanted[id] {
			delete(w.tables, id)
		}
	}
	return listed
}

func (w *worker) sourceTables(ctx context.Context, cf model.ChangefeedID, uri string, at model.Ts) ([]model.TableName, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.IOTimeout)
	defer cancel()
	src, err := w.d.Upstreams.SourceFor(ctx, cf, uri)
	if err != nil {
		return nil, false, fmt.Errorf("opening the source: %w", err)
	}
	_, stream := src.(source.StreamSource)
	tables, err := src.TablesAt(ctx, at)
	if err != nil {
		return nil, stream, fmt.Errorf("listing tables as of ts %d: %w", at, err)
	}
	return tables, stream, nil
}

func (w *worker) logEvent(e LogEvent) {
	var ev *zerolog.Event
	switch e.Kind {
	case EventCaptureEvicted, EventErrorRecorded, EventMoveRejected:
		ev = w.log.Warn()
	case EventTableDispatched:
		ev = w.log.Debug()
	default:
		ev = w.log.Info()
	}
	ev = ev.Str("event", string(e.Kind))
	if e.Changefeed != "" {
		ev = ev.Str("changefeed", e.Changefeed)
	}
	if e.Capture != "" {
		ev = ev.Str("capture", e.Capture)
	}
	if e.Target != "" {
		ev = ev.Str("target_capture", e.Target)
	}
	if e.Table != 0 {
		ev = ev.Int64("table_id", e.Table)
	}
	if e.Ts != 0 {
		ev = ev.Uint64("ts", e.Ts)
	}
	ev.Msg(e.Message)
}
