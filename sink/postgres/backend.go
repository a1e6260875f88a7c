// Package postgres is the postgres:// sink: PostgreSQL downstreams on the
// shared SQL sink engine (sink/sqlsink). Types are mapped as PGType says;
// DDL is translated from the DDL event's schemas (see DESIGN.md).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// Open parses the URI and starts a sink. It does not touch the server:
// workers connect on first use and retry while the downstream is away.
// Check is the create-time test of the downstream.
func Open(ctx context.Context, uri string, opts ...sqlsink.Option) (*sqlsink.Sink, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	pc, err := parseConfig(cfg)
	if err != nil {
		return nil, err
	}
	b := &backend{cfg: cfg, pgcfg: pc}
	return sqlsink.New(Scheme, uri, cfg.Config, b, opts...), nil
}

func parseConfig(cfg *Config) (*pgx.ConnConfig, error) {
	pc, err := pgx.ParseConfig(cfg.connString)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("postgres sink URI %s: %w", cfg.Redacted(), err), cfg.raw)
	}
	return pc, nil
}

// copyMinRows is where bulk=auto switches a plain insert from a multi-row
// INSERT to COPY; see bench/RESULTS.md for the measurement behind it.
const copyMinRows = 64

type backend struct {
	cfg   *Config
	pgcfg *pgx.ConnConfig
}

func (b *backend) Close() error { return nil }

// sessionParams are set on every connection: the literal renderer and the
// reader rely on them.
var sessionParams = map[string]string{
	"standard_conforming_strings": "on",
	"TimeZone":                    "UTC",
	"DateStyle":                   "ISO, YMD",
	"IntervalStyle":               "postgres",
	"bytea_output":                "hex",
	"extra_float_digits":          "1",
	"client_encoding":             "UTF8",
}

func (b *backend) connect(ctx context.Context) (*pgx.Conn, error) {
	pc := b.pgcfg.Copy()
	for k, v := range sessionParams {
		pc.RuntimeParams[k] = v
	}
	if !b.cfg.CachePrepStmts {
		pc.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	}
	return pgx.ConnectConfig(ctx, pc)
}

func (b *backend) Connect(ctx context.Context) (sqlsink.Conn, error) {
	c, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{b: b, c: c}, nil
}

func (b *backend) Classify(err error) (bool, string) { return classify(err) }

func classify(err error) (bool, string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"):
			return true, "connection"
		case pe.Code == "40001" || pe.Code == "40P01":
			return true, "deadlock"
		case pe.Code == "55P03":
			return true, "lock_wait"
		case pe.Code == "53300":
			return true, "too_many_connections"
		case strings.HasPrefix(pe.Code, "53"): // disk full, out of memory
			return true, "resources"
		case pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03":
			return true, "connection"
		case pe.Code == "57014":
			return true, "timeout"
		case pe.Code == "25006": // read-only transaction: a standby, or a failover in progress
			return true, "read_only"
		}
		return false, "permanent"
	}
	if pgconn.Timeout(err) {
		return true, "timeout"
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return true, "connection"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		if ne.Timeout() {
			return true, "timeout"
		}
		return true, "connection"
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true, "connection"
	}
	if strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "conn busy") {
		return true, "connection"
	}
	return false, "permanent"
}

// PrepareTable checks that the schema and table exist, creating them from
// the upstream schema when missing and create is set.
func (b *backend) PrepareTable(ctx context.Context, name model.TableName, schema *model.TableSchema, create bool) error {
	c, err := b.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	schemaExists, tableExists, err := tableState(ctx, c, name)
	if err != nil {
		return err
	}
	if tableExists {
		return nil
	}
	if !create || schema == nil {
		why := "create-tables=false"
		if create {
			why = "its upstream schema is not known, so it cannot be created"
		}
		if !schemaExists {
			return fmt.Errorf("unknown schema %s in database %s downstream (%s)", quoteIdent(name.Schema), quoteIdent(b.cfg.Database), why)
		}
		return fmt.Errorf("table %s does not exist downstream (%s)", qname(name), why)
	}
	s := schema
	if s.Table.Schema != name.Schema || s.Table.Table != name.Table {
		s = s.Clone()
		s.Table.Schema, s.Table.Table = name.Schema, name.Table
	}
	return inTx(ctx, c, createTableSQL(s, true))
}

func tableState(ctx context.Context, c *pgx.Conn, name model.TableName) (schemaExists, tableExists bool, err error) {
	err = c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
		EXISTS (SELECT 1 FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE n.nspname = $1 AND k.relname = $2 AND k.relkind IN ('r','p'))`,
		name.Schema, name.Table).Scan(&schemaExists, &tableExists)
	return
}

// inTx runs statements in one transaction (PostgreSQL's DDL is
// transactional, so a translated DDL applies whole or not at all).
func inTx(ctx context.Context, c *pgx.Conn, stmts []string) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return tx.Commit(ctx)
}

// describeConnectError turns a connection failure into what a person can
// act on.
func describeConnectError(cfg *Config, err error) error {
	var pe *pgconn.PgError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000"):
		return fmt.Errorf("authentication failed for user %q at %s: wrong password, or pg_hba.conf does not let this user in (%s)", cfg.User, cfg.Addr(), pe.Message)
	case errors.As(err, &pe) && pe.Code == "3D000":
		return fmt.Errorf("unknown database %q at %s (%s)", cfg.Database, cfg.Addr(), pe.Message)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve host %q: %v", cfg.Host, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connection refused at %s: is the server running and listening there?", cfg.Addr())
	case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
		return fmt.Errorf("no answer from %s within the timeout", cfg.Addr())
	}
	return fmt.Errorf("cannot connect to %s: %v", cfg.Addr(), redact.Error(err, cfg.raw))
}

// checkTimeout bounds the create-time check.
const checkTimeout = 30 * time.Second
