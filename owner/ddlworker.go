package owner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
	"github.com/rs/zerolog"
)

// ddlPullers runs one DDL puller per running changefeed (TiCDC's DDL puller):
// it reads the source's DDL stream from the changefeed checkpoint and keeps
// the DDLs not yet done, for the tick's barrier. It is I/O, so it lives in
// the worker; the tick only sees the DDLState snapshot sync returns.
type ddlPullers struct {
	up  Upstreams
	log zerolog.Logger
	cfg Config
	// wake asks the worker loop for a tick: a puller saw something new.
	wake chan struct{}

	mu      sync.Mutex
	pullers map[model.ChangefeedID]*ddlPuller
}

type ddlPuller struct {
	uri     string
	startTs model.Ts
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	resolved model.Ts
	pending  []*model.DDLEvent
	err      error
	// execErr is handed to exactly one tick.
	execErr error
	execTs  model.Ts
}

func newDDLPullers(up Upstreams, log zerolog.Logger, cfg Config) *ddlPullers {
	return &ddlPullers{up: up, log: log, cfg: cfg, wake: make(chan struct{}, 1), pullers: map[model.ChangefeedID]*ddlPuller{}}
}

func (d *ddlPullers) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// sync starts pullers for running changefeeds, stops the rest, drops DDLs
// that are done, and returns what every puller knows.
func (d *ddlPullers) sync(ctx context.Context, s *meta.State) map[model.ChangefeedID]DDLState {
	out := map[model.ChangefeedID]DDLState{}
	want := map[model.ChangefeedID]bool{}
	for _, id := range s.FeedIDs() {
		f := s.Changefeeds[id]
		if f.Info == nil || f.Status == nil || !f.Status.Initialized || !isNormal(f.Info.State) || f.Info.AdminJob != model.AdminNone {
			continue
		}
		if f.Status.Stream {
			// A single stream's DDL comes through the stream; its unit
			// holds the barrier on its capture.
			continue
		}
		want[id] = true
		ckpt := f.Status.CheckpointTs
		done := maxTs(ckpt, f.Status.LastDDLTs)
		d.mu.Lock()
		p := d.pullers[id]
		if p != nil && (p.uri != f.Info.SourceURI || p.startTs > ckpt) {
			// The source changed, or a resume moved the checkpoint below
			// where the puller started: it may have missed a DDL.
			d.stopLocked(id)
			p = nil
		}
		if p == nil {
			p = d.startLocked(ctx, id, f.Info.SourceURI, ckpt)
		}
		d.mu.Unlock()

		p.mu.Lock()
		keep := p.pending[:0]
		for _, ev := range p.pending {
			if ev.CommitTs > done {
				keep = append(keep, ev)
			}
		}
		clear(p.pending[len(keep):])
		p.pending = keep
		st := DDLState{StartTs: p.startTs, ResolvedTs: p.resolved, Pending: append([]*model.DDLEvent(nil), keep...), Err: p.err, ExecErr: p.execErr, ExecTs: p.execTs}
		p.execErr, p.execTs = nil, 0
		p.mu.Unlock()
		out[id] = st
	}
	d.mu.Lock()
	for id := range d.pullers {
		if !want[id] {
			d.stopLocked(id)
		}
	}
	d.mu.Unlock()
	return out
}

func (d *ddlPullers) startLocked(ctx context.Context, id model.ChangefeedID, uri string, startTs model.Ts) *ddlPuller {
	pctx, cancel := context.WithCancel(ctx)
	p := &ddlPuller{uri: uri, startTs: startTs, resolved: startTs, cancel: cancel, done: make(chan struct{})}
	d.pullers[id] = p
	go d.run(pctx, id, p)
	return p
}

func (d *ddlPullers) stopLocked(id model.ChangefeedID) {
	if p := d.pullers[id]; p != nil {
		p.cancel()
		<-p.done
		delete(d.pullers, id)
	}
}

// recordExecError hands a failed DDL execution to the next tick.
func (d *ddlPullers) recordExecError(id model.ChangefeedID, ts model.Ts, err error) {
	d.mu.Lock()
	p := d.pullers[id]
	d.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	p.execErr, p.execTs = err, ts
	p.mu.Unlock()
}

func (d *ddlPullers) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.pullers {
		d.stopLocked(id)
	}
}

func (d *ddlPullers) run(ctx context.Context, id model.ChangefeedID, p *ddlPuller) {
	defer close(p.done)
	log := d.log.With().Str("changefeed", id).Logger()
	wait := d.cfg.ErrorBackoffBase / 20
	for ctx.Err() == nil {
		err := d.pull(ctx, p)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		log.Warn().Err(err).Dur("retry_in", wait).Msg("DDL puller failed; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, d.cfg.ErrorBackoffMax)
	}
}

// pull subscribes from the highest ts known to be complete and appends what
// arrives. Re-subscribing from p.resolved after an error neither loses nor
// repeats a DDL: everything at or below it is already in pending.
func (d *ddlPullers) pull(ctx context.Context, p *ddlPuller) error {
	up, err := d.up.Source(ctx, p.uri)
	if err != nil {
		return fmt.Errorf("opening the source for its DDL stream: %w", err)
	}
	src, ok := up.(source.SpanSource)
	if !ok {
		return fmt.Errorf("source %T has no DDL stream of its own", up)
	}
	p.mu.Lock()
	from := p.resolved
	p.mu.Unlock()
	sub, err := src.SubscribeDDL(ctx, from)
	if err != nil {
		return fmt.Errorf("subscribing to the DDL stream from ts %d: %w", from, err)
	}
	defer sub.Close()
	for {
		b, err := sub.Next(ctx)
		if err != nil {
			return fmt.Errorf("reading the DDL stream: %w", err)
		}
		p.mu.Lock()
		p.err = nil
		changed := false
		for _, ev := range b.DDLs {
			if ev.CommitTs <= p.resolved {
				continue
			}
			if n := len(p.pending); n > 0 && ev.CommitTs <= p.pending[n-1].CommitTs {
				continue // duplicate or out of order: the source promised neither
			}
			p.pending = append(p.pending, ev)
			changed = true
		}
		if b.ResolvedTs > p.resolved {
			p.resolved = b.ResolvedTs
			changed = true
		}
		p.mu.Unlock()
		if changed {
			d.poke()
		}
	}
}

// runDDL executes one DDL through the owner's sink, then records it.
func (w *worker) runDDL(ctx context.Context, a DDLAction) (applyResult, error) {
	log := w.log.With().Str("changefeed", a.Changefeed).Uint64("ddl_ts", a.Event.CommitTs).Str("ddl_kind", string(a.Event.Kind)).Logger()
	if !a.Skip && w.d.Sinks != nil {
		start := time.Now()
		err := w.sinks.emitDDL(ctx, a.Changefeed, a.SinkURI, a.Config, a.Event)
		if ctx.Err() != nil {
			return applyFailed, nil
		}
		if err != nil {
			log.Warn().Err(err).Str("query", a.Event.Query).Msg("executing DDL downstream failed")
			w.ddl.recordExecError(a.Changefeed, a.Event.CommitTs, err)
			return applyRefused, nil
		}
		log.Info().Str("query", a.Event.Query).Dur("took", time.Since(start)).Msg("DDL executed downstream")
	} else {
		log.Info().Str("query", a.Event.Query).Msg("DDL touches no replicated table; recorded without executing")
	}
	return w.apply(ctx, a.Record)
}

// ownerSinks keeps the owner's own sink of each changefeed, opened on first
// use, for DDL and checkpoints.
type ownerSinks struct {
	opener Sinks
	log    zerolog.Logger
	cfg    Config
	sinks  map[model.ChangefeedID]*ownerSink
}

type ownerSink struct {
	uri       string
	snk       sink.Sink
	published model.Ts
	at        time.Time
}

func newOwnerSinks(opener Sinks, log zerolog.Logger, cfg Config) *ownerSinks {
	return &ownerSinks{opener: opener, log: log, cfg: cfg, sinks: map[model.ChangefeedID]*ownerSink{}}
}

func (o *ownerSinks) get(ctx context.Context, id model.ChangefeedID, uri string, cfg model.ChangefeedConfig) (*ownerSink, error) {
	if o.opener == nil {
		return nil, errors.New("no sink opener")
	}
	// An update of the URI or of the config (dispatchers) reopens it.
	cb, _ := json.Marshal(cfg)
	key := uri + "\x00" + string(cb)
	if s := o.sinks[id]; s != nil {
		if s.uri == key {
			return s, nil
		}
		o.drop(id)
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.IOTimeout)
	defer cancel()
	snk, err := o.opener.OpenChangefeedSink(ctx, id, uri, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the changefeed's sink: %w", err)
	}
	s := &ownerSink{uri: key, snk: snk}
	o.sinks[id] = s
	return s, nil
}

func (o *ownerSinks) drop(id model.ChangefeedID) {
	if s := o.sinks[id]; s != nil {
		if err := s.snk.Close(); err != nil {
			o.log.Warn().Err(err).Str("changefeed", id).Msg("closing the owner's sink")
		}
		delete(o.sinks, id)
	}
}

func (o *ownerSinks) emitDDL(ctx context.Context, id model.ChangefeedID, uri string, cfg model.ChangefeedConfig, ev *model.DDLEvent) error {
	s, err := o.get(ctx, id, uri, cfg)
	if err != nil {
		return err
	}
	if err := s.snk.EmitDDL(ctx, ev); err != nil {
		// A failed sink may hold a broken connection; open it afresh.
		o.drop(id)
		return err
	}
	return nil
}

// publishCheckpoints calls EmitCheckpoint for running changefeeds whose
// checkpoint moved, at most once per CheckpointPublishInterval each, and
// closes the sinks of changefeeds that stopped.
func (o *ownerSinks) publishCheckpoints(ctx context.Context, s *meta.State, now time.Time) {
	if o.opener == nil {
		return
	}
	running := map[model.ChangefeedID]bool{}
	for _, id := range s.FeedIDs() {
		f := s.Changefeeds[id]
		if f.Info == nil || f.Status == nil || !f.Status.Initialized || !isNormal(f.Info.State) {
			continue
		}
		running[id] = true
		ckpt := f.Status.CheckpointTs
		prev := o.sinks[id]
		if prev != nil && (ckpt <= prev.published || now.Sub(prev.at) < o.cfg.CheckpointPublishInterval) {
			continue
		}
		sk, err := o.get(ctx, id, f.Info.SinkURI, f.Info.Config)
		if err != nil {
			o.log.Debug().Err(err).Str("changefeed", id).Msg("cannot open the sink to publish the checkpoint")
			continue
		}
		// Sinks whose checkpoint goes to per-table places (Kafka topics)
		// learn the changefeed's tables; the owner's sink opens none.
		if ts, ok := sk.snk.(interface{ SetTables([]model.TableName) }); ok {
			ts.SetTables(f.Status.Tables)
		}
		if ckpt <= sk.published {
			continue
		}
		ectx, cancel := context.WithTimeout(ctx, o.cfg.IOTimeout)
		err = sk.snk.EmitCheckpoint(ectx, ckpt)
		cancel()
		if err != nil {
			o.log.Warn().Err(err).Str("changefeed", id).Uint64("checkpoint_ts", ckpt).Msg("publishing the checkpoint downstream failed")
			o.drop(id)
			continue
		}
		sk.published, sk.at = ckpt, now
	}
	for id := range o.sinks {
		if !running[id] {
			o.drop(id)
		}
	}
}

func (o *ownerSinks) close() {
	for id := range o.sinks {
		o.drop(id)
	}
}
