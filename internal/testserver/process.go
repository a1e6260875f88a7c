// Package testserver starts real database servers from Debian's packages
// for tests: MariaDB 10.11 (package mariadb-server) and PostgreSQL 15
// (package postgresql). Each server listens on 127.0.0.1 at a free port,
// keeps its data in a private directory under t.TempDir, and is SIGKILLed in
// t.Cleanup whether the test passed or not; a failed test gets the tail of
// the server's log in its output and the whole log kept on disk.
//
// A missing server binary fails the test with the apt-get command that
// installs it: a real-server test never skips silently.
//
// See DESIGN.md for why servers are per caller rather than per package.
package testserver

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/internal/freeport"
)

// StartTimeout bounds how long a server may take to accept connections. The
// test machines are shared and slow: it is generous on purpose.
const StartTimeout = 90 * time.Second

// KeepLogsEnv names a directory where the whole server logs of a failed test
// are copied (the integration package uses the same variable for its node
// logs). Without it they go to $TMPDIR/raftcdc-testserver-logs.
const KeepLogsEnv = "RAFTCDC_IT_KEEP_LOGS"

// process is one running server process and its log.
type process struct {
	name    string // "mariadb", "postgres": for messages and log names
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	// dir, when set, is the server's working directory: every process
	// there belongs to the server. PostgreSQL's backends call setsid and
	// so leave the postmaster's process group, but all of them chdir to
	// the data directory.
	dir string
}

// spawn starts argv with stdout and stderr appended to logPath, in its own
// process group (so Kill reaches every process the server forked) and with
// SIGKILL from the kernel should the test binary die first, so that an
// interrupted run leaves no server behind.
func spawn(name, logPath string, cred *syscall.Credential, env []string, argv ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	fmt.Fprintf(logf, "\n=== testserver: starting %s at %s\n", strings.Join(argv, " "), time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// kill SIGKILLs the server's whole process group and waits for the leader
// to be reaped.
func (p *process) kill() error {
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL for 30 s", p.name, p.cmd.Process.Pid)
	}
}

// waitGroupGone waits until no process of the server is left — none in
// its process group and none in its working directory — SIGKILLing what
// remains: PostgreSQL's backends outlive a SIGKILLed postmaster for a
// moment (they are not in its process group) and keep its shared memory
// attached, which a new postmaster refuses ("pre-existing shared memory
// block is still in use").
func (p *process) waitGroupGone(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := p.members()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s processes %v still alive %v after SIGKILL", p.name, left, timeout)
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// members lists the server's live processes: those in its process group
// and, with dir set, those whose working directory is dir. Zombies count
// until they are reaped (their memory is gone, but they are still there).
func (p *process) members() []int {
	var out []int
	for _, st := range p.scan() {
		out = append(out, st.pid)
	}
	return out
}

type procStat struct {
	pid   int
	ticks int64 // user+system, in USER_HZ
}

// scan reads /proc for the server's processes.
func (p *process) scan() []procStat {
	if p == nil || p.cmd.Process == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name in parentheses may hold spaces: fields count
		// from the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		// f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
		if len(f) < 13 {
			continue
		}
		mine := false
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			mine = true
		} else if p.dir != "" {
			if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && cwd == p.dir {
				mine = true
			}
		}
		if !mine {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		if pid == pgid && len(f) >= 15 {
			// The leader's reaped children (PostgreSQL's backends that
			// have exited) count too: cutime and cstime, fields 16, 17.
			cu, _ := strconv.ParseInt(f[13], 10, 64)
			cs, _ := strconv.ParseInt(f[14], 10, 64)
			u += cu + cs
		}
		out = append(out, procStat{pid: pid, ticks: u + st})
	}
	return out
}

// waitReady polls ready until it succeeds, the process exits or the start
// timeout passes.
func (p *process) waitReady(ready func() error) error {
	deadline := time.Now().Add(StartTimeout)
	var last error
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before accepting connections (%v)", p.name, p.waitErr)
		default:
		}
		if last = ready(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections within %v: %w", p.name, StartTimeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail is the last n bytes of a log, for a failed test's output.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// keepLogOnFailure is registered as a cleanup: a failed test gets the log's
// tail in its output and the whole log copied out of t.TempDir, which the
// testing package removes.
func keepLogOnFailure(t testing.TB, name, path string) {
	if !t.Failed() {
		return
	}
	t.Logf("--- tail of the %s log (%s):\n%s", name, path, logTail(path, 6000))
	dir := os.Getenv(KeepLogsEnv)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "raftcdc-testserver-logs")
	}
	dst := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	b, err := os.ReadFile(path)
	if err == nil {
		err = os.MkdirAll(dst, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dst, name+".log"), b, 0o644)
	}
	if err != nil {
		t.Logf("could not keep the %s log: %v", name, err)
		return
	}
	t.Logf("whole %s log kept in %s", name, filepath.Join(dst, name+".log"))
}

// pickPort is one free loopback port.
func pickPort() (int, error) {
	ports, err := freeport.Pick(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// run runs a setup command (mariadb-install-db, initdb) to completion with
// its output in the log.
func run(logPath string, cred *syscall.Credential, env []string, argv ...string) error {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== testserver: running %s\n", strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", filepath.Base(argv[0]), err, logTail(logPath, 3000))
	}
	return nil
}

// missing is the failure for a server binary that is not installed: it
// names the exact command that installs it.
func missing(t testing.TB, what, pkg string, err error) {
	t.Helper()
	t.Fatalf("%s is not installed (%v); install it with:\n\tapt-get install -y %s\n(make test does this when run as root)", what, err, pkg)
}

// cpu is the user+system CPU time the server has used so far: its live
// processes, and the backends its postmaster has reaped; read from /proc,
// 0 when it cannot be read.
func (p *process) cpu() time.Duration {
	var ticks int64
	for _, st := range p.scan() {
		ticks += st.ticks
	}
	// Linux reports in USER_HZ, 100 on every platform Go runs on here.
	return time.Duration(ticks) * 10 * time.Millisecond
}
