package server

import "github.com/hashicorp/raft"

// RaftTransport exposes the node's Raft transport to the package's tests.
func (n *Node) RaftTransport() raft.Transport { return n.transport }
