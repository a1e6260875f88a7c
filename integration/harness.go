// Package integration runs the real raftcdc binary as several processes on
// loopback. The helpers here are the vocabulary the scenario tests share:
// StartCluster, Leader, Kill, Restart, WaitForLeader, Put, Get.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildBinary builds cmd/raftcdc into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "raftcdc")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/raftcdc")
	cmd.Dir = repoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building raftcdc: %v\n%s", err, out)
	}
	return bin, nil
}

func repoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return wd
}

// Proc is one raftcdc server process.
type Proc struct {
	ID                        string
	DataDir                   string
	GossipAddr, RaftAddr, API string
	Args                      []string
	LogPath                   string
	cmd                       *exec.Cmd
	exited                    chan struct{}
}

// Cluster is a set of server processes.
type Cluster struct {
	t     testing.TB
	Bin   string
	Procs []*Proc
	mu    sync.Mutex
}

// ClusterOptions tune StartCluster.
type ClusterOptions struct {
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
	// Order is the order nodes are started in (default 0..n-1).
	Order []int
}

// FreePorts returns n ports that were free for TCP and UDP a moment ago.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		ports = append(ports, port)
	}
	return ports
}

// StartCluster starts n processes that find each other with --join.
func StartCluster(t testing.TB, bin string, n int, o ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Bin: bin}
	ports := FreePorts(t, 3*n)
	base := t.TempDir()
	for i := 0; i < n; i++ {
		p := &Proc{
			ID:         fmt.Sprintf("node%d", i+1),
			GossipAddr: "127.0.0.1:" + strconv.Itoa(ports[3*i]),
			RaftAddr:   "127.0.0.1:" + strconv.Itoa(ports[3*i+1]),
			API:        "127.0.0.1:" + strconv.Itoa(ports[3*i+2]),
		}
		p.DataDir = filepath.Join(base, p.ID)
		p.LogPath = filepath.Join(base, p.ID+".log")
		join := "127.0.0.1:" + strconv.Itoa(ports[3*((i+1)%n)])
		p.Args = append([]string{"server", "--node-id", p.ID, "--data-dir", p.DataDir,
			"--gossip-addr", p.GossipAddr, "--raft-addr", p.RaftAddr, "--api-addr", p.API,
			"--bootstrap-expect", strconv.Itoa(n), "--join", join, "--log-level", "debug"}, o.ExtraArgs...)
		c.Procs = append(c.Procs, p)
	}
	t.Cleanup(c.StopAll)
	order := o.Order
	if order == nil {
		for i := 0; i < n; i++ {
			order = append(order, i)
		}
	}
	for _, i := range order {
		c.Start(i)
	}
	return c
}

// Start launches process i (again).
func (c *Cluster) Start(i int) {
	c.t.Helper()
	p := c.Procs[i]
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.Bin, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting %s: %v", p.ID, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	c.mu.Lock()
	p.cmd, p.exited = cmd, exited
	c.mu.Unlock()
}

// Running says whether process i is up.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.Procs[i]
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Kill sends sig to process i; for SIGKILL and SIGTERM it waits for the exit.
func (c *Cluster) Kill(i int, sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	p := c.Procs[i]
	cmd, exited := p.cmd, p.exited
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT {
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			c.t.Errorf("%s did not exit within 30s of %v", p.ID, sig)
		}
	}
}

// Restart starts a stopped process with the same data dir.
func (c *Cluster) Restart(i int) { c.Start(i) }

// StopAll kills every process that is still running.
func (c *Cluster) StopAll() {
	for i := range c.Procs {
		if c.Running(i) {
			c.mu.Lock()
			p := c.Procs[i]
			c.mu.Unlock()
			p.cmd.Process.Signal(syscall.SIGCONT)
			c.Kill(i, syscall.SIGKILL)
		}
	}
	if c.t.Failed() {
		for _, p := range c.Procs {
			b, _ := os.ReadFile(p.LogPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			c.t.Logf("--- tail of %s log:\n%s", p.ID, b)
		}
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// GetJSON reads an API path from process i into out.
func (c *Cluster) GetJSON(i int, path string, out any) error {
	resp, err := httpClient.Get("http://" + c.Procs[i].API + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

// Do sends a request with a JSON body to process i.
func (c *Cluster) Do(i int, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+c.Procs[i].API+path, rd)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

// Status is the subset of /api/v1/status the tests use.
type Status struct {
	NodeID     string `json:"node_id"`
	RaftState  string `json:"raft_state"`
	LeaderID   string `json:"leader_id"`
	Term       uint64 `json:"term"`
	OwnerEpoch uint64 `json:"owner_epoch"`
	OwnerNode  string `json:"owner_node"`
}

// Status of process i.
func (c *Cluster) Status(i int) (Status, error) {
	var s Status
	err := c.GetJSON(i, "/api/v1/status", &s)
	return s, err
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Leader returns the index of the process every running node agrees leads,
// or -1.
func (c *Cluster) Leader() int {
	id := ""
	for i := range c.Procs {
		if !c.Running(i) {
			continue
		}
		s, err := c.Status(i)
		if err != nil || s.LeaderID == "" || (id != "" && s.LeaderID != id) {
			return -1
		}
		id = s.LeaderID
	}
	for i, p := range c.Procs {
		if p.ID == id && c.Running(i) {
			if s, err := c.Status(i); err == nil && s.RaftState == "Leader" {
				return i
			}
		}
	}
	return -1
}

// WaitForLeader waits for an agreed leader and returns its index.
func (c *Cluster) WaitForLeader(timeout time.Duration) int {
	c.t.Helper()
	l := -1
	WaitFor(c.t, timeout, "an agreed leader", func() bool { l = c.Leader(); return l >= 0 })
	return l
}

// Put writes a user key through process i.
func (c *Cluster) Put(i int, key string, v any) error {
	code, body, err := c.Do(i, http.MethodPut, "/api/v1/kv/"+key, v)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("PUT %s: %d %s", key, code, body)
	}
	return nil
}

// Get reads a user key from process i (linearizable when consistent).
func (c *Cluster) Get(i int, key string, consistent bool) (json.RawMessage, error) {
	var out struct {
		Value json.RawMessage `json:"value"`
	}
	path := "/api/v1/kv/" + key
	if consistent {
		path += "?consistent=true"
	}
	if err := c.GetJSON(i, path, &out); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	json.Compact(&b, out.Value)
	return b.Bytes(), nil
}

// Ctx is a context bounded by d.
func Ctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
