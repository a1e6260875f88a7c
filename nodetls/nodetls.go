// Package nodetls is the one TLS configuration of a node: the certificate
// it presents and the CA it trusts, used alike for the Raft transport, for
// forwarding to the leader, for the internal endpoints and for serving the
// API. The files are re-read on Reload (the server calls it on SIGHUP), so
// certificates can be rotated without a restart: every tls.Config handed out
// here reads the current material through callbacks, and connections made
// after a reload use the new files.
//
// Peers are authenticated by the chain alone: a certificate signed by the
// cluster's CA (with client and server usage) is a node. Host names are not
// checked between nodes, because node addresses come from gossip and change
// when a node moves; binding certificates to addresses would make every
// re-addressing a re-issue, without adding trust the CA does not already
// give. See server/DESIGN.md.
package nodetls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options name the files. Flag names appear in error messages because that
// is what an operator has to fix.
type Options struct {
	CertFile, KeyFile, CAFile string
	// VerifyIncoming requires every peer that connects to a node-only
	// listener (Raft) to present a certificate signed by the CA, and lets
	// the internal endpoints accept such a certificate as a node's
	// credential. It needs CAFile.
	VerifyIncoming bool
}

// material is one generation of loaded files.
type material struct {
	cert *tls.Certificate
	leaf *x509.Certificate
	// pool is the CA; nil means the system roots (no CA file).
	pool *x509.CertPool
	ca   []*x509.Certificate
}

// Config hands out TLS configurations over the current material. A nil or
// disabled Config means plaintext; its methods return nil configurations.
type Config struct {
	opts Options
	cur  atomic.Pointer[material]
	// mu serialises reloads; readers never take it.
	mu sync.Mutex
}

// New loads the files. With no certificate it returns a disabled Config and
// no error: TLS is off.
func New(o Options) (*Config, error) {
	c := &Config{opts: o}
	if o.CertFile == "" && o.KeyFile == "" {
		if o.CAFile != "" {
			return nil, errors.New("--tls-ca needs --tls-cert and --tls-key: a node presents its own certificate to the others")
		}
		return c, nil
	}
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if o.VerifyIncoming && o.CAFile == "" {
		return nil, errors.New("--tls-verify-incoming needs --tls-ca: peers' certificates are checked against it")
	}
	m, err := load(o)
	if err != nil {
		return nil, err
	}
	c.cur.Store(m)
	return c, nil
}

func load(o Options) (*material, error) {
	pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading --tls-cert %s and --tls-key %s: %w", o.CertFile, o.KeyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing --tls-cert %s: %w", o.CertFile, err)
	}
	pair.Leaf = leaf
	if now := time.Now(); now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("--tls-cert %s expired at %s", o.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	} else if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("--tls-cert %s is not valid before %s (is the clock right?)", o.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	m := &material{cert: &pair, leaf: leaf}
	if o.CAFile == "" {
		return m, nil
	}
	raw, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading --tls-ca: %w", err)
	}
	m.pool = x509.NewCertPool()
	for rest := raw; ; {
		var cert *x509.Certificate
		cert, rest, err = nextCert(rest)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca %s: %w", o.CAFile, err)
		}
		if cert == nil {
			break
		}
		m.pool.AddCert(cert)
		m.ca = append(m.ca, cert)
	}
	if len(m.ca) == 0 {
		return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", o.CAFile)
	}
	// A node's own certificate must be one its peers accept, for both
	// directions: catching that here beats a cluster that cannot connect.
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if o.VerifyIncoming {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	for _, u := range usages {
		if err := verify(m, pair.Certificate, u); err != nil {
			return nil, fmt.Errorf("--tls-cert %s is not usable with --tls-ca %s for %s: %w (raftcdc tools tls issue makes node certificates)", o.CertFile, o.CAFile, usageName(u), err)
		}
	}
	return m, nil
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageClientAuth {
		return "client authentication"
	}
	return "server authentication"
}

// Reload re-reads the files. On any error the current material stays in
// use and the error says what was wrong.
func (c *Config) Reload() error {
	if !c.Enabled() {
		return errors.New("TLS is not configured: nothing to reload")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := load(c.opts)
	if err != nil {
		return err
	}
	c.cur.Store(m)
	return nil
}

// Enabled says whether the node uses TLS at all.
func (c *Config) Enabled() bool { return c != nil && c.cur.Load() != nil }

// Mutual says whether peers must prove they are nodes with a certificate
// from the CA.
func (c *Config) Mutual() bool { return c.Enabled() && c.opts.VerifyIncoming && c.opts.CAFile != "" }

// HasCA says whether a CA file is configured (peers' server certificates
// are checked against it rather than the system roots).
func (c *Config) HasCA() bool { return c.Enabled() && c.opts.CAFile != "" }

// Summary describes the loaded certificate for logs.
type Summary struct {
	Subject  string
	NotAfter time.Time
	CA       []string
}

// Describe summarises the current material.
func (c *Config) Describe() Summary {
	m := c.cur.Load()
	if m == nil {
		return Summary{}
	}
	s := Summary{Subject: m.leaf.Subject.String(), NotAfter: m.leaf.NotAfter}
	for _, ca := range m.ca {
		s.CA = append(s.CA, ca.Subject.String())
	}
	return s
}

func (c *Config) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load().cert, nil
}

func (c *Config) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.cur.Load().cert, nil
}

// verify checks a presented chain against the current CA for one usage.
func verify(m *material, raw [][]byte, usage x509.ExtKeyUsage) error {
	if len(raw) == 0 {
		return errors.New("no certificate presented")
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, b := range raw {
		cert, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("parsing the peer's certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	return verifyParsed(m, certs, usage)
}

func verifyParsed(m *material, certs []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// NodeServer is the configuration of a listener only nodes talk to (Raft).
// With VerifyIncoming a client without a certificate from the CA fails the
// handshake.
func (c *Config) NodeServer() *tls.Config {
	if !c.Enabled() {
		return nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.getCertificate}
	if c.Mutual() {
		conf.ClientAuth = tls.RequireAnyClientCert
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			return c.verifyClient(cs.PeerCertificates)
		}
	}
	return conf
}

// APIServer is the configuration of the API listener, which people and
// nodes share: a certificate is asked for but not required, and one that is
// presented must be from the CA, so that IsNode can trust it.
func (c *Config) APIServer() *tls.Config {
	if !c.Enabled() {
		return nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.getCertificate}
	if c.HasCA() {
		conf.ClientAuth = tls.RequestClientCert
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			return c.verifyClient(cs.PeerCertificates)
		}
	}
	return conf
}

func (c *Config) verifyClient(certs []*x509.Certificate) error {
	if err := verifyParsed(c.cur.Load(), certs, x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("peer certificate not accepted: %w", err)
	}
	return nil
}

// Client is the configuration for dialling another node. It presents this
// node's certificate and checks the peer's: against the CA, by chain only,
// when one is configured; otherwise against the system roots with the host
// name (serverName; empty lets net/http fill it in from the URL).
func (c *Config) Client(serverName string) *tls.Config {
	if !c.Enabled() {
		return nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, GetClientCertificate: c.getClientCertificate, ServerName: serverName}
	if c.HasCA() {
		// Chain-only verification: crypto/tls's own check would also demand
		// the dialled address in the certificate (see the package comment).
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verifyParsed(c.cur.Load(), cs.PeerCertificates, x509.ExtKeyUsageServerAuth); err != nil {
				return fmt.Errorf("the peer's certificate is not from the cluster's CA: %w", err)
			}
			return nil
		}
	}
	return conf
}

// IsNode says whether a TLS connection's peer proved it is a node: mutual
// TLS is on and the peer presented a certificate that the current CA
// accepts for client authentication. The check is made again here, not
// only at the handshake, so that a connection opened before a CA rotation
// loses its standing with the rotation.
func (c *Config) IsNode(cs *tls.ConnectionState) bool {
	if !c.Mutual() || cs == nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	return verifyParsed(c.cur.Load(), cs.PeerCertificates, x509.ExtKeyUsageClientAuth) == nil
}

// HostOf is the host part of a host:port address, for ServerName.
func HostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.Trim(addr, "[]")
	}
	return host
}
