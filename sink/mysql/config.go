package mysql

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// Schemes this package opens.
const (
	Scheme     = "mysql"
	TiDBScheme = "tidb"
)

// Config is a parsed mysql:// or tidb:// sink URI.
type Config struct {
	sqlsink.Config
	Scheme   string // mysql or tidb
	Host     string
	Port     int
	User     string
	Password string
	// TimeZone is the session time zone; timestamps (kept in UTC by the
	// change model) are converted into it. Default UTC.
	TimeZone *time.Location
	// TimeZoneName is how the session's time_zone is set: "+00:00" for UTC,
	// the offset for a fixed zone, or the IANA name.
	TimeZoneName string
	SSLCA        string
	SSLCert      string
	SSLKey       string
	// TiDBTxnMode is tidb:// only: optimistic or pessimistic ("" leaves the
	// server's default).
	TiDBTxnMode string

	raw string
}

// ownParams are the parameters of this sink beyond the common ones.
var ownParams = []string{"time-zone", "ssl-ca", "ssl-cert", "ssl-key", "tidb-txn-mode"}

// Redacted is the URI with its password hidden.
func (c *Config) Redacted() string { return redact.URI(c.raw) }

// ParseURI parses and validates a mysql:// or tidb:// sink URI without
// touching the server:
//
//	mysql://user:password@host:port/?worker-count=16&safe-mode=auto
//
// The path must be empty: each upstream table goes to the database of the
// same name, as TiCDC does. Every parameter is checked; an unknown one is an
// error naming it.
func ParseURI(uri string) (*Config, error) {
	shown := redact.URI(uri)
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("mysql sink URI %s: malformed: %v", shown, redact.Error(unwrapURLError(err), uri))
	}
	if u.Scheme != Scheme && u.Scheme != TiDBScheme {
		return nil, fmt.Errorf("mysql sink URI %s: scheme must be mysql or tidb", shown)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("mysql sink URI %s: write it as %s://user:password@host:port/", shown, u.Scheme)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("mysql sink URI %s: a fragment (#...) is not allowed; percent-encode '#' in a password as %%23", shown)
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		return nil, fmt.Errorf("mysql sink URI %s: a database in the path (%q) is not supported: every table is written to the database of its upstream name", shown, p)
	}
	c := &Config{Config: sqlsink.DefaultConfig(), Scheme: u.Scheme, TimeZone: time.UTC, TimeZoneName: "+00:00", raw: uri}
	if u.User == nil || u.User.Username() == "" {
		return nil, fmt.Errorf("mysql sink URI %s: no user; write %s://user:password@host:port/", shown, u.Scheme)
	}
	c.User = u.User.Username()
	c.Password, _ = u.User.Password()
	c.Host = u.Hostname()
	if c.Host == "" {
		return nil, fmt.Errorf("mysql sink URI %s: no host", shown)
	}
	c.Port = 3306
	if u.Scheme == TiDBScheme {
		c.Port = 4000
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("mysql sink URI %s: port %q is not a number from 1 to 65535", shown, p)
		}
		c.Port = n
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("mysql sink URI %s: malformed query: %v", shown, err)
	}
	own := func(name, value string) (bool, error) {
		switch name {
		case "time-zone":
			return true, c.setTimeZone(value)
		case "ssl-ca":
			c.SSLCA = value
		case "ssl-cert":
			c.SSLCert = value
		case "ssl-key":
			c.SSLKey = value
		case "tidb-txn-mode":
			if c.Scheme != TiDBScheme {
				return true, fmt.Errorf("parameter tidb-txn-mode: only for tidb:// URIs")
			}
			switch strings.ToLower(value) {
			case "optimistic", "pessimistic":
				c.TiDBTxnMode = strings.ToLower(value)
			default:
				return true, fmt.Errorf("parameter tidb-txn-mode=%q: want optimistic or pessimistic", value)
			}
		default:
			return false, nil
		}
		return true, nil
	}
	if err := c.ParseQuery(q, own, ownParams); err != nil {
		return nil, fmt.Errorf("mysql sink URI %s: %w", shown, err)
	}
	if (c.SSLCert == "") != (c.SSLKey == "") {
		return nil, fmt.Errorf("mysql sink URI %s: ssl-cert and ssl-key go together", shown)
	}
	if _, err := c.TLS(); err != nil {
		return nil, fmt.Errorf("mysql sink URI %s: %w", shown, err)
	}
	return c, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// setTimeZone accepts UTC, a fixed offset (+08:00) or an IANA name.
func (c *Config) setTimeZone(v string) error {
	switch {
	case v == "" || strings.EqualFold(v, "UTC") || v == "+00:00" || v == "Z":
		c.TimeZone, c.TimeZoneName = time.UTC, "+00:00"
		return nil
	case (v[0] == '+' || v[0] == '-') && len(v) == 6 && v[3] == ':':
		h, err1 := strconv.Atoi(v[1:3])
		m, err2 := strconv.Atoi(v[4:6])
		if err1 != nil || err2 != nil || h > 14 || m > 59 {
			return fmt.Errorf("parameter time-zone=%q: an offset is written +HH:MM", v)
		}
		off := h*3600 + m*60
		if v[0] == '-' {
			off = -off
		}
		c.TimeZone, c.TimeZoneName = time.FixedZone(v, off), v
		return nil
	}
	loc, err := time.LoadLocation(v)
	if err != nil {
		return fmt.Errorf("parameter time-zone=%q: not UTC, an offset like +08:00 or a known IANA zone name", v)
	}
	c.TimeZone, c.TimeZoneName = loc, v
	return nil
}

// TLS builds the client TLS configuration from ssl-ca, ssl-cert and
// ssl-key (nil without them).
func (c *Config) TLS() (*tls.Config, error) {
	if c.SSLCA == "" && c.SSLCert == "" {
		return nil, nil
	}
	t := &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
	if c.SSLCA != "" {
		pem, err := os.ReadFile(c.SSLCA)
		if err != nil {
			return nil, fmt.Errorf("parameter ssl-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("parameter ssl-ca: %s holds no PEM certificate", c.SSLCA)
		}
		t.RootCAs = pool
	}
	if c.SSLCert != "" {
		cert, err := tls.LoadX509KeyPair(c.SSLCert, c.SSLKey)
		if err != nil {
			return nil, fmt.Errorf("parameters ssl-cert/ssl-key: %v", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// Addr is host:port.
func (c *Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }
