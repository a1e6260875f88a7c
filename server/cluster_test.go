package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/testcluster"
	"github.com/rs/zerolog"
)

func put(t *testing.T, c *testcluster.Cluster, i int, key string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	res := applyRetrying(t, c, i, fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.PrefixUser + key, Value: b}}})
	if res.Err != nil {
		t.Fatalf("put %s refused: %v", key, res.Err)
	}
}

// applyRetrying applies cmd through node i, trying again while Apply fails
// (not while the state machine refuses): on a saturated machine a leader
// can lose its lease while committing, and the entry's fate is then
// unknown. Every command the tests send this way is safe to apply twice.
func applyRetrying(t *testing.T, c *testcluster.Cluster, i int, cmd fsm.Command) *fsm.Result {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := c.Node(i).Apply(ctx, cmd)
		cancel()
		if err == nil {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply via node %d: %v", i+1, err)
		}
		t.Logf("apply via node %d failed, retrying: %v", i+1, err)
		time.Sleep(100 * time.Millisecond)
	}
}

func get(c *testcluster.Cluster, i int, key string) (string, bool) {
	kv, ok, err := c.Node(i).FSM().Get(meta.PrefixUser + key)
	if err != nil || !ok {
		return "", false
	}
	return string(kv.Value), true
}

// electionBound is how long a wait that needs an election or gossip's
// failure detection may take. Idle, either is done in a second or two; CI
// runs these tests under -race on two cores shared with other packages,
// where 5 or 10 s leaves little room. Waits return as soon as the
// condition holds, so the bound costs nothing when all is well.
const electionBound = 30 * time.Second

func TestThreeNodesFormOneClusterOfVoters(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	leader := c.WaitForLeader(10 * time.Second)
	ms, err := c.Node(leader).ClusterMembers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("members = %+v", ms)
	}
	for _, m := range ms {
		if m.Suffrage != "voter" || m.GossipStatus != "alive" {
			t.Errorf("member %s: suffrage %s, gossip %s; want voter, alive", m.ID, m.Suffrage, m.GossipStatus)
		}
	}
	// Every node reports the same leader and term.
	s0 := c.Node(0).Status()
	for i := 1; i < 3; i++ {
		s := c.Node(i).Status()
		if s.LeaderID != s0.LeaderID || s.Term != s0.Term {
			t.Errorf("node %d sees leader %s term %d; node 1 sees %s term %d", i+1, s.LeaderID, s.Term, s0.LeaderID, s0.Term)
		}
	}
}

func TestFourthNodeJoinsAsVoter(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	c.WaitForLeader(10 * time.Second)
	put(t, c, 0, "before", 1)
	i := c.AddNode()
	c.WaitForVoters(4, 20*time.Second)
	testcluster.WaitFor(t, 10*time.Second, "new node to receive earlier writes", func() bool {
		v, ok := get(c, i, "before")
		return ok && v == "1"
	})
}

func TestLeaderKilledNewLeaderElected(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	old := c.WaitForLeader(10 * time.Second)
	put(t, c, old, "k", "v1")
	c.KillNode(old)
	start := time.Now()
	// An election after a missed heartbeat: about a second idle, several on
	// a loaded two-core machine under -race.
	leader := c.WaitForLeader(electionBound)
	if leader == old {
		t.Fatal("dead node still leader")
	}
	t.Logf("new leader after %v", time.Since(start))
	put(t, c, leader, "k", "v2")
	for _, i := range c.Up() {
		testcluster.WaitFor(t, 5*time.Second, "write on every survivor", func() bool {
			v, _ := get(c, i, "k")
			return v == `"v2"`
		})
	}
}

// The survivors of a leader's death hear of its successor from Raft at
// once: a write waiting for a leader is woken by it, not by its next poll.
func TestSurvivorsHearOfTheNewLeaderAtOnce(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	old := c.WaitForLeader(10 * time.Second)
	changes := map[int]<-chan struct{}{}
	for _, i := range c.Up() {
		if i != old {
			changes[i] = c.Node(i).NextLeaderChange()
		}
	}
	c.KillNode(old)
	deadline := time.After(electionBound)
	for i, ch := range changes {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("node %d heard of no leader change within %v of the leader's death", i+1, electionBound)
		}
	}
	c.WaitForLeader(electionBound)
}

// A write sent while the cluster has no quorum waits, and commits once a
// leader is elected again (within the caller's deadline).
func TestAWriteWaitingForALeaderCommitsOnceOneIsElected(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	leader := c.WaitForLeader(10 * time.Second)
	survivor := (leader + 1) % 3
	down := []int{leader, (leader + 2) % 3}
	for _, i := range down {
		c.StopNode(i)
	}
	testcluster.WaitFor(t, 10*time.Second, "the survivor without a leader", func() bool {
		return c.Node(survivor).Status().LeaderID == ""
	})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := c.Node(survivor).Apply(ctx, fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.PrefixUser + "waited", Value: []byte(`"yes"`)}}})
		if err == nil {
			err = res.Error()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the write returned without a leader: %v", err)
	case <-time.After(300 * time.Millisecond): // it is waiting, as it should
	}
	c.RestartNode(down[0])
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the waiting write: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the waiting write did not commit after a leader was elected")
	}
	testcluster.WaitFor(t, 10*time.Second, "the write applied on the survivor", func() bool {
		v, ok := get(c, survivor, "waited")
		return ok && v == `"yes"`
	})
}

func TestRestartedNodeRejoinsWithState(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	leader := c.WaitForLeader(10 * time.Second)
	follower := (leader + 1) % 3
	put(t, c, leader, "a", 1)
	c.EnsureSame(meta.PrefixUser, 10*time.Second)
	c.KillNode(follower)
	put(t, c, leader, "b", 2)
	c.RestartNode(follower)
	c.EnsureSame(meta.PrefixUser, 15*time.Second)
	if v, ok := get(c, follower, "b"); !ok || v != "2" {
		t.Fatalf("restarted node has b=%q ok=%v", v, ok)
	}
	c.WaitForVoters(3, 10*time.Second)
}

func TestWriteToFollowerAppliedOnce(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	leader := c.WaitForLeader(10 * time.Second)
	follower := (leader + 1) % 3
	watch, cancel := c.Node((leader+2)%3).FSM().Watch(meta.PrefixUser+"once", 16)
	defer cancel()

	// A leadership change between the follower's forward and the leader's
	// Apply (a loaded machine) answers 503 not_leader or no_leader: the
	// entry was never appended, so sending it again cannot apply it twice.
	// A 503 saying the command may still apply is not sent again: the
	// exactly-once check below could not tell its second copy from a bug.
	var (
		resp *http.Response
		body []byte
	)
	testcluster.WaitFor(t, 20*time.Second, "the PUT via the follower answered by a leader", func() bool {
		req, _ := http.NewRequest(http.MethodPut, "http://"+c.APIAddr(follower)+"/api/v1/kv/once", bytes.NewReader([]byte(`{"n":1}`)))
		var err error
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		var e api.Error
		return resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil ||
			(e.Code != api.CodeNotLeader && e.Code != api.CodeNoLeader)
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT via follower: %s %s", resp.Status, body)
	}
	c.EnsureSame(meta.PrefixUser, 10*time.Second)
	for _, i := range c.Up() {
		if v, ok := get(c, i, "once"); !ok || v != `{"n":1}` {
			t.Fatalf("node %d has %q", i+1, v)
		}
	}
	// Exactly one change reached the state machine.
	select {
	case b := <-watch:
		if len(b.Events) != 1 {
			t.Fatalf("events = %+v", b.Events)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change seen")
	}
	select {
	case b := <-watch:
		t.Fatalf("second change applied: %+v", b)
	case <-time.After(300 * time.Millisecond):
	}

	// A consistent read through the follower sees it with the applied index.
	// It asks the leader for a read index, which a leader busy confirming
	// itself answers with a 503 that a client retries.
	var kv struct {
		Value        json.RawMessage `json:"value"`
		AppliedIndex uint64          `json:"applied_index"`
	}
	testcluster.WaitFor(t, 20*time.Second, "a consistent read through the follower", func() bool {
		resp, err := http.Get("http://" + c.APIAddr(follower) + "/api/v1/kv/once?consistent=true")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			return false
		}
		json.NewDecoder(resp.Body).Decode(&kv)
		return true
	})
	var compact bytes.Buffer
	json.Compact(&compact, kv.Value)
	if compact.String() != `{"n":1}` || kv.AppliedIndex == 0 {
		t.Fatalf("consistent read = %s at %d", kv.Value, kv.AppliedIndex)
	}
}

func TestRemoveNodeRefusesToBreakQuorum(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	leader := c.WaitForLeader(10 * time.Second)
	dead, alive := (leader+1)%3, (leader+2)%3
	c.KillNode(dead)
	testcluster.WaitFor(t, electionBound, "gossip to see the dead node", func() bool {
		ms, _ := c.Node(leader).ClusterMembers()
		for _, m := range ms {
			if m.ID == c.NodeID(dead) {
				return m.GossipStatus == "dead"
			}
		}
		return false
	})
	post := func(i int, id string) (int, string) {
		resp, err := http.Post("http://"+c.APIAddr(i)+"/api/v1/cluster/remove-node", "application/json", bytes.NewReader([]byte(fmt.Sprintf(`{"id":%q}`, id))))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Leadership is not handed to a node gossip sees dead: it is refused
	// at once rather than retried for nothing.
	var ae *api.Error
	if err := c.Node(leader).TransferLeader(t.Context(), c.NodeID(dead)); !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "is not alive as gossip sees it") {
		t.Fatalf("transfer to a dead voter: %v", err)
	}
	// Removing the live follower would leave the leader and a dead voter.
	if code, body := post(alive, c.NodeID(alive)); code != http.StatusConflict {
		t.Fatalf("removing a live voter with one dead: %d %s", code, body)
	}
	c.WaitForVoters(3, time.Second)
	if code, body := post(alive, "no-such-node"); code != http.StatusNotFound {
		t.Fatalf("unknown node: %d %s", code, body)
	}
	if code, body := post(alive, "bad id!"); code != http.StatusBadRequest {
		t.Fatalf("malformed id: %d %s", code, body)
	}
	// Removing the dead one is safe, and is forwarded from a follower.
	if code, body := post(alive, c.NodeID(dead)); code != http.StatusOK {
		t.Fatalf("removing the dead voter: %d %s", code, body)
	}
	c.WaitForVoters(2, 10*time.Second)
}

func TestMinorityLeaderStepsDown(t *testing.T) {
	var opts testcluster.Options
	if os.Getenv("RAFTCDC_TEST_LOG") != "" {
		l := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr})
		opts.Logger = &l
	}
	c := testcluster.MakeCluster(t, 3, opts)
	old := c.WaitForLeader(10 * time.Second)
	others := []int{(old + 1) % 3, (old + 2) % 3}
	c.Partition(old)
	newLeader := c.WaitForLeader(electionBound, others...)
	if newLeader == old {
		t.Fatal("majority kept the partitioned leader")
	}
	testcluster.WaitFor(t, electionBound, "partitioned leader to step down", func() bool {
		return c.Node(old).Status().RaftState != "Leader"
	})
	// Writes on the minority side fail; on the majority side they work.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if res, err := c.Node(old).Apply(ctx, fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: "/kv/minority", Value: []byte("1")}}}); err == nil && res.Err == nil {
		// A forwarded write may reach the majority's leader over HTTP, which is
		// not partitioned; that is fine as long as it lands there exactly once.
		t.Log("minority write was forwarded to the majority leader")
	}
	put(t, c, newLeader, "majority", 1)
	c.Heal()
	c.WaitForLeader(electionBound)
	c.EnsureSame(meta.PrefixUser, 10*time.Second)
}

func TestGracefulStopOfLeaderTransfersLeadership(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	old := c.WaitForLeader(10 * time.Second)
	oldTerm := c.Node(old).Status().Term
	c.StopNode(old)
	// A transfer elects the successor at once, in the very next term (the
	// term is what shows "at once"; the deadline only bounds the wait).
	leader := c.WaitForLeader(electionBound)
	if leader == old {
		t.Fatal("stopped node still leads")
	}
	if term := c.Node(leader).Status().Term; term != oldTerm+1 {
		t.Errorf("term went %d → %d; a transfer takes exactly one new term", oldTerm, term)
	}
	// The stopped node stays a voter and rejoins with its data dir.
	c.WaitForVoters(3, time.Second)
	c.RestartNode(old)
	put(t, c, leader, "after-restart", 1)
	c.EnsureSame(meta.PrefixUser, 10*time.Second)
}

func TestMismatchedBootstrapExpectIsRefused(t *testing.T) {
	// Two fresh nodes that disagree on the cluster size must both refuse to
	// bootstrap, and say why.
	ports := testcluster.FreePorts(t, 3)
	cfg := server.DefaultConfig()
	cfg.NodeID = "stray"
	cfg.DataDir = t.TempDir()
	cfg.GossipAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg.RaftAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfg.APIAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	cfg.BootstrapExpect = 2
	n, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	other := server.DefaultConfig()
	other.NodeID = "stray2"
	other.DataDir = t.TempDir()
	other.GossipAddr = fmt.Sprintf("127.0.0.1:%d", testcluster.FreePorts(t, 1)[0])
	p := testcluster.FreePorts(t, 2)
	other.RaftAddr = fmt.Sprintf("127.0.0.1:%d", p[0])
	other.APIAddr = fmt.Sprintf("127.0.0.1:%d", p[1])
	other.BootstrapExpect = 3
	other.Join = []string{cfg.GossipAddr}
	m, err := server.New(other, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Kill()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	testcluster.WaitFor(t, 10*time.Second, "a loud refusal", func() bool {
		err := m.Ready()
		return err != nil && strings.Contains(err.Error(), "refusing to bootstrap")
	})
	if err := n.Ready(); err == nil || !strings.Contains(err.Error(), "expects") {
		t.Fatalf("node expecting 2 should refuse too: %v", err)
	}
	if n.Status().LeaderID != "" || m.Status().LeaderID != "" {
		t.Fatal("mismatched nodes formed a cluster")
	}
}

func TestRestartWithNewRaftAddressUpdatesConfiguration(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true})
	leader := c.WaitForLeader(10 * time.Second)
	moved := (leader + 1) % 3
	c.KillNode(moved)
	newAddr := c.MoveRaftAddr(moved)
	c.RestartNode(moved)
	testcluster.WaitFor(t, 20*time.Second, "the leader to update the moved node's address", func() bool {
		l := c.WaitForLeader(10 * time.Second)
		ms, err := c.Node(l).ClusterMembers()
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.ID == c.NodeID(moved) {
				return m.RaftAddr == newAddr && m.Suffrage == "voter"
			}
		}
		return false
	})
	put(t, c, c.WaitForLeader(10*time.Second), "after-move", 1)
	c.EnsureSame(meta.PrefixUser, 10*time.Second)
}

func TestInternalEndpointsNeedTheClusterSecret(t *testing.T) {
	c := testcluster.MakeCluster(t, 1, testcluster.Options{NoCDC: true, Configure: func(_ int, cfg *server.Config) { cfg.ClusterSecret = "s3cret" }})
	c.WaitForLeader(10 * time.Second)
	body := []byte(`{"v":2,"kind":"txn","ops":[{"type":"put","key":"/kv/x","value":1}]}`)
	for _, secret := range []string{"", "wrong"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+c.APIAddr(0)+"/internal/v1/apply", bytes.NewReader(body))
		if secret != "" {
			req.Header.Set("X-Raftcdc-Cluster-Secret", secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("secret %q: %s, want 401", secret, resp.Status)
		}
	}
	if _, ok := get(c, 0, "x"); ok {
		t.Fatal("an unauthenticated internal write was applied")
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.APIAddr(0)+"/internal/v1/apply", bytes.NewReader(body))
	req.Header.Set("X-Raftcdc-Cluster-Secret", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with the secret: %s", resp.Status)
	}
}

// A deposed owner's commands and a removed incarnation's commands go through
// Raft like any other entry, and every replica refuses them identically.
func TestFencedCommandsRefusedOnEveryReplica(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true})
	leader := c.WaitForLeader(10 * time.Second)
	// Every command below is safe to apply twice (a claim's epoch is the
	// index of the copy that answered), so a lost leader is retried.
	apply := func(i int, cmd fsm.Command) *fsm.Result {
		t.Helper()
		return applyRetrying(t, c, i, cmd)
	}
	status := func(cp uint64) fsm.Op {
		b, _ := json.Marshal(model.ChangefeedStatus{CheckpointTs: cp})
		return fsm.Op{Type: fsm.OpPut, Key: meta.ChangefeedStatusKey("cf"), Value: b}
	}
	old := apply(leader, fsm.Command{Kind: fsm.KindClaimOwner, NodeID: "a", UnixMilli: 1}).Index
	if r := apply((leader+1)%3, fsm.Command{OwnerEpoch: old, Ops: []fsm.Op{status(1)}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	apply(leader, fsm.Command{Kind: fsm.KindClaimOwner, NodeID: "b", UnixMilli: 2})
	if r := apply((leader+2)%3, fsm.Command{OwnerEpoch: old, Ops: []fsm.Op{status(2)}}); !errors.Is(r.Error(), fsm.ErrStaleEpoch) {
		t.Fatalf("deposed owner's command: %v", r.Error())
	}
	capture, _ := json.Marshal(model.CaptureInfo{ID: "c1", Incarnation: 7})
	apply(leader, fsm.Command{Kind: fsm.KindRegisterCapture, Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.CaptureKey("c1"), Value: capture}}})
	capture, _ = json.Marshal(model.CaptureInfo{ID: "c1", Incarnation: 8})
	apply(leader, fsm.Command{Kind: fsm.KindRegisterCapture, Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.CaptureKey("c1"), Value: capture}}})
	pos, _ := json.Marshal(model.TaskPosition{CheckpointTs: 5})
	if r := apply((leader+1)%3, fsm.Command{Capture: &fsm.CaptureFence{ID: "c1", Incarnation: 7}, Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.TaskPositionKey("cf", "c1"), Value: pos}}}); !errors.Is(r.Error(), fsm.ErrFenced) {
		t.Fatalf("replaced incarnation's command: %v", r.Error())
	}
	c.EnsureSame("/", 10*time.Second)
	for _, i := range c.Up() {
		kv, ok, _ := c.Node(i).FSM().Get(meta.ChangefeedStatusKey("cf"))
		var st model.ChangefeedStatus
		json.Unmarshal(kv.Value, &st)
		if !ok || st.CheckpointTs != 1 {
			t.Fatalf("node %d: status %+v, want the first owner's write only", i+1, st)
		}
		if _, ok, _ := c.Node(i).FSM().Get(meta.TaskPositionKey("cf", "c1")); ok {
			t.Fatalf("node %d: fenced position applied", i+1)
		}
	}
}

// Pipelined replication is off on purpose (see DESIGN.md: raft v1.7.3's
// pipeline can wedge a replication goroutine for good). Both transports a
// node can have — plain TCP and the test stream — must refuse to pipeline.
func TestReplicationIsNotPipelined(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	leader := c.WaitForLeader(10 * time.Second)
	follower := (leader + 1) % 3
	tr := c.Node(leader).RaftTransport()
	_, err := tr.AppendEntriesPipeline(raft.ServerID(c.NodeID(follower)), raft.ServerAddress(c.Node(follower).Config().AdvertiseRaftAddr))
	if !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline: got %v, want %v", err, raft.ErrPipelineReplicationNotSupported)
	}
	// Replication still works without it.
	put(t, c, leader, "unpipelined", 1)
	c.EnsureSame(meta.PrefixUser, 10*time.Second)
}

// TestOneNodeShutdownDoesNotWarn: a single-node cluster has nobody to hand
// leadership to, so a clean stop must not try and then warn that it failed.
func TestOneNodeShutdownDoesNotWarn(t *testing.T) {
	var logs lockedBuffer
	logger := zerolog.New(&logs)
	c := testcluster.MakeCluster(t, 1, testcluster.Options{Logger: &logger})
	c.WaitForLeader(10 * time.Second)
	put(t, c, 0, "before-stop", 1)
	if !strings.Contains(logs.String(), "gained leadership") {
		t.Fatalf("the captured log does not show the node leading; the test proves nothing:\n%s", logs.String())
	}
	from := len(logs.String())
	c.StopNode(0)
	out := logs.String()[from:]
	if !strings.Contains(out, "leader tasks stopped") {
		t.Fatalf("the captured log does not show the stop; the test proves nothing:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			t.Errorf("clean stop of a one-node cluster logged: %s", line)
		}
	}
	if strings.Contains(out, "leadership transfer") {
		t.Errorf("a one-node cluster tried a leadership transfer:\n%s", out)
	}
}

// lockedBuffer is a log sink that many goroutines may write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A whole cluster stopped at once (SIGTERM to every node) finishes each
// node's shutdown within its budget: the draining mark's gossip must not
// wait for peers that left in the meantime. Several rounds, because the
// order in which the nodes leave varies.
func TestWholeClusterStopsWithinTheShutdownBudget(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	for round := 1; round <= 4; round++ {
		// From the second round on, three restarted nodes elect a leader.
		c.WaitForLeader(electionBound)
		errs := make([]error, c.Size())
		var wg sync.WaitGroup
		for i := range c.Size() {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = c.StopNodeWithin(i, 5*time.Second) }()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: node %d: %v", round, i+1, err)
			}
		}
		if t.Failed() {
			return
		}
		c.RestartNodes(0, 1, 2)
	}
}

// TestTransferLeaderRetriesUntilTheTargetIsReachable: raft tries a transfer
// once (one TimeoutNow, within one election timeout); a target it cannot
// reach makes that attempt fail. The node tries again, and once the target
// is reachable the transfer completes: the caller sees one success, not
// raft's first failure.
func TestTransferLeaderRetriesUntilTheTargetIsReachable(t *testing.T) {
	var logs lockedBuffer
	logger := zerolog.New(&logs)
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true, Logger: &logger})
	c.WaitForVoters(3, 10*time.Second)
	leader := c.WaitForLeader(10 * time.Second)
	target := (leader + 1) % 3
	c.Partition(target)
	defer c.Heal() // healing twice is harmless
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- c.Node(leader).TransferLeader(ctx, c.NodeID(target))
	}()
	testcluster.WaitFor(t, 10*time.Second, "a first attempt to fail and be retried", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the transfer returned %v while its target was cut off", err)
		default:
		}
		return strings.Contains(logs.String(), "leadership transfer failed; trying again")
	})
	c.Heal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("transfer to a target reachable again: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the transfer did not return")
	}
	if got := c.WaitForLeader(10*time.Second, 0, 1, 2); got != target {
		t.Fatalf("leader is node%d, want node%d", got+1, target+1)
	}
}
