package server

import (
	"context"
	"fmt"
	"github.com/raftcdc/raftcdc/internal/redact"
	"path/filepath"
	"time"

	"github.com/raftcdc/raftcdc/admission"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/connector"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/membership"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/owner"
	"github.com/raftcdc/raftcdc/processor"
	"github.com/raftcdc/raftcdc/source"
)

// CDCOptions configure the change-data-capture parts of a node.
type CDCOptions struct {
	Owner     owner.Config
	Processor processor.Config
	// PoolOptions configure the sources and sinks (tests pass clocks).
	PoolOptions []connector.PoolOption
	// FlushLogDir, when set, makes every sink record its table flushes
	// there (sink/flushlog: a test instrument for the writer-overlap check).
	FlushLogDir string
}

// MinLeaseFence is the shortest capture lease accepted: it is renewed every
// quarter of it, and a lease shorter than a few scheduling hiccups would
// lapse all the time.
const MinLeaseFence = 500 * time.Millisecond

// Validate checks the CDC settings against each other: a combination that
// could let two captures write one table at once is refused.
func (o CDCOptions) Validate() error {
	fence := o.leaseFence()
	if fence < MinLeaseFence || fence > time.Minute {
		return fmt.Errorf("capture lease %v: give a duration from %v to 1m", fence, MinLeaseFence)
	}
	if err := o.Owner.Validate(); err != nil {
		return err
	}
	if b := o.Processor.TableBudget; b != 0 {
		if err := admission.ValidateBudget(b); err != nil {
			return err
		}
	}
	if r := o.Processor.ResetInterval; r != 0 && (r < 10*time.Millisecond || r > time.Minute) {
		return fmt.Errorf("reset interval %v: give a duration from 10ms to 1m", r)
	}
	if m := o.Owner.LeaseMargin; m > fence {
		return fmt.Errorf("lease margin %v is longer than the capture lease %v; a margin that large only slows failover", m, fence)
	}
	if f := o.Owner.LeaseFence; f != 0 && f < fence {
		return fmt.Errorf("the owner's lease fence %v is shorter than the capture lease %v: the owner could give a capture's tables away while it may still write", f, fence)
	}
	return nil
}

func (o CDCOptions) leaseFence() time.Duration {
	if o.Processor.LeaseFence > 0 {
		return o.Processor.LeaseFence
	}
	return processor.DefaultLeaseFence
}

// cdc is the CDC side of one node: the connector pool shared by the owner,
// the processors and the API, so that all of them see one simulated upstream.
type cdc struct {
	n      *Node
	pool   *connector.Pool
	budget int
}

// EnableCDC adds the owner (leader only), the processors (every node), the
// GC mirror and the changefeed API to a node. Call before Start.
func EnableCDC(n *Node, o CDCOptions) {
	// The node's sink roots come first, so that a test's options cannot drop
	// them by accident (a later WithSinkRoots still replaces them on purpose).
	poolOpts := append([]connector.PoolOption{connector.WithSinkRoots(n.sinkRoots), connector.WithMetricsRegistry(n.registry), connector.WithLogger(n.log)}, o.PoolOptions...)
	if o.FlushLogDir != "" {
		poolOpts = append(poolOpts, connector.WithFlushLog(o.FlushLogDir, n.ID))
	}
	fence := o.leaseFence()
	n.lease = newLeaseKeeper(fence)
	n.OnNode(n.runLease)
	if o.Owner.LeaseFence == 0 {
		o.Owner.LeaseFence = fence
	}
	o.Processor.LeaseFence = fence
	c := &cdc{n: n, pool: connector.NewPool(poolOpts...), budget: o.Processor.TableBudget}
	// One set of owner metrics per node, reused across leadership terms.
	metrics, err := owner.NewMetrics(n.registry)
	if err != nil {
		n.log.Warn().Err(err).Msg("owner metrics unavailable")
		metrics = nil
	}
	pokes := n.memberPoke()
	n.OnAPI(func(h *api.Handler) { h.EnableCDC(c) })
	n.OnLeader(func(ctx context.Context) error {
		cfg := o.Owner
		// A cluster restored from a backup must not share the original's
		// upstream GC service safepoint (both would move it): unless an
		// operator named the cluster, its GC service is named by its own
		// new identity.
		if c, ok, err := meta.ReadCluster(n.FSM()); err == nil && ok && c.RestoredFrom != "" && (cfg.ClusterID == "" || cfg.ClusterID == owner.DefaultClusterID) {
			cfg.ClusterID = "restored-" + c.ID
		}
		return owner.Run(ctx, owner.Deps{
			NodeID:       n.ID(),
			Proposer:     n,
			State:        n.FSM(),
			Members:      c,
			Leases:       n,
			Resign:       func(ctx context.Context) error { return n.TransferLeader(ctx, "") },
			Upstreams:    c.pool,
			Sinks:        c.pool,
			Config:       cfg,
			Logger:       n.log.With().Str("component", "owner").Logger(),
			Metrics:      metrics,
			MemberEvents: pokes,
		})
	})
	n.OnNode(func(ctx context.Context) error {
		pc := o.Processor
		pc.CaptureID = n.ID()
		pc.AdvertiseAddr = n.cfg.AdvertiseAPIAddr
		pc.Version = n.cfg.Version
		pc.SpillDir = filepath.Join(n.cfg.DataDir, "spill")
		m := processor.NewManager(pc, n, n.FSM(), c.pool, n, n.log.With().Str("component", "processor").Logger(), n.registry)
		return m.Run(ctx)
	})
	n.OnNode(c.mirrorGC)
	n.drain = c.drainSelf
	n.onClose(func() error { return c.pool.Close() })
}

// Upstream implements api.CDC.
func (c *cdc) Upstream(ctx context.Context, uri string) (source.Upstream, error) {
	return c.pool.Source(ctx, uri)
}

// UpstreamFor implements api.CDC.
func (c *cdc) UpstreamFor(ctx context.Context, changefeedID, uri string) (source.Upstream, error) {
	return c.pool.SourceFor(ctx, changefeedID, uri)
}

// ValidateSinkURI implements api.CDC: the URI's syntax and this node's sink
// roots.
func (c *cdc) ValidateSinkURI(uri string) error { return c.pool.ValidateSinkURI(uri) }

// TableBudget implements api.CDC.
func (c *cdc) TableBudget() int {
	if c.budget > 0 {
		return c.budget
	}
	return admission.DefaultTableBudget
}

// CaptureLiveness implements api.CDC.
func (c *cdc) CaptureLiveness() map[string]string {
	out := map[string]string{}
	for _, m := range c.n.members.Members() {
		s := string(m.Status)
		if m.Status == membership.StatusAlive && m.Meta.Liveness == membership.LivenessDraining {
			s = "draining"
		}
		out[m.Meta.ID] = s
	}
	return out
}

// Liveness implements owner.MembershipView.
func (c *cdc) Liveness() map[model.CaptureID]owner.CaptureLiveness {
	out := map[model.CaptureID]owner.CaptureLiveness{}
	for id, s := range c.CaptureLiveness() {
		out[id] = owner.CaptureLiveness(s)
	}
	return out
}

// mirrorGC copies the service GC safepoint the owner recorded in the FSM to
// this node's sources. A real upstream keeps it in one place (PD); the
// embedded datagen upstream lives in every process, so each node must be told.
func (c *cdc) mirrorGC(ctx context.Context) error {
	ch, cancel := c.n.FSM().Watch(meta.PrefixGC, 16)
	defer cancel()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		kvs, err := c.n.FSM().List(meta.PrefixGC)
		if err == nil {
			for _, kv := range kvs {
				v, err := meta.Decode(kv.Key, kv.Value)
				if err != nil {
					continue // skipped; meta's Tracker reports it
				}
				g := v.(*model.GCSafepoint)
				if g.SourceURI == "" {
					continue
				}
				src, err := c.pool.Source(ctx, g.SourceURI)
				if err != nil {
					continue
				}
				ttl := 24 * time.Hour
				if g.Safepoint == 0 {
					ttl = 0
				}
				if _, err := src.UpdateServiceGCSafepoint(ctx, g.ServiceID, ttl, g.Safepoint); err != nil {
					c.n.log.Warn().Err(redact.Error(err, g.SourceURI)).Str("source_uri", redact.URI(g.SourceURI)).Msg("mirroring the GC safepoint")
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ch:
			if !ok {
				return nil
			}
		case <-t.C:
		}
	}
}

// drainMarkBudget bounds the wait for the draining mark to be gossiped.
const drainMarkBudget = 2 * time.Second

// drainSelf moves every table off this node's capture before it stops, so
// that a restart replays nothing: it tells gossip it is draining (the owner
// then moves its tables off in two phases and gives it none), and waits
// until the local replica shows it holds no table, or ctx ends. With no
// other live capture to take the tables there is nothing to wait for.
func (c *cdc) drainSelf(ctx context.Context) error {
	self := c.n.ID()
	held := func() int {
		n := 0
		_ = c.n.FSM().View(func(r fsm.Reader, _ uint64) error {
			r.Range(meta.PrefixTaskStatus, func(kv fsm.KV) bool {
				if k, err := meta.ParseKey(kv.Key); err == nil && k.Capture == self {
					if v, err := meta.Decode(kv.Key, kv.Value); err == nil {
						n += len(v.(*model.TaskStatus).Tables)
					}
				}
				return true
			})
			return nil
		})
		return n
	}
	tables := held()
	if tables == 0 {
		return nil
	}
	others := func() int {
		n := 0
		for _, m := range c.n.members.Members() {
			if m.Meta.ID != self && m.Status == membership.StatusAlive && m.Meta.Liveness != membership.LivenessDraining {
				n++
			}
		}
		return n
	}
	if others() == 0 {
		c.n.log.Warn().Int("tables", tables).Msg("drain: no other live capture can take this capture's tables; stopping without draining")
		return nil
	}
	start := time.Now()
	c.n.log.Info().Int("tables", tables).Msg("draining: moving every table to other captures before stopping")
	// memberlist waits until the mark has been gossiped; when every peer
	// stops at the same moment (a whole cluster stopped at once) nobody is
	// left to gossip to, and an unbounded wait took the whole drain timeout
	// before the shutdown even began. The mark stays queued past the wait,
	// and the loop below notices when no other capture is left.
	gctx, gcancel := context.WithTimeout(ctx, drainMarkBudget)
	err := c.n.members.UpdateMeta(gctx, func(m *membership.Meta) { m.Liveness = membership.LivenessDraining })
	gcancel()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("drain: telling gossip this node drains: %w", err)
	}
	if err != nil {
		c.n.log.Warn().Err(err).Dur("waited", drainMarkBudget).Msg("drain: the draining mark is not confirmed gossiped yet; draining on")
	}
	ch, cancel := c.n.FSM().Watch(meta.PrefixTaskStatus, 16)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if tables = held(); tables == 0 {
			c.n.log.Info().Dur("took", time.Since(start)).Msg("drained: this capture holds no table")
			return nil
		}
		// Every node stopping at once (a full shutdown) leaves no one to
		// take the tables: waiting out the drain timeout would only delay
		// the stop.
		if others() == 0 {
			c.n.log.Warn().Int("tables", tables).Dur("took", time.Since(start)).Msg("drain: every other capture is draining or gone; stopping without finishing the drain")
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: %d tables still on this capture after %v: %w", tables, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-ch:
		case <-tick.C:
		}
	}
}
