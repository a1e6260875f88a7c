package nodetls_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/nodetls"
)

// pki is a CA on disk and helpers to issue node certificates from it.
type pki struct {
	t   *testing.T
	dir string
	ca  *nodetls.CA
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	ca, err := nodetls.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: t.TempDir(), ca: ca}
	write(t, p.caFile(), ca.CertPEM())
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.pem") }

// node issues a certificate and writes it as name.pem / name-key.pem.
func (p *pki) node(name string) (certFile, keyFile string) {
	p.t.Helper()
	c, k, err := p.ca.Issue(nodetls.NodeRequest{Name: name, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour})
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	write(p.t, certFile, c)
	write(p.t, keyFile, k)
	return certFile, keyFile
}

func (p *pki) pair(name string) tls.Certificate {
	p.t.Helper()
	c, k := p.node(name)
	pair, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		p.t.Fatal(err)
	}
	return pair
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustNew(t *testing.T, o nodetls.Options) *nodetls.Config {
	t.Helper()
	c, err := nodetls.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshake runs a real TLS handshake over loopback TCP between a server
// with sconf and a client with cconf, and returns the server's view of it
// and the client's error.
func handshake(t *testing.T, sconf, cconf *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, sconf)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		if err == nil {
			// Read the client's byte so that its handshake, which may
			// finish only with the server's last flight, completes too.
			b := make([]byte, 1)
			_, err = tc.Read(b)
		}
		done <- result{tc.ConnectionState(), err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, cconf)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	cerr := tc.Handshake()
	if cerr == nil {
		_, cerr = tc.Write([]byte{1})
	}
	if cerr != nil {
		c.Close()
	}
	r := <-done
	return r.cs, r.err, cerr
}

func TestOptionsAreCheckedWithTheFlagNamed(t *testing.T) {
	p := newPKI(t, "ca")
	cert, key := p.node("n1")
	other := newPKI(t, "other")
	serverOnly := filepath.Join(p.dir, "server-only.pem")
	{
		// A certificate with server usage only cannot be a client.
		der := mustServerOnly(t, p)
		write(t, serverOnly, der)
	}
	cases := []struct {
		name string
		o    nodetls.Options
		want string
	}{
		{"ca alone", nodetls.Options{CAFile: p.caFile()}, "--tls-ca needs --tls-cert"},
		{"cert alone", nodetls.Options{CertFile: cert}, "--tls-cert and --tls-key go together"},
		{"verify without ca", nodetls.Options{CertFile: cert, KeyFile: key, VerifyIncoming: true}, "--tls-verify-incoming needs --tls-ca"},
		{"missing cert file", nodetls.Options{CertFile: cert + ".nope", KeyFile: key}, "--tls-cert"},
		{"key of another cert", nodetls.Options{CertFile: cert, KeyFile: filepath.Join(other.dir, "x")}, "--tls-key"},
		{"not from the CA", nodetls.Options{CertFile: cert, KeyFile: key, CAFile: other.caFile()}, "not usable with --tls-ca"},
		{"ca file without PEM", nodetls.Options{CertFile: cert, KeyFile: key, CAFile: key + ".notthere"}, "reading --tls-ca"},
		{"server usage only", nodetls.Options{CertFile: serverOnly, KeyFile: filepath.Join(p.dir, "server-only-key.pem"), CAFile: p.caFile(), VerifyIncoming: true}, "client authentication"},
	}
	for _, c := range cases {
		_, err := nodetls.New(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	empty := filepath.Join(p.dir, "empty.pem")
	write(t, empty, []byte("no pem here\n"))
	if _, err := nodetls.New(nodetls.Options{CertFile: cert, KeyFile: key, CAFile: empty}); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("CA file without certificates: %v", err)
	}
	if c, err := nodetls.New(nodetls.Options{}); err != nil || c.Enabled() || c.NodeServer() != nil || c.Client("") != nil {
		t.Errorf("no files: %v, enabled %v", err, c.Enabled())
	}
}

// mustServerOnly issues, with the standard library, a certificate from p's
// CA that has only server usage, and writes its key beside it.
func mustServerOnly(t *testing.T, p *pki) []byte {
	t.Helper()
	c, k, err := p.ca.Issue(nodetls.NodeRequest{Name: "server-only", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(p.dir, "server-only-key.pem"), k)
	block, _ := pem.Decode(c)
	cert, _ := x509.ParseCertificate(block.Bytes)
	cert.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, cert, p.ca.Cert, cert.PublicKey, p.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestMutualTLSAdmitsOnlyTheCAsNodes(t *testing.T) {
	p := newPKI(t, "cluster")
	cert, key := p.node("n1")
	srv := mustNew(t, nodetls.Options{CertFile: cert, KeyFile: key, CAFile: p.caFile(), VerifyIncoming: true})
	if !srv.Mutual() {
		t.Fatal("not mutual")
	}
	rogue := newPKI(t, "rogue")
	cases := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"a node of the cluster", mustNew(t, nodetls.Options{CertFile: p.mustNode("n2"), KeyFile: filepath.Join(p.dir, "n2-key.pem"), CAFile: p.caFile(), VerifyIncoming: true}).Client(""), true},
		{"no certificate", &tls.Config{InsecureSkipVerify: true}, false},
		{"another CA's certificate", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{rogue.pair("r")}}, false},
	}
	for _, c := range cases {
		cs, serr, cerr := handshake(t, srv.NodeServer(), c.client)
		if c.ok != (serr == nil && cerr == nil) {
			t.Errorf("%s: server %v, client %v", c.name, serr, cerr)
		}
		if c.ok && !srv.IsNode(&cs) {
			t.Errorf("%s: not recognised as a node", c.name)
		}
	}
	// The API listener lets people in without a certificate, but not with
	// a bad one, and only a good one makes a node.
	cs, serr, cerr := handshake(t, srv.APIServer(), &tls.Config{RootCAs: x509Pool(p), ServerName: "127.0.0.1"})
	if serr != nil || cerr != nil || srv.IsNode(&cs) {
		t.Errorf("API without a certificate: server %v, client %v, node %v", serr, cerr, srv.IsNode(&cs))
	}
	if _, serr, cerr := handshake(t, srv.APIServer(), &tls.Config{RootCAs: x509Pool(p), ServerName: "127.0.0.1", Certificates: []tls.Certificate{rogue.pair("r2")}}); serr == nil && cerr == nil {
		t.Error("API with another CA's certificate: accepted")
	}
	// A node refuses a server whose certificate is not from the CA.
	rogueSrv := mustNew(t, nodetls.Options{CertFile: rogue.mustNode("rs"), KeyFile: filepath.Join(rogue.dir, "rs-key.pem")})
	if _, _, cerr := handshake(t, rogueSrv.NodeServer(), srv.Client("")); cerr == nil || !strings.Contains(cerr.Error(), "cluster's CA") {
		t.Errorf("dialling a server from another CA: %v", cerr)
	}
}

func (p *pki) mustNode(name string) string {
	c, _ := p.node(name)
	return c
}

func x509Pool(p *pki) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	return pool
}

func TestReloadRotatesAndKeepsTheOldOnError(t *testing.T) {
	p := newPKI(t, "cluster")
	cert, key := p.node("n1")
	c := mustNew(t, nodetls.Options{CertFile: cert, KeyFile: key, CAFile: p.caFile(), VerifyIncoming: true})
	first := c.Describe()
	serial := func() string {
		var got string
		conf := &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
			got = cs.PeerCertificates[0].SerialNumber.String()
			return nil
		}, Certificates: []tls.Certificate{p.pair("client")}}
		if _, serr, cerr := handshake(t, c.NodeServer(), conf); serr != nil || cerr != nil {
			t.Fatalf("handshake: %v / %v", serr, cerr)
		}
		return got
	}
	before := serial()

	// A new certificate in the same files is served after Reload.
	fresh, freshKey := p.node("n1-new")
	for _, f := range [][2]string{{fresh, cert}, {freshKey, key}} {
		b, _ := os.ReadFile(f[0])
		write(t, f[1], b)
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if after := serial(); after == before {
		t.Error("the same certificate is served after a reload")
	}
	if c.Describe().Subject == first.Subject {
		t.Errorf("Describe still says %s", first.Subject)
	}

	// A broken file is an error and changes nothing.
	write(t, cert, []byte("garbage"))
	if err := c.Reload(); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("reload of a broken file: %v", err)
	}
	if serial() == before {
		t.Error("a failed reload went back to the first certificate")
	}

	// A new CA: clients of the old one are refused from then on.
	b, _ := os.ReadFile(fresh)
	write(t, cert, b)
	newCA := newPKI(t, "cluster-2")
	nc, nk := newCA.node("n1")
	for _, f := range [][2]string{{nc, cert}, {filepath.Join(newCA.dir, "n1-key.pem"), key}, {newCA.caFile(), p.caFile()}} {
		b, _ := os.ReadFile(f[0])
		write(t, f[1], b)
	}
	_ = nk
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	oldClient := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{p.pair("old-client")}}
	if _, serr, cerr := handshake(t, c.NodeServer(), oldClient); serr == nil && cerr == nil {
		t.Error("a client of the old CA is still accepted after the CA was rotated")
	}
}

func TestWriteNewRefusesToOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca-key.pem")
	if err := nodetls.WriteNew(path, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := nodetls.WriteNew(path, []byte("b"), 0o600); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second write: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "a" {
		t.Errorf("file now holds %q", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
}

func TestIssuedCertificates(t *testing.T) {
	ca, err := nodetls.NewCA("test", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := ca.Issue(nodetls.NodeRequest{Name: "node1", DNSNames: []string{"node1.example", "node1"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}, Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(c)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "node1" || len(cert.DNSNames) != 2 || cert.DNSNames[0] != "node1" || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("names: %s %v %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
	}
	if cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("the certificate outlives its CA: %v > %v", cert.NotAfter, ca.Cert.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("usage %v: %v", u, err)
		}
	}
	if _, _, err := ca.Issue(nodetls.NodeRequest{Validity: time.Hour}); err == nil {
		t.Error("a certificate without a name was issued")
	}
	if _, err := nodetls.NewCA("x", 0); err == nil {
		t.Error("a CA with no validity was made")
	}
}
