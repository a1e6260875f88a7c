// Package server assembles one raftcdc node: storage, the replicated state
// machine, Raft, gossip membership, the HTTP API, the owner (on the leader)
// and the processors (everywhere). See DESIGN.md beside this file.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/logging"
	"github.com/raftcdc/raftcdc/membership"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/nodetls"
	"github.com/raftcdc/raftcdc/raftnet"
	"github.com/raftcdc/raftcdc/sinkroot"
	"github.com/raftcdc/raftcdc/storage"
	"github.com/rs/zerolog"
)

// Node is one running raftcdc server.
type Node struct {
	cfg Config
	log zerolog.Logger
	id  string

	lock   *storage.DirLock
	stores *storage.Stores
	// waitDurable is stores.WaitDurable, kept apart because stores is
	// cleared at shutdown while an Apply may still be answering.
	waitDurable func(ctx context.Context, idx uint64) error
	fsm         *fsm.FSM
	tracker     *meta.Tracker // reports corrupt metadata keys
	lease       *leaseKeeper  // the capture lease; nil without CDC
	drain       func(ctx context.Context) error
	transport   *raft.NetworkTransport
	stream      *raftnet.Stream
	raft        *raft.Raft
	// tls is the one TLS configuration of every node-to-node path and of
	// the API; disabled when no certificate is configured.
	tls       *nodetls.Config
	sinkRoots *sinkroot.Policy
	members   *membership.Membership
	registry  *prometheus.Registry
	metrics   *nodeMetrics
	http      *httpServer
	client    *http.Client

	leaderNotify chan bool
	leaders      *leaderWatch
	api          *api.Handler
	apiAddons    []func(*api.Handler)
	closers      []func() error
	memberPokes  []chan struct{}

	mu            sync.Mutex
	bootstrapErr  error // a refused bootstrap, reported by /readyz
	hadState      bool
	leaderReady   bool // leader has passed its barrier
	clusterInfo   *model.ClusterInfo
	leaderAddons  []LeaderTask
	nodeAddons    []NodeTask
	stopCh        chan struct{}
	wg            sync.WaitGroup
	shutdownOnce  sync.Once
	reconcileKick chan struct{}
}

// LeaderTask runs while this node is the Raft leader, after the barrier; its
// context is cancelled on leadership loss and the node waits for it to return
// before doing anything else.
type LeaderTask func(ctx context.Context) error

// NodeTask runs for the life of the node on every node.
type NodeTask func(ctx context.Context) error

// New checks the configuration and loads the TLS files, so that a bad
// certificate is reported before anything starts; nothing is opened until
// Start.
func New(cfg Config, log zerolog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := nodetls.New(nodetls.Options{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, CAFile: cfg.TLSCAFile, VerifyIncoming: cfg.MutualTLS()})
	if err != nil {
		return nil, err
	}
	roots, err := sinkroot.New(cfg.EffectiveSinkRoots()...)
	if err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, log: log, tls: tc, sinkRoots: roots, stopCh: make(chan struct{}), reconcileKick: make(chan struct{}, 1), leaderNotify: make(chan bool, 16), leaders: newLeaderWatch(), registry: prometheus.NewRegistry()}, nil
}

// ReloadTLS re-reads the certificate, key and CA files (SIGHUP). On error
// the node keeps the files it had. Connections made afterwards use the new
// ones; open connections keep theirs, except that the internal endpoints
// check a peer's certificate against the current CA on every request.
func (n *Node) ReloadTLS() error {
	if err := n.tls.Reload(); err != nil {
		n.log.Error().Err(err).Msg("TLS reload failed; keeping the certificates loaded before")
		return err
	}
	d := n.tls.Describe()
	n.log.Info().Str("subject", d.Subject).Time("not_after", d.NotAfter).Strs("ca", d.CA).Msg("TLS certificates reloaded")
	return nil
}

// SinkRoots is the node's sink-root policy.
func (n *Node) SinkRoots() *sinkroot.Policy { return n.sinkRoots }

// OnLeader registers work that runs only on the leader (the owner). Call
// before Start.
func (n *Node) OnLeader(t LeaderTask) { n.leaderAddons = append(n.leaderAddons, t) }

// OnNode registers work that runs on every node (the processors). Call before
// Start.
func (n *Node) OnNode(t NodeTask) { n.nodeAddons = append(n.nodeAddons, t) }

// OnAPI registers extra API routes (changefeeds, captures). Call before Start.
func (n *Node) OnAPI(f func(*api.Handler)) { n.apiAddons = append(n.apiAddons, f) }

// onClose registers cleanup that runs after every task has stopped.
func (n *Node) onClose(f func() error) { n.closers = append(n.closers, f) }

// memberPoke returns a channel poked (without blocking) on every membership
// change. Call before Start.
func (n *Node) memberPoke() <-chan struct{} {
	ch := make(chan struct{}, 1)
	n.memberPokes = append(n.memberPokes, ch)
	return ch
}

func (n *Node) forwardMemberEvents(ctx context.Context) {
	events, cancel := n.members.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
			for _, ch := range n.memberPokes {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}
}

// ID is the node's stable ID, known after Start.
func (n *Node) ID() string { return n.id }

// FSM is the local replica of the state machine.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Registry is the node's Prometheus registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Members is the gossip layer.
func (n *Node) Members() *membership.Membership { return n.members }

// Config is the validated configuration.
func (n *Node) Config() Config { return n.cfg }

// Start opens everything and joins the cluster. The boot decision tree:
//
//  1. lock the data dir, load or create the node ID;
//  2. open the Raft stores; existing Raft state means this node was part of a
//     cluster and must never bootstrap again;
//  3. start Raft (not bootstrapped), gossip and the API;
//  4. join the addresses given with --join, retrying until --join-timeout;
//  5. without Raft state: wait until bootstrap-expect nodes that agree on
//     that number and have no Raft state are alive, then bootstrap with
//     exactly those, sorted by ID — every node computes the same set. If a
//     peer already has Raft state, a cluster exists: wait to be added by its
//     leader instead.
func (n *Node) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			n.closeAll(nil)
		}
	}()
	if err := mkdirAll(n.cfg.DataDir); err != nil {
		return err
	}
	if len(n.cfg.SinkRoots) == 0 {
		if err := sinkroot.EnsureDir(n.cfg.EffectiveSinkRoots()[0]); err != nil {
			return err
		}
	}
	if n.lock, err = storage.Lock(n.cfg.DataDir); err != nil {
		return err
	}
	if n.id, err = storage.NodeID(n.cfg.DataDir, n.cfg.NodeID); err != nil {
		return err
	}
	n.log = n.log.With().Str("node_id", n.id).Logger()
	if n.stores, err = storage.Open(n.cfg.DataDir, storage.Options{LogStore: n.cfg.RaftLogStore, LeaderSync: n.cfg.RaftLeaderSync, Logger: n.log}); err != nil {
		return err
	}
	if n.hadState, err = n.stores.HasState(); err != nil {
		return fmt.Errorf("checking for existing Raft state: %w", err)
	}
	n.metrics = newNodeMetrics(n)
	if n.fsm, err = fsm.Open(filepath.Join(n.cfg.DataDir, "fsm.db"), fsm.Options{Rules: meta.Rules{}, Logger: n.log.With().Str("component", "fsm").Logger(), ObserveApply: n.metrics.observeApply}); err != nil {
		return err
	}
	if n.tracker, err = meta.NewTracker(n.log, n.registry); err != nil {
		return err
	}
	if err := n.startRaft(); err != nil {
		return err
	}
	if err := n.startMembership(); err != nil {
		return err
	}
	if n.http, err = startHTTP(n); err != nil {
		return err
	}
	n.log.Info().Str("raft_addr", n.cfg.AdvertiseRaftAddr).Str("gossip_addr", n.cfg.AdvertiseGossipAddr).
		Str("api_addr", n.cfg.AdvertiseAPIAddr).Bool("has_raft_state", n.hadState).Int("bootstrap_expect", n.cfg.BootstrapExpect).
		Bool("tls", n.tls.Enabled()).Bool("mutual_tls", n.tls.Mutual()).Strs("sink_roots", n.sinkRoots.Roots()).Msg("node started")
	n.warnInsecure()

	if len(n.cfg.Join) > 0 {
		if err := n.members.Join(ctx, n.cfg.Join, n.cfg.JoinTimeout); err != nil {
			return fmt.Errorf("joining the cluster: %w", err)
		}
	}
	ctxRun, cancel := context.WithCancel(context.Background())
	n.goRun(func() { <-n.stopCh; cancel() })
	if !n.hadState {
		n.goRun(func() { n.bootstrapLoop(ctxRun) })
	}
	n.goRun(func() { n.observeLeaders(ctxRun) })
	n.goRun(func() { n.leaderLoop(ctxRun) })
	n.goRun(func() { n.followClusterRecord(ctxRun) })
	n.goRun(func() {
		if err := n.tracker.Run(ctxRun, n.fsm); err != nil {
			n.log.Error().Err(err).Msg("metadata tracker stopped")
		}
	})
	if len(n.memberPokes) > 0 {
		n.goRun(func() { n.forwardMemberEvents(ctxRun) })
	}
	for _, t := range n.nodeAddons {
		t := t
		n.goRun(func() {
			if err := t(ctxRun); err != nil && ctxRun.Err() == nil {
				n.log.Error().Err(err).Msg("node task stopped")
			}
		})
	}
	return nil
}

func (n *Node) goRun(f func()) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); f() }()
}

func (n *Node) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.id)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.NotifyCh = n.leaderNotify
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.Logger = logging.HCLog(n.log.With().Str("component", "raft").Logger(), "raft")
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft configuration: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", n.cfg.AdvertiseRaftAddr)
	if err != nil {
		return fmt.Errorf("resolving --advertise-raft-addr %s: %w", n.cfg.AdvertiseRaftAddr, err)
	}
	tcfg := &raft.NetworkTransportConfig{
		MaxPool: 5, Timeout: 2 * time.Second,
		// One RPC in flight per follower turns pipelined replication off.
		// raft v1.7.3's pipeline can wedge: when a follower rejects an
		// append (or answers with a newer term, as right after a leadership
		// transfer) the decoder exits while the sender may still be parked
		// handing a request to it, and nothing ever closes the pipeline. That
		// replication goroutine then never ends — the follower gets
		// heartbeats but no entries, and raft.Shutdown waits forever. The
		// 30-minute chaos run hit it on a leader's SIGTERM (see DESIGN.md).
		MaxRPCsInFlight: 1,
		Logger:          logging.HCLog(n.log.With().Str("component", "raft-net").Logger(), "raft-net"),
	}
	n.stream, err = raftnet.Listen(n.cfg.RaftAddr, adv, raftnet.Options{
		TLS: n.tls, HandshakeTimeout: n.cfg.RaftHandshakeTimeout, MaxConnsPerPeer: n.cfg.RaftMaxConnsPerPeer,
		Logger: n.log.With().Str("component", "raft-net").Logger(), Registerer: n.registry,
	})
	if err != nil {
		return err
	}
	var layer raft.StreamLayer = n.stream
	if n.cfg.RaftStream != nil {
		layer = n.cfg.RaftStream(n.stream)
	}
	tcfg.Stream = layer
	n.transport = raft.NewNetworkTransportWithConfig(tcfg)
	n.raft, err = raft.NewRaft(rc, n.fsm, n.stores.Log, n.stores.Stable, n.stores.Snapshots, n.transport)
	if err != nil {
		return fmt.Errorf("starting Raft: %w", err)
	}
	// Raft asks the log from its own goroutine, the one that changes its
	// state, so this answer is the path (leader or follower) it is on.
	r := n.raft
	n.stores.SetLeaderCheck(func() bool { return r.State() == raft.Leader })
	n.waitDurable = n.stores.WaitDurable
	return nil
}

// warnInsecure says, loudly, what an attacker on the network could do with
// the configuration the node runs with.
func (n *Node) warnInsecure() {
	switch {
	case !n.tls.Enabled():
		n.log.Warn().Str("raft_addr", n.cfg.AdvertiseRaftAddr).Str("security", "raft_unauthenticated").
			Msg("SECURITY: Raft runs without TLS. Anyone who can connect to the Raft port can append entries, vote, move leadership and install snapshots — that is, rewrite this cluster's state. " +
				"Keep --raft-addr unreachable from untrusted hosts, or set --tls-cert, --tls-key and --tls-ca (raftcdc tools tls init|issue makes them).")
	case !n.tls.Mutual():
		n.log.Warn().Str("raft_addr", n.cfg.AdvertiseRaftAddr).Str("security", "raft_peers_unauthenticated").
			Msg("SECURITY: Raft is encrypted, but peers are not asked for a certificate from the cluster's CA, so anyone who can connect to the Raft port can still rewrite this cluster's state. " +
				"Set --tls-ca and leave --tls-verify-incoming on.")
	}
	if !n.cfg.HasNodeCredentials() {
		n.log.Warn().Str("api_addr", n.cfg.AdvertiseAPIAddr).Str("security", "internal_loopback_only").
			Msg("SECURITY: no node credential (mutual TLS or --cluster-secret-file) is configured, so the internal endpoints answer loopback peers only and this node cannot join nodes on other hosts.")
	}
	if len(n.cfg.GossipKey) == 0 {
		n.log.Warn().Str("gossip_addr", n.cfg.AdvertiseGossipAddr).Str("security", "gossip_unencrypted").
			Msg("SECURITY: gossip is neither encrypted nor authenticated; set --gossip-key so that hosts without it cannot join or spoof members.")
	}
}

func (n *Node) startMembership() error {
	host, portStr, _ := net.SplitHostPort(n.cfg.GossipAddr)
	port, _ := strconv.Atoi(portStr)
	ahost, aportStr, _ := net.SplitHostPort(n.cfg.AdvertiseGossipAddr)
	aport, _ := strconv.Atoi(aportStr)
	mc := membership.Config{
		NodeName: n.id, BindAddr: host, BindPort: port, AdvertiseAddr: ahost, AdvertisePort: aport,
		Meta: membership.Meta{
			ID: n.id, RaftAddr: n.cfg.AdvertiseRaftAddr, APIAddr: n.cfg.AdvertiseAPIAddr,
			BootstrapExpect: n.cfg.BootstrapExpect, HasRaftState: n.hadState, Version: n.cfg.Version,
			Liveness: membership.LivenessAlive, MetaVersion: membership.CurrentMetaVersion,
			CommandVersion: fsm.CommandVersion, SchemaVersion: meta.SchemaVersion,
		},
		SecretKey:     n.cfg.GossipKey,
		ProbeInterval: n.cfg.ProbeInterval,
		ProbeTimeout:  n.cfg.ProbeTimeout,
		Logger:        n.log.With().Str("component", "gossip").Logger(),
	}
	if n.cfg.gossipMeta != nil {
		n.cfg.gossipMeta(&mc.Meta)
	}
	m, err := membership.New(mc)
	if err != nil {
		return fmt.Errorf("starting gossip on %s: %w", n.cfg.GossipAddr, err)
	}
	n.members = m
	return nil
}

// bootstrapLoop decides, from gossip alone, when and with whom to bootstrap.
func (n *Node) bootstrapLoop(ctx context.Context) {
	events, cancel := n.members.Subscribe()
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		done, err := n.tryBootstrap(ctx)
		n.mu.Lock()
		n.bootstrapErr = err
		n.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-events:
		case <-t.C:
		}
	}
}

func (n *Node) tryBootstrap(ctx context.Context) (done bool, err error) {
	if has, err := n.stores.HasState(); err == nil && has {
		n.markHasState(ctx)
		return true, nil // added to a cluster by its leader meanwhile
	}
	var candidates []membership.Member
	for _, m := range n.members.Members() {
		if m.Status != membership.StatusAlive {
			continue
		}
		if m.Meta.HasRaftState {
			// A cluster already exists: its leader will add this node.
			return false, nil
		}
		if m.Meta.BootstrapExpect != n.cfg.BootstrapExpect {
			err := fmt.Errorf("refusing to bootstrap: node %s expects %d nodes but this node expects %d; start every node with the same --bootstrap-expect",
				m.Meta.ID, m.Meta.BootstrapExpect, n.cfg.BootstrapExpect)
			n.log.Error().Str("peer_id", m.Meta.ID).Int("peer_bootstrap_expect", m.Meta.BootstrapExpect).Int("bootstrap_expect", n.cfg.BootstrapExpect).Msg(err.Error())
			return false, err
		}
		candidates = append(candidates, m)
	}
	if len(candidates) < n.cfg.BootstrapExpect {
		return false, nil
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].Meta.ID < candidates[j].Meta.ID })
	candidates = candidates[:n.cfg.BootstrapExpect]
	var conf raft.Configuration
	self := false
	for _, m := range candidates {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Meta.ID), Address: raft.ServerAddress(m.Meta.RaftAddr)})
		self = self || m.Meta.ID == n.id
	}
	if !self {
		return false, nil // the set is complete without us; the leader adds us later
	}
	f := n.raft.BootstrapCluster(conf)
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return false, fmt.Errorf("bootstrapping Raft: %w", err)
	}
	n.log.Info().Int("voters", len(conf.Servers)).Msg("bootstrapped the cluster")
	n.markHasState(ctx)
	return true, nil
}

func (n *Node) markHasState(ctx context.Context) {
	if err := n.members.UpdateMeta(ctx, func(m *membership.Meta) { m.HasRaftState = true }); err != nil {
		n.log.Warn().Err(err).Msg("could not gossip has_raft_state")
	}
}

// leaderLoop follows Raft leadership: gained → barrier → establish → run the
// leader tasks; lost → cancel them and wait for them to exit before anything
// else happens.
func (n *Node) leaderLoop(ctx context.Context) {
	type run struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur *run
	stop := func() {
		if cur == nil {
			return
		}
		cur.cancel()
		<-cur.done
		cur = nil
		n.mu.Lock()
		n.leaderReady = false
		n.mu.Unlock()
		n.log.Info().Msg("leader tasks stopped")
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-n.leaderNotify:
			// Drain to the latest state: only where we ended up matters.
			for more := true; more; {
				select {
				case isLeader = <-n.leaderNotify:
				default:
					more = false
				}
			}
			switch {
			case isLeader && cur == nil:
				lctx, cancel := context.WithCancel(ctx)
				cur = &run{cancel: cancel, done: make(chan struct{})}
				go func(done chan struct{}) { defer close(done); n.runLeader(lctx) }(cur.done)
			case !isLeader:
				stop()
			}
		}
	}
}

func (n *Node) runLeader(ctx context.Context) {
	n.log.Info().Uint64("term", n.raft.CurrentTerm()).Msg("gained leadership")
	// The barrier makes every entry of earlier terms applied here, so the
	// owner starts from the whole state.
	for {
		err := n.raft.Barrier(10 * time.Second).Error()
		if err == nil {
			break
		}
		n.log.Warn().Err(err).Msg("leader barrier failed")
		if ctx.Err() != nil || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return
		}
	}
	n.mu.Lock()
	n.leaderReady = true
	n.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); n.reconcileLoop(ctx) }()
	for _, t := range n.leaderAddons {
		t := t
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := t(ctx)
				if ctx.Err() != nil {
					return
				}
				n.log.Error().Err(err).Msg("leader task stopped; restarting")
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	}
	wg.Wait()
}

// IsLeader reports whether this node is the leader and has passed its barrier.
func (n *Node) IsLeader() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaderReady && n.raft.State() == raft.Leader
}

// Drain moves this node's work elsewhere before a shutdown (with CDC: every
// table off its capture), until done or ctx ends. Call it before Shutdown.
func (n *Node) Drain(ctx context.Context) error {
	if n.drain == nil {
		return nil
	}
	return n.drain(ctx)
}

// Shutdown stops the node cleanly: a leader hands leadership over first; the
// node stays a voter so that a restart with the same data dir rejoins.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.shutdownOnce.Do(func() {
		// How long each step took goes into the log, and into the error
		// when the whole overran: what a stuck stop waited for.
		steps := &stepTimes{last: time.Now()}
		if n.raft != nil && n.raft.State() == raft.Leader && n.hasOtherVoter() {
			f := n.raft.LeadershipTransfer()
			if e := f.Error(); e != nil {
				n.log.Warn().Err(e).Msg("leadership transfer before shutdown failed")
			} else {
				n.log.Info().Msg("leadership transferred before shutdown")
			}
			steps.done("leadership transfer")
		}
		if n.members != nil {
			// The draining mark is a courtesy, so it gets a small part of
			// the budget. memberlist waits until the update has been
			// gossiped, and when every peer leaves after that wait began
			// (a whole cluster stopped at once) there is nobody to gossip
			// to: unbounded, the wait took the whole shutdown budget.
			gctx, cancel := context.WithTimeout(ctx, goodbyeBudget)
			if e := n.members.UpdateMeta(gctx, func(m *membership.Meta) { m.Liveness = membership.LivenessDraining }); e != nil {
				n.log.Debug().Err(e).Msg("draining mark not gossiped")
			}
			cancel()
			steps.done("draining mark")
		}
		close(n.stopCh)
		n.wg.Wait()
		steps.done("workers")
		err = n.closeAll(steps)
		n.log.Debug().Strs("steps", steps.names).Msg("shutdown steps")
		if e := ctx.Err(); e != nil {
			// Every step ran, but later than the caller allowed.
			err = errors.Join(err, fmt.Errorf("shutdown outlasted its deadline (%s): %w", strings.Join(steps.names, ", "), e))
		}
	})
	return err
}

// goodbyeBudget bounds the gossip of the draining mark during Shutdown.
const goodbyeBudget = time.Second

// stepTimes records how long each step of a shutdown took; a nil one
// records nothing (Kill, a failed Start).
type stepTimes struct {
	last  time.Time
	names []string
}

func (s *stepTimes) done(name string) {
	if s == nil {
		return
	}
	now := time.Now()
	s.names = append(s.names, fmt.Sprintf("%s %v", name, now.Sub(s.last).Round(time.Millisecond)))
	s.last = now
}

// hasOtherVoter says whether the configuration holds a voter besides this
// node, that is, whether there is anybody to hand leadership to. A one-node
// cluster has nobody, and trying would only log a failure on every stop.
func (n *Node) hasOtherVoter() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return true // unknown: try, and let the transfer say what failed
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.id {
			return true
		}
	}
	return false
}

// Kill stops the node without any goodbye, for tests that simulate a crash:
// no leadership transfer, no gossip leave.
func (n *Node) Kill() {
	n.shutdownOnce.Do(func() {
		close(n.stopCh)
		// Cut the network first, as a crash would; the fields stay set until
		// every goroutine that uses them has exited.
		if n.members != nil {
			n.members.Shutdown()
		}
		if n.transport != nil {
			n.transport.Close()
		}
		n.wg.Wait()
		n.closeAll(nil)
	})
}

// closeAll closes what the node opened, timing each slow part in steps.
func (n *Node) closeAll(steps *stepTimes) error {
	var errs []error
	if n.http != nil {
		n.http.close()
		n.http = nil
		steps.done("http")
	}
	if n.members != nil {
		if err := n.members.Leave(time.Second); err != nil {
			n.log.Debug().Err(err).Msg("gossip leave")
		}
		errs = append(errs, n.members.Shutdown())
		n.members = nil
		steps.done("gossip leave")
	}
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
		n.raft = nil
		steps.done("raft")
	}
	if n.transport != nil {
		errs = append(errs, n.transport.Close())
		n.transport = nil
	}
	if n.fsm != nil {
		errs = append(errs, n.fsm.Close())
		n.fsm = nil
	}
	for _, c := range n.closers {
		errs = append(errs, c())
	}
	n.closers = nil
	steps.done("state machine and services")
	if n.stores != nil {
		errs = append(errs, n.stores.Close())
		n.stores = nil
		steps.done("raft stores")
	}
	if n.lock != nil {
		errs = append(errs, n.lock.Unlock())
		n.lock = nil
	}
	return errors.Join(errs...)
}

func mkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating data dir %s: %w", dir, err)
	}
	return nil
}
