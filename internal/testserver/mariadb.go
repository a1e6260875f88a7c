package testserver

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDB binaries, as Debian's mariadb-server package installs them.
const (
	MariaDBServerBin  = "/usr/sbin/mariadbd"
	MariaDBInstallBin = "/usr/bin/mariadb-install-db"
	MariaDBPackage    = "mariadb-server"
)

// MariaDB is a running mariadbd. Root connects from 127.0.0.1 without a
// password; users made with CreateUser have passwords.
type MariaDB struct {
	t       testing.TB
	Dir     string // private directory: data/, the log, the binlog
	DataDir string
	Port    int
	LogPath string
	opts    mariadbOptions
	sockDir string

	mu   sync.Mutex
	proc *process
	db   *sql.DB // root pool, reopened after a restart
}

// MariaDBOption configures StartMariaDB.
type MariaDBOption func(*mariadbOptions)

type mariadbOptions struct {
	binlog  bool
	durable bool
	args    []string
}

// MariaDBBinlog turns on the row-format binary log (server-id 1, full row
// images, GTIDs as MariaDB always has them) for tests that read it.
func MariaDBBinlog() MariaDBOption { return func(o *mariadbOptions) { o.binlog = true } }

// MariaDBDurable keeps InnoDB's default of an fsync per commit. Without it
// the log is written to the OS at every commit and synced once a second:
// still durable across a SIGKILL of the server (the test's only kind of
// crash), and far cheaper on a shared disk.
func MariaDBDurable() MariaDBOption { return func(o *mariadbOptions) { o.durable = true } }

// MariaDBArgs adds mariadbd command-line options.
func MariaDBArgs(args ...string) MariaDBOption {
	return func(o *mariadbOptions) { o.args = append(o.args, args...) }
}

// StartMariaDB initialises a private data directory, starts mariadbd on a
// free loopback port and waits until root can connect. The server is
// killed in t.Cleanup.
func StartMariaDB(t testing.TB, opts ...MariaDBOption) *MariaDB {
	t.Helper()
	for _, bin := range []string{MariaDBServerBin, MariaDBInstallBin} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(t, "MariaDB ("+bin+")", MariaDBPackage, err)
		}
	}
	m := &MariaDB{t: t, Dir: t.TempDir()}
	for _, o := range opts {
		o(&m.opts)
	}
	m.DataDir = filepath.Join(m.Dir, "data")
	m.LogPath = filepath.Join(m.Dir, "mariadb.log")
	// The socket path must fit in sun_path (108 bytes); long test names make
	// t.TempDir paths longer than that. Tests connect over TCP only.
	m.sockDir = m.Dir
	if len(filepath.Join(m.Dir, "mariadbd.sock")) > 100 {
		d, err := os.MkdirTemp("", "mdb")
		if err != nil {
			t.Fatalf("mariadb socket directory: %v", err)
		}
		m.sockDir = d
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	t.Cleanup(func() { keepLogOnFailure(t, "mariadb", m.LogPath) })
	t.Cleanup(m.stop)

	// A private tmpdir: the bootstrap's internal temporary tables are
	// files named after its pid in the tmpdir, and in a shared /tmp they
	// were seen removed under it ("Could not remove temporary table …
	// error: 2", then "Unknown table 'mysql.tmp_user_sys'").
	tmp := filepath.Join(m.Dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatalf("mariadb tmpdir: %v", err)
	}
	args := []string{MariaDBInstallBin, "--no-defaults", "--datadir=" + m.DataDir, "--tmpdir=" + tmp,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
		"--innodb-log-file-size=16M"}
	if isRoot() {
		args = append(args, "--user=root")
	}
	if err := run(m.LogPath, nil, nil, args...); err != nil {
		t.Fatalf("initialise MariaDB data directory: %v", err)
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if m.Port, err = pickPort(); err != nil {
			t.Fatalf("pick a port for MariaDB: %v", err)
		}
		if err = m.start(); err == nil {
			break
		}
		// A free port can be taken between picking and binding; anything
		// else is not worth a retry.
		if !strings.Contains(logTail(m.LogPath, 2000), "Address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatalf("start MariaDB: %v\n%s", err, logTail(m.LogPath, 3000))
	}
	return m
}

func isRoot() bool { return os.Geteuid() == 0 }

func (m *MariaDB) serverArgs() []string {
	args := []string{MariaDBServerBin, "--no-defaults",
		"--datadir=" + m.DataDir,
		"--port=" + strconv.Itoa(m.Port),
		"--bind-address=127.0.0.1",
		"--socket=" + filepath.Join(m.sockDir, "mariadbd.sock"),
		"--pid-file=" + filepath.Join(m.Dir, "mariadbd.pid"),
		"--tmpdir=" + filepath.Join(m.Dir, "tmp"),
		"--skip-name-resolve",
		// What Debian's own configuration sets; --no-defaults would leave
		// latin1.
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=16M",
		"--max-connections=1000",
	}
	if isRoot() {
		args = append(args, "--user=root")
	}
	if !m.opts.durable {
		args = append(args, "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0")
	}
	if m.opts.binlog {
		args = append(args, "--log-bin="+filepath.Join(m.Dir, "binlog", "mariadb-bin"),
			"--server-id=1", "--binlog-format=ROW", "--binlog-row-image=FULL")
	}
	return append(args, m.opts.args...)
}

func (m *MariaDB) start() error {
	if m.opts.binlog {
		if err := os.MkdirAll(filepath.Join(m.Dir, "binlog"), 0o755); err != nil {
			return err
		}
	}
	p, err := spawn("mariadb", m.LogPath, nil, nil, m.serverArgs()...)
	if err != nil {
		return err
	}
	db, err := sql.Open("mysql", m.DSN("root", "", ""))
	if err != nil {
		_ = p.kill()
		return err
	}
	err = p.waitReady(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return db.PingContext(ctx)
	})
	if err != nil {
		db.Close()
		_ = p.kill()
		return err
	}
	m.mu.Lock()
	m.proc, m.db = p, db
	m.mu.Unlock()
	return nil
}

func (m *MariaDB) stop() {
	m.mu.Lock()
	p, db := m.proc, m.db
	m.proc, m.db = nil, nil
	m.mu.Unlock()
	if db != nil {
		db.Close()
	}
	if err := p.kill(); err != nil {
		m.t.Errorf("stop MariaDB: %v", err)
	}
}

// Addr is host:port.
func (m *MariaDB) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.Port) }

// DSN is a go-sql-driver/mysql DSN for user, password and database (which
// may be empty).
func (m *MariaDB) DSN(user, password, database string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, password, "tcp", m.Addr(), database
	c.Timeout = 5 * time.Second
	c.InterpolateParams = true
	return c.FormatDSN()
}

// URI is a mysql:// sink URI for user, password and database.
func (m *MariaDB) URI(user, password, database string) string {
	u := url.URL{Scheme: "mysql", User: url.UserPassword(user, password), Host: m.Addr(), Path: "/" + database}
	return u.String()
}

// DB is the root connection pool. It stays valid across Restart only in the
// sense that database/sql reconnects; take it again after a restart to be
// sure of a fresh pool.
func (m *MariaDB) DB() *sql.DB {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.db
}

// Exec runs statements as root, failing the test on the first error.
func (m *MariaDB) Exec(t testing.TB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := m.DB().ExecContext(ctx, s)
		cancel()
		if err != nil {
			t.Fatalf("MariaDB: %s: %v", s, err)
		}
	}
}

// Query runs a query as root and returns every row with each column as
// text; NULL is returned as the Go nil of a *string.
func (m *MariaDB) Query(t testing.TB, query string, args ...any) [][]*string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := m.DB().QueryContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("MariaDB: %s: %v", query, err)
	}
	out, err := scanStrings(rows)
	if err != nil {
		t.Fatalf("MariaDB: %s: %v", query, err)
	}
	return out
}

func scanStrings(rows *sql.Rows) ([][]*string, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]*string
	for rows.Next() {
		raw := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]*string, len(cols))
		for i, b := range raw {
			if b != nil {
				s := string(b)
				row[i] = &s
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// CreateDatabase creates a database with the server's default charset.
func (m *MariaDB) CreateDatabase(t testing.TB, name string) {
	t.Helper()
	m.Exec(t, "CREATE DATABASE "+quoteMySQLIdent(name))
}

// CreateUser creates user@'%' with a password and runs one GRANT per
// entry of grants, each written as "PRIVILEGES ON object", for example
// "SELECT, INSERT ON db.*" or "ALL ON *.*".
func (m *MariaDB) CreateUser(t testing.TB, user, password string, grants ...string) {
	t.Helper()
	acct := quoteMySQLString(user) + "@'%'"
	m.Exec(t, "CREATE USER "+acct+" IDENTIFIED BY "+quoteMySQLString(password))
	for _, g := range grants {
		m.Exec(t, "GRANT "+g+" TO "+acct)
	}
}

// Version is the server's version string, e.g. "10.11.6-MariaDB-0+deb12u1".
func (m *MariaDB) Version(t testing.TB) string {
	t.Helper()
	return *m.Query(t, "SELECT VERSION()")[0][0]
}

// Kill SIGKILLs the server. Its data directory and port stay; Start brings
// it back.
func (m *MariaDB) Kill(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	p, db := m.proc, m.db
	m.proc, m.db = nil, nil
	m.mu.Unlock()
	if db != nil {
		db.Close()
	}
	if err := p.kill(); err != nil {
		t.Fatalf("kill MariaDB: %v", err)
	}
}

// Start starts a killed server again on the same data directory and port
// and waits until it accepts connections (crash recovery included).
func (m *MariaDB) Start(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	running := m.proc != nil
	m.mu.Unlock()
	if running {
		t.Fatalf("start MariaDB: already running")
	}
	if err := m.start(); err != nil {
		t.Fatalf("restart MariaDB on port %d: %v\n%s", m.Port, err, logTail(m.LogPath, 3000))
	}
}

// Restart is Kill followed by Start: a crash and recovery.
func (m *MariaDB) Restart(t testing.TB) {
	t.Helper()
	m.Kill(t)
	m.Start(t)
}

// CPU is the CPU time the server has used since it started: benchmarks
// compare what each client costs the server.
func (m *MariaDB) CPU() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc.cpu()
}

// Running reports whether the server process is up.
func (m *MariaDB) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return false
	}
	select {
	case <-m.proc.exited:
		return false
	default:
		return true
	}
}

func quoteMySQLIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func quoteMySQLString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(s) + "'"
}

// String describes the server for messages.
func (m *MariaDB) String() string { return fmt.Sprintf("MariaDB at %s (data %s)", m.Addr(), m.DataDir) }
