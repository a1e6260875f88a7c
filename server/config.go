package server

import (
	"fmt"
	"github.com/hashicorp/raft"
	"net"
	"strconv"
	"time"
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

	// ClusterSecret authenticates internal forwarding between nodes.
	ClusterSecret string

	// APIToken, when set, is required as a bearer token on every write (and
	// on reads too with APITokenProtectReads).
	APIToken             string
	APITokenProtectReads bool
	// TLSCertFile and TLSKeyFile serve the API over HTTPS; TLSCAFile is what
	// nodes trust when they forward to each other (system roots if empty).
	TLSCertFile, TLSKeyFile, TLSCAFile string

	// Raft timings. The defaults are tuned for a LAN: a dead leader is
	// noticed within about a second, a new one elected right after.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration

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

	// RaftStream, when set, wraps the Raft listener into the stream layer
	// the transport uses; the in-process test clusters use it to cut links
	// between nodes, existing connections included.
	RaftStream func(ln net.Listener, advertise net.Addr) raft.StreamLayer
}

// DefaultConfig is a working single-node cluster on loopback.
func DefaultConfig() Config {
	return Config{
		DataDir:            "raftcdc-data",
		GossipAddr:         "127.0.0.1:7946",
		RaftAddr:           "127.0.0.1:7947",
		APIAddr:            "127.0.0.1:8300",
		JoinTimeout:        60 * time.Second,
		BootstrapExpect:    1,
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   30 * time.Second,
		ProbeInterval:      500 * time.Millisecond,
		ProbeTimeout:       250 * time.Millisecond,
		ReconcileInterval:  2 * time.Second,
		Version:            "dev",
	}
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
