package testserver

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgreSQL: Debian installs the server binaries per major version under
// /usr/lib/postgresql/N/bin; 15 is bookworm's.
const (
	PostgresPackage = "postgresql"
	postgresLibDir  = "/usr/lib/postgresql"
)

// PostgresSuperuser and PostgresPassword are the bootstrap superuser's
// credentials. Host connections need a password (scram-sha-256), so a test
// of a wrong password means something.
const (
	PostgresSuperuser = "postgres"
	PostgresPassword  = "postgres-test-pw"
)

// Postgres is a running PostgreSQL server.
type Postgres struct {
	t       testing.TB
	Dir     string // private directory, owned by the server's user
	DataDir string
	Port    int
	LogPath string
	BinDir  string
	opts    postgresOptions
	cred    *syscall.Credential // nil when the test does not run as root

	mu   sync.Mutex
	proc *process
}

// PostgresOption configures StartPostgres.
type PostgresOption func(*postgresOptions)

type postgresOptions struct {
	logical bool
	durable bool
	args    []string
}

// PostgresLogicalReplication sets wal_level=logical with room for 16
// replication slots and 16 WAL senders, for logical decoding (pgoutput,
// pg_recvlogical). Replication connections from 127.0.0.1 are allowed by
// initdb's default pg_hba.conf, with a password.
func PostgresLogicalReplication() PostgresOption {
	return func(o *postgresOptions) { o.logical = true }
}

// PostgresDurable keeps fsync on. Without it the server runs with
// fsync=off: every commit still reaches the OS before it returns, which
// survives a SIGKILL of the server (the test's only kind of crash).
func PostgresDurable() PostgresOption { return func(o *postgresOptions) { o.durable = true } }

// PostgresSettings adds "-c name=value" settings.
func PostgresSettings(settings ...string) PostgresOption {
	return func(o *postgresOptions) { o.args = append(o.args, settings...) }
}

// findPostgresBin returns the newest installed server bin directory,
// preferring 15 (what the project targets).
func findPostgresBin() (string, error) {
	if _, err := os.Stat(filepath.Join(postgresLibDir, "15", "bin", "postgres")); err == nil {
		return filepath.Join(postgresLibDir, "15", "bin"), nil
	}
	matches, _ := filepath.Glob(filepath.Join(postgresLibDir, "*", "bin", "postgres"))
	if len(matches) == 0 {
		return "", fmt.Errorf("no %s/*/bin/postgres", postgresLibDir)
	}
	sort.Slice(matches, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return a > b
	})
	return filepath.Dir(matches[0]), nil
}

// StartPostgres initialises a private cluster, starts it on a free loopback
// port and waits until the superuser can connect. The server is killed in
// t.Cleanup. As root, the server runs as the postgres user that Debian's
// package creates (PostgreSQL refuses to run as root).
func StartPostgres(t testing.TB, opts ...PostgresOption) *Postgres {
	t.Helper()
	bin, err := findPostgresBin()
	if err != nil {
		missing(t, "PostgreSQL", PostgresPackage, err)
	}
	p := &Postgres{t: t, Dir: filepath.Join(t.TempDir(), "pg"), BinDir: bin}
	for _, o := range opts {
		o(&p.opts)
	}
	p.DataDir = filepath.Join(p.Dir, "data")
	p.LogPath = filepath.Join(p.Dir, "postgres.log")
	if err := os.Mkdir(p.Dir, 0o755); err != nil {
		t.Fatalf("postgres directory: %v", err)
	}
	if isRoot() {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PostgreSQL refuses to run as root and there is no postgres user to run it as (%v); "+
				"Debian's package creates it: apt-get install -y %s", err, PostgresPackage)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(p.Dir, uid, gid); err != nil {
			t.Fatalf("postgres directory: %v", err)
		}
		// The server's user must be able to reach its directory: t.TempDir
		// and a CI run's TMPDIR are mode 0700.
		if err := makeTraversable(p.Dir); err != nil {
			t.Fatalf("postgres directory: %v", err)
		}
	}
	t.Cleanup(func() { keepLogOnFailure(t, "postgres", p.LogPath) })
	t.Cleanup(p.stop)

	pwfile := filepath.Join(p.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(PostgresPassword+"\n"), 0o600); err != nil {
		t.Fatalf("postgres password file: %v", err)
	}
	if p.cred != nil {
		if err := os.Chown(pwfile, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			t.Fatalf("postgres password file: %v", err)
		}
	}
	err = run(p.LogPath, p.cred, p.env(), filepath.Join(bin, "initdb"),
		"-D", p.DataDir, "-U", PostgresSuperuser, "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	os.Remove(pwfile)
	if err != nil {
		t.Fatalf("initialise PostgreSQL cluster: %v", err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		if p.Port, err = pickPort(); err != nil {
			t.Fatalf("pick a port for PostgreSQL: %v", err)
		}
		if err = p.start(); err == nil {
			break
		}
		if !strings.Contains(logTail(p.LogPath, 2000), "already in use") {
			break
		}
	}
	if err != nil {
		t.Fatalf("start PostgreSQL: %v\n%s", err, logTail(p.LogPath, 3000))
	}
	return p
}

// makeTraversable gives "others" search permission (x, not read) on dir and
// every ancestor that lacks it and that we own, so that a server running as
// another user can reach dir.
func makeTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok || int(st.Uid) != os.Geteuid() {
				return fmt.Errorf("%s (mode %v) is not searchable by the postgres user and not ours to change", d, fi.Mode().Perm())
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return err
			}
		}
		if d == "/" || d == filepath.Dir(d) {
			return nil
		}
	}
}

func (p *Postgres) env() []string {
	return []string{"PATH=" + p.BinDir + ":/usr/bin:/bin", "LC_ALL=C", "HOME=" + p.Dir}
}

func (p *Postgres) serverArgs() []string {
	args := []string{filepath.Join(p.BinDir, "postgres"), "-D", p.DataDir,
		"-p", strconv.Itoa(p.Port),
		"-c", "listen_addresses=127.0.0.1",
		// TCP only: a socket path under a long t.TempDir would not fit in
		// sun_path, and nothing needs it.
		"-c", "unix_socket_directories=",
		"-c", "max_connections=300",
		"-c", "shared_buffers=32MB",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
	}
	if !p.opts.durable {
		args = append(args, "-c", "fsync=off")
	}
	if p.opts.logical {
		args = append(args, "-c", "wal_level=logical", "-c", "max_replication_slots=16", "-c", "max_wal_senders=16")
	}
	for _, s := range p.opts.args {
		args = append(args, "-c", s)
	}
	return args
}

func (p *Postgres) start() error {
	proc, err := spawn("postgres", p.LogPath, p.cred, p.env(), p.serverArgs()...)
	if proc != nil {
		proc.dir = p.DataDir
	}
	if err != nil {
		return err
	}
	err = proc.waitReady(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.ConnString(PostgresSuperuser, PostgresPassword, "postgres"))
		if err != nil {
			return err
		}
		return c.Close(ctx)
	})
	if err != nil {
		_ = proc.kill()
		_ = proc.waitGroupGone(10 * time.Second)
		return err
	}
	p.mu.Lock()
	p.proc = proc
	p.mu.Unlock()
	return nil
}

func (p *Postgres) stop() {
	p.mu.Lock()
	proc := p.proc
	p.proc = nil
	p.mu.Unlock()
	if proc == nil {
		return
	}
	if err := proc.kill(); err != nil {
		p.t.Errorf("stop PostgreSQL: %v", err)
	}
	if err := proc.waitGroupGone(30 * time.Second); err != nil {
		p.t.Errorf("stop PostgreSQL: %v", err)
	}
}

// Addr is host:port.
func (p *Postgres) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.Port) }

// ConnString is a postgres:// URL for user, password and database, with
// sslmode=disable (the test server has no certificate).
func (p *Postgres) ConnString(user, password, database string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: p.Addr(),
		Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

// SuperConnString is ConnString for the superuser.
func (p *Postgres) SuperConnString(database string) string {
	return p.ConnString(PostgresSuperuser, PostgresPassword, database)
}

// Connect opens a superuser connection to database, closed in t.Cleanup.
func (p *Postgres) Connect(t testing.TB, database string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.SuperConnString(database))
	if err != nil {
		t.Fatalf("connect to PostgreSQL database %s: %v", database, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Exec runs statements as the superuser in database, each on its own, and
// fails the test on the first error.
func (p *Postgres) Exec(t testing.TB, database string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, p.SuperConnString(database))
	if err != nil {
		t.Fatalf("connect to PostgreSQL database %s: %v", database, err)
	}
	defer c.Close(context.Background())
	for _, s := range stmts {
		if _, err := c.Exec(ctx, s); err != nil {
			t.Fatalf("PostgreSQL %s: %s: %v", database, s, err)
		}
	}
}

// Query runs a query as the superuser in database and returns every row
// with each column in PostgreSQL's text form; NULL is a nil *string.
func (p *Postgres) Query(t testing.TB, database, query string, args ...any) [][]*string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, p.SuperConnString(database))
	if err != nil {
		t.Fatalf("connect to PostgreSQL database %s: %v", database, err)
	}
	defer c.Close(context.Background())
	// The simple protocol returns every column as text.
	rows, err := c.Query(ctx, query, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	if err != nil {
		t.Fatalf("PostgreSQL %s: %s: %v", database, query, err)
	}
	defer rows.Close()
	var out [][]*string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]*string, len(raw))
		for i, b := range raw {
			if b != nil {
				s := string(b)
				row[i] = &s
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("PostgreSQL %s: %s: %v", database, query, err)
	}
	return out
}

// CreateDatabase creates a database (UTF8, C collation, like the cluster).
func (p *Postgres) CreateDatabase(t testing.TB, name string) {
	t.Helper()
	p.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// CreateUser creates a login role with a password. attrs are role
// attributes such as "REPLICATION", "CREATEDB" or "SUPERUSER". Grant
// privileges with Exec in the database they concern.
func (p *Postgres) CreateUser(t testing.TB, name, password string, attrs ...string) {
	t.Helper()
	p.Exec(t, "postgres", "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" LOGIN PASSWORD "+
		quotePGString(password)+" "+strings.Join(attrs, " "))
}

// Version is the server_version setting, e.g. "15.10 (Debian 15.10-0+deb12u1)".
func (p *Postgres) Version(t testing.TB) string {
	t.Helper()
	return *p.Query(t, "postgres", "SHOW server_version")[0][0]
}

// Kill SIGKILLs the postmaster and every backend (the whole process
// group): a crash. The data directory and port stay; Start brings it back.
func (p *Postgres) Kill(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	proc := p.proc
	p.proc = nil
	p.mu.Unlock()
	if proc == nil {
		return
	}
	if err := proc.kill(); err != nil {
		t.Fatalf("kill PostgreSQL: %v", err)
	}
	if err := proc.waitGroupGone(30 * time.Second); err != nil {
		t.Fatalf("kill PostgreSQL: %v", err)
	}
}

// Start starts a killed server again on the same data directory and port
// and waits until it accepts connections (crash recovery included).
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	running := p.proc != nil
	p.mu.Unlock()
	if running {
		t.Fatalf("start PostgreSQL: already running")
	}
	if err := p.start(); err != nil {
		t.Fatalf("restart PostgreSQL on port %d: %v\n%s", p.Port, err, logTail(p.LogPath, 3000))
	}
}

// Restart is Kill followed by Start.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	p.Kill(t)
	p.Start(t)
}

// CPU is the CPU time the server (the postmaster and every backend) has
// used: benchmarks compare what each client costs the server.
func (p *Postgres) CPU() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc.cpu()
}

// Running reports whether the postmaster is up.
func (p *Postgres) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return false
	}
	select {
	case <-p.proc.exited:
		return false
	default:
		return true
	}
}

// ReplicationSlots lists the cluster's replication slots by name with
// their confirmed flush LSN (empty for a physical slot).
func (p *Postgres) ReplicationSlots(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range p.Query(t, "postgres", "SELECT slot_name, coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots") {
		out[*r[0]] = *r[1]
	}
	return out
}

func quotePGString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// String describes the server for messages.
func (p *Postgres) String() string {
	return fmt.Sprintf("PostgreSQL at %s (data %s)", p.Addr(), p.DataDir)
}
