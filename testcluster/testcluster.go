// Package testcluster starts in-process raftcdc clusters over real TCP and UDP
// on loopback, with the vocabulary the scenario tests share: MakeCluster,
// WaitForLeader, KillNode, RestartNode, Partition, Heal, EnsureSame.
package testcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/internal/freeport"
	"github.com/raftcdc/raftcdc/server"
	"github.com/rs/zerolog"
)

// Options tune a cluster.
type Options struct {
	// Configure, if set, adjusts each node's configuration before start.
	Configure func(i int, c *server.Config)
	// Setup, if set, registers extra tasks on a node before it starts (the
	// CDC parts: owner, processors, changefeed API).
	Setup func(i int, n *server.Node)
	// Logger receives every node's logs; the default discards them.
	Logger *zerolog.Logger
	// NoCDC leaves out the owner, processors and changefeed API.
	NoCDC bool
	// CDC configures the CDC parts (zero values are the defaults).
	CDC server.CDCOptions
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t     testing.TB
	opts  Options
	mu    sync.Mutex
	nodes []*server.Node
	cfgs  []server.Config
	net   *network
}

// network can cut Raft links between nodes, per direction. Every Raft
// connection is dialled by one node's stream layer, so refusing dials and
// closing the dialled connections of a blocked pair cuts that pair both ways.
type network struct {
	mu      sync.Mutex
	addrs   map[string]string // node ID -> Raft address
	blocked map[[2]string]bool
	conns   map[[2]string][]net.Conn
}

func (nw *network) idOf(addr string) string {
	for id, a := range nw.addrs {
		if a == addr {
			return id
		}
	}
	return ""
}

// stream wraps one node's own Raft stream layer (TLS, deadlines and caps
// included) and records and refuses its dials.
type stream struct {
	raft.StreamLayer
	self string
	nw   *network
}

func (s *stream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.nw.mu.Lock()
	pair := [2]string{s.self, s.nw.idOf(string(address))}
	blocked := s.nw.blocked[pair]
	s.nw.mu.Unlock()
	if blocked {
		return nil, fmt.Errorf("test partition: %s cannot reach %s", pair[0], pair[1])
	}
	conn, err := s.StreamLayer.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	s.nw.mu.Lock()
	s.nw.conns[pair] = append(s.nw.conns[pair], conn)
	s.nw.mu.Unlock()
	return conn, nil
}

func (c *Cluster) streamFor(id string) func(inner raft.StreamLayer) raft.StreamLayer {
	return func(inner raft.StreamLayer) raft.StreamLayer {
		return &stream{StreamLayer: inner, self: id, nw: c.net}
	}
}

// FreePorts returns n distinct ports free for TCP and UDP a moment ago (see
// freeport.Pick for how they are chosen).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Pick(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// MakeCluster starts n nodes at once, in random order, each joining the
// first node's gossip address, and waits until they form one cluster.
func MakeCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts, net: &network{addrs: map[string]string{}, blocked: map[[2]string]bool{}, conns: map[[2]string][]net.Conn{}}}
	ports := FreePorts(t, 3*n)
	base := t.TempDir()
	for i := 0; i < n; i++ {
		cfg := server.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("node%d", i+1)
		cfg.DataDir = filepath.Join(base, cfg.NodeID)
		cfg.GossipAddr = "127.0.0.1:" + strconv.Itoa(ports[3*i])
		cfg.RaftAddr = "127.0.0.1:" + strconv.Itoa(ports[3*i+1])
		cfg.APIAddr = "127.0.0.1:" + strconv.Itoa(ports[3*i+2])
		cfg.BootstrapExpect = n
		cfg.JoinTimeout = 30 * time.Second
		cfg.ReconcileInterval = 500 * time.Millisecond
		// File sinks of tests live in temporary directories.
		cfg.SinkRoots = []string{os.TempDir()}
		if i > 0 {
			cfg.Join = []string{"127.0.0.1:" + strconv.Itoa(ports[0])}
		} else if n > 1 {
			cfg.Join = []string{"127.0.0.1:" + strconv.Itoa(ports[3])}
		}
		if opts.Configure != nil {
			opts.Configure(i, &cfg)
		}
		c.net.addrs[cfg.NodeID] = cfg.RaftAddr
		cfg.RaftStream = c.streamFor(cfg.NodeID)
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, nil)
	}
	t.Cleanup(c.Shutdown)
	// Start all at once: Start blocks on --join until a peer answers.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for _, i := range randPerm(n) {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = c.startNode(i)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("starting node %d: %v", i+1, err)
		}
	}
	c.WaitForVoters(n, 30*time.Second)
	return c
}

func (c *Cluster) startNode(i int) error {
	c.mu.Lock()
	cfg := c.cfgs[i]
	c.mu.Unlock()
	log := zerolog.Nop()
	if c.opts.Logger != nil {
		log = *c.opts.Logger
	}
	node, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	if !c.opts.NoCDC {
		server.EnableCDC(node, c.opts.CDC)
	}
	if c.opts.Setup != nil {
		c.opts.Setup(i, node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.JoinTimeout+5*time.Second)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[i] = node
	c.mu.Unlock()
	return nil
}

// Node returns node i (nil while it is down).
func (c *Cluster) Node(i int) *server.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Size is how many nodes the cluster has, up or down.
func (c *Cluster) Size() int { return len(c.cfgs) }

// Up lists the indexes of running nodes.
func (c *Cluster) Up() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, n := range c.nodes {
		if n != nil {
			out = append(out, i)
		}
	}
	return out
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitForLeader waits until every running node (outside any partition
// minority given in among) agrees on one leader and returns its index.
func (c *Cluster) WaitForLeader(timeout time.Duration, among ...int) int {
	c.t.Helper()
	if len(among) == 0 {
		among = c.Up()
	}
	leader := -1
	WaitFor(c.t, timeout, "one agreed leader", func() bool {
		leader = -1
		var id string
		for _, i := range among {
			n := c.Node(i)
			if n == nil {
				return false
			}
			s := n.Status()
			if s.LeaderID == "" || (id != "" && s.LeaderID != id) {
				return false
			}
			id = s.LeaderID
		}
		for _, i := range among {
			if c.cfgs[i].NodeID == id && c.Node(i) != nil && c.Node(i).IsLeader() {
				leader = i
			}
		}
		return leader >= 0
	})
	return leader
}

// WaitForVoters waits until the leader's configuration has n voters.
func (c *Cluster) WaitForVoters(n int, timeout time.Duration) {
	c.t.Helper()
	WaitFor(c.t, timeout, fmt.Sprintf("%d voters", n), func() bool {
		for _, i := range c.Up() {
			node := c.Node(i)
			if node == nil || !node.IsLeader() {
				continue
			}
			ms, err := node.ClusterMembers()
			if err != nil {
				return false
			}
			voters := 0
			for _, m := range ms {
				if m.Suffrage == "voter" {
					voters++
				}
			}
			return voters == n
		}
		return false
	})
}

// KillNode stops node i abruptly, as a crash would.
func (c *Cluster) KillNode(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		n.Kill()
	}
}

// StopNode stops node i gracefully (SIGTERM's path).
func (c *Cluster) StopNode(i int) {
	if err := c.StopNodeWithin(i, 10*time.Second); err != nil {
		c.t.Logf("shutdown of node %d: %v", i+1, err)
	}
}

// StopNodeWithin stops node i gracefully with a shutdown budget and returns
// what Shutdown said (an overrun of the budget is an error).
func (c *Cluster) StopNodeWithin(i int, budget time.Duration) error {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	return n.Shutdown(ctx)
}

// RestartNode starts node i again with its data dir. It joins through the
// nodes that are up, as an operator would: its original join address may
// be a node that is down (every node but the first joins through node 1).
func (c *Cluster) RestartNode(i int) {
	c.t.Helper()
	var join []string
	for _, j := range c.Up() {
		join = append(join, c.cfgs[j].GossipAddr)
	}
	if len(join) > 0 {
		c.mu.Lock()
		c.cfgs[i].Join = join
		c.mu.Unlock()
	}
	if err := c.startNode(i); err != nil {
		c.t.Fatalf("restarting node %d: %v", i+1, err)
	}
}

// RestartNodes starts several stopped nodes at once — each joins the
// others, so one at a time would wait for peers not yet up — and fails the
// test from the caller's goroutine if any cannot start.
func (c *Cluster) RestartNodes(idx ...int) {
	c.t.Helper()
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		wg.Add(1)
		go func() { defer wg.Done(); errs[k] = c.startNode(i) }()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			c.t.Fatalf("restarting node %d: %v", idx[k]+1, err)
		}
	}
}

// AddNode starts one more node that joins the running cluster.
func (c *Cluster) AddNode() int {
	c.t.Helper()
	return c.AddNodeWith(nil)
}

// AddNodeWith is AddNode with the new node's configuration adjusted by
// configure (when not nil) before it starts.
func (c *Cluster) AddNodeWith(configure func(*server.Config)) int {
	c.t.Helper()
	ports := FreePorts(c.t, 3)
	i := len(c.cfgs)
	cfg := c.cfgs[0]
	cfg.NodeID = fmt.Sprintf("node%d", i+1)
	cfg.DataDir = filepath.Join(filepath.Dir(c.cfgs[0].DataDir), cfg.NodeID)
	cfg.GossipAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	cfg.RaftAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	cfg.APIAddr = "127.0.0.1:" + strconv.Itoa(ports[2])
	cfg.AdvertiseGossipAddr, cfg.AdvertiseRaftAddr, cfg.AdvertiseAPIAddr = "", "", ""
	for _, j := range c.Up() {
		cfg.Join = []string{c.cfgs[j].GossipAddr}
		break
	}
	c.net.mu.Lock()
	c.net.addrs[cfg.NodeID] = cfg.RaftAddr
	c.net.mu.Unlock()
	cfg.RaftStream = c.streamFor(cfg.NodeID)
	if configure != nil {
		configure(&cfg)
	}
	c.mu.Lock()
	c.cfgs = append(c.cfgs, cfg)
	c.nodes = append(c.nodes, nil)
	c.mu.Unlock()
	if err := c.startNode(i); err != nil {
		c.t.Fatalf("starting node %d: %v", i+1, err)
	}
	return i
}

// Partition cuts the Raft links between the given group and everyone else,
// in both directions, including connections already open.
func (c *Cluster) Partition(group ...int) {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	in := map[int]bool{}
	for _, g := range group {
		in[g] = true
	}
	for i := range c.cfgs {
		for j := range c.cfgs {
			if in[i] != in[j] {
				pair := [2]string{c.cfgs[i].NodeID, c.cfgs[j].NodeID}
				c.net.blocked[pair] = true
				for _, conn := range c.net.conns[pair] {
					conn.Close()
				}
				delete(c.net.conns, pair)
			}
		}
	}
}

// Heal restores every link.
func (c *Cluster) Heal() {
	c.net.mu.Lock()
	c.net.blocked = map[[2]string]bool{}
	c.net.mu.Unlock()
}

// EnsureSame waits until every running node has applied the same index and
// holds the same keys with the same revisions under prefix.
func (c *Cluster) EnsureSame(prefix string, timeout time.Duration) {
	c.t.Helper()
	var last string
	WaitFor(c.t, timeout, "identical state on every node", func() bool {
		var ref string
		for _, i := range c.Up() {
			n := c.Node(i)
			if n == nil {
				return false
			}
			kvs, err := n.FSM().List(prefix)
			if err != nil {
				return false
			}
			s := fmt.Sprint(kvs)
			if ref == "" {
				ref = s
			} else if s != ref {
				last = s
				return false
			}
		}
		return true
	})
	_ = last
}

// NodeID of index i.
func (c *Cluster) NodeID(i int) string { return c.cfgs[i].NodeID }

// APIAddr of index i.
func (c *Cluster) APIAddr(i int) string { return c.cfgs[i].APIAddr }

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for _, i := range c.Up() {
		wg.Add(1)
		go func(i int) { defer wg.Done(); c.KillNode(i) }(i)
	}
	wg.Wait()
}

func randPerm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	seed := time.Now().UnixNano()
	for i := n - 1; i > 0; i-- {
		j := int(seed % int64(i+1))
		seed = seed*6364136223846793005 + 1442695040888963407
		if j < 0 {
			j = -j
		}
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// MoveRaftAddr gives stopped node i a new Raft port, as if it came back on
// another address, and returns the new address.
func (c *Cluster) MoveRaftAddr(i int) string {
	c.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(FreePorts(c.t, 1)[0])
	c.mu.Lock()
	c.cfgs[i].RaftAddr = addr
	c.cfgs[i].AdvertiseRaftAddr = ""
	c.mu.Unlock()
	c.net.mu.Lock()
	c.net.addrs[c.cfgs[i].NodeID] = addr
	c.net.mu.Unlock()
	return addr
}
