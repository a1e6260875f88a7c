package postgres

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// Scheme is the URI scheme this sink opens ("postgresql" is accepted too).
const Scheme = "postgres"

// Config is a parsed postgres:// sink URI.
type Config struct {
	sqlsink.Config
	Host     string
	Port     int
	User     string
	Password string
	Database string
	// Bulk says how plain inserts are written: "auto" (COPY for large
	// groups, multi-row INSERT otherwise), "insert" or "copy".
	Bulk string
	// connString is what pgx gets: the URI less this sink's parameters.
	connString string
	raw        string
}

// connParams are libpq parameters passed to the connection as they are.
var connParams = map[string]bool{
	"sslmode": true, "sslrootcert": true, "sslcert": true, "sslkey": true,
	"sslpassword": true, "connect_timeout": true, "application_name": true,
}

var ownParams = []string{"sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "connect_timeout", "application_name", "bulk"}

// Redacted is the URI with its password hidden.
func (c *Config) Redacted() string { return redact.URI(c.raw) }

// Addr is host:port.
func (c *Config) Addr() string { return c.Host + ":" + strconv.Itoa(c.Port) }

// ParseURI parses and validates a postgres:// sink URI without touching the
// server:
//
//	postgres://user:password@host:port/database?sslmode=require&worker-count=16
//
// The database is required. Each upstream schema maps to the PostgreSQL
// schema of the same name in it. Every parameter is checked; an unknown
// one is an error naming it.
func ParseURI(uri string) (*Config, error) {
	shown := redact.URI(uri)
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("postgres sink URI %s: malformed (percent-encode '#', '?', '/', '@' and '%%' in the password): %v", shown, redact.Error(unwrapURLError(err), uri))
	}
	if u.Scheme != Scheme && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("postgres sink URI %s: scheme must be postgres", shown)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("postgres sink URI %s: write it as postgres://user:password@host:port/database", shown)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("postgres sink URI %s: a fragment (#...) is not allowed; percent-encode '#' in a password as %%23", shown)
	}
	c := &Config{Config: sqlsink.DefaultConfig(), Bulk: "auto", raw: uri}
	if u.User == nil || u.User.Username() == "" {
		return nil, fmt.Errorf("postgres sink URI %s: no user; write postgres://user:password@host:port/database", shown)
	}
	c.User = u.User.Username()
	c.Password, _ = u.User.Password()
	c.Host = u.Hostname()
	c.Port = 5432
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("postgres sink URI %s: port %q is not a number from 1 to 65535", shown, p)
		}
		c.Port = n
	}
	c.Database = strings.TrimPrefix(u.Path, "/")
	if c.Database == "" || strings.Contains(c.Database, "/") {
		return nil, fmt.Errorf("postgres sink URI %s: name one database in the path, as in postgres://user@host/mydb", shown)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("postgres sink URI %s: malformed query: %v", shown, err)
	}
	pass := url.Values{}
	own := func(name, value string) (bool, error) {
		if connParams[name] {
			if name == "sslmode" {
				switch value {
				case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
				default:
					return true, fmt.Errorf("parameter sslmode=%q: want disable, allow, prefer, require, verify-ca or verify-full", value)
				}
			}
			if name == "connect_timeout" {
				if n, err := strconv.Atoi(value); err != nil || n < 0 {
					return true, fmt.Errorf("parameter connect_timeout=%q: want whole seconds", value)
				}
			}
			pass.Set(name, value)
			return true, nil
		}
		if name == "bulk" {
			switch value {
			case "auto", "insert", "copy":
				c.Bulk = value
				return true, nil
			}
			return true, fmt.Errorf("parameter bulk=%q: want auto, insert or copy", value)
		}
		return false, nil
	}
	if err := c.ParseQuery(q, own, ownParams); err != nil {
		return nil, fmt.Errorf("postgres sink URI %s: %w", shown, err)
	}
	if pass.Get("connect_timeout") == "" {
		pass.Set("connect_timeout", "10")
	}
	if pass.Get("application_name") == "" {
		pass.Set("application_name", "raftcdc")
	}
	cu := *u
	cu.Scheme = Scheme
	cu.RawQuery = pass.Encode()
	c.connString = cu.String()
	return c, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
