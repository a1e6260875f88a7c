// Package membership discovers the nodes of a raftcdc cluster and tracks
// their liveness with memberlist (SWIM gossip). Each node gossips a small
// Meta record with what the Raft layer needs to form the group. See
// DESIGN.md in this directory for the reasoning and the timing defaults.
package membership

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/raftcdc/raftcdc/logging"
	"github.com/rs/zerolog"
)

// Status is a member's liveness as seen by this node.
type Status string

const (
	StatusAlive Status = "alive"
	// StatusSuspect is part of the vocabulary for API consumers, but this
	// package does not report it yet: memberlist raises no event when it
	// starts suspecting a node and exposes no race-free way to read that
	// state, so a member stays "alive" until it is confirmed dead.
	StatusSuspect Status = "suspect"
	// StatusDead: failure detection declared the node dead (it stopped
	// answering probes). It may come back.
	StatusDead Status = "dead"
	// StatusLeft: the node announced its own departure (Leave).
	StatusLeft Status = "left"
)

// Member is one node of the cluster as seen by this node.
type Member struct {
	Meta       Meta
	GossipAddr string // host:port of the node's memberlist endpoint
	Status     Status
}

// Default timings, tuned for fast failure detection on a LAN or loopback.
// See Config for what each one trades off.
const (
	DefaultProbeInterval       = 500 * time.Millisecond
	DefaultProbeTimeout        = 250 * time.Millisecond
	DefaultSuspicionMult       = 2
	DefaultGossipInterval      = 100 * time.Millisecond
	DefaultPushPullInterval    = 10 * time.Second
	DefaultTCPTimeout          = 2 * time.Second
	DefaultDeadNodeReclaimTime = 5 * time.Second
	DefaultReconnectInterval   = 2 * time.Second
	DefaultReconnectTimeout    = 24 * time.Hour
	DefaultTombstoneTimeout    = time.Hour
)

// Config configures a Membership. Zero durations and counts take the
// defaults above.
type Config struct {
	// NodeName is the gossip node name; it must equal the node's stable ID.
	NodeName string

	// BindAddr/BindPort is where memberlist listens (UDP and TCP on the same
	// port). Port 0 picks a free port. AdvertiseAddr/AdvertisePort is what
	// peers are told; empty/0 means the bound address and port.
	BindAddr      string
	BindPort      int
	AdvertiseAddr string
	AdvertisePort int

	// Meta is the initial metadata. Meta.ID defaults to NodeName and
	// Meta.Liveness to "alive".
	Meta Meta

	// SecretKey, when set (16, 24 or 32 bytes), encrypts all gossip with
	// AES-GCM; nodes with a different key or no key cannot join.
	SecretKey []byte

	// ProbeInterval is how often each node probes one random peer.
	// Lower detects failures sooner at the cost of more UDP traffic
	// (one probe per node per interval, whatever the cluster size).
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a direct ack before asking other
	// nodes to probe indirectly. It must cover the RTT plus scheduling
	// noise; 250ms is far above LAN RTT yet leaves time for indirect probes
	// within the 500ms interval.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspect has to refute before it is
	// declared dead: SuspicionMult * max(1, log10(N)) * ProbeInterval, i.e.
	// 1s for clusters under 10 nodes with the defaults.
	SuspicionMult int
	// GossipInterval is how often state changes are pushed to a few random
	// nodes over UDP; it bounds how quickly Meta updates spread.
	GossipInterval time.Duration
	// PushPullInterval is how often a full state exchange over TCP happens
	// with a random node; it repairs anything the UDP gossip lost.
	PushPullInterval time.Duration
	// TCPTimeout bounds a TCP connection (join, push/pull, fallback ping).
	TCPTimeout time.Duration
	// DeadNodeReclaimTime lets a node that died come back under the same
	// name at a different address after this long (memberlist otherwise
	// refuses the new address forever).
	DeadNodeReclaimTime time.Duration
	// ReconnectInterval: how often to try rejoining one random dead member,
	// so that a restarted node or a healed partition is merged back even if
	// nobody calls Join again.
	ReconnectInterval time.Duration
	// ReconnectTimeout: how long dead members are kept (and retried) before
	// they are forgotten.
	ReconnectTimeout time.Duration
	// TombstoneTimeout: how long members that left are kept for display.
	TombstoneTimeout time.Duration

	Logger zerolog.Logger
}

func (c *Config) applyDefaults() {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&c.ProbeInterval, DefaultProbeInterval)
	setDur(&c.ProbeTimeout, DefaultProbeTimeout)
	setDur(&c.GossipInterval, DefaultGossipInterval)
	setDur(&c.PushPullInterval, DefaultPushPullInterval)
	setDur(&c.TCPTimeout, DefaultTCPTimeout)
	setDur(&c.DeadNodeReclaimTime, DefaultDeadNodeReclaimTime)
	setDur(&c.ReconnectInterval, DefaultReconnectInterval)
	setDur(&c.ReconnectTimeout, DefaultReconnectTimeout)
	setDur(&c.TombstoneTimeout, DefaultTombstoneTimeout)
	if c.SuspicionMult <= 0 {
		c.SuspicionMult = DefaultSuspicionMult
	}
	if c.Meta.ID == "" {
		c.Meta.ID = c.NodeName
	}
	if c.Meta.Liveness == "" {
		c.Meta.Liveness = LivenessAlive
	}
}

// memberState is a Member plus when its status last changed, for reaping.
type memberState struct {
	member Member
	since  time.Time
}

// Membership is a running gossip participant.
type Membership struct {
	cfg  Config
	log  zerolog.Logger
	list *memberlist.Memberlist

	// lifeMu orders Leave against Shutdown.
	lifeMu sync.Mutex
	// updateMu serialises UpdateMeta's read-modify-write of the meta so
	// that it never loses a concurrent change. It is not held while the
	// update is gossiped: that wait can last seconds, and a caller that
	// is stopping (the draining mark) must not queue behind it.
	updateMu sync.Mutex
	// broadcastMu serialises memberlist's UpdateNode, which is not safe to
	// call concurrently (it reads the local node's state outside its own
	// lock while another call rewrites it). It is held for the broadcast
	// wait too, so an update that finds a later one already sent (sentGen)
	// does not send again: that broadcast carried its meta.
	broadcastMu sync.Mutex

	// mu guards everything below. Rule: never call into memberlist while
	// holding mu, because memberlist calls our delegates while holding its
	// own node lock, and the delegates take mu.
	mu        sync.Mutex
	meta      Meta
	metaBytes []byte
	// metaGen counts changes of meta; sentGen is the newest one handed to
	// memberlist's UpdateNode.
	metaGen uint64
	sentGen uint64
	members map[string]*memberState
	intents map[string]intentState
	subs    map[*subscriber]struct{}
	left    bool
	closed  bool

	// numAlive mirrors the alive count for the broadcast queue, which asks
	// for it from memberlist's gossip goroutines.
	numAlive   atomic.Int32
	broadcasts *memberlist.TransmitLimitedQueue

	stop         chan struct{}
	done         chan struct{}
	shutdownOnce sync.Once
	shutdownErr  error
}

// New starts memberlist on the configured address. The node is alone until
// Join is called (or until another node joins it).
func New(cfg Config) (*Membership, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("start gossip: empty node name")
	}
	cfg.applyDefaults()
	if err := validateMeta(cfg.Meta, cfg.NodeName); err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	metaBytes, err := EncodeMeta(cfg.Meta)
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	if len(cfg.SecretKey) > 0 {
		if err := memberlist.ValidateKey(cfg.SecretKey); err != nil {
			return nil, fmt.Errorf("start gossip: secret key is %d bytes: %w", len(cfg.SecretKey), err)
		}
	}
	logger := cfg.Logger.With().Str("node_id", cfg.NodeName).Logger()

	m := &Membership{
		cfg:       cfg,
		log:       logger,
		meta:      cfg.Meta,
		metaBytes: metaBytes,
		members:   make(map[string]*memberState),
		intents:   make(map[string]intentState),
		subs:      make(map[*subscriber]struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}

	mc := memberlist.DefaultLANConfig()
	m.broadcasts = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(m.numAlive.Load()) },
		RetransmitMult: mc.RetransmitMult,
	}
	mc.Name = cfg.NodeName
	if cfg.BindAddr != "" {
		mc.BindAddr = cfg.BindAddr
	}
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort
	}
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = cfg.PushPullInterval
	mc.TCPTimeout = cfg.TCPTimeout
	mc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = append([]byte(nil), cfg.SecretKey...)
	}
	d := &delegate{m: m}
	mc.Delegate = d
	mc.Events = d
	mc.Logger = logging.StdLogger(logger, "memberlist")

	list, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s:%d: %w", mc.BindAddr, cfg.BindPort, err)
	}
	m.list = list
	go m.maintain()

	local := list.LocalNode()
	logger.Info().
		Str("gossip_addr", local.Address()).
		Bool("encrypted", len(cfg.SecretKey) > 0).
		Msg("gossip started")
	return m, nil
}

// Join contacts the given gossip addresses (host:port), retrying with
// exponential backoff until at least one answers, ctx ends or timeout passes
// (timeout <= 0 means only ctx bounds it). Every address that answers is
// joined. On failure the error lists each address with its last error.
func (m *Membership) Join(ctx context.Context, addrs []string, timeout time.Duration) error {
	if len(addrs) == 0 {
		return errors.New("join gossip cluster: no addresses given")
	}
	if m.isClosed() {
		return errors.New("join gossip cluster: membership is shut down")
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	lastErr := make([]error, len(addrs))
	backoff := 100 * time.Millisecond
	const maxBackoff = 2 * time.Second
	for attempt := 1; ; attempt++ {
		joined := m.joinOnce(addrs, lastErr)
		if joined > 0 {
			m.log.Info().
				Strs("join_addrs", addrs).
				Int("answered", joined).
				Int("attempt", attempt).
				Int("alive", m.NumAlive()).
				Msg("joined gossip cluster")
			return nil
		}
		m.log.Debug().Strs("join_addrs", addrs).Int("attempt", attempt).Dur("backoff", backoff).
			Msg("no gossip address answered; retrying")
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return m.joinError(addrs, lastErr, attempt, time.Since(start), ctx.Err())
		case <-m.stop:
			t.Stop()
			return errors.New("join gossip cluster: membership is shut down")
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// joinOnce tries every address in parallel (an unreachable host costs a full
// TCPTimeout, so trying them in sequence would multiply it) and records the
// error of each that failed.
func (m *Membership) joinOnce(addrs []string, lastErr []error) int {
	var wg sync.WaitGroup
	results := make([]error, len(addrs))
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = m.list.Join([]string{a})
		}()
	}
	wg.Wait()
	joined := 0
	for i, err := range results {
		if err == nil {
			joined++
			continue
		}
		lastErr[i] = flattenErr(err)
	}
	return joined
}

// flattenErr unwraps memberlist's multierror (one error per resolved
// address, printed over several lines) into one single-line error, so the
// join error reads as one line per address.
func flattenErr(err error) error {
	multi, ok := err.(interface{ WrappedErrors() []error })
	if !ok {
		return err
	}
	var parts []string
	for _, e := range multi.WrappedErrors() {
		parts = append(parts, e.Error())
	}
	if len(parts) == 0 {
		return err
	}
	return errors.New(strings.Join(parts, ", "))
}

func (m *Membership) joinError(addrs []string, lastErr []error, attempts int, elapsed time.Duration, cause error) error {
	msg := fmt.Sprintf("join gossip cluster: no address answered after %d attempts in %s (%v)",
		attempts, elapsed.Round(time.Millisecond), cause)
	for i, a := range addrs {
		msg += fmt.Sprintf("; %s: %v", a, lastErr[i])
	}
	if len(m.cfg.SecretKey) > 0 {
		msg += " (gossip is encrypted: check that every node uses the same key)"
	}
	return errors.New(msg)
}

// Members returns every known member, including dead and left ones until
// they are reaped, sorted by ID.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	out := make([]Member, 0, len(m.members))
	for _, s := range m.members {
		out = append(out, s.member)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Meta.ID < out[j].Meta.ID })
	return out
}

// Local returns this node as a member.
func (m *Membership) Local() Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.members[m.cfg.NodeName]; ok {
		return s.member
	}
	// Only reachable if memberlist never reported us, which it does during
	// Create; kept as a safe fallback.
	status := StatusAlive
	if m.left {
		status = StatusLeft
	}
	return Member{Meta: m.meta, Status: status}
}

// NumAlive is the number of members, this node included, currently alive.
func (m *Membership) NumAlive() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.members {
		if s.member.Status == StatusAlive {
			n++
		}
	}
	return n
}

// UpdateMeta applies fn to a copy of the local metadata, checks the result
// (ID unchanged, valid liveness, within MetaMaxSize) and broadcasts it. It
// waits for the broadcast to go out until ctx's deadline (5s without one).
// If that wait times out the new metadata is still in effect locally and
// will reach the others through push/pull.
func (m *Membership) UpdateMeta(ctx context.Context, fn func(*Meta)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("update node meta: %w", err)
	}
	next, gen, err := m.modifyMeta(fn)
	if err != nil {
		return err
	}

	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return fmt.Errorf("update node meta: %w", context.DeadlineExceeded)
		}
	}
	// memberlist's wait for the broadcast takes no context; a caller that
	// is stopping must not sit out the timeout (when every peer has left,
	// the update is never gossiped and the wait always runs to the end).
	// The update is queued either way: it goes out with the next gossip.
	done := make(chan error, 1)
	go func() { done <- m.broadcast(gen, timeout) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("update node meta: broadcast: %w", err)
		}
	case <-ctx.Done():
		return fmt.Errorf("update node meta: broadcast not confirmed: %w", ctx.Err())
	case <-m.stop:
		return errors.New("update node meta: broadcast not confirmed: membership is shutting down")
	}
	m.log.Debug().Str("liveness", string(next.Liveness)).Bool("has_raft_state", next.HasRaftState).
		Msg("node meta updated")
	return nil
}

// broadcast hands the meta of generation gen (or a later one) to
// memberlist and waits for it to be gossiped, one call at a time.
func (m *Membership) broadcast(gen uint64, timeout time.Duration) error {
	m.broadcastMu.Lock()
	defer m.broadcastMu.Unlock()
	m.mu.Lock()
	if m.sentGen >= gen {
		m.mu.Unlock()
		return nil
	}
	// UpdateNode asks the delegate for the meta, which is at least this
	// generation from here on.
	m.sentGen = m.metaGen
	m.mu.Unlock()
	return m.list.UpdateNode(timeout)
}

// modifyMeta applies fn to the node's meta, under updateMu, and returns
// the new meta with its generation.
func (m *Membership) modifyMeta(fn func(*Meta)) (Meta, uint64, error) {
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	if m.isClosed() {
		return Meta{}, 0, errors.New("update node meta: membership is shut down")
	}
	m.mu.Lock()
	next := m.meta
	m.mu.Unlock()
	fn(&next)
	if err := validateMeta(next, m.cfg.NodeName); err != nil {
		return Meta{}, 0, fmt.Errorf("update node meta: %w", err)
	}
	b, err := EncodeMeta(next)
	if err != nil {
		return Meta{}, 0, fmt.Errorf("update node meta: %w", err)
	}
	m.mu.Lock()
	m.meta = next
	m.metaBytes = b
	m.metaGen++
	gen := m.metaGen
	m.mu.Unlock()
	return next, gen, nil
}

// Leave announces this node's departure so peers mark it "left" rather than
// "dead", and waits up to timeout (0 = no limit) for the announcement to go
// out. Call Shutdown afterwards.
//
// The announcement is a leave intent, sent directly over TCP to every alive
// peer and also gossiped, followed by memberlist's own leave broadcast; the
// intent is what lets peers tell "left" from "dead" (see intent.go).
func (m *Membership) Leave(timeout time.Duration) error {
	// lifeMu keeps Shutdown from running between the check and the call:
	// memberlist panics on Leave after Shutdown.
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.isClosed() {
		return errors.New("leave gossip cluster: membership is shut down")
	}
	start := time.Now()
	li := leaveIntent{Node: m.cfg.NodeName, At: start.UnixNano()}
	msg, err := encodeIntent(li)
	if err != nil {
		return fmt.Errorf("leave gossip cluster: %w", err)
	}

	m.mu.Lock()
	// Stop reconnecting to dead members: we are on our way out.
	m.left = true
	m.recordIntent(li, start)
	var peers []memberlist.Node
	for name, s := range m.members {
		if name == m.cfg.NodeName || s.member.Status != StatusAlive {
			continue
		}
		if n, ok := toNode(name, s.member.GossipAddr); ok {
			peers = append(peers, n)
		}
	}
	m.mu.Unlock()

	m.broadcasts.QueueBroadcast(&intentBroadcast{node: li.Node, msg: msg, done: make(chan struct{})})
	sent := make(chan struct{})
	var failed atomic.Int32
	go func() {
		defer close(sent)
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.list.SendReliable(&p, msg); err != nil {
					failed.Add(1)
					m.log.Debug().Str("peer_id", p.Name).Err(err).Msg("could not send leave intent directly; relying on gossip")
				}
			}()
		}
		wg.Wait()
	}()
	var timeoutCh <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timeoutCh = t.C
	}
	select {
	case <-sent:
	case <-timeoutCh:
		return fmt.Errorf("leave gossip cluster: timed out after %s sending the leave intent to %d peers", timeout, len(peers))
	}

	remaining := time.Duration(0)
	if timeout > 0 {
		remaining = timeout - time.Since(start)
		if remaining <= 0 {
			return fmt.Errorf("leave gossip cluster: timed out after %s", timeout)
		}
	}
	if err := m.list.Leave(remaining); err != nil {
		return fmt.Errorf("leave gossip cluster: %w", err)
	}
	m.log.Info().Int("peers", len(peers)).Int32("intent_send_failures", failed.Load()).
		Msg("left gossip cluster")
	return nil
}

// toNode builds the memberlist address of a member from our own copy of its
// gossip address (rather than memberlist's live *Node, which it mutates
// under a lock we cannot take).
func toNode(name, gossipAddr string) (memberlist.Node, bool) {
	host, portStr, err := net.SplitHostPort(gossipAddr)
	if err != nil {
		return memberlist.Node{}, false
	}
	ip := net.ParseIP(host)
	port, err := strconv.ParseUint(portStr, 10, 16)
	if ip == nil || err != nil {
		return memberlist.Node{}, false
	}
	return memberlist.Node{Name: name, Addr: ip, Port: uint16(port)}, true
}

// Shutdown stops gossip without announcing anything (peers will detect the
// node as dead) and closes every subscription. It is idempotent.
func (m *Membership) Shutdown() error {
	m.shutdownOnce.Do(func() {
		m.lifeMu.Lock()
		close(m.stop)
		if err := m.list.Shutdown(); err != nil {
			m.shutdownErr = fmt.Errorf("shut down gossip: %w", err)
		}
		m.lifeMu.Unlock()
		// The maintenance loop may be inside a reconnect attempt, which is
		// bounded by TCPTimeout.
		<-m.done
		m.mu.Lock()
		m.closed = true
		for s := range m.subs {
			close(s.ch)
			delete(m.subs, s)
		}
		m.mu.Unlock()
		m.log.Info().Msg("gossip stopped")
	})
	return m.shutdownErr
}

func (m *Membership) isClosed() bool {
	select {
	case <-m.stop:
		return true
	default:
		return false
	}
}

// maintain reaps old dead/left members and periodically rejoins a dead one.
// memberlist forgets dead nodes after GossipToTheDeadTime and never contacts
// them again, so without this a node that restarts without joining (or the
// other side of a healed partition) would stay separate forever.
func (m *Membership) maintain() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		target, ok := m.reapAndPickDead(time.Now())
		if !ok {
			continue
		}
		if _, err := m.list.Join([]string{target.GossipAddr}); err != nil {
			m.log.Debug().Str("peer_id", target.Meta.ID).Str("gossip_addr", target.GossipAddr).Err(err).
				Msg("reconnect to dead member failed")
			continue
		}
		m.log.Info().Str("peer_id", target.Meta.ID).Str("gossip_addr", target.GossipAddr).
			Msg("reconnected to dead member")
	}
}

func (m *Membership) reapAndPickDead(now time.Time) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireIntents(now)
	var dead []Member
	for name, s := range m.members {
		if name == m.cfg.NodeName {
			continue
		}
		switch s.member.Status {
		case StatusDead:
			if now.Sub(s.since) > m.cfg.ReconnectTimeout {
				delete(m.members, name)
				m.log.Info().Str("peer_id", name).Msg("forgetting dead member")
				continue
			}
			if s.member.GossipAddr != "" {
				dead = append(dead, s.member)
			}
		case StatusLeft:
			if now.Sub(s.since) > m.cfg.TombstoneTimeout {
				delete(m.members, name)
				m.log.Debug().Str("peer_id", name).Msg("forgetting member that left")
			}
		}
	}
	if m.left || len(dead) == 0 {
		return Member{}, false
	}
	return dead[rand.IntN(len(dead))], true
}

// nodeAddr formats a memberlist node's address.
func nodeAddr(n *memberlist.Node) string {
	if n.Addr == nil {
		return ""
	}
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}
