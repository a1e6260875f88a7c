package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/internal/tty"
)

// lockedOutput collects what a program writes (to a terminal, a pipe)
// while the test reads it.
type lockedOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (p *lockedOutput) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.Write(b)
}

func (p *lockedOutput) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.String()
}

// demoSample matches one line of the live view: time, state, rows/s, rows
// written, two lags, and the checkpoint TSO.
var demoSample = regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC\s+\S+\s+\S+\s+\d+\s+\S+\s+\S+\s+(\d{15,20}) `)

func demoCheckpoints(out string) []uint64 {
	var cps []uint64
	for _, m := range demoSample.FindAllStringSubmatch(out, -1) {
		if v, err := strconv.ParseUint(m[1], 10, 64); err == nil {
			cps = append(cps, v)
		}
	}
	return cps
}

// TestDemoLiveViewSurvivesLeaderKill runs scripts/demo.sh in a
// pseudo-terminal, as a person would, kills the Raft leader with SIGKILL (the
// README says to try exactly that), and requires the live view to keep
// printing samples whose checkpoint moves past where it stood at the kill.
// Then it types Ctrl-C and requires a clean stop. Before ctl statistics
// retried transient failures, the view died with the leader.
func TestDemoLiveViewSurvivesLeaderKill(t *testing.T) {
	ports := FreePorts(t, 9)
	var ps []string
	for _, p := range ports {
		ps = append(ps, strconv.Itoa(p))
	}
	dir := filepath.Join(t.TempDir(), "demo")
	control, term, err := tty.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer control.Close()
	cmd := exec.Command("bash", filepath.Join(repoRoot(), "scripts", "demo.sh"), binPath)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "DEMO_DIR="+dir, "DEMO_PORTS="+strings.Join(ps, " "),
		// Samples faster than an election takes, so that some of them
		// certainly fall into the leaderless window.
		"DEMO_INTERVAL=250ms")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term, term, term
	// Its own session with the pty as controlling terminal, so that Ctrl-C
	// typed into it reaches the script the way it reaches a person's shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	out := &lockedOutput{}
	drained := make(chan struct{}) // closed when every writer of the terminal is gone
	go func() {
		defer close(drained)
		buf := make([]byte, 4096)
		for {
			n, err := control.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		// The script, its servers and its ctl share the session's process
		// group; none may outlive the test.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for i := 1; i <= 3; i++ {
			if pid := demoNodePid(dir, i); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("demo terminal output:\n%s", out.String())
			for i := 1; i <= 3; i++ {
				b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d.log", i)))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- tail of node%d.log:\n%s", i, b)
			}
		}
	})

	Eventually(t, 90*time.Second, "the live view showing the checkpoint moving", func() (bool, string) {
		cps := demoCheckpoints(out.String())
		return len(cps) >= 3 && cps[len(cps)-1] > cps[0], fmt.Sprintf("%d samples", len(cps))
	})

	// The leader, as the nodes see it, and its pid from its data dir's lock.
	leader := ""
	Eventually(t, 30*time.Second, "a leader named by a node", func() (bool, string) {
		hc := &http.Client{Timeout: 2 * time.Second}
		for i := 0; i < 3; i++ {
			resp, err := hc.Get("http://127.0.0.1:" + ps[3*i+2] + "/api/v1/status")
			if err != nil {
				continue
			}
			var s Status
			err = json.NewDecoder(resp.Body).Decode(&s)
			resp.Body.Close()
			if err == nil && s.LeaderID != "" {
				leader = s.LeaderID
				return true, ""
			}
		}
		return false, "no node names a leader"
	})
	n, _ := strconv.Atoi(strings.TrimPrefix(leader, "node"))
	pid := demoNodePid(dir, n)
	if pid <= 0 {
		t.Fatalf("no pid in %s's lock file", leader)
	}
	atKill := demoCheckpoints(out.String())
	lastAtKill := atKill[len(atKill)-1]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s (pid %d): %v", leader, pid, err)
	}
	t.Logf("killed the leader %s (pid %d) at checkpoint %d", leader, pid, lastAtKill)

	Eventually(t, 60*time.Second, "the live view showing the checkpoint moving past its value at the kill", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("the demo exited after the leader was killed")
		default:
		}
		if o := out.String(); strings.Contains(o, "Error:") {
			t.Fatalf("the live view failed after the leader was killed:\n%s", o[strings.LastIndex(o, "Error:"):])
		}
		cps := demoCheckpoints(out.String())
		return cps[len(cps)-1] > lastAtKill && len(cps) >= len(atKill)+2, fmt.Sprintf("%d samples, last checkpoint %d", len(cps), cps[len(cps)-1])
	})

	// Ctrl-C, typed into the terminal.
	if _, err := control.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(40 * time.Second):
		t.Fatal("the demo did not stop within 40s of Ctrl-C")
	}
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Error("something the demo started still holds its terminal 10s after it exited")
	}
	if !strings.Contains(out.String(), "stopped. Sink files:") {
		t.Errorf("the demo did not report a clean stop")
	}
	for i := 1; i <= 3; i++ {
		if p := demoNodePid(dir, i); p > 0 && p != pid && syscall.Kill(p, 0) == nil {
			t.Errorf("node%d (pid %d) still runs after the demo stopped", i, p)
		}
	}
}

// demoNodePid reads the pid a demo node wrote into its data dir's lock file.
func demoNodePid(dir string, i int) int {
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d", i), "LOCK"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
