package raftnet_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftcdc/raftcdc/nodetls"
	"github.com/raftcdc/raftcdc/raftnet"
	"github.com/rs/zerolog"
)

// node is one end: a stream, the raft transport over it, and a consumer
// that answers every AppendEntries with success.
type node struct {
	stream *raftnet.Stream
	trans  *raft.NetworkTransport
	reg    *prometheus.Registry
}

func newNode(t *testing.T, o raftnet.Options) *node {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	o.Logger = zerolog.Nop()
	s, err := raftnet.Listen("127.0.0.1:0", nil, o)
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: s, MaxPool: 2, Timeout: 5 * time.Second})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-tr.Consumer():
				rpc.Respond(&raft.AppendEntriesResponse{Success: true, Term: 1}, nil)
			case <-time.After(20 * time.Millisecond):
				if tr.IsShutdown() {
					return
				}
			}
		}
	}()
	t.Cleanup(func() { tr.Close(); <-done })
	return &node{stream: s, trans: tr, reg: reg}
}

func (n *node) addr() raft.ServerAddress { return raft.ServerAddress(n.stream.Addr().String()) }

func (n *node) refused(reason string) float64 {
	mfs, _ := n.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "raftcdc_raft_connections_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func appendOnce(from *node, to *node) error {
	var resp raft.AppendEntriesResponse
	err := from.trans.AppendEntries("x", to.addr(), &raft.AppendEntriesRequest{Term: 1}, &resp)
	if err == nil && !resp.Success {
		err = errors.New("not successful")
	}
	return err
}

// waitClosed reads from c until the server closes it or within passes.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	buf := make([]byte, 256)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		return time.Since(start), !errors.Is(err, os.ErrDeadlineExceeded)
	}
}

func TestPlaintextRoundTripAndIdleAfterFirstAnswer(t *testing.T) {
	a := newNode(t, raftnet.Options{HandshakeTimeout: 200 * time.Millisecond})
	b := newNode(t, raftnet.Options{HandshakeTimeout: 200 * time.Millisecond})
	if err := appendOnce(a, b); err != nil {
		t.Fatal(err)
	}
	// The pooled connection idles far past the deadline: after its first
	// answer it is a peer's connection and stays usable.
	time.Sleep(time.Second)
	if err := appendOnce(a, b); err != nil {
		t.Fatalf("the pooled connection after idling: %v", err)
	}
	if n := b.stream.Conns()["127.0.0.1"]; n != 1 {
		t.Errorf("b holds %d connections from a, want the one pooled", n)
	}
}

func TestStalledConnectionsAreClosedAtTheDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	b := newNode(t, raftnet.Options{HandshakeTimeout: timeout})
	for _, sent := range [][]byte{nil, {0}, {0, 0x85}} {
		c, err := net.Dial("tcp", string(b.addr()))
		if err != nil {
			t.Fatal(err)
		}
		if len(sent) > 0 {
			if _, err := c.Write(sent); err != nil {
				t.Fatal(err)
			}
		}
		took, closed := waitClosed(t, c, 10*time.Second)
		c.Close()
		if !closed || took < timeout/2 {
			t.Errorf("after sending %v: closed %v after %v, want closed after about %v", sent, closed, took, timeout)
		}
	}
	testutilWait(t, func() bool { return b.refused("deadline") >= 2 })
	// A trickle that never completes a request is closed by the overall
	// bound of ten deadlines even though each read comes in time.
	c, err := net.Dial("tcp", string(b.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		// A msgpack string header for a long string, then one byte at a
		// time: the decoder keeps waiting for the rest.
		_, _ = c.Write([]byte{0, 0xdb, 0, 0, 0xff, 0xff})
		for {
			select {
			case <-stop:
				return
			case <-time.After(timeout / 3):
				if _, err := c.Write([]byte{'a'}); err != nil {
					return
				}
			}
		}
	}()
	took, closed := waitClosed(t, c, 30*time.Second)
	close(stop)
	if !closed || took > 10*timeout+5*time.Second {
		t.Errorf("trickle: closed %v after %v (%v since dial)", closed, took, time.Since(start))
	}
}

func testutilWait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPerPeerCap(t *testing.T) {
	b := newNode(t, raftnet.Options{HandshakeTimeout: 5 * time.Second, MaxConnsPerPeer: 3})
	var conns []net.Conn
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", string(b.addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	testutilWait(t, func() bool { return b.refused("peer_cap") == 2 })
	closed := 0
	for _, c := range conns {
		if _, ok := waitClosed(t, c, 300*time.Millisecond); ok {
			closed++
		}
	}
	if closed != 2 {
		t.Errorf("%d connections closed, want the 2 over the cap", closed)
	}
	if n := b.stream.Conns()["127.0.0.1"]; n != 3 {
		t.Errorf("%d connections counted, want 3", n)
	}
	// Another address has its own share: a node reaches b from 127.0.0.2.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	other, err := d.Dial("tcp", string(b.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, ok := waitClosed(t, other, 300*time.Millisecond); ok {
		t.Error("a connection from another address was refused")
	}
	// Slots come back when connections close.
	for _, c := range conns {
		c.Close()
	}
	testutilWait(t, func() bool { return b.stream.Conns()["127.0.0.1"] == 0 })
	a := newNode(t, raftnet.Options{})
	if err := appendOnce(a, b); err != nil {
		t.Fatalf("after the slots came back: %v", err)
	}
}

func pki(t *testing.T, caName string, names ...string) (caFile string, files map[string][2]string) {
	t.Helper()
	ca, err := nodetls.NewCA(caName, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	files = map[string][2]string{}
	for _, n := range names {
		c, k, err := ca.Issue(nodetls.NodeRequest{Name: n, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		f := [2]string{filepath.Join(dir, n+".pem"), filepath.Join(dir, n+"-key.pem")}
		_ = os.WriteFile(f[0], c, 0o600)
		_ = os.WriteFile(f[1], k, 0o600)
		files[n] = f
	}
	return caFile, files
}

func tlsFor(t *testing.T, caFile string, f [2]string) *nodetls.Config {
	t.Helper()
	c, err := nodetls.New(nodetls.Options{CertFile: f[0], KeyFile: f[1], CAFile: caFile, VerifyIncoming: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMutualTLS(t *testing.T) {
	caFile, files := pki(t, "cluster", "a", "b")
	rogueCA, rogue := pki(t, "rogue", "r")
	const timeout = 300 * time.Millisecond
	a := newNode(t, raftnet.Options{TLS: tlsFor(t, caFile, files["a"]), HandshakeTimeout: timeout})
	b := newNode(t, raftnet.Options{TLS: tlsFor(t, caFile, files["b"]), HandshakeTimeout: timeout})
	if err := appendOnce(a, b); err != nil {
		t.Fatalf("between two nodes of the cluster: %v", err)
	}
	// A plaintext peer and a peer of another CA never reach Raft.
	plain := newNode(t, raftnet.Options{})
	if err := appendOnce(plain, b); err == nil {
		t.Error("a plaintext peer got an answer")
	}
	r := newNode(t, raftnet.Options{TLS: tlsFor(t, rogueCA, rogue["r"])})
	if err := appendOnce(r, b); err == nil {
		t.Error("a peer of another CA got an answer")
	}
	testutilWait(t, func() bool { return b.refused("handshake") >= 2 })
	// Nor does b trust a server of another CA when it dials.
	if err := appendOnce(b, r); err == nil || !strings.Contains(err.Error(), "cluster's CA") {
		t.Errorf("dialling a server of another CA: %v", err)
	}
	// A connection that never starts the handshake is closed at the
	// deadline.
	c, err := net.Dial("tcp", string(b.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if took, closed := waitClosed(t, c, 10*time.Second); !closed || took < timeout/2 {
		t.Errorf("silent connection: closed %v after %v", closed, took)
	}
}

func TestCloseStopsAccepting(t *testing.T) {
	s, err := raftnet.Listen("127.0.0.1:0", nil, raftnet.Options{Logger: zerolog.Nop(), HandshakeTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// A connection nobody accepts must not hold Close up.
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked")
	}
	if _, closed := waitClosed(t, c, 5*time.Second); !closed {
		t.Error("the connection waiting for Accept was not closed")
	}
	if _, err := s.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Error("still listening after Close")
	}
}
