package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"sort"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// Check is the create-time test of a mysql:// or tidb:// sink: it parses
// the URI, connects with its credentials, reports the server's flavour and
// version, sets the session time zone, and checks that the user holds
// every privilege the sink needs (sqlsink.RequiredMySQLPrivileges) on each
// of the given databases — on *.* when none are given. With
// create-tables=false, each database must exist. It changes nothing
// downstream.
func Check(ctx context.Context, uri string, databases []string) (*sqlsink.CheckResult, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) (*sqlsink.CheckResult, error) {
		return nil, redact.Error(fmt.Errorf("mysql sink %s: "+format, append([]any{cfg.Redacted()}, args...)...), uri)
	}
	dc, err := driverConfig(cfg)
	if err != nil {
		return fail("%v", err)
	}
	connector, err := gomysql.NewConnector(dc)
	if err != nil {
		return fail("%v", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	c, err := db.Conn(ctx)
	if err == nil {
		err = c.PingContext(ctx)
	}
	if err != nil {
		return fail("%v", describeConnectError(cfg, err))
	}
	defer c.Close()
	res := &sqlsink.CheckResult{Sink: cfg.Scheme, URI: cfg.Redacted(), User: cfg.User}
	if err := c.QueryRowContext(ctx, "SELECT VERSION()").Scan(&res.Version); err != nil {
		return fail("reading the server version: %v", err)
	}
	res.Flavour = flavourOf(res.Version)
	if cfg.Scheme == TiDBScheme && res.Flavour != FlavourTiDB {
		return fail("a tidb:// URI, but the server is %s %s; use mysql://", res.Flavour, res.Version)
	}
	if _, err := c.ExecContext(ctx, "SET SESSION time_zone = "+quote(cfg.TimeZoneName)); err != nil {
		return fail("parameter time-zone=%s: the server does not accept it (%v); load its time zone tables or use an offset such as +08:00", cfg.TimeZoneName, err)
	}
	if cfg.TiDBTxnMode != "" {
		if _, err := c.ExecContext(ctx, "SET SESSION tidb_txn_mode = "+quote(cfg.TiDBTxnMode)); err != nil {
			return fail("parameter tidb-txn-mode: %v", err)
		}
	}
	grants, err := showGrants(ctx, c)
	if err != nil {
		return fail("reading the user's privileges: %v", err)
	}
	targets := append([]string(nil), databases...)
	sort.Strings(targets)
	res.Databases = targets
	if len(targets) == 0 {
		targets = []string{""} // *.*
	}
	for _, d := range targets {
		if missing := grants.missing(d, sqlsink.RequiredMySQLPrivileges); len(missing) > 0 {
			on := "*.*"
			if d != "" {
				on = "`" + d + "`.*"
			}
			return fail("user %q lacks %s on %s (the sink needs %s on every database it writes; grant them with GRANT %s ON %s TO ...)",
				cfg.User, strings.Join(missing, ", "), on, strings.Join(sqlsink.RequiredMySQLPrivileges, ", "), strings.Join(missing, ", "), on)
		}
		if d != "" && !cfg.CreateTables {
			var n int
			if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", d).Scan(&n); err != nil {
				return fail("looking up database %s: %v", d, err)
			}
			if n == 0 {
				return fail("unknown database %q downstream, and create-tables=false", d)
			}
		}
	}
	return res, nil
}

func quote(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(s) + "'" }

// grantSet is a user's privileges by database pattern ("" is *.*).
type grantSet struct {
	global map[string]bool
	dbs    []dbGrant
}

type dbGrant struct {
	pattern *regexp.Regexp
	privs   map[string]bool
}

var grantLine = regexp.MustCompile("^GRANT (.+?) ON (\\S+) TO ")

func showGrants(ctx context.Context, c *sql.Conn) (*grantSet, error) {
	rows, err := c.QueryContext(ctx, "SHOW GRANTS FOR CURRENT_USER()")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	g := &grantSet{global: map[string]bool{}}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		g.add(line)
	}
	return g, rows.Err()
}

// add parses one SHOW GRANTS line. Table- and column-level grants are not
// enough for a sink that creates tables, so only *.* and db.* count.
func (g *grantSet) add(line string) {
	m := grantLine.FindStringSubmatch(line)
	if m == nil {
		return
	}
	privs := map[string]bool{}
	for _, p := range splitPrivileges(m[1]) {
		p = strings.ToUpper(strings.TrimSpace(p))
		if p == "ALL" || p == "ALL PRIVILEGES" {
			for _, r := range sqlsink.RequiredMySQLPrivileges {
				privs[r] = true
			}
			continue
		}
		privs[p] = true
	}
	obj := m[2]
	if obj == "*.*" {
		for p := range privs {
			g.global[p] = true
		}
		return
	}
	db, rest, ok := strings.Cut(obj, ".")
	if !ok || rest != "*" {
		return
	}
	db = strings.ReplaceAll(strings.Trim(db, "`"), "``", "`")
	g.dbs = append(g.dbs, dbGrant{pattern: dbPattern(db), privs: privs})
}

// splitPrivileges splits "SELECT, INSERT (`a`, `b`), UPDATE" at the commas
// outside parentheses.
func splitPrivileges(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// dbPattern turns a grant's database name, where % and _ are wildcards
// unless escaped, into a regular expression.
func dbPattern(name string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '\\' && i+1 < len(name):
			i++
			b.WriteString(regexp.QuoteMeta(string(name[i])))
		case c == '%':
			b.WriteString(".*")
		case c == '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func (g *grantSet) missing(db string, need []string) []string {
	var out []string
	for _, p := range need {
		if g.global[p] {
			continue
		}
		found := false
		if db != "" {
			for _, d := range g.dbs {
				if d.privs[p] && d.pattern.MatchString(db) {
					found = true
					break
				}
			}
		}
		if !found {
			out = append(out, p)
		}
	}
	return out
}
