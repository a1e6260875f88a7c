package integration

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestTLSReloadOnSIGHUP rotates a running node's certificate the way an
// operator does — new files in place, then SIGHUP — and checks that the
// API serves the new certificate without a restart; a broken file on the
// next SIGHUP is logged and the node keeps the certificate it had.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	c := StartCluster(t, binPath, 1, ClusterOptions{TLS: true})
	c.WaitForLeader(30 * time.Second)
	dir := filepath.Dir(c.CAFile)
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	served := func() string {
		conn, err := tls.Dial("tcp", c.Procs[0].API, &tls.Config{RootCAs: pool})
		if err != nil {
			return "error: " + err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := served()
	if before == "" || before[0] == 'e' {
		t.Fatalf("the TLS API before the rotation: %s", before)
	}
	certFile, keyFile := filepath.Join(dir, "node1.pem"), filepath.Join(dir, "node1-key.pem")
	for _, f := range []string{certFile, keyFile} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	MakeCertsFor(t, c.Bin, dir, c.Procs[0])
	c.Kill(0, syscall.SIGHUP)
	var after string
	WaitFor(t, 20*time.Second, "the new certificate to be served", func() bool {
		after = served()
		return after != before && len(after) > 0 && after[0] != 'e'
	})
	WaitFor(t, 10*time.Second, "the reload in the log", func() bool { return c.LogContains(0, "TLS certificates reloaded") == 1 })

	if err := os.WriteFile(certFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Kill(0, syscall.SIGHUP)
	WaitFor(t, 20*time.Second, "the failed reload in the log", func() bool { return c.LogContains(0, "TLS reload failed") == 1 })
	if now := served(); now != after {
		t.Errorf("after a failed reload the node serves %s, not the certificate it had (%s)", now, after)
	}
	if !c.Running(0) {
		t.Fatal("the node exited on SIGHUP")
	}
	if err := c.Put(0, "after-sighup", 1); err != nil {
		t.Fatalf("a write after the reloads: %v", err)
	}
}
