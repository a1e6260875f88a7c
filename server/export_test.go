package server

import (
	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/membership"
)

// RaftTransport exposes the node's Raft transport to the package's tests.
func (n *Node) RaftTransport() raft.Transport { return n.transport }

// WithGossipMeta makes a node gossip adjusted metadata about itself, so a
// test can play a node of an older build or of another cluster.
func WithGossipMeta(c *Config, f func(*membership.Meta)) { c.gossipMeta = f }

// NextLeaderChange is closed when the node next hears of a leader change.
func (n *Node) NextLeaderChange() <-chan struct{} { return n.leaders.next() }
