package membership

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Liveness is what a node says about its own willingness to take work.
type Liveness string

const (
	// LivenessAlive: the node accepts new work.
	LivenessAlive Liveness = "alive"
	// LivenessDraining: the node is shutting down on purpose; the owner
	// should move its tables away and not assign it new ones.
	LivenessDraining Liveness = "draining"
)

// MetaMaxSize is memberlist's limit for a node's metadata. memberlist panics
// on larger metadata, so every encoding is checked against it first.
const MetaMaxSize = memberlist.MetaMaxSize

// Meta is the metadata each node gossips about itself. It is what the Raft
// layer needs to form and keep the group (DESIGN.md §2).
type Meta struct {
	ID              string   `json:"id"`
	RaftAddr        string   `json:"raft_addr"`
	APIAddr         string   `json:"api_addr"`
	BootstrapExpect int      `json:"bootstrap_expect"`
	HasRaftState    bool     `json:"has_raft_state"`
	Version         string   `json:"version"`
	Liveness        Liveness `json:"liveness"`

	// MetaVersion is the format of this metadata. Fields are only ever
	// added (an older node ignores what it does not know); a change of a
	// field's meaning bumps it. Absent (0) is the first format.
	MetaVersion int `json:"v,omitempty"`
	// CommandVersion and SchemaVersion are the newest state-machine command
	// format and metadata schema this node's build supports, so that the
	// leader can tell whether every voter understands something before it
	// writes it. Absent (0): a build from before they were gossiped.
	CommandVersion int `json:"command_version,omitempty"`
	SchemaVersion  int `json:"schema_version,omitempty"`
	// ClusterID is the identity of the cluster whose state this node holds
	// (empty until it knows one), so that nodes of two clusters that meet
	// in gossip — a restored cluster and its original — are never joined
	// into one Raft group.
	ClusterID string `json:"cluster_id,omitempty"`
}

// CurrentMetaVersion is the metadata format this build writes.
const CurrentMetaVersion = 1

// EncodeMeta encodes m as JSON (kept readable so gossip can be inspected with
// ordinary tools) and fails if the result exceeds MetaMaxSize.
func EncodeMeta(m Meta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode node meta: %w", err)
	}
	if len(b) > MetaMaxSize {
		return nil, fmt.Errorf("encode node meta: %d bytes exceeds the gossip limit of %d bytes", len(b), MetaMaxSize)
	}
	return b, nil
}

// DecodeMeta decodes metadata received from a peer. Unknown fields are
// ignored so that a newer node's metadata still decodes on an older one.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, errors.New("decode node meta: empty")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("decode node meta: %w", err)
	}
	return m, nil
}

func validateMeta(m Meta, nodeName string) error {
	if m.ID != nodeName {
		return fmt.Errorf("node meta ID %q differs from the gossip node name %q", m.ID, nodeName)
	}
	switch m.Liveness {
	case LivenessAlive, LivenessDraining:
	default:
		return fmt.Errorf("node meta liveness %q: want %q or %q", m.Liveness, LivenessAlive, LivenessDraining)
	}
	if m.BootstrapExpect < 0 {
		return fmt.Errorf("node meta bootstrap_expect %d is negative", m.BootstrapExpect)
	}
	return nil
}
