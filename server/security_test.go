package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/testcluster"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "raftcdc-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

func TestTLSAndTokenThroughAFollower(t *testing.T) {
	cert, key, pool := selfSigned(t)
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true, Configure: func(_ int, cfg *server.Config) {
		cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile = cert, key, cert
		cfg.APIToken = "tok"
		cfg.ClusterSecret = "internal"
	}})
	leader := c.WaitForLeader(10 * time.Second)
	follower := (leader + 1) % 3
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
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
	// With the token the write is forwarded to the leader over HTTPS.
	if code := do(http.MethodPut, "/api/v1/kv/secure", "tok", []byte("1")); code != http.StatusOK {
		t.Fatalf("write with token: %d", code)
	}
	if code := do(http.MethodGet, "/api/v1/kv/secure?consistent=true", "", nil); code != http.StatusOK {
		t.Fatalf("open read: %d", code)
	}
	// Leader-only operations are proxied to the leader with the internal
	// credential.
	if code := do(http.MethodPost, "/api/v1/cluster/transfer-leader", "tok", nil); code != http.StatusOK {
		t.Fatalf("transfer-leader through a follower: %d", code)
	}
	// Plain HTTP is not served.
	if _, err := http.Get("http://" + c.APIAddr(follower) + "/healthz"); err == nil {
		resp, _ := http.Get("http://" + c.APIAddr(follower) + "/healthz")
		if resp != nil && resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered on a TLS node")
		}
	}
}
