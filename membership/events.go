package membership

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// EventType says what happened to a member.
type EventType int

const (
	// EventJoin: a member became alive (new, or back from dead/left).
	EventJoin EventType = iota + 1
	// EventUpdate: an alive member changed its Meta.
	EventUpdate
	// EventLeave: a member left gracefully.
	EventLeave
	// EventFail: a member was declared dead by failure detection.
	EventFail
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	default:
		return "unknown"
	}
}

// Event is a change in membership.
type Event struct {
	Type   EventType
	Member Member
	// Resync is set on the first event delivered after this subscriber
	// missed events because its channel was full: the subscriber should
	// re-read Members() rather than trust its incremental view.
	Resync bool
}

// subscriberBuffer is generous for a cluster of tens of nodes; a consumer
// that still falls behind gets a Resync instead of blocking gossip.
const subscriberBuffer = 128

type subscriber struct {
	ch     chan Event
	missed bool
}

// Subscribe returns a channel of membership events and a function that
// cancels the subscription (and closes the channel). Delivery never blocks
// gossip: when the channel is full the event is dropped and the next one
// delivered carries Resync. The channel is also closed by Shutdown.
func (m *Membership) Subscribe() (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, subscriberBuffer)}
	m.mu.Lock()
	if m.closed {
		close(s.ch)
	} else {
		m.subs[s] = struct{}{}
	}
	m.mu.Unlock()
	cancel := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.subs[s]; ok {
			delete(m.subs, s)
			close(s.ch)
		}
	}
	return s.ch, cancel
}

// publish must be called with m.mu held, so that events reach subscribers
// in the order the member map changed and never after their channel closed.
func (m *Membership) publish(e Event) {
	for s := range m.subs {
		ev := e
		ev.Resync = s.missed
		select {
		case s.ch <- ev:
			s.missed = false
		default:
			if !s.missed {
				m.log.Warn().Str("event", e.Type.String()).Str("peer_id", e.Member.Meta.ID).
					Msg("membership subscriber is slow; dropping events until it catches up")
			}
			s.missed = true
		}
	}
}

// delegate implements memberlist's Delegate and EventDelegate. It is a
// separate type so these callbacks are not part of Membership's API.
// memberlist calls the event methods with its node lock held: they must not
// block and must not call back into memberlist.
type delegate struct {
	m *Membership
}

func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.metaBytes) > limit {
		// EncodeMeta already enforces MetaMaxSize; this guards against
		// memberlist ever asking for less, since it panics on overflow.
		d.m.log.Error().Int("meta_bytes", len(d.m.metaBytes)).Int("limit", limit).
			Msg("node meta exceeds the limit memberlist asked for; sending none")
		return nil
	}
	return append([]byte(nil), d.m.metaBytes...)
}

// NotifyMsg receives leave intents, the only user message we send. It runs
// on memberlist's packet loop, so it does little and never blocks.
func (d *delegate) NotifyMsg(buf []byte) {
	li, err := decodeIntent(buf)
	if err != nil {
		d.m.log.Debug().Err(err).Int("bytes", len(buf)).Msg("ignoring gossip user message")
		return
	}
	m := d.m
	m.mu.Lock()
	if li.Node == m.cfg.NodeName && !m.left {
		// A stale intent from a previous run of this node; acting on it
		// would only spread it further.
		m.mu.Unlock()
		return
	}
	fresh := m.recordIntent(li, time.Now())
	m.mu.Unlock()
	if fresh {
		// Pass it on so peers the leaver could not reach directly hear it.
		msg := append([]byte(nil), buf...)
		m.broadcasts.QueueBroadcast(&intentBroadcast{node: li.Node, msg: msg, done: make(chan struct{})})
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.broadcasts.GetBroadcasts(overhead, limit)
}

// No extra push/pull state: everything else lives in the node meta.
func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.m.observe(EventJoin, n, StatusAlive) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.m.observe(EventUpdate, n, StatusAlive) }

// NotifyLeave covers both graceful leaves and failures; observe tells them
// apart by whether the node announced a leave intent first (n.State cannot
// be used: memberlist never fills it in, see intent.go).
func (d *delegate) NotifyLeave(n *memberlist.Node) { d.m.observe(EventFail, n, StatusDead) }

// observe folds a memberlist notification into the member map and fans it
// out to subscribers.
func (m *Membership) observe(typ EventType, n *memberlist.Node, status Status) {
	m.mu.Lock()
	defer m.mu.Unlock()

	prev, known := m.members[n.Name]
	meta, err := DecodeMeta(n.Meta)
	switch {
	case err != nil:
		// A peer with garbage metadata (a bug, or another program on the
		// gossip port) is kept with what we know rather than dropped or
		// trusted: the Raft layer will ignore a member without a RaftAddr.
		m.log.Warn().Str("peer_id", n.Name).Str("gossip_addr", nodeAddr(n)).Err(err).
			Msg("peer sent undecodable node meta; keeping member with last known meta")
		if known {
			meta = prev.member.Meta
		} else {
			meta = Meta{ID: n.Name}
		}
	case meta.ID != n.Name:
		m.log.Warn().Str("peer_id", n.Name).Str("meta_id", meta.ID).
			Msg("peer meta ID differs from its gossip name; using the gossip name")
		meta.ID = n.Name
	}
	now := time.Now()
	if status == StatusDead {
		switch {
		case n.Name == m.cfg.NodeName && m.left:
			typ, status = EventLeave, StatusLeft
		case n.Name == m.cfg.NodeName:
			// We never consider ourselves dead; memberlist refutes such
			// claims and does not report them here.
			status = StatusAlive
		case m.hasIntent(n.Name, now):
			typ, status = EventLeave, StatusLeft
		}
	}
	if status == StatusAlive && typ == EventJoin {
		// Back from the dead (or from leaving): an old intent must not
		// classify its next failure as a leave.
		if it, ok := m.intents[n.Name]; ok {
			it.active = false
			m.intents[n.Name] = it
		}
	}

	member := Member{Meta: meta, GossipAddr: nodeAddr(n), Status: status}
	since := now
	if known && prev.member.Status == status {
		since = prev.since
	}
	m.members[n.Name] = &memberState{member: member, since: since}
	alive := int32(0)
	for _, s := range m.members {
		if s.member.Status == StatusAlive {
			alive++
		}
	}
	m.numAlive.Store(alive)

	ev := m.log.Info()
	if typ == EventUpdate {
		ev = m.log.Debug()
	}
	ev.Str("event", typ.String()).Str("peer_id", n.Name).Str("gossip_addr", member.GossipAddr).
		Str("status", string(status)).Str("raft_addr", meta.RaftAddr).Msg("membership changed")

	m.publish(Event{Type: typ, Member: member})
}
