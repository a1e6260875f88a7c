// Package api is raftcdc's HTTP interface. It depends only on the small
// Store interface below, so it can be tested without a cluster and the node
// can change underneath it.
package api

import (
	"context"
	"net/http"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
)

// Error is the body of every failed request: a stable code and a message
// that says what was wrong and how to fix it.
type Error struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	RetryAfter int    `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Stable error codes.
const (
	CodeNoLeader     = "no_leader"
	CodeNotLeader    = "not_leader"
	CodeUnavailable  = "unavailable"
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeInternal     = "internal"
)

// Errorf builds an Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: sprintf(format, args...)}
}

// NoLeader is the answer while no leader is known.
func NoLeader() *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeNoLeader, Message: "no Raft leader is known yet; retry shortly", RetryAfter: 1}
}

// Status is one node's view of the cluster.
type Status struct {
	NodeID        string     `json:"node_id"`
	RaftState     string     `json:"raft_state"`
	LeaderID      string     `json:"leader_id"`
	LeaderAPIAddr string     `json:"leader_api_addr"`
	Term          uint64     `json:"term"`
	AppliedIndex  uint64     `json:"applied_index"`
	CommitIndex   uint64     `json:"commit_index"`
	LastIndex     uint64     `json:"last_index"`
	LastContact   *time.Time `json:"last_contact,omitempty"`
	OwnerEpoch    uint64     `json:"owner_epoch"`
	OwnerNode     string     `json:"owner_node,omitempty"`
	Version       string     `json:"version"`
	APIAddr       string     `json:"api_addr"`
	// ClusterID and SchemaVersion are this replica's copy of the cluster
	// record (empty while the cluster has none yet).
	ClusterID     string `json:"cluster_id,omitempty"`
	SchemaVersion int    `json:"schema_version,omitempty"`
	// LogStore is the Raft log store of this node's data dir.
	LogStore string `json:"log_store,omitempty"`
	// CorruptKeys are the metadata keys in this node's replica that do not
	// decode. Every component skips them (see meta/DESIGN.md); an operator
	// repairs them or removes their changefeed.
	CorruptKeys []meta.CorruptKey `json:"corrupt_keys"`
}

// Member is one node as gossip and Raft each see it.
type Member struct {
	ID           string `json:"id"`
	GossipAddr   string `json:"gossip_addr,omitempty"`
	RaftAddr     string `json:"raft_addr"`
	APIAddr      string `json:"api_addr,omitempty"`
	GossipStatus string `json:"gossip_status"` // alive, suspect, dead, left, absent
	Liveness     string `json:"liveness,omitempty"`
	Suffrage     string `json:"raft_suffrage"` // voter, nonvoter, staging, absent
	Leader       bool   `json:"leader"`
	Version      string `json:"version,omitempty"`
}

// Store is what the API needs from a node.
type Store interface {
	Status() Status
	ClusterMembers() ([]Member, error)
	// Ready is nil when the node can serve, else why not.
	Ready() error
	// IsLeader is true on the leader once it has caught up.
	IsLeader() bool
	// LeaderAPIAddr is the leader's API address, "" when none is known.
	LeaderAPIAddr() string
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	// ReadIndex makes the following local reads linearizable.
	ReadIndex(ctx context.Context) error
	View(fn func(r fsm.Reader, appliedIndex uint64) error) error
	TransferLeader(ctx context.Context, target string) error
	RemoveNode(ctx context.Context, id string) error
	// Forward sends a request to the leader unchanged and relays the answer;
	// for operations only the leader can carry out.
	Forward(w http.ResponseWriter, r *http.Request)
	Metrics() http.Handler
}
