package server

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/membership"
	"github.com/raftcdc/raftcdc/raftnet"
	"github.com/raftcdc/raftcdc/sinkroot"
	"github.com/raftcdc/raftcdc/storage"
)

// Config is everything a node needs to start. Zero values mean the defaults
// of DefaultConfig; Validate reports every problem at once.
type Config struct {
	NodeID  string
	DataDir string

	GossipAddr, AdvertiseGossipAddr string
	RaftAddr, AdvertiseRaftAddr     string
	APIAddr, AdvertiseAPIAddr       string

	Join            []string
	JoinTimeout     time.Duration
	BootstrapExpect int
	GossipKey       []byte

	// ClusterSecret authenticates internal forwarding between nodes (sent in
	// a header; over plain HTTP anyone on the path can read it).
	ClusterSecret string

	// APIToken, when set, is required as a bearer token on every write (and
	// on reads too with APITokenProtectReads).
	APIToken             string
	APITokenProtectReads bool
	// TLSCertFile and TLSKeyFile are the node's certificate: the API is
	// served over HTTPS with it, and every node-to-node path (Raft,
	// forwarding, the internal endpoints) runs over TLS with it. TLSCAFile is
	// the cluster's CA: peers' certificates are checked against it (against
	// the system roots, by host name, without it). All three are re-read by
	// ReloadTLS.
	TLSCertFile, TLSKeyFile, TLSCAFile string
	// TLSNoVerifyIncoming turns off mutual TLS, which is on whenever a CA is
	// given: without it, a peer that connects to Raft need not present a
	// certificate from the CA, and the internal endpoints need the cluster
	// secret instead.
	TLSNoVerifyIncoming bool

	// RaftHandshakeTimeout bounds the TLS handshake of a new Raft connection
	// and each read until its first request is answered;
	// RaftMaxConnsPerPeer caps concurrent inbound Raft connections per
	// remote address (see raftnet).
	RaftHandshakeTimeout time.Duration
	RaftMaxConnsPerPeer  int

	// DisablePprof leaves /debug/pprof/ out. With an API token set, the
	// profiles need it.
	DisablePprof bool

	// SinkRoots are the only directories (and their subdirectories) file://
	// sinks may write to; empty means <DataDir>/sinks.
	SinkRoots []string

	// Raft timings. The defaults are tuned for a LAN: a dead leader is
	// noticed within about a second, a new one elected right after.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	// RaftLogStore is the Raft log store of a new data dir ("" = the
	// default, storage.DefaultLogStore). An existing data dir keeps its own;
	// naming another is refused until it is migrated (tools migrate-log).
	RaftLogStore storage.LogStore
	// RaftLeaderSync is when the leader fsyncs its own entries (wal store):
	// while they replicate (the default) or before (storage.LeaderSync).
	RaftLeaderSync storage.LeaderSync

	// Gossip timings (see membership).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration

	// ReconcileInterval is the leader's periodic full membership pass.
	ReconcileInterval time.Duration
	// DeadServerTimeout, when non-zero, lets the leader remove a voter that
	// gossip has seen dead for this long. Off by default: removal of a voter
	// is an operator's decision.
	DeadServerTimeout time.Duration

	Version string

	// RaftStream, when set, wraps the node's Raft stream layer (TLS,
	// deadlines and caps included); the in-process test clusters use it to
	// cut links between nodes, existing connections included.
	RaftStream func(inner raft.StreamLayer) raft.StreamLayer

	// gossipMeta, when set, adjusts what the node gossips about itself
	// (tests play nodes of other builds and clusters with it).
	gossipMeta func(*membership.Meta)
}

// DefaultConfig is a working single-node cluster on loopback.
func DefaultConfig() Config {
	return Config{
		DataDir:          "raftcdc-data",
		GossipAddr:       "127.0.0.1:7946",
		RaftAddr:         "127.0.0.1:7947",
		APIAddr:          "127.0.0.1:8300",
		JoinTimeout:      60 * time.Second,
		BootstrapExpect:  1,
		HeartbeatTimeout: 500 * time.Millisecond,
		ElectionTimeout:  500 * time.Millisecond,
		// A leader steps down after this long without hearing from a
		// quorum. At 250 ms (half the heartbeat timeout) it gave up sooner
		// than any follower would have started an election: at 100,000
		// tables on two cores a round trip took 250–360 ms now and then,
		// and the leader abdicated while both followers still followed it
		// (issue 16). At the heartbeat timeout it waits as long as a
		// follower does; failover time is the followers' timeout, so it
		// does not change.
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   30 * time.Second,
		ProbeInterval:      500 * time.Millisecond,
		ProbeTimeout:       250 * time.Millisecond,
		ReconcileInterval:  2 * time.Second,
		Version:            "dev",

		RaftHandshakeTimeout: raftnet.DefaultHandshakeTimeout,
		RaftMaxConnsPerPeer:  raftnet.DefaultMaxConnsPerPeer,
	}
}

// MutualTLS says whether peers prove they are nodes with a certificate from
// the cluster's CA.
func (c *Config) MutualTLS() bool {
	return c.TLSCertFile != "" && c.TLSCAFile != "" && !c.TLSNoVerifyIncoming
}

// HasNodeCredentials says whether the internal endpoints can tell a node
// from anyone else: mutual TLS or the cluster secret.
func (c *Config) HasNodeCredentials() bool { return c.MutualTLS() || c.ClusterSecret != "" }

// EffectiveSinkRoots are SinkRoots, or the default under the data dir.
func (c *Config) EffectiveSinkRoots() []string {
	if len(c.SinkRoots) > 0 {
		return c.SinkRoots
	}
	dir, err := filepath.Abs(filepath.Join(c.DataDir, "sinks"))
	if err != nil {
		dir = filepath.Join(c.DataDir, "sinks")
	}
	return []string{dir}
}

// isLoopback says whether a host (an IP or a name) can only be reached from
// this machine.
func isLoopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return host == "localhost"
}

func advertise(bind, adv string) string {
	if adv != "" {
		return adv
	}
	return bind
}

// Validate checks the configuration and fills advertise addresses.
func (c *Config) Validate() error {
	var errs []error
	check := func(name, addr string, allowUnspecified bool) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q is not host:port: %v", name, addr, err))
			return
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("--%s %q has an invalid port", name, addr))
		}
		if !allowUnspecified {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				errs = append(errs, fmt.Errorf("--%s %q must name an address other nodes can reach, not a wildcard", name, addr))
			}
		}
	}
	check("gossip-addr", c.GossipAddr, true)
	check("raft-addr", c.RaftAddr, true)
	check("api-addr", c.APIAddr, true)
	c.AdvertiseGossipAddr = advertise(c.GossipAddr, c.AdvertiseGossipAddr)
	c.AdvertiseRaftAddr = advertise(c.RaftAddr, c.AdvertiseRaftAddr)
	c.AdvertiseAPIAddr = advertise(c.APIAddr, c.AdvertiseAPIAddr)
	check("advertise-gossip-addr", c.AdvertiseGossipAddr, false)
	check("advertise-raft-addr", c.AdvertiseRaftAddr, false)
	check("advertise-api-addr", c.AdvertiseAPIAddr, false)
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("--join %q is not host:port", j))
		}
	}
	if c.BootstrapExpect < 1 {
		errs = append(errs, fmt.Errorf("--bootstrap-expect must be at least 1, got %d", c.BootstrapExpect))
	}
	if n := len(c.GossipKey); n != 0 && n != 16 && n != 24 && n != 32 {
		errs = append(errs, fmt.Errorf("--gossip-key must decode to 16, 24 or 32 bytes, got %d", n))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("--tls-cert and --tls-key go together"))
	}
	if c.TLSCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, fmt.Errorf("--tls-ca needs --tls-cert and --tls-key: a node presents its own certificate to the others"))
	}
	// The internal endpoints write straight into the state machine. A node
	// that other hosts can reach must be able to tell its peers from
	// anyone else, or it does not start (see DESIGN.md).
	if host, _, err := net.SplitHostPort(c.AdvertiseAPIAddr); err == nil && !c.HasNodeCredentials() && !isLoopback(host) {
		errs = append(errs, fmt.Errorf("--advertise-api-addr %s is reachable from other hosts, but nodes have no credential to prove they are nodes: "+
			"set --tls-cert, --tls-key and --tls-ca (mutual TLS; raftcdc tools tls init|issue makes them) or --cluster-secret-file; "+
			"without either a node only runs on loopback", c.AdvertiseAPIAddr))
	}
	if c.RaftHandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--raft-handshake-timeout must be positive, got %v", c.RaftHandshakeTimeout))
	}
	if c.RaftMaxConnsPerPeer < 1 {
		errs = append(errs, fmt.Errorf("--raft-max-conns-per-peer must be at least 1, got %d", c.RaftMaxConnsPerPeer))
	}
	for _, r := range c.SinkRoots {
		if !filepath.IsAbs(r) {
			errs = append(errs, fmt.Errorf("%s %q must be an absolute path", sinkroot.Flag, r))
		} else if st, err := os.Stat(r); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("%s %s is not an existing directory; create it first", sinkroot.Flag, r))
		}
	}
	if _, err := storage.ParseLogStore(string(c.RaftLogStore)); err != nil {
		errs = append(errs, err)
	}
	if _, err := storage.ParseLeaderSync(string(c.RaftLeaderSync)); err != nil {
		errs = append(errs, err)
	}
	if c.DataDir == "" {
		errs = append(errs, fmt.Errorf("--data-dir must not be empty"))
	}
	if c.ElectionTimeout <= 0 || c.HeartbeatTimeout <= 0 || c.LeaderLeaseTimeout <= 0 || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("raft timings must be positive and --raft-leader-lease-timeout at most --raft-heartbeat-timeout"))
	}
	if len(errs) == 0 {
		return nil
	}
	msg := "invalid configuration:"
	for _, e := range errs {
		msg += "\n  - " + e.Error()
	}
	return fmt.Errorf("%s", msg)
}
