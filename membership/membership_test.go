package membership

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/raftcdc/raftcdc/internal/freeport"
	"github.com/raftcdc/raftcdc/logging"
	"github.com/rs/zerolog"
)

// detectDeadline bounds how long failure detection may take in the tests.
// With the default timings detection takes about 1.5-3s; the slack covers
// -race and a loaded 2-core machine.
const detectDeadline = 15 * time.Second

// logSink collects a test's logs and prints them only if the test fails, so
// passing runs stay quiet and late log lines from memberlist goroutines
// never hit a finished testing.T.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func testLogger(t *testing.T) zerolog.Logger {
	t.Helper()
	sink := &logSink{}
	t.Cleanup(func() {
		if t.Failed() {
			sink.mu.Lock()
			out := sink.buf.String()
			sink.mu.Unlock()
			if len(out) > 64<<10 {
				out = out[len(out)-64<<10:]
			}
			t.Logf("logs:\n%s", out)
		}
	})
	zl, err := logging.New("debug", "json", sink)
	if err != nil {
		t.Fatal(err)
	}
	return zl
}

type nodeOpt func(*Config)

func withKey(k []byte) nodeOpt              { return func(c *Config) { c.SecretKey = k } }
func withPort(p int) nodeOpt                { return func(c *Config) { c.BindPort = p } }
func withVersion(v string) nodeOpt          { return func(c *Config) { c.Meta.Version = v } }
func withReconnect(d time.Duration) nodeOpt { return func(c *Config) { c.ReconnectInterval = d } }

func testMeta(name string) Meta {
	return Meta{
		ID:              name,
		RaftAddr:        "127.0.0.1:1" + name[len(name)-1:] + "00",
		APIAddr:         "127.0.0.1:2" + name[len(name)-1:] + "00",
		BootstrapExpect: 3,
		Version:         "v1",
		Liveness:        LivenessAlive,
	}
}

func startNode(t *testing.T, logger zerolog.Logger, name string, opts ...nodeOpt) *Membership {
	t.Helper()
	cfg := Config{
		NodeName: name,
		BindAddr: "127.0.0.1",
		Meta:     testMeta(name),
		Logger:   logger,
	}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// waitFor polls cond until it reports true or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func find(ms []Member, id string) (Member, bool) {
	for _, m := range ms {
		if m.Meta.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

func describe(ms []Member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s=%s(%s)", m.Meta.ID, m.Status, m.Meta.Liveness))
	}
	return strings.Join(parts, " ")
}

// statusIs waits until observer sees member id with the given status.
func statusIs(observer *Membership, id string, want Status) func() (bool, string) {
	return func() (bool, string) {
		ms := observer.Members()
		m, ok := find(ms, id)
		return ok && m.Status == want, describe(ms)
	}
}

func allAlive(n int, nodes ...*Membership) func() (bool, string) {
	return func() (bool, string) {
		for _, node := range nodes {
			if node.NumAlive() != n {
				return false, node.cfg.NodeName + " sees " + describe(node.Members())
			}
		}
		return true, ""
	}
}

// startCluster starts n nodes and joins all of them through the first one.
func startCluster(t *testing.T, n int, opts ...nodeOpt) []*Membership {
	t.Helper()
	logger := testLogger(t)
	var nodes []*Membership
	for i := 1; i <= n; i++ {
		nodes = append(nodes, startNode(t, logger, "node-"+strconv.Itoa(i), opts...))
	}
	seed := nodes[0].Local().GossipAddr
	for _, node := range nodes[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := node.Join(ctx, []string{seed}, 10*time.Second)
		cancel()
		if err != nil {
			t.Fatalf("%s join %s: %v", node.cfg.NodeName, seed, err)
		}
	}
	waitFor(t, detectDeadline, fmt.Sprintf("all %d nodes alive everywhere", n), allAlive(n, nodes...))
	return nodes
}

// nextEvent waits for an event matching pred, skipping others.
func nextEvent(t *testing.T, ch <-chan Event, timeout time.Duration, pred func(Event) bool) Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed; saw %v", seen)
			}
			if pred(e) {
				return e
			}
			seen = append(seen, e.Type.String()+":"+e.Member.Meta.ID)
		case <-timer.C:
			t.Fatalf("no matching event within %s; saw %v", timeout, seen)
		}
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ports, err := freeport.Pick(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

func TestThreeNodesJoinAndSeeMeta(t *testing.T) {
	nodes := startCluster(t, 3)
	for _, observer := range nodes {
		ms := observer.Members()
		if len(ms) != 3 {
			t.Fatalf("%s sees %d members: %s", observer.cfg.NodeName, len(ms), describe(ms))
		}
		for i, m := range ms {
			want := nodes[i]
			if m.Meta != testMeta(want.cfg.NodeName) {
				t.Errorf("%s sees meta %+v for %s, want %+v", observer.cfg.NodeName, m.Meta, want.cfg.NodeName, testMeta(want.cfg.NodeName))
			}
			if m.GossipAddr != want.Local().GossipAddr || m.Status != StatusAlive {
				t.Errorf("%s sees %s at %s/%s, want %s/alive", observer.cfg.NodeName, m.Meta.ID, m.GossipAddr, m.Status, want.Local().GossipAddr)
			}
		}
	}
	if l := nodes[1].Local(); l.Meta.ID != "node-2" || l.Status != StatusAlive || !strings.HasPrefix(l.GossipAddr, "127.0.0.1:") {
		t.Errorf("Local() = %+v", l)
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	nodes := startCluster(t, 3)
	events, cancel := nodes[1].Subscribe()
	defer cancel()

	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	err := nodes[0].UpdateMeta(ctx, func(m *Meta) {
		m.Liveness = LivenessDraining
		m.HasRaftState = true
	})
	if err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	if l := nodes[0].Local(); l.Meta.Liveness != LivenessDraining || !l.Meta.HasRaftState {
		t.Errorf("local meta not updated: %+v", l.Meta)
	}
	for _, observer := range nodes[1:] {
		waitFor(t, detectDeadline, observer.cfg.NodeName+" to see node-1 draining", func() (bool, string) {
			m, ok := find(observer.Members(), "node-1")
			return ok && m.Meta.Liveness == LivenessDraining && m.Meta.HasRaftState, fmt.Sprintf("%+v", m.Meta)
		})
	}
	e := nextEvent(t, events, detectDeadline, func(e Event) bool {
		return e.Type == EventUpdate && e.Member.Meta.ID == "node-1"
	})
	if e.Member.Meta.Liveness != LivenessDraining || e.Resync {
		t.Errorf("update event = %+v", e)
	}
}

// Concurrent updates (the node's has-state mark, the cluster record and a
// drain arrive on their own goroutines) must not race inside memberlist,
// whose UpdateNode is not safe for concurrent use, and the last one must
// still reach the peers.
func TestConcurrentUpdateMetaReachPeers(t *testing.T) {
	nodes := startCluster(t, 2)
	ctx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- nodes[0].UpdateMeta(ctx, func(m *Meta) {
				m.Version = fmt.Sprintf("v%d", i)
				m.HasRaftState = i%2 == 0
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("UpdateMeta: %v", err)
		}
	}
	want := nodes[0].Local().Meta
	waitFor(t, detectDeadline, "node-2 to see node-1's last meta", func() (bool, string) {
		m, ok := find(nodes[1].Members(), "node-1")
		return ok && m.Meta.Version == want.Version && m.Meta.HasRaftState == want.HasRaftState,
			fmt.Sprintf("peer sees %s/%v, local is %s/%v", m.Meta.Version, m.Meta.HasRaftState, want.Version, want.HasRaftState)
	})
}

func TestUpdateMetaRejectsBadChanges(t *testing.T) {
	n := startNode(t, testLogger(t), "node-1")
	ctx := context.Background()
	if err := n.UpdateMeta(ctx, func(m *Meta) { m.ID = "other" }); err == nil {
		t.Error("changing the ID was accepted")
	}
	if err := n.UpdateMeta(ctx, func(m *Meta) { m.Liveness = "sleepy" }); err == nil {
		t.Error("unknown liveness was accepted")
	}
	err := n.UpdateMeta(ctx, func(m *Meta) { m.Version = strings.Repeat("v", 600) })
	if err == nil || !strings.Contains(err.Error(), "512") {
		t.Errorf("oversized meta: err = %v, want one naming the 512-byte limit", err)
	}
	if got := n.Local().Meta; got != testMeta("node-1") {
		t.Errorf("rejected updates changed the meta: %+v", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := n.UpdateMeta(cctx, func(m *Meta) { m.Version = "v9" }); err == nil {
		t.Error("UpdateMeta with a cancelled context succeeded")
	}
}

func TestShutdownDetectedAsDead(t *testing.T) {
	nodes := startCluster(t, 3)
	events, cancel := nodes[0].Subscribe()
	defer cancel()

	start := time.Now()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, observer := range nodes[:2] {
		waitFor(t, detectDeadline, observer.cfg.NodeName+" to see node-3 dead", statusIs(observer, "node-3", StatusDead))
	}
	t.Logf("failure detected by both survivors in %s", time.Since(start).Round(10*time.Millisecond))
	e := nextEvent(t, events, time.Second, func(e Event) bool { return e.Member.Meta.ID == "node-3" })
	if e.Type != EventFail || e.Member.Status != StatusDead {
		t.Errorf("event = %v %s, want fail/dead", e.Type, e.Member.Status)
	}
	if m, _ := find(nodes[0].Members(), "node-3"); m.Meta != testMeta("node-3") {
		t.Errorf("dead member lost its meta: %+v", m.Meta)
	}
	if got := nodes[0].NumAlive(); got != 2 {
		t.Errorf("NumAlive = %d, want 2", got)
	}
}

func TestLeaveReportedAsLeft(t *testing.T) {
	nodes := startCluster(t, 3)
	events, cancel := nodes[0].Subscribe()
	defer cancel()

	if err := nodes[2].Leave(5 * time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if l := nodes[2].Local(); l.Status != StatusLeft {
		t.Errorf("leaving node sees itself as %s", l.Status)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, observer := range nodes[:2] {
		waitFor(t, detectDeadline, observer.cfg.NodeName+" to see node-3 left", statusIs(observer, "node-3", StatusLeft))
	}
	// The intent goes by TCP and memberlist's leave by UDP gossip, each
	// handled on its own goroutine: on a loaded machine the leave can be
	// handled first, reported as a failure, and corrected to a leave when
	// the intent arrives (TestLeaveIntentClassification). Either way a
	// leave event must come; a fail event may only precede it.
	var seen []EventType
	nextEvent(t, events, detectDeadline, func(e Event) bool {
		if e.Member.Meta.ID != "node-3" {
			return false
		}
		seen = append(seen, e.Type)
		return e.Type == EventLeave
	})
	for _, typ := range seen[:len(seen)-1] {
		if typ != EventFail {
			t.Errorf("node-3 events %v: want leave, or fail then leave", seen)
		}
	}
	if err := nodes[2].Leave(time.Second); err == nil {
		t.Error("Leave after Shutdown succeeded")
	}
}

func TestRestartSameNameAliveAgain(t *testing.T) {
	nodes := startCluster(t, 3)
	events, cancel := nodes[0].Subscribe()
	defer cancel()

	addr := nodes[2].Local().GossipAddr
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	// Both survivors, not only node-1: node-2 hears of the death a gossip
	// round or more later, and one that still holds the old instance as
	// alive counts three alive at once, before the restarted instance's
	// meta has reached it.
	for _, observer := range nodes[:2] {
		waitFor(t, detectDeadline, observer.cfg.NodeName+" to see node-3 dead", statusIs(observer, "node-3", StatusDead))
	}

	restarted := startNode(t, testLogger(t), "node-3", withPort(port), withVersion("v2"))
	if err := restarted.Join(context.Background(), []string{nodes[0].Local().GossipAddr}, 10*time.Second); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	survivors := []*Membership{nodes[0], nodes[1], restarted}
	waitFor(t, detectDeadline, "restarted node-3 alive everywhere", allAlive(3, survivors...))
	for _, observer := range survivors {
		m, _ := find(observer.Members(), "node-3")
		if m.Meta.Version != "v2" || m.GossipAddr != addr {
			t.Errorf("%s sees node-3 as %+v at %s, want the restarted instance (v2) at %s", observer.cfg.NodeName, m.Meta, m.GossipAddr, addr)
		}
	}
	nextEvent(t, events, time.Second, func(e Event) bool {
		return e.Type == EventJoin && e.Member.Meta.ID == "node-3" && e.Member.Status == StatusAlive
	})
}

func TestReconnectToRestartedNodeWithoutJoin(t *testing.T) {
	// The restarted node does not call Join (say its --join list only
	// names itself): the survivors' reconnect loop must find it.
	nodes := startCluster(t, 3, withReconnect(200*time.Millisecond))
	_, portStr, _ := net.SplitHostPort(nodes[2].Local().GossipAddr)
	port, _ := strconv.Atoi(portStr)
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	// Both survivors (see TestRestartSameNameAliveAgain).
	for _, observer := range nodes[:2] {
		waitFor(t, detectDeadline, observer.cfg.NodeName+" to see node-3 dead", statusIs(observer, "node-3", StatusDead))
	}

	restarted := startNode(t, testLogger(t), "node-3", withPort(port), withVersion("v2"))
	waitFor(t, detectDeadline, "restarted node-3 merged back without a join",
		allAlive(3, nodes[0], nodes[1], restarted))
	m, _ := find(nodes[1].Members(), "node-3")
	if m.Meta.Version != "v2" {
		t.Errorf("node-2 sees stale meta for node-3: %+v", m.Meta)
	}
}

func TestEncryptedCluster(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	nodes := startCluster(t, 2, withKey(key))

	logger := testLogger(t)
	seed := nodes[0].Local().GossipAddr
	for _, c := range []struct {
		name    string
		key     []byte
		wantErr string
	}{
		{"node-3", bytes.Repeat([]byte{9}, 32), "decrypt"},
		{"node-4", nil, "encryption is not configured"},
	} {
		intruder := startNode(t, logger, c.name, withKey(c.key))
		start := time.Now()
		err := intruder.Join(context.Background(), []string{seed}, 1500*time.Millisecond)
		if err == nil {
			t.Fatalf("%s joined an encrypted cluster with the wrong key", c.name)
		}
		if !strings.Contains(err.Error(), seed) || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s join error does not name %s and %q: %v", c.name, seed, c.wantErr, err)
		}
		if time.Since(start) < 1500*time.Millisecond {
			t.Errorf("%s join gave up after %s, before its timeout", c.name, time.Since(start))
		}
		t.Logf("%s: %v", c.name, err)
		if intruder.NumAlive() != 1 {
			t.Errorf("%s sees %s", c.name, describe(intruder.Members()))
		}
	}
	for _, n := range nodes {
		if ms := n.Members(); len(ms) != 2 {
			t.Errorf("%s sees intruders: %s", n.cfg.NodeName, describe(ms))
		}
	}
}

func TestJoinUnreachable(t *testing.T) {
	n := startNode(t, testLogger(t), "node-1")
	addrs := []string{
		"127.0.0.1:" + strconv.Itoa(freePort(t)),
		"127.0.0.1:" + strconv.Itoa(freePort(t)),
	}
	start := time.Now()
	err := n.Join(context.Background(), addrs, time.Second)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("join to unreachable addresses succeeded")
	}
	for _, a := range addrs {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("error does not name %s: %v", a, err)
		}
	}
	if !strings.Contains(err.Error(), "attempts") || elapsed < time.Second {
		t.Errorf("join did not retry until its timeout (%s): %v", elapsed, err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("join overran its 1s timeout by far: %s", elapsed)
	}

	// A cancelled context stops the retries too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Join(ctx, addrs, 0); err == nil {
		t.Error("join with a cancelled context succeeded")
	}
	if err := n.Join(context.Background(), nil, time.Second); err == nil {
		t.Error("join with no addresses succeeded")
	}
}

func TestJoinSucceedsOnceOneAddressAnswers(t *testing.T) {
	nodes := startCluster(t, 1)
	joiner := startNode(t, testLogger(t), "node-2")
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t))
	if err := joiner.Join(context.Background(), []string{dead, nodes[0].Local().GossipAddr}, 5*time.Second); err != nil {
		t.Fatalf("join with one live address: %v", err)
	}
	waitFor(t, detectDeadline, "two alive", allAlive(2, nodes[0], joiner))
}

// garbageDelegate is a memberlist delegate that advertises undecodable meta,
// like a buggy or foreign node on the gossip port would.
type garbageDelegate struct{ meta []byte }

func (g garbageDelegate) NodeMeta(int) []byte           { return g.meta }
func (garbageDelegate) NotifyMsg([]byte)                {}
func (garbageDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (garbageDelegate) LocalState(bool) []byte          { return nil }
func (garbageDelegate) MergeRemoteState([]byte, bool)   {}

func TestGarbageMetaFromPeer(t *testing.T) {
	logger := testLogger(t)
	n := startNode(t, logger, "node-1")

	mc := memberlist.DefaultLANConfig()
	mc.Name = "weird-1"
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.Delegate = garbageDelegate{meta: []byte("{not json\x00\xff")}
	mc.Logger = logging.StdLogger(logger, "weird")
	raw, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Shutdown() })
	if _, err := raw.Join([]string{n.Local().GossipAddr}); err != nil {
		t.Fatalf("raw join: %v", err)
	}
	waitFor(t, detectDeadline, "weird-1 listed", statusIs(n, "weird-1", StatusAlive))
	m, _ := find(n.Members(), "weird-1")
	if m.Meta.ID != "weird-1" || m.Meta.RaftAddr != "" || m.GossipAddr != raw.LocalNode().Address() {
		t.Errorf("garbage member = %+v", m)
	}
}

func TestObserveKeepsLastGoodMeta(t *testing.T) {
	n := startNode(t, testLogger(t), "node-1")
	d := &delegate{m: n}
	good, _ := EncodeMeta(testMeta("node-2"))
	node := &memberlist.Node{Name: "node-2", Addr: net.ParseIP("127.0.0.1"), Port: 7946, Meta: good}
	d.NotifyJoin(node)
	node.Meta = []byte("garbage")
	d.NotifyUpdate(node)
	m, ok := find(n.Members(), "node-2")
	if !ok || m.Meta != testMeta("node-2") || m.GossipAddr != "127.0.0.1:7946" {
		t.Errorf("member after garbage update = %+v", m)
	}
	// A meta claiming another ID is pinned to the gossip name.
	spoof, _ := EncodeMeta(testMeta("node-9"))
	d.NotifyJoin(&memberlist.Node{Name: "node-3", Addr: net.ParseIP("127.0.0.1"), Port: 7947, Meta: spoof})
	if m, ok := find(n.Members(), "node-3"); !ok || m.Meta.RaftAddr != testMeta("node-9").RaftAddr {
		t.Errorf("spoofed member = %+v", m)
	}
	if _, ok := find(n.Members(), "node-9"); ok {
		t.Error("member listed under the ID from its meta instead of its gossip name")
	}
}

func TestSubscribeResyncAfterOverflow(t *testing.T) {
	n := startNode(t, testLogger(t), "node-1")
	d := &delegate{m: n}
	ch, cancel := n.Subscribe()
	fast, cancelFast := n.Subscribe()
	defer cancelFast()

	meta, _ := EncodeMeta(testMeta("node-2"))
	node := &memberlist.Node{Name: "node-2", Addr: net.ParseIP("127.0.0.1"), Port: 1, Meta: meta}
	const extra = 5
	// Notifications must not block even though nobody reads ch.
	for i := 0; i < subscriberBuffer+extra; i++ {
		d.NotifyUpdate(node)
		// fast keeps up, so it never loses events.
		if e := <-fast; e.Resync {
			t.Fatal("a subscriber that keeps up got Resync")
		}
	}
	for i := 0; i < subscriberBuffer; i++ {
		if e := <-ch; e.Resync {
			t.Fatalf("event %d flagged Resync before anything was lost", i)
		}
	}
	select {
	case e := <-ch:
		t.Fatalf("dropped event delivered: %+v", e)
	default:
	}
	d.NotifyUpdate(node)
	if e := <-ch; !e.Resync {
		t.Error("first event after an overflow is not flagged Resync")
	}
	d.NotifyUpdate(node)
	if e := <-ch; e.Resync {
		t.Error("Resync flag stuck after the subscriber caught up")
	}
	d.NotifyUpdate(node)
	if e := <-fast; e.Resync {
		t.Error("a subscriber that kept up got Resync")
	}

	cancel()
	assertClosed(t, "after cancel", ch)
	cancel() // idempotent

	late, _ := n.Subscribe()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, "after Shutdown", late)
	assertClosed(t, "after Shutdown", fast)
	closed, _ := n.Subscribe()
	assertClosed(t, "subscribed after Shutdown", closed)
	if err := n.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// assertClosed drains what is buffered in ch and checks that it is closed.
func assertClosed(t *testing.T, when string, ch <-chan Event) {
	t.Helper()
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	for i := 0; i <= subscriberBuffer; i++ {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("channel still open %s", when)
		}
	}
	t.Fatalf("channel still delivering events %s", when)
}

func TestNewValidation(t *testing.T) {
	logger := testLogger(t)
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{BindAddr: "127.0.0.1"}, "empty node name"},
		{"id mismatch", Config{NodeName: "a", BindAddr: "127.0.0.1", Meta: Meta{ID: "b"}}, "differs"},
		{"meta too big", Config{NodeName: "a", BindAddr: "127.0.0.1", Meta: Meta{APIAddr: strings.Repeat("x", 600)}}, "512"},
		{"bad key", Config{NodeName: "a", BindAddr: "127.0.0.1", SecretKey: []byte("short")}, "secret key"},
		{"bad liveness", Config{NodeName: "a", BindAddr: "127.0.0.1", Meta: Meta{Liveness: "zombie"}}, "liveness"},
	}
	for _, c := range cases {
		c.cfg.Logger = logger
		m, err := New(c.cfg)
		if err == nil {
			_ = m.Shutdown()
			t.Errorf("%s: New succeeded", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q lacks %q", c.name, err, c.want)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	in := testMeta("node-1")
	b, err := EncodeMeta(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"raft_addr":"`)) {
		t.Errorf("encoding is not the documented JSON: %s", b)
	}
	out, err := DecodeMeta(b)
	if err != nil || out != in {
		t.Fatalf("round trip = %+v, %v", out, err)
	}
	// Fields from a newer version are ignored, not fatal.
	out, err = DecodeMeta([]byte(`{"id":"n","raft_addr":"x:1","future":true}`))
	if err != nil || out.ID != "n" || out.RaftAddr != "x:1" {
		t.Fatalf("forward-compatible decode = %+v, %v", out, err)
	}
	for _, bad := range [][]byte{nil, []byte("{"), []byte(`{"bootstrap_expect":"three"}`)} {
		if _, err := DecodeMeta(bad); err == nil {
			t.Errorf("DecodeMeta(%q) succeeded", bad)
		}
	}
}

func TestLeaveIntentClassification(t *testing.T) {
	n := startNode(t, testLogger(t), "node-1")
	d := &delegate{m: n}
	events, cancel := n.Subscribe()
	defer cancel()
	meta, _ := EncodeMeta(testMeta("node-2"))
	node := &memberlist.Node{Name: "node-2", Addr: net.ParseIP("127.0.0.1"), Port: 1, Meta: meta}
	intent := func(at int64) []byte {
		b, err := encodeIntent(leaveIntent{Node: "node-2", At: at})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	expect := func(typ EventType, status Status) {
		t.Helper()
		e := nextEvent(t, events, time.Second, func(Event) bool { return true })
		if e.Type != typ || e.Member.Status != status {
			t.Fatalf("event %s/%s, want %s/%s", e.Type, e.Member.Status, typ, status)
		}
		if m, _ := find(n.Members(), "node-2"); m.Status != status {
			t.Fatalf("member status %s, want %s", m.Status, status)
		}
	}

	d.NotifyJoin(node)
	expect(EventJoin, StatusAlive)
	// Without an intent a departure is a failure.
	d.NotifyLeave(node)
	expect(EventFail, StatusDead)
	// The intent arriving late corrects dead to left.
	d.NotifyMsg(intent(1))
	expect(EventLeave, StatusLeft)
	// Back again: the old intent (even a late duplicate of it) must not
	// turn the next crash into a leave.
	d.NotifyJoin(node)
	expect(EventJoin, StatusAlive)
	d.NotifyMsg(intent(1))
	d.NotifyLeave(node)
	expect(EventFail, StatusDead)
	// A fresh intent before the departure makes it a leave directly.
	d.NotifyJoin(node)
	expect(EventJoin, StatusAlive)
	d.NotifyMsg(intent(2))
	d.NotifyLeave(node)
	expect(EventLeave, StatusLeft)
	// Garbage user messages are ignored.
	d.NotifyMsg([]byte("Lnot json"))
	d.NotifyMsg(nil)
}
