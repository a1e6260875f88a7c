package processor

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/rs/zerolog"
)

// Manager registers this capture and runs one processor per changefeed that
// the owner assigned to it.
type Manager struct {
	cfg      Config
	proposer Proposer
	state    StateSource
	conns    Connectors
	lease    Lease
	log      zerolog.Logger
	metrics  *metrics
	gate     *gate
	started  time.Time
	// cache keeps the records reconcile decoded, so that a change of one
	// key does not decode every other (shared, never modified).
	cache *meta.Cache
	// opens bounds the table pipelines of this capture that are opening
	// at once (MaxConcurrentOpens).
	opens chan struct{}
	// pressure holds table readers back while the node is starved of CPU.
	pressure *pressure

	incarnation atomic.Uint64

	mu    sync.Mutex
	procs map[model.ChangefeedID]*procEntry
}

type procEntry struct {
	p   *processor
	key string // what a processor cannot change while running; see runKey
}

// NewManager builds a manager; nothing runs until Run. lease may be nil (no
// lease fence: for tests of other things), reg may be nil (no metrics).
func NewManager(cfg Config, p Proposer, st StateSource, c Connectors, lease Lease, log zerolog.Logger, reg prometheus.Registerer) *Manager {
	cfg = cfg.withDefaults()
	return &Manager{
		cfg:      cfg,
		proposer: p,
		state:    st,
		conns:    c,
		lease:    lease,
		log:      log.With().Str("component", "processor").Str("capture_id", cfg.CaptureID).Logger(),
		metrics:  newMetrics(reg),
		gate:     newGate(lease),
		started:  time.Now().UTC(),
		cache:    meta.NewCache(),
		opens:    make(chan struct{}, MaxConcurrentOpens),
		pressure: newPressure(log.With().Str("component", "processor").Str("capture_id", cfg.CaptureID).Logger()),
		procs:    map[model.ChangefeedID]*procEntry{},
	}
}

// Incarnation is the incarnation this capture is registered with, or 0 while
// it is not registered (at start and while resetting after a fence).
func (m *Manager) Incarnation() uint64 { return m.incarnation.Load() }

// Processors describes the running processors, ordered by changefeed.
func (m *Manager) Processors() []ProcessorInfo {
	m.mu.Lock()
	procs := make([]*processor, 0, len(m.procs))
	for _, e := range m.procs {
		procs = append(procs, e.p)
	}
	m.mu.Unlock()
	out := make([]ProcessorInfo, 0, len(procs))
	for _, p := range procs {
		out = append(out, p.info())
	}
	slices.SortFunc(out, func(a, b ProcessorInfo) int { return strings.Compare(a.Changefeed, b.Changefeed) })
	return out
}

// fencedError means this incarnation may no longer act.
type fencedError struct{ reason error }

func (e *fencedError) Error() string { return "capture fenced: " + e.reason.Error() }
func (e *fencedError) Unwrap() error { return e.reason }

// Run registers the capture and runs processors until ctx is cancelled. A
// fence stops every processor and registers again with a new incarnation.
func (m *Manager) Run(ctx context.Context) error {
	if err := m.cfg.validate(); err != nil {
		return err
	}
	// Spill files of an earlier process are garbage: every table restarts
	// from its checkpoint.
	if err := os.RemoveAll(m.cfg.SpillDir); err != nil {
		return fmt.Errorf("clearing the spill directory %s: %w", m.cfg.SpillDir, err)
	}
	// Watch before the first read so that no change falls between the two.
	var watches []<-chan fsm.WatchBatch
	for _, prefix := range []string{meta.PrefixTaskStatus, meta.PrefixChangefeedInfo, meta.PrefixChangefeedStatus, meta.PrefixChangefeedTables, meta.KeyCluster, meta.CaptureKey(m.cfg.CaptureID)} {
		ch, cancel := m.state.Watch(prefix, 64)
		defer cancel()
		watches = append(watches, ch)
	}
	pctx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); m.pressure.run(pctx) }()
	defer func() { stopProbe(); <-probeDone }()
	reset := resetLimiter{min: m.cfg.ResetInterval, max: max(m.cfg.ResetInterval, m.cfg.MaxRetryBackoff)}
	for {
		inc, regIndex, err := m.register(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		registered := time.Now()
		err = m.session(ctx, watches, inc, regIndex)
		m.incarnation.Store(0)
		m.gate.close()
		m.stopAll()
		if ctx.Err() != nil {
			return nil
		}
		var fe *fencedError
		if !errors.As(err, &fe) {
			return err
		}
		m.metrics.fenced.Inc()
		wait := reset.next(registered, time.Now())
		m.log.Warn().Uint64("incarnation", inc).Str("reason", fe.reason.Error()).Dur("register_in", wait).
			Msg("capture fenced: stopped every processor and dropped unflushed data; registering with a new incarnation")
		if sleepCtx(ctx, wait) != nil {
			return nil
		}
	}
}

// resetLimiter spaces the registrations that follow fences: at least min
// since the last registration, doubling (up to max) for every fence that
// comes soon after its registration, so that a capture the owner keeps
// evicting — gossip calls it dead while Raft still reaches it — does not
// loop register → evict → register. A session that lasted a while resets it.
type resetLimiter struct {
	min, max time.Duration
	cur      time.Duration
}

// next is how long to wait before registering again, for a session that
// began at registered and was fenced at now.
func (r *resetLimiter) next(registered, now time.Time) time.Duration {
	lasted := now.Sub(registered)
	switch {
	case r.cur == 0 || lasted > 4*r.max:
		r.cur = r.min
	case lasted < 2*r.cur:
		r.cur = min(2*r.cur, r.max)
	}
	return max(0, r.cur-lasted)
}

func newIncarnation(prev uint64) uint64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		if v := binary.BigEndian.Uint64(b[:]); v != 0 && v != prev {
			return v
		}
	}
}

// register writes /capture/<self> with a fresh incarnation, retrying until
// the cluster accepts it: right after start there is often no leader yet.
func (m *Manager) register(ctx context.Context) (inc, index uint64, err error) {
	inc = newIncarnation(m.incarnation.Load())
	info := model.CaptureInfo{ID: m.cfg.CaptureID, AdvertiseAddr: m.cfg.AdvertiseAddr, Version: m.cfg.Version, StartTime: m.started, Incarnation: inc,
		LeaseMillis: m.cfg.LeaseFence.Milliseconds(), TableBudget: m.cfg.TableBudget}
	val, err := json.Marshal(info)
	if err != nil {
		return 0, 0, fmt.Errorf("encoding capture record: %w", err)
	}
	cmd := fsm.Command{Kind: fsm.KindRegisterCapture, Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.CaptureKey(m.cfg.CaptureID), Value: val}}}
	bo := backoff{base: m.cfg.RetryBackoff, max: m.cfg.MaxRetryBackoff}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, m.cfg.ProposeTimeout)
		res, err := m.proposer.Apply(actx, cmd)
		cancel()
		if err == nil {
			err = res.Error()
		}
		if err == nil {
			m.incarnation.Store(inc)
			m.log.Info().Uint64("incarnation", inc).Uint64("index", res.Index).Msg("capture registered")
			return inc, res.Index, nil
		}
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("registering capture: %w", ctx.Err())
		}
		wait := bo.next()
		ev := m.log.Debug()
		if attempt >= 5 {
			ev = m.log.Warn()
		}
		ev.Err(err).Int("attempt", attempt).Dur("retry_in", wait).Msg("capture registration not accepted yet; retrying")
		if sleepCtx(ctx, wait) != nil {
			return 0, 0, fmt.Errorf("registering capture: %w", ctx.Err())
		}
	}
}

// session runs processors for one incarnation. It returns a *fencedError
// when the incarnation is fenced, nil when ctx ends, another error if the
// state machine's watches end.
func (m *Manager) session(ctx context.Context, watches []<-chan fsm.WatchBatch, inc, regIndex uint64) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fenced := make(chan error, 1)
	deps := processorDeps{
		cfg: m.cfg, log: m.log.With().Uint64("incarnation", inc).Logger(), proposer: m.proposer, conns: m.conns,
		gate: m.gate, opens: m.opens, pressure: m.pressure, metrics: m.metrics, incarnation: inc,
		onFenced: func(err error) {
			select {
			case fenced <- err:
			default:
			}
		},
	}
	// A new incarnation holds only what this session is given, so it may
	// write as soon as it holds the lease.
	if m.lease == nil {
		m.gate.openUnder(0)
	} else if until, term := m.lease.Lease(); time.Now().Before(until) {
		m.gate.openUnder(term)
	}
	if m.gate.isOpen() {
		m.metrics.localFence.Set(0)
	} else {
		m.metrics.localFence.Set(1)
	}
	check := func() error { return m.reconcile(sctx, deps, regIndex) }
	if err := check(); err != nil {
		return err
	}
	ticker := time.NewTicker(m.cfg.FlushInterval)
	defer ticker.Stop()
	var probeIndex uint64
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fenced:
			return &fencedError{reason: err}
		case _, ok := <-watches[0]:
			if !ok {
				return errors.New("state machine watch closed")
			}
			if err := check(); err != nil {
				return err
			}
		case _, ok := <-watches[1]:
			if !ok {
				return errors.New("state machine watch closed")
			}
			if err := check(); err != nil {
				return err
			}
		case _, ok := <-watches[2]:
			if !ok {
				return errors.New("state machine watch closed")
			}
			if err := check(); err != nil {
				return err
			}
		case _, ok := <-watches[3]:
			if !ok {
				return errors.New("state machine watch closed")
			}
			if err := check(); err != nil {
				return err
			}
		case <-m.gate.lapsed:
			if err := m.checkLease(sctx, inc, &probeIndex, check); err != nil {
				return err
			}
		case <-ticker.C:
			if err := m.checkLease(sctx, inc, &probeIndex, check); err != nil {
				return err
			}
			// Watches carry every change; the periodic pass only guards
			// against a bug there leaving a processor wrong forever.
			if tick%50 == 0 {
				if err := check(); err != nil {
					return err
				}
			}
		}
	}
}

// checkLease keeps the gate in line with the lease. A lapsed lease closes
// it: the owner may already be waiting out this capture to give its tables
// to another. With a valid lease again it reopens only after a fenced
// no-op command went through the leader (so this incarnation is still
// registered) and the local replica has caught up to it (so every task
// change the owner made meanwhile is visible before a table flushes again).
func (m *Manager) checkLease(ctx context.Context, inc uint64, probeIndex *uint64, check func() error) error {
	if m.lease == nil {
		return nil
	}
	if m.gate.isOpen() {
		if !m.gate.valid() && m.gate.close() {
			*probeIndex = 0
			m.metrics.localFence.Set(1)
			until, _ := m.lease.Lease()
			m.log.Warn().Time("lease_ended", until).Msg("capture lease lapsed; pausing sink writes until this capture is proven current")
		}
		return nil
	}
	until, term := m.lease.Lease()
	if !time.Now().Before(until) {
		*probeIndex = 0
		return nil // no lease: wait for the node to renew it
	}
	if *probeIndex == 0 {
		actx, cancel := context.WithTimeout(ctx, m.cfg.ProposeTimeout)
		res, err := m.proposer.Apply(actx, fsm.Command{Kind: fsm.KindTxn, Capture: &fsm.CaptureFence{ID: m.cfg.CaptureID, Incarnation: inc}})
		cancel()
		if err != nil {
			m.log.Debug().Err(err).Msg("fencing probe not applied; retrying")
			return nil
		}
		if err := res.Error(); err != nil {
			if errors.Is(err, fsm.ErrFenced) {
				return &fencedError{reason: err}
			}
			m.log.Warn().Err(err).Msg("fencing probe refused; retrying")
			return nil
		}
		*probeIndex = res.Index
	}
	var applied uint64
	if err := m.state.View(func(_ fsm.Reader, idx uint64) error { applied = idx; return nil }); err != nil {
		return nil
	}
	if applied < *probeIndex {
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	*probeIndex = 0
	m.gate.openUnder(term)
	m.metrics.localFence.Set(0)
	m.log.Info().Msg("lease held and incarnation still registered; resuming sink writes")
	return nil
}

type wantedFeed struct {
	st   feedState
	prev *model.TaskPosition
	key  string
}

// runKey is what cannot change under a running processor: a resume (new
// epoch) or an update of the URIs or the configuration restarts it.
func runKey(info model.ChangefeedInfo) string {
	b, _ := json.Marshal(struct {
		Epoch     uint64
		SourceURI string
		SinkURI   string
		Config    model.ChangefeedConfig
	}{info.Epoch, info.SourceURI, info.SinkURI, info.Config})
	return string(b)
}

func runnable(info model.ChangefeedInfo, task model.TaskStatus) bool {
	if info.State != "" && info.State != model.StateNormal {
		return false
	}
	return task.AdminJob == model.AdminNone
}

// reconcile reads the local state, checks this incarnation is still the
// registered one, and starts, updates or stops processors to match.
func (m *Manager) reconcile(ctx context.Context, deps processorDeps, regIndex uint64) error {
	self := m.cfg.CaptureID
	var (
		fence     error
		notCaught bool
		wants     = map[model.ChangefeedID]wantedFeed{}
	)
	err := m.state.View(func(r fsm.Reader, applied uint64) error {
		if applied < regIndex {
			// Our registration has not reached this replica yet; judging
			// the capture record now would see the previous incarnation.
			notCaught = true
			return nil
		}
		ci, _, ok, err := m.cache.GetCapture(r, self)
		switch {
		case err != nil:
			// Registering again overwrites it with a good record.
			fence = fmt.Errorf("the capture record does not decode: %w", err)
			return nil
		case !ok:
			fence = errors.New("the capture record was removed")
			return nil
		case ci.Incarnation != deps.incarnation:
			fence = fmt.Errorf("the capture record shows incarnation %d", ci.Incarnation)
			return nil
		}
		// Corrupt keys are skipped without a word here: meta's Tracker
		// reports each one once. A changefeed whose info, status or task
		// status of this capture does not decode does not run here.
		schema := meta.ClusterSchemaVersion(r)
		r.Range(meta.PrefixTaskStatus, func(kv fsm.KV) bool {
			k, err := meta.ParseKey(kv.Key)
			if err != nil || k.Capture != self {
				return true
			}
			cf := k.Changefeed
			task, _, ok, err := m.cache.GetTaskStatus(r, cf, self)
			if err != nil || !ok {
				return true
			}
			info, _, ok, err := m.cache.GetInfo(r, cf)
			if err != nil || !ok {
				return true
			}
			status, _, _, err := m.cache.GetStatus(r, cf)
			if err != nil {
				return true
			}
			w := wantedFeed{st: feedState{info: *info, status: status, task: *task, schema: schema}}
			if !runnable(w.st.info, w.st.task) {
				return true
			}
			if pos, _, ok, err := m.cache.GetPosition(r, cf, self); err == nil && ok {
				w.prev = pos
			}
			w.key = runKey(w.st.info)
			wants[cf] = w
			return true
		})
		return nil
	})
	if !notCaught && fence == nil {
		m.cache.Sweep()
	}
	if err != nil {
		m.log.Warn().Err(err).Msg("reading the state machine")
		return nil
	}
	if fence != nil {
		return &fencedError{reason: fence}
	}
	if notCaught {
		return nil
	}

	var toStop []*processor
	m.mu.Lock()
	for cf, e := range m.procs {
		if w, ok := wants[cf]; !ok || w.key != e.key {
			toStop = append(toStop, e.p)
			delete(m.procs, cf)
		}
	}
	m.mu.Unlock()
	// Stop before starting a replacement, so that two processors of one
	// changefeed never write the same tables.
	for _, p := range toStop {
		p.stop()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for cf, w := range wants {
		if e, ok := m.procs[cf]; ok {
			e.p.update(w.st)
			continue
		}
		p := newProcessor(cf, w.st, w.prev, deps)
		m.procs[cf] = &procEntry{p: p, key: w.key}
		p.start(ctx)
	}
	return nil
}

// stopAll stops every processor in parallel and waits for all of them.
func (m *Manager) stopAll() {
	m.mu.Lock()
	procs := make([]*processor, 0, len(m.procs))
	for cf, e := range m.procs {
		procs = append(procs, e.p)
		delete(m.procs, cf)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.stop)
	}
	wg.Wait()
}
