package postgres

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// Check is the create-time test of a postgres:// sink: it parses the URI,
// connects with its credentials (the database must exist), reports the
// server's version, and checks that the user can work in each of the given
// schemas — the upstream databases, which map to schemas of the same name:
// USAGE and CREATE on an existing schema and SELECT, INSERT, UPDATE and
// DELETE on its tables; CREATE on the database when a schema is missing
// and create-tables is on (with create-tables=false a missing schema is an
// error). Tables the user does not own are reported as warnings: DDL on
// them will fail. It changes nothing downstream.
func Check(ctx context.Context, uri string, schemas []string) (*sqlsink.CheckResult, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) (*sqlsink.CheckResult, error) {
		return nil, redact.Error(fmt.Errorf("postgres sink %s: "+format, append([]any{cfg.Redacted()}, args...)...), uri)
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	b := &backend{cfg: cfg}
	if b.pgcfg, err = parseConfig(cfg); err != nil {
		return fail("%v", err)
	}
	c, err := b.connect(ctx)
	if err != nil {
		return fail("%v", describeConnectError(cfg, err))
	}
	defer c.Close(context.Background())
	res := &sqlsink.CheckResult{Sink: Scheme, URI: cfg.Redacted(), Flavour: "PostgreSQL", User: cfg.User}
	var super, dbCreate bool
	if err := c.QueryRow(ctx, `SELECT current_setting('server_version'), rolsuper, has_database_privilege(current_database(), 'CREATE')
		FROM pg_roles WHERE rolname = current_user`).Scan(&res.Version, &super, &dbCreate); err != nil {
		return fail("reading the server version and the user's privileges: %v", err)
	}
	targets := append([]string(nil), schemas...)
	sort.Strings(targets)
	res.Databases = targets
	for _, s := range targets {
		var exists, usage, create bool
		err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
			coalesce((SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = $1), false),
			coalesce((SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = $1), false)`, s).Scan(&exists, &usage, &create)
		if err != nil {
			return fail("looking up schema %s: %v", s, err)
		}
		if !exists {
			if !cfg.CreateTables {
				return fail("unknown schema %q in database %q, and create-tables=false", s, cfg.Database)
			}
			if !dbCreate && !super {
				return fail("schema %q does not exist and user %q lacks CREATE on database %q to create it (GRANT CREATE ON DATABASE %s TO %s)",
					s, cfg.User, cfg.Database, quoteIdent(cfg.Database), quoteIdent(cfg.User))
			}
			continue
		}
		var missing []string
		if !usage {
			missing = append(missing, "USAGE")
		}
		if !create {
			missing = append(missing, "CREATE")
		}
		if len(missing) > 0 {
			return fail("user %q lacks %s on schema %q (GRANT %s ON SCHEMA %s TO %s)", cfg.User, strings.Join(missing, ", "), s,
				strings.Join(missing, ", "), quoteIdent(s), quoteIdent(cfg.User))
		}
		rows, err := c.Query(ctx, `SELECT k.relname,
				has_table_privilege(k.oid, 'SELECT') AND has_table_privilege(k.oid, 'INSERT') AND
				has_table_privilege(k.oid, 'UPDATE') AND has_table_privilege(k.oid, 'DELETE'),
				pg_has_role(k.relowner, 'USAGE')
			FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
			WHERE n.nspname = $1 AND k.relkind IN ('r','p') ORDER BY k.relname`, s)
		if err != nil {
			return fail("looking up the tables of schema %s: %v", s, err)
		}
		var noDML, notOwned []string
		for rows.Next() {
			var name string
			var dml, owner bool
			if err := rows.Scan(&name, &dml, &owner); err != nil {
				rows.Close()
				return fail("%v", err)
			}
			if !dml {
				noDML = append(noDML, s+"."+name)
			}
			if !owner {
				notOwned = append(notOwned, s+"."+name)
			}
		}
		rows.Close()
		if len(noDML) > 0 {
			return fail("user %q lacks SELECT, INSERT, UPDATE or DELETE on %s (GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO %s)",
				cfg.User, strings.Join(noDML, ", "), quoteIdent(s), quoteIdent(cfg.User))
		}
		if len(notOwned) > 0 && !super {
			res.Warnings = append(res.Warnings, fmt.Sprintf("user %q does not own %s: replicated DDL on them will fail", cfg.User, strings.Join(notOwned, ", ")))
		}
	}
	return res, nil
}
