package testserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMariaDBUsersPrivilegesAndCrashRestart(t *testing.T) {
	m := StartMariaDB(t, MariaDBBinlog())
	if v := m.Version(t); !strings.Contains(v, "MariaDB") {
		t.Fatalf("version %q is not MariaDB's", v)
	}
	if got := *m.Query(t, "SELECT @@log_bin, @@binlog_format, @@character_set_server")[0][0]; got != "1" {
		t.Fatalf("log_bin = %s with MariaDBBinlog, want 1", got)
	}
	m.CreateDatabase(t, "app")
	m.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10))")
	m.CreateUser(t, "reader", "s3cret", "SELECT ON app.*")

	ctx := context.Background()
	reader, err := sql.Open("mysql", m.DSN("reader", "s3cret", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := reader.ExecContext(ctx, "SELECT * FROM t"); err != nil {
		t.Fatalf("reader cannot read: %v", err)
	}
	_, err = reader.ExecContext(ctx, "INSERT INTO t VALUES (1, 'x')")
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1142 {
		t.Fatalf("insert without the privilege: got %v, want error 1142", err)
	}
	wrong, _ := sql.Open("mysql", m.DSN("reader", "wrong", "app"))
	defer wrong.Close()
	if err := wrong.PingContext(ctx); !errors.As(err, &me) || me.Number != 1045 {
		t.Fatalf("wrong password: got %v, want error 1045", err)
	}

	// A committed row survives a SIGKILL of the server; the port stays.
	m.Exec(t, "INSERT INTO app.t VALUES (1, 'kept')")
	port := m.Port
	m.Restart(t)
	if m.Port != port {
		t.Fatalf("port changed across restart: %d → %d", port, m.Port)
	}
	rows := m.Query(t, "SELECT v FROM app.t WHERE id = 1")
	if len(rows) != 1 || *rows[0][0] != "kept" {
		t.Fatalf("after restart: %v", rows)
	}
	m.Kill(t)
	if m.Running() {
		t.Fatal("Running after Kill")
	}
	m.Start(t)
	if !m.Running() {
		t.Fatal("not Running after Start")
	}
}

func TestPostgresAuthLogicalReplicationAndCrashRestart(t *testing.T) {
	p := StartPostgres(t, PostgresLogicalReplication())
	if v := p.Version(t); !strings.HasPrefix(v, "15") {
		t.Logf("PostgreSQL %s (the project targets 15)", v)
	}
	if got := *p.Query(t, "postgres", "SHOW wal_level")[0][0]; got != "logical" {
		t.Fatalf("wal_level = %s with PostgresLogicalReplication", got)
	}
	p.CreateDatabase(t, "app")
	p.Exec(t, "app", "CREATE TABLE t (id int PRIMARY KEY, v text)")
	p.CreateUser(t, "reader", "s3cret")
	p.Exec(t, "app", "GRANT SELECT ON t TO reader")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.ConnString("reader", "s3cret", "app"))
	if err != nil {
		t.Fatalf("reader cannot connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "SELECT * FROM t"); err != nil {
		t.Fatalf("reader cannot read: %v", err)
	}
	_, err = c.Exec(ctx, "INSERT INTO t VALUES (1, 'x')")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("insert without the privilege: got %v, want SQLSTATE 42501", err)
	}
	_, err = pgx.Connect(ctx, p.ConnString("reader", "wrong", "app"))
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
	}

	p.Exec(t, "app", "INSERT INTO t VALUES (1, 'kept')",
		"SELECT pg_create_logical_replication_slot('s1', 'pgoutput')")
	port := p.Port
	p.Restart(t)
	if p.Port != port {
		t.Fatalf("port changed across restart: %d → %d", port, p.Port)
	}
	rows := p.Query(t, "app", "SELECT v FROM t WHERE id = 1")
	if len(rows) != 1 || *rows[0][0] != "kept" {
		t.Fatalf("after restart: %v", rows)
	}
	if _, ok := p.ReplicationSlots(t)["s1"]; !ok {
		t.Fatalf("slot s1 lost across restart: %v", p.ReplicationSlots(t))
	}
}

// Kill leaves no process of the server behind, backends included: they
// are not in the postmaster's process group (PostgreSQL calls setsid),
// and one still attached to the shared memory made the next start fail
// with "pre-existing shared memory block is still in use" (seen in CI).
func TestPostgresKillLeavesNoBackend(t *testing.T) {
	p := StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 4 { // idle backends, each waiting for its client
		c, err := pgx.Connect(ctx, p.ConnString(PostgresSuperuser, PostgresPassword, "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
	}
	for round := 1; round <= 3; round++ {
		p.Kill(t)
		if left := inDir(p.DataDir); len(left) > 0 {
			t.Fatalf("round %d: processes %v still run in the data directory after Kill", round, left)
		}
		p.Start(t)
		for range 4 {
			c, err := pgx.Connect(ctx, p.ConnString(PostgresSuperuser, PostgresPassword, "postgres"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
		}
	}
}

// inDir lists the processes whose working directory is dir.
func inDir(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && cwd == dir {
			out = append(out, e.Name())
		}
	}
	return out
}

// fatalRecorder captures a Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestMissingServerNamesTheInstallCommand(t *testing.T) {
	r := &fatalRecorder{TB: t}
	missing(r, "MariaDB (/usr/sbin/mariadbd)", MariaDBPackage, os.ErrNotExist)
	if !strings.Contains(r.msg, "apt-get install -y mariadb-server") {
		t.Fatalf("message %q does not name the install command", r.msg)
	}
}

func TestFailedTestKeepsTheServerLog(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(KeepLogsEnv, dir)
	log := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(log, []byte("line one\nthe server said why\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &failedTB{TB: t}
	keepLogOnFailure(r, "mariadb", log)
	b, err := os.ReadFile(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"), "mariadb.log"))
	if err != nil || !strings.Contains(string(b), "the server said why") {
		t.Fatalf("log not kept: %v %q", err, b)
	}
	if !strings.Contains(r.logged, "the server said why") {
		t.Fatalf("tail not in the test output: %q", r.logged)
	}
}

type failedTB struct {
	testing.TB
	logged string
}

func (f *failedTB) Failed() bool { return true }
func (f *failedTB) Logf(format string, args ...any) {
	f.logged += fmt.Sprintf(format, args...) + "\n"
}
