// Package mysql is the mysql:// and tidb:// sink: MySQL, MariaDB and TiDB
// downstreams, on the shared SQL sink engine (sink/sqlsink). See DESIGN.md.
package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// Open parses the URI and starts a sink. It does not touch the server:
// workers connect on first use and retry while the downstream is away, so
// a processor can open its sink while the database restarts. Check is the
// create-time test of the downstream.
func Open(ctx context.Context, uri string, opts ...sqlsink.Option) (*sqlsink.Sink, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	b, err := newBackend(cfg, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	return sqlsink.New(cfg.Scheme, uri, cfg.Config, b, opts...), nil
}

// backend is the MySQL dialect of the SQL sink engine.
type backend struct {
	cfg *Config
	db  *sql.DB

	mu       sync.Mutex
	sqlMode  string // the session sql_mode, derived from the global one once
	flavour  string
	version  string
	maxBytes int
}

func driverConfig(cfg *Config) (*gomysql.Config, error) {
	dc := gomysql.NewConfig()
	dc.User, dc.Passwd, dc.Net, dc.Addr = cfg.User, cfg.Password, "tcp", cfg.Addr()
	dc.Timeout = 10 * time.Second
	dc.ReadTimeout, dc.WriteTimeout = cfg.ReadTimeout, cfg.WriteTimeout
	dc.MultiStatements = true
	dc.MaxAllowedPacket = 0 // take the server's
	dc.Logger = nopLogger{}
	tlsCfg, err := cfg.TLS()
	if err != nil {
		return nil, err
	}
	dc.TLS = tlsCfg
	return dc, nil
}

type nopLogger struct{}

func (nopLogger) Print(...any) {}

func newBackend(cfg *Config, log zerolog.Logger) (*backend, error) {
	dc, err := driverConfig(cfg)
	if err != nil {
		return nil, err
	}
	connector, err := gomysql.NewConnector(dc)
	if err != nil {
		return nil, fmt.Errorf("mysql sink %s: %w", cfg.Redacted(), err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(cfg.WorkerCount + 4)
	db.SetMaxIdleConns(cfg.WorkerCount + 4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &backend{cfg: cfg, db: db}, nil
}

func (b *backend) Close() error { return b.db.Close() }

// session opens a connection from the pool and sets it up: sql_mode with
// backslash escapes on (the literal renderer relies on them) and strict
// mode on (data that does not fit must fail, not be cut), the time zone,
// and TiDB's transaction mode.
func (b *backend) session(ctx context.Context) (*sql.Conn, error) {
	c, err := b.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	mode := b.sqlMode
	b.mu.Unlock()
	if mode == "" {
		var global, version string
		var maxPacket int
		if err := c.QueryRowContext(ctx, "SELECT @@GLOBAL.sql_mode, VERSION(), @@max_allowed_packet").Scan(&global, &version, &maxPacket); err != nil {
			discard(c)
			return nil, err
		}
		mode = sessionSQLMode(global)
		b.mu.Lock()
		b.sqlMode, b.version, b.flavour = mode, version, flavourOf(version)
		b.maxBytes = maxPacket
		b.mu.Unlock()
	}
	set := "SET SESSION sql_mode = " + model.QuoteString(mode) + ", time_zone = " + model.QuoteString(b.cfg.TimeZoneName)
	if b.cfg.TiDBTxnMode != "" {
		set += ", tidb_txn_mode = " + model.QuoteString(b.cfg.TiDBTxnMode)
	}
	if _, err := c.ExecContext(ctx, set); err != nil {
		discard(c)
		return nil, err
	}
	return c, nil
}

// discard closes a connection for good instead of returning it to the pool
// (it may be inside a broken transaction).
func discard(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	c.Close()
}

func sessionSQLMode(global string) string {
	var out []string
	strict := false
	for _, m := range strings.Split(global, ",") {
		switch m {
		case "", "NO_BACKSLASH_ESCAPES":
			continue
		case "STRICT_TRANS_TABLES", "STRICT_ALL_TABLES":
			strict = true
		}
		out = append(out, m)
	}
	if !strict {
		out = append(out, "STRICT_TRANS_TABLES")
	}
	return strings.Join(out, ",")
}

// Flavours.
const (
	FlavourMySQL   = "MySQL"
	FlavourMariaDB = "MariaDB"
	FlavourTiDB    = "TiDB"
)

func flavourOf(version string) string {
	switch {
	case strings.Contains(version, "TiDB"):
		return FlavourTiDB
	case strings.Contains(strings.ToLower(version), "mariadb"):
		return FlavourMariaDB
	}
	return FlavourMySQL
}

func (b *backend) Connect(ctx context.Context) (sqlsink.Conn, error) {
	c, err := b.session(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	maxBytes := b.maxBytes
	b.mu.Unlock()
	return newConn(b, c, maxBytes), nil
}

// Classify sorts errors into retryable ones (the connection or the
// server's momentary state) and permanent ones (the data or the schema).
func (b *backend) Classify(err error) (bool, string) { return classify(err) }

func classify(err error) (bool, string) {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1213: // ER_LOCK_DEADLOCK
			return true, "deadlock"
		case 1205: // ER_LOCK_WAIT_TIMEOUT
			return true, "lock_wait"
		case 1040, 1203: // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS
			return true, "too_many_connections"
		case 1053, 1077, 1152, 1158, 1159, 1160, 1161, 1317, 1927, 2006, 2013:
			// shutdown in progress, normal shutdown, aborted connection, net
			// read/write errors and timeouts, query interrupted, connection
			// killed, server gone away, lost connection
			return true, "connection"
		case 1290, 1836: // --read-only / read-only mode: a failover in progress
			return true, "read_only"
		case 8022, 8028, 9007, 9001, 9002, 9005, 9006:
			// TiDB: transaction retry / schema changed / write conflict / PD
			// or TiKV busy or unreachable
			return true, "tidb_retryable"
		}
		return false, "permanent"
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, gomysql.ErrInvalidConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gomysql.ErrPktSync) ||
		errors.Is(err, gomysql.ErrPktSyncMul) || errors.Is(err, gomysql.ErrBusyBuffer) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true, "connection"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		if ne.Timeout() {
			return true, "timeout"
		}
		return true, "connection"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true, "connection"
	}
	return false, "permanent"
}

// PrepareTable checks that the table exists downstream, creating its
// database and the table from the upstream schema when it does not and
// create is set.
func (b *backend) PrepareTable(ctx context.Context, name model.TableName, schema *model.TableSchema, create bool) error {
	c, err := b.session(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	dbExists, tableExists, err := tableState(ctx, c, name.Schema, name.Table)
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
		if !dbExists {
			return fmt.Errorf("unknown database %s downstream (%s)", model.QuoteIdent(name.Schema), why)
		}
		return fmt.Errorf("table %s.%s does not exist downstream (%s)", model.QuoteIdent(name.Schema), model.QuoteIdent(name.Table), why)
	}
	if !dbExists {
		if _, err := c.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+model.QuoteIdent(name.Schema)); err != nil {
			return fmt.Errorf("create database %s: %w", model.QuoteIdent(name.Schema), err)
		}
	}
	s := schema
	if s.Table.Schema != name.Schema || s.Table.Table != name.Table {
		s = s.Clone()
		s.Table.Schema, s.Table.Table = name.Schema, name.Table
	}
	stmt := s.CreateTableSQL(true)
	if _, err := c.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create table from the upstream schema (%s): %w", stmt, err)
	}
	return nil
}

func tableState(ctx context.Context, c *sql.Conn, db, table string) (dbExists, tableExists bool, err error) {
	var n int
	err = c.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", db).Scan(&n)
	if err != nil || n == 0 {
		return false, false, err
	}
	err = c.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", db, table).Scan(&n)
	return true, n > 0, err
}

// ignorableDDLErrors are the errors a DDL that was already applied gives
// when it runs again, by DDL kind: they mean the downstream is already in
// the state the DDL leads to.
var ignorableDDLErrors = map[model.DDLKind][]uint16{
	model.DDLCreateSchema: {1007},       // database exists
	model.DDLDropSchema:   {1008},       // database does not exist
	model.DDLCreateTable:  {1050},       // table exists
	model.DDLDropTable:    {1051},       // unknown table
	model.DDLRenameTable:  {1146, 1050}, // old name gone, new name taken
	model.DDLAddColumn:    {1060},       // duplicate column
	model.DDLDropColumn:   {1091},       // can't drop: does not exist
	model.DDLRenameColumn: {1054},       // unknown (old) column
	model.DDLAddIndex:     {1061, 1068}, // duplicate key name, multiple primary key
	model.DDLDropIndex:    {1091},
}

// ExecDDL runs the MySQL-dialect statement as it is.
func (b *backend) ExecDDL(ctx context.Context, ddl *model.DDLEvent) (bool, error) {
	c, err := b.session(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	if b.cfg.CreateTables && ddl.Schema != "" && ddl.Kind != model.DDLCreateSchema && ddl.Kind != model.DDLDropSchema {
		// A table DDL in a database that exists upstream but was never
		// created here (no table of it existed at the start).
		if _, err := c.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+model.QuoteIdent(ddl.Schema)); err != nil {
			return false, err
		}
	}
	if ddl.Schema != "" && ddl.Kind != model.DDLCreateSchema && ddl.Kind != model.DDLDropSchema {
		if _, err := c.ExecContext(ctx, "USE "+model.QuoteIdent(ddl.Schema)); err != nil {
			return false, err
		}
	}
	_, err = c.ExecContext(ctx, ddl.Query)
	if err == nil {
		return true, nil
	}
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		for _, n := range ignorableDDLErrors[ddl.Kind] {
			if me.Number == n {
				return false, nil
			}
		}
	}
	return false, err
}

// describeConnectError turns a connection failure into what a person can
// act on.
func describeConnectError(cfg *Config, err error) error {
	var me *gomysql.MySQLError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &me) && me.Number == 1045:
		return fmt.Errorf("access denied for user %q at %s: wrong password, or the user may not connect from this host (%v)", cfg.User, cfg.Addr(), redact.Error(err, cfg.raw))
	case errors.As(err, &me) && (me.Number == 1044 || me.Number == 1049):
		return fmt.Errorf("%v", redact.Error(err, cfg.raw))
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve host %q: %v", cfg.Host, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connection refused at %s: is the server running and listening there?", cfg.Addr())
	}
	if ok, class := classify(err); ok && class == "timeout" {
		return fmt.Errorf("no answer from %s within the timeout: %v", cfg.Addr(), redact.Error(err, cfg.raw))
	}
	return fmt.Errorf("cannot connect to %s: %v", cfg.Addr(), redact.Error(err, cfg.raw))
}
