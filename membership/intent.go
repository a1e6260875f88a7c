package membership

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Why leave intents exist: memberlist marks a node that announced its own
// departure as StateLeft internally, but the *Node handed to NotifyLeave
// never carries that state (nodeState.State shadows Node.State, and only the
// former is updated). So, like serf, a leaving node first tells everyone
// "I am leaving" with a user message, and NotifyLeave classifies a departure
// as "left" when such an intent was seen and "dead" otherwise.

// msgLeaveIntent tags a leave-intent user message. The tag leaves room for
// other message kinds later.
const msgLeaveIntent byte = 'L'

// intentTTL bounds how long an intent is remembered. The dead message
// follows the intent within the Leave timeout, so a minute is ample; the
// bound keeps a stale intent from turning a much later crash into "left".
const intentTTL = time.Minute

type leaveIntent struct {
	Node string `json:"node"`
	// At (sender's clock, unix nanoseconds) makes intents from separate
	// leaves distinct so rebroadcast de-duplication does not swallow one.
	At int64 `json:"at"`
}

func encodeIntent(li leaveIntent) ([]byte, error) {
	b, err := json.Marshal(li)
	if err != nil {
		return nil, fmt.Errorf("encode leave intent: %w", err)
	}
	return append([]byte{msgLeaveIntent}, b...), nil
}

func decodeIntent(msg []byte) (leaveIntent, error) {
	var li leaveIntent
	if len(msg) < 2 || msg[0] != msgLeaveIntent {
		return li, fmt.Errorf("decode leave intent: unknown message type")
	}
	if err := json.Unmarshal(msg[1:], &li); err != nil {
		return li, fmt.Errorf("decode leave intent: %w", err)
	}
	if li.Node == "" {
		return li, fmt.Errorf("decode leave intent: empty node name")
	}
	return li, nil
}

// intentBroadcast is a leave intent in memberlist's gossip queue. A newer
// intent for the same node replaces an older one still queued.
type intentBroadcast struct {
	node string
	msg  []byte
	once sync.Once
	done chan struct{}
}

func (b *intentBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*intentBroadcast)
	return ok && o.node == b.node
}

func (b *intentBroadcast) Message() []byte { return b.msg }

func (b *intentBroadcast) Finished() {
	b.once.Do(func() { close(b.done) })
}

// recordIntent notes a leave intent and reports whether it was new (and so
// worth gossiping on). If the member is already marked dead because the
// dead message overtook the intent, it is corrected to "left".
// Must be called with m.mu held.
func (m *Membership) recordIntent(li leaveIntent, now time.Time) bool {
	if prev, ok := m.intents[li.Node]; ok && prev.at >= li.At {
		return false
	}
	m.intents[li.Node] = intentState{at: li.At, seen: now, active: true}
	if s, ok := m.members[li.Node]; ok && s.member.Status == StatusDead {
		s.member.Status = StatusLeft
		s.since = now
		m.log.Info().Str("peer_id", li.Node).Msg("member marked dead has announced it left")
		m.publish(Event{Type: EventLeave, Member: s.member})
	}
	return true
}

type intentState struct {
	at   int64     // the sender's timestamp, for de-duplication
	seen time.Time // our clock, for expiry
	// active is cleared when the node is seen alive again; the entry stays
	// until expiry so a late copy of the same intent is still recognised
	// as old.
	active bool
}

// hasIntent reports whether node announced it is leaving recently.
// Must be called with m.mu held.
func (m *Membership) hasIntent(node string, now time.Time) bool {
	it, ok := m.intents[node]
	return ok && it.active && now.Sub(it.seen) < intentTTL
}

// expireIntents drops old intents. Must be called with m.mu held.
func (m *Membership) expireIntents(now time.Time) {
	for node, it := range m.intents {
		if now.Sub(it.seen) >= intentTTL {
			delete(m.intents, node)
		}
	}
}
