package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netLab is a set of network namespaces made for one test: a hub namespace
// holding a bridge, and one namespace per node joined to it by a veth pair.
// Everything lives in namespaces the test created, so no address or link of
// the machine's own namespace is touched, and all traffic stays inside.
type netLab struct {
	t      *testing.T
	prefix string // unique per test run, short: interface names max 15
	hub    string
	nodes  []string // namespace per node
	addrs  []string // node addresses, 10.99.0.x
}

// newNetLab builds the namespaces, or skips the test saying why the
// machine does not allow it.
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("network namespaces need Linux, this is %s", runtime.GOOS)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespaces: the ip command (iproute2) is not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces: creating them needs root")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &netLab{t: t, prefix: "rc" + hex.EncodeToString(b)}
	l.hub = l.prefix + "-hub"
	// Deleting a namespace deletes the links inside it; registered first,
	// so it runs after the processes in them are killed.
	t.Cleanup(l.destroy)
	if out, err := l.ip("netns", "add", l.hub); err != nil {
		t.Skipf("network namespaces cannot be created here: ip netns add: %v: %s", err, out)
	}
	l.must("-n", l.hub, "link", "set", "lo", "up")
	l.must("-n", l.hub, "link", "add", "br0", "type", "bridge")
	l.must("-n", l.hub, "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("%s-n%d", l.prefix, i+1)
		addr := fmt.Sprintf("10.99.0.%d", i+1)
		l.must("netns", "add", ns)
		l.nodes, l.addrs = append(l.nodes, ns), append(l.addrs, addr)
		// One end in the hub on the bridge, the other in the node's
		// namespace.
		l.must("-n", l.hub, "link", "add", l.hubLink(i), "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.must("-n", l.hub, "link", "set", l.hubLink(i), "master", "br0", "up")
		l.must("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		l.must("-n", ns, "link", "set", "eth0", "up")
		l.must("-n", ns, "link", "set", "lo", "up")
	}
	return l
}

func (l *netLab) hubLink(i int) string { return fmt.Sprintf("%sh%d", l.prefix, i+1) }

func (l *netLab) ip(args ...string) ([]byte, error) {
	ctx, cancel := Ctx(10 * time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", args...).CombinedOutput()
}

func (l *netLab) must(args ...string) {
	l.t.Helper()
	if out, err := l.ip(args...); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Cut takes node i's link to the bridge down: it can reach no other node
// and no other node can reach it. Its own address and loopback stay up, so
// the test can still ask it questions.
func (l *netLab) Cut(i int) { l.must("-n", l.hub, "link", "set", l.hubLink(i), "down") }

// Heal brings node i's link back.
func (l *netLab) Heal(i int) { l.must("-n", l.hub, "link", "set", l.hubLink(i), "up") }

func (l *netLab) destroy() {
	for _, ns := range append(l.nodes, l.hub) {
		if out, err := l.ip("netns", "del", ns); err != nil {
			l.t.Logf("ip netns del %s: %v: %s", ns, err, out)
		}
	}
}

// dialIn returns a dialer that connects to 127.0.0.1:port inside the
// namespace ns, whatever address it is asked for: a socket belongs to the
// namespace of the thread that creates it, so the dial runs on a locked
// thread switched into ns and back.
func dialIn(ns string, port int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			return nil, err
		}
		defer target.Close()
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer home.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			return nil, fmt.Errorf("entering %s: %w", ns, err)
		}
		var d net.Dialer
		conn, dialErr := d.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(port))
		if err := setns(home); err != nil {
			// The thread is stuck in ns: leave it locked so that it dies
			// with this goroutine instead of serving others.
			if conn != nil {
				conn.Close()
			}
			return nil, fmt.Errorf("leaving %s: %w", ns, err)
		}
		runtime.UnlockOSThread()
		return conn, dialErr
	}
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// startNetCluster lays out one raftcdc node per namespace of the lab, each
// run through `ip netns exec`, and starts them.
func startNetCluster(t *testing.T, l *netLab, extra ...string) *Cluster {
	t.Helper()
	base := t.TempDir()
	n := len(l.nodes)
	// Nodes on addresses other hosts could reach must prove they are nodes
	// to each other (they refuse to start otherwise): a cluster secret.
	secret := filepath.Join(base, "cluster-secret")
	if err := os.WriteFile(secret, []byte("netns-test-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every node records its flushes, for CheckWriters.
	flushes := filepath.Join(base, "flushes")
	if err := os.Mkdir(flushes, 0o755); err != nil {
		t.Fatal(err)
	}
	var procs []*Proc
	for i, ns := range l.nodes {
		addr := l.addrs[i]
		p := &Proc{
			ID:         fmt.Sprintf("node%d", i+1),
			GossipAddr: addr + ":7946",
			RaftAddr:   addr + ":7947",
			API:        addr + ":8300",
			Wrapper:    []string{"ip", "netns", "exec", ns},
			Dial:       dialIn(ns, 8300),
		}
		p.DataDir = filepath.Join(base, p.ID)
		p.LogPath = filepath.Join(base, p.ID+".log")
		p.Args = append([]string{"server", "--node-id", p.ID, "--data-dir", p.DataDir,
			"--gossip-addr", p.GossipAddr, "--raft-addr", p.RaftAddr,
			"--api-addr", "0.0.0.0:8300", "--advertise-api-addr", p.API,
			"--bootstrap-expect", strconv.Itoa(n), "--join", l.addrs[(i+1)%n] + ":7946", "--log-level", "info",
			"--cluster-secret-file", secret, "--sink-root", os.TempDir(), "--record-flushes", flushes}, extra...)
		procs = append(procs, p)
	}
	c := NewCluster(t, binPath, procs)
	c.FlushDir = flushes
	for i := range procs {
		c.Start(i)
	}
	return c
}
