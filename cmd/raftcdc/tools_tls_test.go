package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/testcluster"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestToolsTLSInitAndIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	r := run(t, nil, "tools", "tls", "init", "--dir", dir).mustOK(t)
	if !strings.Contains(r.stdout, "ca.pem") || !strings.Contains(r.stdout, "tools tls issue") {
		t.Errorf("init said: %s", r.stdout)
	}
	if st, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem: %v %v", st, err)
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if r := run(t, nil, "tools", "tls", "init", "--dir", dir); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("second init: exit %d %s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); string(b) != string(caBefore) {
		t.Error("a second init replaced the CA")
	}

	r = run(t, nil, "tools", "tls", "issue", "--dir", dir, "--name", "node1", "--ip", "10.0.0.1", "--dns", "node1.example").mustOK(t)
	if !strings.Contains(r.stdout, "--tls-cert "+filepath.Join(dir, "node1.pem")) {
		t.Errorf("issue said: %s", r.stdout)
	}
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	node := readCert(t, filepath.Join(dir, "node1.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := node.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("node1.pem for %v: %v", u, err)
		}
	}
	if strings.Join(node.DNSNames, ",") != "node1,localhost,node1.example" || len(node.IPAddresses) != 2 || !node.IPAddresses[1].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("names: %v %v", node.DNSNames, node.IPAddresses)
	}
	if st, _ := os.Stat(filepath.Join(dir, "node1-key.pem")); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("node1-key.pem mode: %v", st)
	}

	bad := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--dir", dir}, 2, "--name is required"},
		{[]string{"--dir", dir, "--name", "../x"}, 2, `--name "../x" must be`},
		{[]string{"--dir", dir, "--name", "n2", "--ip", "10.0.0.300"}, 2, `--ip "10.0.0.300" is not an IP address`},
		{[]string{"--dir", dir, "--name", "n2", "--days", "0"}, 2, "--days must be at least 1"},
		{[]string{"--dir", dir, "--name", "node1"}, 1, "already exists"},
		{[]string{"--dir", t.TempDir(), "--name", "n3"}, 1, "tools tls init"},
	}
	for _, b := range bad {
		r := run(t, nil, append([]string{"tools", "tls", "issue"}, b.args...)...)
		if r.code != b.code || !strings.Contains(r.stderr, b.want) {
			t.Errorf("issue %v: exit %d %s, want %d and %q", b.args, r.code, r.stderr, b.code, b.want)
		}
	}
}

// TestToolsTLSCertificatesRunACluster: what init and issue make is all a
// cluster needs for mutual TLS — the nodes form, and a write through a
// follower is forwarded with the follower's certificate as its credential.
func TestToolsTLSCertificatesRunACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	dir := t.TempDir()
	run(t, nil, "tools", "tls", "init", "--dir", dir).mustOK(t)
	for i := 1; i <= 3; i++ {
		run(t, nil, "tools", "tls", "issue", "--dir", dir, "--name", "node"+string(rune('0'+i))).mustOK(t)
	}
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true, Configure: func(_ int, cfg *server.Config) {
		cfg.TLSCertFile = filepath.Join(dir, cfg.NodeID+".pem")
		cfg.TLSKeyFile = filepath.Join(dir, cfg.NodeID+"-key.pem")
		cfg.TLSCAFile = filepath.Join(dir, "ca.pem")
	}})
	leader := c.WaitForLeader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Node((leader+1)%3).Apply(ctx, fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.PrefixUser + "tls", Value: []byte("1")}}})
	if err != nil || res.Err != nil {
		t.Fatalf("write through a follower: %v %v", err, res)
	}
	c.EnsureSame(meta.PrefixUser, 10*time.Second)
}
