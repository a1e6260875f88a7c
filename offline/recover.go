// Package offline changes a stopped node's data dir: it rewrites the Raft
// configuration after a quorum loss (Recover, Consul's peers.json idea) and
// seeds a new cluster from a backup (Restore). Both run as `raftcdc tools`
// with the data dir's lock held, so no node can run on the directory
// meanwhile. See DESIGN.md beside this file.
package offline

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/logging"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/storage"
	"github.com/rs/zerolog"
)

// Peer is one voter of a configuration.
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"raft_addr"`
}

// ParsePeers parses --peers: id=host:port[,id=host:port...]. Every ID must
// be a valid node ID, every address host:port, and neither may repeat.
func ParsePeers(s string) ([]Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("--peers is empty: give id=host:port[,id=host:port], the Raft address of every voter of the new configuration")
	}
	var out []Peer
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		id, addr, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("--peers: %q is not id=host:port", part)
		}
		if err := storage.ValidateNodeID(id); err != nil {
			return nil, fmt.Errorf("--peers: %w", err)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("--peers: the address of %s, %q, is not host:port", id, addr)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return nil, fmt.Errorf("--peers: the address of %s, %q, is a wildcard; give the address other nodes reach it at", id, addr)
		}
		if ids[id] {
			return nil, fmt.Errorf("--peers: node %s is named twice", id)
		}
		if addrs[addr] {
			return nil, fmt.Errorf("--peers: address %s is given twice", addr)
		}
		ids[id], addrs[addr] = true, true
		out = append(out, Peer{ID: id, Addr: addr})
	}
	return out, nil
}

// RecoverResult says what Recover did.
type RecoverResult struct {
	NodeID string `json:"node_id"`
	// Previous is the configuration the data dir held (the newest one in
	// its snapshot and log, committed or not).
	Previous []Peer `json:"previous"`
	Peers    []Peer `json:"peers"`
	// Index and Term are where the new snapshot stands: every entry this
	// node had, applied.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
}

// Recover rewrites the Raft configuration of a stopped node's data dir to
// peers, for a cluster that lost its quorum for good: it applies every log
// entry the node has to its state, writes that state as a snapshot carrying
// the new configuration, and drops the log. Started again, the node forms a
// cluster with exactly peers (alone, when it is the only one), and further
// nodes join it with --join.
//
// Entries that were in this node's log but never committed are applied
// too: nothing else can tell them apart any more. The caller holds the data
// dir's lock.
func Recover(dataDir string, peers []Peer, logger zerolog.Logger) (RecoverResult, error) {
	var res RecoverResult
	if len(peers) == 0 {
		return res, errors.New("recover: no peers given")
	}
	if _, found, err := storage.Detect(dataDir); err != nil {
		return res, fmt.Errorf("recover: %w", err)
	} else if !found {
		return res, fmt.Errorf("recover: %s holds no Raft state: there is nothing to recover (is --data-dir the stopped node's data dir?)", dataDir)
	}
	id, err := storage.ReadNodeID(dataDir)
	if err != nil {
		return res, fmt.Errorf("recover: %w", err)
	}
	res.NodeID = id
	self := false
	for _, p := range peers {
		self = self || p.ID == id
	}
	if !self {
		return res, fmt.Errorf("recover: this data dir belongs to node %s, which is not among --peers; a node can only recover a configuration it is part of", id)
	}
	stores, err := storage.Open(dataDir, storage.Options{Logger: logger})
	if err != nil {
		return res, fmt.Errorf("recover: %w", err)
	}
	defer stores.Close()
	if has, err := stores.HasState(); err != nil {
		return res, fmt.Errorf("recover: %w", err)
	} else if !has {
		return res, fmt.Errorf("recover: %s holds no Raft state: there is nothing to recover", dataDir)
	}
	if res.Previous, err = latestConfiguration(stores); err != nil {
		return res, fmt.Errorf("recover: reading the current configuration: %w", err)
	}

	// A scratch state machine to replay into; the node rebuilds its own
	// from the new snapshot when it starts.
	scratch := filepath.Join(dataDir, "recover-fsm.db")
	f, err := fsm.Open(scratch, fsm.Options{Rules: meta.Rules{}, Logger: logger})
	if err != nil {
		return res, fmt.Errorf("recover: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(scratch)
	}()
	var conf raft.Configuration
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.Logger = logging.HCLog(logger, "raft")
	_, trans := raft.NewInmemTransport(raft.ServerAddress(peers[0].Addr))
	defer trans.Close()
	if err := raft.RecoverCluster(rc, f, stores.Log, stores.Stable, stores.Snapshots, trans, conf); err != nil {
		return res, fmt.Errorf("recover: rewriting the Raft configuration: %w", err)
	}
	snaps, err := stores.Snapshots.List()
	if err != nil || len(snaps) == 0 {
		return res, fmt.Errorf("recover: the new snapshot cannot be listed: %v", err)
	}
	res.Peers, res.Index, res.Term = peers, snaps[0].Index, snaps[0].Term
	return res, nil
}

// latestConfiguration is the newest configuration in the snapshots and
// the log.
func latestConfiguration(s *storage.Stores) ([]Peer, error) {
	var conf raft.Configuration
	var from uint64
	snaps, err := s.Snapshots.List()
	if err != nil {
		return nil, err
	}
	if len(snaps) > 0 {
		conf, from = snaps[0].Configuration, snaps[0].Index
	}
	first, err := s.Log.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := s.Log.LastIndex()
	if err != nil {
		return nil, err
	}
	for i := max(first, from+1); i <= last && i > 0; i++ {
		var l raft.Log
		if err := s.Log.GetLog(i, &l); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if l.Type == raft.LogConfiguration {
			conf = raft.DecodeConfiguration(l.Data)
		}
	}
	var out []Peer
	for _, srv := range conf.Servers {
		out = append(out, Peer{ID: string(srv.ID), Addr: string(srv.Address)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
