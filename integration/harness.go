// Package integration runs the real raftcdc binary as several processes on
// loopback (or in network namespaces). The helpers here are the vocabulary
// the scenario tests share:
//
//   - processes: StartCluster, NewCluster, Start, Kill(i, sig), Pause,
//     Resume, Restart, Running, StopAll;
//   - the Raft group: Status, Leader, WaitForLeader, WaitForOwner,
//     WaitAgreement;
//   - changefeeds (feed.go): CreateChangefeed, Changefeed, Checkpoint,
//     WaitCheckpointAbove, WaitAllAssignedOnce, SampleCheckpoints, Verify;
//   - evidence: Metric, LogLines, LogContains, LogSince.
//
// Test flags (go test ./integration -args ...): -kills, -chaos-duration,
// -chaos-short, -chaos-seed (see flags_test.go). With
// RAFTCDC_IT_KEEP_LOGS=dir the whole node logs of a failed test are copied
// there. TestLeaderPartitioned needs root and iproute2 (ip netns) and skips,
// saying why, where they are missing.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/internal/freeport"
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

// Proc is one raftcdc server process slot: the same command line (and data
// dir) every time it is started.
type Proc struct {
	ID                        string
	DataDir                   string
	GossipAddr, RaftAddr, API string
	Args                      []string
	// Bin, if set, is the binary this slot runs instead of the cluster's
	// (a rolling upgrade replaces one build with another).
	Bin string
	// Wrapper, if set, is run with the binary and Args appended, e.g.
	// "ip netns exec ns1" (which execs, so the pid is still raftcdc's).
	Wrapper []string
	LogPath string
	// Env is added to the process's environment (NAME=value).
	Env []string
	// Dial, if set, is how the test reaches API (a node in another
	// network namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	client *http.Client
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	starts int
}

// Cluster is a set of server processes.
type Cluster struct {
	t     testing.TB
	Bin   string
	Procs []*Proc
	mu    sync.Mutex
	// FlushDir is where the nodes record their table flushes when they run
	// with --record-flushes (see CheckWriters).
	FlushDir string
	// Scheme is how the API is reached: http, or https with TLS.
	Scheme string
	// CAFile is the cluster CA when the nodes run TLS; clients trust it.
	CAFile string
}

// ClusterOptions tune StartCluster.
type ClusterOptions struct {
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
	// Order is the order nodes are started in (default 0..n-1).
	Order []int
	// TLS runs every node with mutual TLS: a CA and one certificate per
	// node made by the binary's own `tools tls init|issue`.
	TLS bool
	// NoSinkRoot leaves out --sink-root, for builds from before the flag
	// (a benchmark's "before" side); their file sinks are unconfined.
	NoSinkRoot bool
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

// StartCluster starts n processes on loopback that find each other with
// --join (each joins the next one).
func StartCluster(t testing.TB, bin string, n int, o ClusterOptions) *Cluster {
	t.Helper()
	c := NewClusterFromTemplate(t, bin, n, o)
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

// NewClusterFromTemplate lays out n loopback nodes as StartCluster does,
// without starting any.
func NewClusterFromTemplate(t testing.TB, bin string, n int, o ClusterOptions) *Cluster {
	t.Helper()
	ports := FreePorts(t, 3*n)
	base := t.TempDir()
	var procs []*Proc
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
		// File sinks of the scenarios live in the test's temporary
		// directories.
		p.Args = append([]string{"server", "--node-id", p.ID, "--data-dir", p.DataDir,
			"--gossip-addr", p.GossipAddr, "--raft-addr", p.RaftAddr, "--api-addr", p.API,
			"--bootstrap-expect", strconv.Itoa(n), "--join", join, "--log-level", "debug"}, o.ExtraArgs...)
		if !o.NoSinkRoot {
			p.Args = append(p.Args, "--sink-root", os.TempDir())
		}
		procs = append(procs, p)
	}
	var caFile string
	if o.TLS {
		dir := filepath.Join(base, "certs")
		caFile = MakeCerts(t, bin, dir, procs)
		for _, p := range procs {
			p.Args = append(p.Args, "--tls-cert", filepath.Join(dir, p.ID+".pem"), "--tls-key", filepath.Join(dir, p.ID+"-key.pem"), "--tls-ca", caFile)
		}
	}
	c := NewCluster(t, bin, procs)
	if o.TLS {
		c.UseTLS(caFile)
	}
	return c
}

// MakeCerts makes a cluster CA and a certificate per process in dir with
// the binary's own `tools tls`, and returns the CA file.
func MakeCerts(t testing.TB, bin, dir string, procs []*Proc) string {
	t.Helper()
	run := func(args ...string) {
		out, err := exec.Command(bin, append([]string{"tools", "tls"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("raftcdc tools tls %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("init", "--dir", dir)
	MakeCertsFor(t, bin, dir, procs...)
	return filepath.Join(dir, "ca.pem")
}

// MakeCertsFor issues a certificate for each process from the CA in dir
// (<ID>.pem and <ID>-key.pem; tools tls refuses to overwrite them).
func MakeCertsFor(t testing.TB, bin, dir string, procs ...*Proc) {
	t.Helper()
	for _, p := range procs {
		args := []string{"tools", "tls", "issue", "--dir", dir, "--name", p.ID}
		if host, _, err := net.SplitHostPort(p.API); err == nil && net.ParseIP(host) != nil {
			args = append(args, "--ip", host)
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("raftcdc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// UseTLS makes the cluster's clients speak https and trust caFile.
func (c *Cluster) UseTLS(caFile string) {
	c.t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		c.t.Fatalf("%s holds no certificate", caFile)
	}
	c.Scheme, c.CAFile = "https", caFile
	for _, p := range c.Procs {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		if p.Dial != nil {
			tr.DialContext, tr.DisableKeepAlives = p.Dial, true
		}
		p.client.Transport = tr
	}
}

// URL is the API URL of path on process i.
func (c *Cluster) URL(i int, path string) string {
	return c.Scheme + "://" + c.Procs[i].API + path
}

// NewCluster wraps process slots that the caller filled in (the compose
// and namespace tests build their own command lines) without starting them.
// Every process is killed when the test ends, also on failure.
func NewCluster(t testing.TB, bin string, procs []*Proc) *Cluster {
	c := &Cluster{t: t, Bin: bin, Procs: procs, Scheme: "http"}
	for _, p := range procs {
		p.client = &http.Client{Timeout: 5 * time.Second}
		if p.Dial != nil {
			p.client.Transport = &http.Transport{DialContext: p.Dial, DisableKeepAlives: true}
		}
	}
	t.Cleanup(c.StopAll)
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
	bin := c.Bin
	if p.Bin != "" {
		bin = p.Bin
	}
	argv := append(append(append([]string{}, p.Wrapper...), bin), p.Args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(p.Env) > 0 {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	// Its own process group, so that cleanup reaches anything it forks; and
	// killed by the kernel if the test binary dies first (an interrupted
	// run, a test timeout), so that no node outlives its test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("starting %s: %v", p.ID, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	c.mu.Lock()
	p.cmd, p.exited, p.paused = cmd, exited, false
	p.starts++
	c.mu.Unlock()
}

// Running says whether process i is up (possibly paused).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runningLocked(i)
}

// CPUTime is the user plus system CPU time process i has used so far (0
// when it is not running): throughput per CPU second is what a benchmark on
// a shared machine can compare.
func (c *Cluster) CPUTime(i int) time.Duration {
	c.mu.Lock()
	p := c.Procs[i]
	if !c.runningLocked(i) || p.cmd.Process == nil {
		c.mu.Unlock()
		return 0
	}
	pid := p.cmd.Process.Pid
	c.mu.Unlock()
	return ProcCPU(pid)
}

// ProcCPU is process pid's user plus system CPU time so far, from
// /proc/pid/stat (0 when it cannot be read).
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start after ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	// Linux reports clock ticks of 1/100 s (USER_HZ) here.
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// RSS is process i's resident set size in bytes (0 when it is not running).
func (c *Cluster) RSS(i int) int64 {
	c.mu.Lock()
	p := c.Procs[i]
	if !c.runningLocked(i) || p.cmd.Process == nil {
		c.mu.Unlock()
		return 0
	}
	pid := p.cmd.Process.Pid
	c.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

func (c *Cluster) runningLocked(i int) bool {
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

// Serving says whether process i is up and not paused, so it can answer.
func (c *Cluster) Serving(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runningLocked(i) && !c.Procs[i].paused
}

// Up lists the indexes of the serving processes.
func (c *Cluster) Up() []int {
	var out []int
	for i := range c.Procs {
		if c.Serving(i) {
			out = append(out, i)
		}
	}
	return out
}

// Generation counts the starts of process i, so that observations can be
// told apart by process lifetime.
func (c *Cluster) Generation(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Procs[i].starts
}

// Kill sends sig to process i; for SIGKILL, SIGTERM and SIGINT it waits for
// the exit (a paused process is continued first so that it can exit).
func (c *Cluster) Kill(i int, sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	p := c.Procs[i]
	cmd, exited, paused := p.cmd, p.exited, p.paused
	if sig == syscall.SIGSTOP {
		p.paused = true
	}
	if sig == syscall.SIGCONT {
		p.paused = false
	}
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	waits := sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT
	if waits && paused && sig != syscall.SIGKILL {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(sig)
	if waits {
		select {
		case <-exited:
			// A clean stop must be clean: the server exits non-zero when its
			// own --shutdown-timeout ran out (after dumping its goroutines).
			if sig != syscall.SIGKILL && !cmd.ProcessState.Success() {
				c.t.Errorf("%s: %v, then %v; a clean shutdown exits 0 (the log may hold a goroutine dump): %s\n%s", p.ID, sig, cmd.ProcessState, p.LogPath, lastErrors(p.LogPath))
			}
		case <-time.After(30 * time.Second):
			// SIGQUIT makes the Go runtime write every goroutine's stack to
			// the node's log before it exits: the evidence of what hung.
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
			// CI removes the log with its temporary directory: what each
			// goroutine was doing goes into the test's output too.
			c.t.Errorf("%s did not exit within 30s of %v; its goroutine stacks (SIGQUIT) are at the end of %s; in short:\n%s", p.ID, sig, p.LogPath, goroutineSummary(p.LogPath))
		}
	}
}

// Pause stops process i with SIGSTOP; Resume continues it.
func (c *Cluster) Pause(i int)  { c.Kill(i, syscall.SIGSTOP) }
func (c *Cluster) Resume(i int) { c.Kill(i, syscall.SIGCONT) }

// Restart starts a stopped process with the same data dir.
func (c *Cluster) Restart(i int) { c.Start(i) }

// StopAll kills every process group that is still running, continuing
// paused ones first, and on failure prints the tail of every log.
func (c *Cluster) StopAll() {
	for i := range c.Procs {
		c.mu.Lock()
		p := c.Procs[i]
		cmd, exited := p.cmd, p.exited
		c.mu.Unlock()
		if cmd == nil || cmd.Process == nil {
			continue
		}
		select {
		case <-exited:
			continue
		default:
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			c.t.Errorf("%s (pid %d) survived SIGKILL", p.ID, cmd.Process.Pid)
		}
	}
	if dir := os.Getenv("RAFTCDC_IT_KEEP_LOGS"); dir != "" && c.t.Failed() {
		// Whole logs of a failed test, for a person to read.
		dst := filepath.Join(dir, strings.ReplaceAll(c.t.Name(), "/", "_"))
		if err := os.MkdirAll(dst, 0o755); err == nil {
			for _, p := range c.Procs {
				if b, err := os.ReadFile(p.LogPath); err == nil {
					_ = os.WriteFile(filepath.Join(dst, p.ID+".log"), b, 0o644)
				}
			}
			c.t.Logf("logs kept in %s", dst)
		}
	}
	if c.t.Failed() {
		for _, p := range c.Procs {
			b, _ := os.ReadFile(p.LogPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			c.t.Logf("--- tail of %s log:\n%s", p.ID, b)
		}
	}
}

// GetJSON reads an API path from process i into out.
func (c *Cluster) GetJSON(i int, path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.GetJSONCtx(ctx, i, path, out)
}

// GetJSONCtx is GetJSON bounded by ctx.
func (c *Cluster) GetJSONCtx(ctx context.Context, i int, path string, out any) error {
	p := c.Procs[i]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(i, path), nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s from %s: %s: %s", path, p.ID, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if bs, ok := out.(*[]byte); ok {
		*bs = b
		return nil
	}
	return json.Unmarshal(b, out)
}

// Do sends a request with a JSON body to process i.
func (c *Cluster) Do(i int, method, path string, body any) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return c.DoCtx(ctx, i, method, path, body)
}

// DoCtx is Do bounded by ctx.
func (c *Cluster) DoCtx(ctx context.Context, i int, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	p := c.Procs[i]
	req, _ := http.NewRequestWithContext(ctx, method, c.URL(i, path), rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

// Status is the subset of /api/v1/status the tests use.
type Status struct {
	NodeID       string `json:"node_id"`
	RaftState    string `json:"raft_state"`
	LeaderID     string `json:"leader_id"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	OwnerEpoch   uint64 `json:"owner_epoch"`
	OwnerNode    string `json:"owner_node"`
	// The node's identity, which the day-2 scenarios read.
	ClusterID     string `json:"cluster_id"`
	SchemaVersion int    `json:"schema_version"`
	LogStore      string `json:"log_store"`
	Version       string `json:"version"`
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

// Eventually polls cond until it holds or the timeout passes; on timeout
// the failure names the last reason cond gave.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Index returns the slot of the node with this ID, or -1.
func (c *Cluster) Index(id string) int {
	for i, p := range c.Procs {
		if p.ID == id {
			return i
		}
	}
	return -1
}

// Leader returns the index of the process every serving node agrees leads,
// or -1.
func (c *Cluster) Leader() int {
	id := ""
	for _, i := range c.Up() {
		s, err := c.Status(i)
		if err != nil || s.LeaderID == "" || (id != "" && s.LeaderID != id) {
			return -1
		}
		id = s.LeaderID
	}
	if i := c.Index(id); i >= 0 && c.Serving(i) {
		if s, err := c.Status(i); err == nil && s.RaftState == "Leader" {
			return i
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

// Owner is the owner every serving node agrees on: the leader, with an
// epoch claimed in its term.
type Owner struct {
	Index int
	ID    string
	Epoch uint64
	Term  uint64
}

// CurrentOwner returns the owner the given serving nodes (every serving
// node when none are given) agree on; ok is false while there is none, the
// nodes disagree, or the owner is not among them as the leader.
func (c *Cluster) CurrentOwner(among ...int) (Owner, bool) {
	var o Owner
	up := among
	if len(up) == 0 {
		up = c.Up()
	}
	if len(up) == 0 {
		return o, false
	}
	for k, i := range up {
		s, err := c.Status(i)
		if err != nil || s.OwnerNode == "" || s.OwnerEpoch == 0 {
			return o, false
		}
		if k > 0 && (s.OwnerNode != o.ID || s.OwnerEpoch != o.Epoch) {
			return o, false
		}
		o.ID, o.Epoch = s.OwnerNode, s.OwnerEpoch
		if s.NodeID == s.OwnerNode {
			if s.RaftState != "Leader" {
				return o, false
			}
			o.Term = s.Term
		}
	}
	o.Index = c.Index(o.ID)
	return o, o.Index >= 0 && c.Serving(o.Index) && o.Term != 0
}

// WaitForOwner waits until every serving node names the same owner, that
// owner is the leader and its epoch is above minEpoch (0 for any).
func (c *Cluster) WaitForOwner(timeout time.Duration, minEpoch uint64) Owner {
	c.t.Helper()
	return c.WaitForOwnerAmong(timeout, minEpoch, nil)
}

// WaitForOwnerAmong is WaitForOwner asking only the given nodes (the
// majority side of a partition).
func (c *Cluster) WaitForOwnerAmong(timeout time.Duration, minEpoch uint64, among []int) Owner {
	c.t.Helper()
	var o Owner
	WaitFor(c.t, timeout, fmt.Sprintf("an agreed owner with epoch above %d", minEpoch), func() bool {
		var ok bool
		o, ok = c.CurrentOwner(among...)
		return ok && o.Epoch > minEpoch
	})
	return o
}

// WaitCaughtUp waits until every serving node has applied the leader's
// commit index as it was when the wait began, so a restarted node serves
// current state.
func (c *Cluster) WaitCaughtUp(timeout time.Duration) {
	c.t.Helper()
	l := c.WaitForLeader(timeout)
	s, err := c.Status(l)
	if err != nil {
		c.t.Fatal(err)
	}
	WaitFor(c.t, timeout, fmt.Sprintf("every node applied index %d", s.CommitIndex), func() bool {
		for _, i := range c.Up() {
			si, err := c.Status(i)
			if err != nil || si.AppliedIndex < s.CommitIndex {
				return false
			}
		}
		return true
	})
}

// Barrier commits a write in the current term through any serving node.
// Once it is acknowledged the leader has applied every earlier entry, so
// consistent reads after it see everything committed before; right after an
// election they may not (see TestFullStopAndStart).
func (c *Cluster) Barrier(timeout time.Duration) {
	c.t.Helper()
	n := 0
	Eventually(c.t, timeout, "a write to commit", func() (bool, string) {
		n++
		err := errNoNode
		for _, i := range c.Up() {
			if err = c.Put(i, "integration-barrier", n); err == nil {
				return true, ""
			}
		}
		return false, err.Error()
	})
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

// PutEventually writes a user key through any serving node, again after a
// failure: right after an election, or on a loaded machine, a put can fail
// with a lost leader, a 503 or the client's timeout and still have been
// applied, which is harmless for a put of the same value.
func (c *Cluster) PutEventually(key string, v any, timeout time.Duration) {
	c.t.Helper()
	Eventually(c.t, timeout, "a put of "+key, func() (bool, string) {
		err := errNoNode
		for _, i := range c.Up() {
			if err = c.Put(i, key, v); err == nil {
				return true, ""
			}
		}
		return false, err.Error()
	})
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

// Metric sums the samples of a Prometheus metric on process i whose labels
// include every given name=value pair; found is false when no sample matched.
func (c *Cluster) Metric(i int, name string, labels ...string) (sum float64, found bool, err error) {
	var body []byte
	if err := c.GetJSON(i, "/metrics", &body); err != nil {
		return 0, false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		metric, lbls, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(lbls, strings.Replace(l, "=", `="`, 1)+`"`) {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metric %s: %v", line, err)
		}
		sum += v
		found = true
	}
	return sum, found, sc.Err()
}

// LogLine is one JSON log line of a node.
type LogLine map[string]any

// Str returns a string field.
func (l LogLine) Str(k string) string {
	s, _ := l[k].(string)
	return s
}

// LogLines returns the JSON lines of process i's log (all its lifetimes)
// for which keep returns true; non-JSON lines (panics) are skipped.
func (c *Cluster) LogLines(i int, keep func(LogLine) bool) []LogLine {
	f, err := os.Open(c.Procs[i].LogPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []LogLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) == 0 || b[0] != '{' {
			continue
		}
		var l LogLine
		if json.Unmarshal(b, &l) != nil {
			continue
		}
		if keep == nil || keep(l) {
			out = append(out, l)
		}
	}
	return out
}

// LogContains counts the lines of process i's log that contain s.
func (c *Cluster) LogContains(i int, s string) int {
	b, err := os.ReadFile(c.Procs[i].LogPath)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte(s))
}

// LogSize is the current length of process i's log, to look only at what
// comes after a point with LogSince.
func (c *Cluster) LogSize(i int) int64 {
	st, err := os.Stat(c.Procs[i].LogPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogSince returns process i's log from byte offset off on.
func (c *Cluster) LogSince(i int, off int64) string {
	f, err := os.Open(c.Procs[i].LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Ctl runs `raftcdc ctl --server <node i> args...` and returns its
// standard output; the error carries the exit status and standard error.
func (c *Cluster) Ctl(ctx context.Context, i int, args ...string) ([]byte, error) {
	argv := []string{"ctl", "--server", c.Procs[i].API, "--timeout", "5s"}
	if c.CAFile != "" {
		argv = append(argv, "--ca", c.CAFile)
	}
	return c.Tool(ctx, append(argv, args...)...)
}

// CtlJSON runs a ctl command against node i with -o json and decodes its
// output into out.
func (c *Cluster) CtlJSON(i int, out any, args ...string) error {
	ctx, cancel := Ctx(20 * time.Second)
	defer cancel()
	b, err := c.Ctl(ctx, i, append([]string{"-o", "json"}, args...)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding ctl output %q: %w", b, err)
	}
	return nil
}

// Ctx is a context bounded by d.
func Ctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

var errNoNode = errors.New("no serving node")

// goroutineSummary condenses the last goroutine dump (SIGQUIT) in a
// node's log to each goroutine's header and its two innermost calls in
// this module (or its first two when it has none).
func goroutineSummary(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	text := string(b)
	i := strings.LastIndex(text, "SIGQUIT: quit")
	if i < 0 {
		return "(no goroutine dump in the log)"
	}
	var out []string
	for _, g := range strings.Split(text[i:], "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		var calls []string
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "\t") && strings.Contains(l, "raftcdc/") {
				calls = append(calls, "    "+l)
			}
		}
		if len(calls) == 0 && len(lines) > 1 {
			calls = append(calls, "    "+lines[1])
		}
		out = append(out, lines[0])
		out = append(out, calls[:min(len(calls), 2)]...)
	}
	if len(out) > 300 {
		out = append(out[:300], fmt.Sprintf("… %d more lines", len(out)-300))
	}
	return strings.Join(out, "\n")
}

// lastErrors returns the warnings, errors and non-JSON lines (a returned
// error, a goroutine dump) from the end of a node's log: why it exited
// badly, at the point of failure, where a truncated test output keeps it.
func lastErrors(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || (strings.HasPrefix(l, "{") && !strings.Contains(l, `"level":"warn"`) && !strings.Contains(l, `"level":"error"`)) {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) > 40 {
		keep = keep[len(keep)-40:]
	}
	return strings.Join(keep, "\n")
}
