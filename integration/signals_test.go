package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMEndsAToolLikeCtrlC: a long-running command stopped by SIGTERM
// (kill, systemd) exits 0 with its summary, as Ctrl-C ends it, instead of
// dying by the signal with nothing said.
func TestSIGTERMEndsAToolLikeCtrlC(t *testing.T) {
	port := FreePorts(t, 1)[0]
	var out, errOut lockedOutput
	cmd := exec.Command(binPath, "tools", "tidbfake", "--pd-addr", fmt.Sprintf("127.0.0.1:%d", port), "--tables", "1", "--rate", "50")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	WaitFor(t, 60*time.Second, "the fake to say it serves", func() bool { return strings.Contains(out.String(), "Source URI") })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM\nstdout:\n%s", out.String())
	}
	if waitErr != nil {
		t.Fatalf("after SIGTERM: %v\nstdout:\n%s\nstderr:\n%s", waitErr, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "Stopped after") {
		t.Fatalf("no summary after SIGTERM:\n%s", out.String())
	}
}
