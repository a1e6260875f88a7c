// Package postgres is the PostgreSQL upstream: one logical replication slot
// (pgoutput) per changefeed, read as a single stream, with an initial
// snapshot copied on the slot's exported snapshot. See DESIGN.md.
package postgres

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/internal/redact"
)

// Scheme is the URI scheme of this source; "postgresql" is accepted too.
const Scheme = "postgres"

// Snapshot modes.
const (
	SnapshotInitial = "initial"
	SnapshotNever   = "never"
)

// Defaults and limits of the URI parameters.
const (
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultSnapshotWorkers   = 2
	DefaultTablePoll         = 30 * time.Second
	DefaultWALWarnBytes      = 1 << 30
	MaxSnapshotWorkers       = 64
	minInterval              = 100 * time.Millisecond
	maxInterval              = time.Hour
)

// Config is a parsed postgres:// URI.
type Config struct {
	// ConnString is the connection string handed to pgx: the URI without
	// raftcdc's own parameters. It holds the password; never log it (use
	// Redacted).
	ConnString string
	Host       string
	Port       string
	User       string
	Database   string
	// Slot and Publication are the names in use; PublicationGiven says the
	// user named an existing publication, which raftcdc then never alters
	// or drops.
	Slot             string
	Publication      string
	PublicationGiven bool
	// Snapshot is initial (copy existing rows first) or never.
	Snapshot          string
	HeartbeatInterval time.Duration
	SnapshotWorkers   int
	// TablePoll is how often the catalog is read for new tables that match
	// the filter.
	TablePoll time.Duration
	// WALWarnBytes is the retained-WAL size above which SlotStatus warns.
	WALWarnBytes int64
	redacted     string
}

// connParams are libpq parameters passed through to pgx as they are.
var connParams = map[string]bool{
	"sslmode": true, "sslrootcert": true, "sslcert": true, "sslkey": true,
	"sslpassword": true, "connect_timeout": true, "application_name": true,
	"target_session_attrs": false, // a replication slot lives on one server: refused below
}

const ownParams = "slot, publication, snapshot, heartbeat-interval, snapshot-workers, table-poll-interval, wal-warn-bytes"

var identRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// DefaultSlotName is the slot name a changefeed uses unless slot= says
// otherwise: "raftcdc_" and the changefeed ID, lower-cased, with every
// character PostgreSQL does not allow in a slot name replaced by '_'.
func DefaultSlotName(changefeedID string) string {
	var b strings.Builder
	b.WriteString("raftcdc_")
	for _, c := range strings.ToLower(changefeedID) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

func paramErr(name, value, accepted string) error {
	return fmt.Errorf("postgres URI parameter %q: invalid value %q (accepted: %s)", name, value, accepted)
}

// ParseURI parses
// postgres://user:pass@host:port/db?slot=&publication=&snapshot=initial|never&heartbeat-interval=10s&snapshot-workers=2&sslmode=...
// for the changefeed changefeedID, from which the slot and publication
// names default. Unknown and repeated parameters are errors naming the
// parameter. Errors never contain the password.
func ParseURI(uri, changefeedID string) (Config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		// url's error repeats the URI, password included.
		_ = err // its text repeats the URI, password included
		return Config{}, fmt.Errorf("postgres URI does not parse as a URL (check %%-escapes in the password); write it as postgres://user:password@host:port/database?slot=...")
	}
	red := redact.URI(uri)
	if u.Scheme != Scheme && u.Scheme != "postgresql" {
		return Config{}, fmt.Errorf("postgres URI %q: scheme must be postgres", red)
	}
	if u.Opaque != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("postgres URI %q: write it as postgres://user:password@host:port/database", red)
	}
	if changefeedID == "" {
		return Config{}, fmt.Errorf("postgres URI %q: a changefeed ID is needed to name the slot and publication", red)
	}
	cfg := Config{
		Snapshot:          SnapshotInitial,
		HeartbeatInterval: DefaultHeartbeatInterval,
		SnapshotWorkers:   DefaultSnapshotWorkers,
		TablePoll:         DefaultTablePoll,
		WALWarnBytes:      DefaultWALWarnBytes,
		Slot:              DefaultSlotName(changefeedID),
	}
	cfg.Publication = cfg.Slot
	if u.Host == "" {
		return Config{}, fmt.Errorf("postgres URI %q: no host; write postgres://user@host:port/database", red)
	}
	cfg.Host = u.Hostname()
	cfg.Port = u.Port()
	if cfg.Port == "" {
		cfg.Port = "5432"
	} else if p, err := strconv.Atoi(cfg.Port); err != nil || p < 1 || p > 65535 {
		return Config{}, fmt.Errorf("postgres URI %q: port %q is not a number from 1 to 65535", red, cfg.Port)
	}
	if u.User == nil || u.User.Username() == "" {
		return Config{}, fmt.Errorf("postgres URI %q: no user; write postgres://user:password@host/database", red)
	}
	cfg.User = u.User.Username()
	cfg.Database = strings.TrimPrefix(u.Path, "/")
	if cfg.Database == "" || strings.Contains(cfg.Database, "/") {
		return Config{}, fmt.Errorf("postgres URI %q: name one database in the path, as in postgres://user@host/mydb", red)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("postgres URI %q: the query string is malformed: %v", red, err)
	}
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	sort.Strings(names)
	pass := url.Values{}
	for _, name := range names {
		vals := q[name]
		if len(vals) != 1 {
			return Config{}, fmt.Errorf("postgres URI parameter %q is given %d times; give it once", name, len(vals))
		}
		v := vals[0]
		if allowed, known := connParams[name]; known {
			if !allowed {
				return Config{}, fmt.Errorf("postgres URI parameter %q is not supported: a replication slot lives on one server, name that server's host", name)
			}
			if name == "sslmode" {
				switch v {
				case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
				default:
					return Config{}, paramErr(name, v, "disable, allow, prefer, require, verify-ca, verify-full")
				}
			}
			pass.Set(name, v)
			continue
		}
		if err := cfg.set(name, v); err != nil {
			return Config{}, err
		}
	}
	// The connection string pgx gets: the URI less raftcdc's parameters.
	cu := *u
	cu.Scheme = "postgres"
	cu.RawQuery = pass.Encode()
	cfg.ConnString = cu.String()
	cu.RawQuery = u.RawQuery
	cfg.redacted = redact.URI(cu.String())
	return cfg, nil
}

func (c *Config) set(name, v string) error {
	switch name {
	case "slot":
		if !identRe.MatchString(v) {
			return paramErr(name, v, "1 to 63 lower-case letters, digits or underscores, not starting with a digit")
		}
		c.Slot = v
	case "publication":
		if v == "" || len(v) > 63 || strings.ContainsRune(v, 0) {
			return paramErr(name, v, "the name of an existing publication, 1 to 63 characters")
		}
		c.Publication = v
		c.PublicationGiven = true
	case "snapshot":
		if v != SnapshotInitial && v != SnapshotNever {
			return paramErr(name, v, "initial or never")
		}
		c.Snapshot = v
	case "heartbeat-interval", "table-poll-interval":
		d, err := time.ParseDuration(v)
		if err != nil || d < minInterval || d > maxInterval {
			return paramErr(name, v, fmt.Sprintf("a Go duration from %v to %v, such as 10s", minInterval, maxInterval))
		}
		if name == "heartbeat-interval" {
			c.HeartbeatInterval = d
		} else {
			c.TablePoll = d
		}
	case "snapshot-workers":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxSnapshotWorkers {
			return paramErr(name, v, fmt.Sprintf("an integer from 1 to %d", MaxSnapshotWorkers))
		}
		c.SnapshotWorkers = n
	case "wal-warn-bytes":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return paramErr(name, v, "a positive number of bytes")
		}
		c.WALWarnBytes = n
	default:
		return fmt.Errorf("postgres URI parameter %q is unknown (raftcdc's: %s; passed to the server: sslmode, sslrootcert, sslcert, sslkey, sslpassword, connect_timeout, application_name)", name, ownParams)
	}
	return nil
}

// Redacted is the URI with the password replaced by "xxxxx", for logs and
// errors.
func (c Config) Redacted() string { return c.redacted }
