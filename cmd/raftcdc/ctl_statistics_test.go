package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/testcluster"
)

// syncBuffer collects a command's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// backgroundCtl runs a ctl command until the returned stop is called; done
// is closed when the command returns, with its error in *errOut.
func backgroundCtl(t *testing.T, args ...string) (stdout, stderr *syncBuffer, done chan struct{}, errOut *error, stop func()) {
	t.Helper()
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(strings.NewReader(""))
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	var err error
	go func() { defer close(done); err = root.ExecuteContext(ctx) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("ctl did not stop within 10s of its interrupt")
		}
	}
	t.Cleanup(stop)
	return stdout, stderr, done, &err, stop
}

// jsonSamples decodes the JSON lines statistics printed so far.
func jsonSamples(t *testing.T, out string) []ctl.Sample {
	t.Helper()
	var out2 []ctl.Sample
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var s ctl.Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			continue // a line still being written
		}
		out2 = append(out2, s)
	}
	return out2
}

// TestCtlStatisticsSurvivesLeaderKill: statistics reads through the leader
// and one follower; the leader is killed. The follower answers "no leader"
// while the others elect a new one, and the leader's address refuses
// connections. Statistics must keep sampling through both and show the
// checkpoint moving again under the new leader — before the fix it exited
// with the follower's "no leader" error.
func TestCtlStatisticsSurvivesLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	leader := c.WaitForLeader(15 * time.Second)
	follower := (leader + 1) % 3
	ctlRun(t, c.APIAddr(follower), nil, "changefeed", "create", "-c", "live", "--source-uri", "datagen://?tables=3&rate=50",
		"--sink-uri", "blackhole://", "--no-confirm").mustOK(t)

	stdout, stderr, done, errp, stop := backgroundCtl(t, "ctl", "--server", c.APIAddr(leader)+","+c.APIAddr(follower), "--timeout", "2s",
		"-o", "json", "changefeed", "statistics", "-c", "live", "--interval", "200ms")
	// Wait until the checkpoint moves, so "moves again" below means something.
	testcluster.WaitFor(t, 30*time.Second, "statistics showing the checkpoint moving", func() bool {
		s := jsonSamples(t, stdout.String())
		return len(s) >= 2 && s[len(s)-1].Checkpoint != nil && s[0].Checkpoint != nil && s[len(s)-1].Checkpoint.TSO > s[0].Checkpoint.TSO
	})
	before := jsonSamples(t, stdout.String())
	lastBefore := before[len(before)-1].Checkpoint.TSO

	c.KillNode(leader)
	newLeader := c.WaitForLeader(20*time.Second, follower, 3-leader-follower)
	t.Logf("killed node%d; node%d leads now", leader+1, newLeader+1)

	testcluster.WaitFor(t, 45*time.Second, "statistics showing the checkpoint moving past its value at the kill", func() bool {
		select {
		case <-done:
			t.Fatalf("statistics exited after the leader was killed: %v\nstderr:\n%s", *errp, stderr.String())
		default:
		}
		s := jsonSamples(t, stdout.String())
		last := s[len(s)-1]
		return last.Checkpoint != nil && last.Checkpoint.TSO > lastBefore
	})
	stop()
	if *errp != nil {
		t.Errorf("interrupted statistics returned %v", *errp)
	}
	t.Logf("stderr of statistics:\n%s", stderr.String())
}

// TestCtlStatisticsRetriesUnavailable: a node that answers 503 (no leader)
// for a while is waited out with one notice, not a fatal error; an unknown
// changefeed still ends statistics at once.
func TestCtlStatisticsRetriesUnavailable(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	target, _ := url.Parse("http://" + s.Addr())
	var unavailable atomic.Bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unavailable.Load() {
			api.WriteError(w, api.NoLeader())
			return
		}
		r.URL.Scheme, r.URL.Host = target.Scheme, target.Host
		r.RequestURI = ""
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		w.Write(b.Bytes())
	}))
	defer front.Close()
	addr := strings.TrimPrefix(front.URL, "http://")

	stdout, stderr, done, errp, stop := backgroundCtl(t, "ctl", "--server", addr, "-o", "json", "changefeed", "statistics", "-c", "orders", "--interval", "20ms")
	count := func() int { return len(jsonSamples(t, stdout.String())) }
	testcluster.WaitFor(t, 10*time.Second, "a first sample", func() bool { return count() >= 1 })
	unavailable.Store(true)
	testcluster.WaitFor(t, 10*time.Second, "the outage notice", func() bool { return strings.Contains(stderr.String(), "no answer") })
	time.Sleep(200 * time.Millisecond) // ten failed reads
	n := count()
	unavailable.Store(false)
	testcluster.WaitFor(t, 10*time.Second, "samples after the outage", func() bool { return count() >= n+2 })
	select {
	case <-done:
		t.Fatalf("statistics ended: %v", *errp)
	default:
	}
	if got := strings.Count(stderr.String(), "no answer"); got != 1 {
		t.Errorf("the outage was reported %d times, want once:\n%s", got, stderr.String())
	}
	if !strings.Contains(stderr.String(), "answering again after") {
		t.Errorf("the end of the outage was not reported:\n%s", stderr.String())
	}
	stop()

	r := ctlRun(t, addr, nil, "changefeed", "statistics", "-c", "nosuch", "--interval", "20ms")
	if r.code != 1 || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("an unknown changefeed: exit %d, stderr %q", r.code, r.stderr)
	}
}
