package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/nodetls"
	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/testcluster"
	"github.com/rs/zerolog"
)

// testPKI is a cluster CA on disk, issuing node certificates for 127.0.0.1.
type testPKI struct {
	t   *testing.T
	dir string
	ca  *nodetls.CA
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := nodetls.NewCA("raftcdc test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{t: t, dir: t.TempDir(), ca: ca}
	if err := os.WriteFile(p.caFile(), ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPKI) caFile() string { return filepath.Join(p.dir, "ca.pem") }

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	return pool
}

// issue writes (or overwrites) name.pem and name-key.pem.
func (p *testPKI) issue(name string) (certFile, keyFile string) {
	p.t.Helper()
	c, k, err := p.ca.Issue(nodetls.NodeRequest{Name: name, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour})
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	for f, b := range map[string][]byte{certFile: c, keyFile: k} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			p.t.Fatal(err)
		}
	}
	return certFile, keyFile
}

func TestTLSAndTokenThroughAFollower(t *testing.T) {
	p := newTestPKI(t)
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true, Configure: func(i int, cfg *server.Config) {
		cfg.TLSCertFile, cfg.TLSKeyFile = p.issue(cfg.NodeID)
		cfg.TLSCAFile = p.caFile()
		cfg.APIToken = "tok"
	}})
	leader := c.WaitForLeader(10 * time.Second)
	follower := (leader + 1) % 3
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool()}}}
	do := func(method, path, token string, body []byte) int {
		req, _ := http.NewRequest(method, "https://"+c.APIAddr(follower)+path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do(http.MethodPut, "/api/v1/kv/secure", "", []byte("1")); code != http.StatusUnauthorized {
		t.Fatalf("write without token: %d", code)
	}
	if code := do(http.MethodPut, "/api/v1/kv/secure", "wrong", []byte("1")); code != http.StatusUnauthorized {
		t.Fatalf("write with a wrong token: %d", code)
	}
	if _, ok := get(c, follower, "secure"); ok {
		t.Fatal("refused write applied")
	}
	// With the token the write is forwarded to the leader over HTTPS, the
	// follower proving it is a node with its certificate (no secret is
	// configured).
	// A 503 is a leader lost while committing (a saturated machine); the
	// write is idempotent, so it is sent again.
	untilAnswered := func(method, path, token string, body []byte) int {
		code := 0
		testcluster.WaitFor(t, 20*time.Second, method+" "+path+" answered by a leader", func() bool {
			code = do(method, path, token, body)
			return code != http.StatusServiceUnavailable
		})
		return code
	}
	if code := untilAnswered(http.MethodPut, "/api/v1/kv/secure", "tok", []byte("1")); code != http.StatusOK {
		t.Fatalf("write with token: %d", code)
	}
	if code := untilAnswered(http.MethodGet, "/api/v1/kv/secure?consistent=true", "", nil); code != http.StatusOK {
		t.Fatalf("open read: %d", code)
	}
	// Leader-only operations are proxied to the leader.
	if code := untilAnswered(http.MethodPost, "/api/v1/cluster/transfer-leader", "tok", nil); code != http.StatusOK {
		t.Fatalf("transfer-leader through a follower: %d", code)
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + c.APIAddr(follower) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered on a TLS node")
		}
	}
}

// TestTLSReloadRotatesCertificates replaces every node's certificate files
// with new ones and reloads them, as SIGHUP does: the API serves the new
// certificate at once, and Raft and forwarding keep working over new
// connections made with it. A broken file is refused and changes nothing.
func TestTLSReloadRotatesCertificates(t *testing.T) {
	p := newTestPKI(t)
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true, Configure: func(i int, cfg *server.Config) {
		cfg.TLSCertFile, cfg.TLSKeyFile = p.issue(cfg.NodeID)
		cfg.TLSCAFile = p.caFile()
	}})
	leader := c.WaitForLeader(10 * time.Second)
	served := func(i int) string {
		conn, err := tls.Dial("tcp", c.APIAddr(i), &tls.Config{RootCAs: p.pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := make([]string, 3)
	for i := range before {
		before[i] = served(i)
		p.issue(c.NodeID(i)) // new files, same paths
		if err := c.Node(i).ReloadTLS(); err != nil {
			t.Fatal(err)
		}
		if served(i) == before[i] {
			t.Errorf("node %d serves its old certificate after the reload", i+1)
		}
	}
	// New Raft connections use the new certificates: cut every link so
	// that the nodes must dial again, then write through a follower.
	c.Partition(leader)
	c.Heal()
	// Cutting the links may cost the leader its leadership: write through
	// a follower of whoever leads once the cluster has settled.
	testcluster.WaitFor(t, 20*time.Second, "a write through a follower after the rotation", func() bool {
		l := c.WaitForLeader(10 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := c.Node((l+1)%3).Apply(ctx, fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.PrefixUser + "after-rotation", Value: []byte("1")}}})
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err != nil {
			t.Logf("write after the rotation: %v", err)
		}
		return err == nil
	})
	c.EnsureSame(meta.PrefixUser, 10*time.Second)

	cert := c.Node(0).Config().TLSCertFile
	if err := os.WriteFile(cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(0).ReloadTLS(); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("reloading a broken file: %v", err)
	}
	if served(0) == before[0] {
		t.Error("a failed reload went back to the first certificate")
	}
}

// TestRefusesToStartReachableWithoutNodeCredentials: a node whose API other
// hosts can reach must be able to tell its peers from anyone else.
func TestRefusesToStartReachableWithoutNodeCredentials(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.issue("n1")
	cases := []struct {
		name string
		set  func(c *server.Config)
		ok   bool
	}{
		{"loopback, no credential", func(c *server.Config) {}, true},
		{"localhost, no credential", func(c *server.Config) { c.AdvertiseAPIAddr = "localhost:8300" }, true},
		{"reachable, no credential", func(c *server.Config) { c.AdvertiseAPIAddr = "10.1.2.3:8300" }, false},
		{"reachable by name, no credential", func(c *server.Config) { c.AdvertiseAPIAddr = "node1:8300" }, false},
		{"reachable, TLS without a CA", func(c *server.Config) {
			c.AdvertiseAPIAddr = "10.1.2.3:8300"
			c.TLSCertFile, c.TLSKeyFile = cert, key
		}, false},
		{"reachable, TLS with verification off", func(c *server.Config) {
			c.AdvertiseAPIAddr = "10.1.2.3:8300"
			c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile, c.TLSNoVerifyIncoming = cert, key, p.caFile(), true
		}, false},
		{"reachable, mutual TLS", func(c *server.Config) {
			c.AdvertiseAPIAddr = "10.1.2.3:8300"
			c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile = cert, key, p.caFile()
		}, true},
		{"reachable, cluster secret", func(c *server.Config) {
			c.AdvertiseAPIAddr = "10.1.2.3:8300"
			c.ClusterSecret = "s"
		}, true},
	}
	for _, tc := range cases {
		cfg := server.DefaultConfig()
		cfg.DataDir = t.TempDir()
		tc.set(&cfg)
		_, err := server.New(cfg, zerolog.Nop())
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && !tc.ok && !strings.Contains(err.Error(), "--cluster-secret-file") {
			t.Errorf("%s: the refusal does not say what to set: %v", tc.name, err)
		}
	}
}

func TestSecurityFlagsAreChecked(t *testing.T) {
	p := newTestPKI(t)
	cert, key := p.issue("n1")
	cases := []struct {
		name string
		set  func(c *server.Config)
		want string
	}{
		{"ca without cert", func(c *server.Config) { c.TLSCAFile = p.caFile() }, "--tls-ca needs --tls-cert"},
		{"cert not from the ca", func(c *server.Config) {
			other := newTestPKI(t)
			c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile = cert, key, other.caFile()
		}, "not usable with --tls-ca"},
		{"relative sink root", func(c *server.Config) { c.SinkRoots = []string{"out"} }, "--sink-root \"out\" must be an absolute path"},
		{"missing sink root", func(c *server.Config) { c.SinkRoots = []string{"/nonexistent/raftcdc"} }, "--sink-root /nonexistent/raftcdc is not an existing directory"},
		{"handshake timeout", func(c *server.Config) { c.RaftHandshakeTimeout = 0 }, "--raft-handshake-timeout"},
		{"conns per peer", func(c *server.Config) { c.RaftMaxConnsPerPeer = 0 }, "--raft-max-conns-per-peer"},
	}
	for _, tc := range cases {
		cfg := server.DefaultConfig()
		cfg.DataDir = t.TempDir()
		tc.set(&cfg)
		if _, err := server.New(cfg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
