package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/testcluster"
	"github.com/raftcdc/raftcdc/verify"
)

// feedCluster is a three-node cluster with the helpers the changefeed
// scenarios share.
type feedCluster struct {
	*testcluster.Cluster
	t *testing.T
}

func makeFeedCluster(t *testing.T) *feedCluster {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{})
	c.WaitForLeader(10 * time.Second)
	return &feedCluster{Cluster: c, t: t}
}

// call sends a JSON request to the first running node (or node i >= 0).
func (c *feedCluster) call(i int, method, path string, body any, out any) (int, string) {
	c.t.Helper()
	if i < 0 {
		i = c.Up()[0]
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+c.APIAddr(i)+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("decoding %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func (c *feedCluster) create(req api.ChangefeedRequest) {
	c.t.Helper()
	if code, body := c.call(-1, http.MethodPost, "/api/v1/changefeeds", req, nil); code != http.StatusCreated {
		c.t.Fatalf("create: %d %s", code, body)
	}
}

// detail is a consistent read of a changefeed. A 503 (no leader, or a
// leader still confirming itself after an election) is what a client
// retries, as its Retry-After says; anything else fails the test.
func (c *feedCluster) detail(id string) api.ChangefeedDetail {
	c.t.Helper()
	var d api.ChangefeedDetail
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := c.call(-1, http.MethodGet, "/api/v1/changefeeds/"+id+"?consistent=true", nil, &d)
		if code == http.StatusOK {
			return d
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			c.t.Fatalf("query: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *feedCluster) waitCheckpointAbove(id string, ts model.Ts, timeout time.Duration) model.Ts {
	c.t.Helper()
	var cp model.Ts
	testcluster.WaitFor(c.t, timeout, fmt.Sprintf("checkpoint of %s above %d", id, ts), func() bool {
		cp = c.detail(id).CheckpointTs()
		return cp > ts
	})
	return cp
}

func (c *feedCluster) waitState(id string, state model.FeedState, timeout time.Duration) {
	c.t.Helper()
	testcluster.WaitFor(c.t, timeout, fmt.Sprintf("%s to be %s", id, state), func() bool {
		d := c.detail(id)
		return d.Info.State == state && d.Info.AdminJob == ""
	})
}

// waitAllAssignedOnce waits until every table of the changefeed is assigned
// to exactly one of the given captures, balanced within one across all of
// them, and returns the per-capture counts.
func (c *feedCluster) waitAllAssignedOnce(id string, tables int, captures []string, timeout time.Duration) map[string]int {
	c.t.Helper()
	allowed := map[string]bool{}
	for _, cp := range captures {
		allowed[cp] = true
	}
	var counts map[string]int
	testcluster.WaitFor(c.t, timeout, "every table on exactly one live capture", func() bool {
		d := c.detail(id)
		a := d.Assignments()
		if len(a) != tables {
			return false
		}
		counts = map[string]int{}
		for _, cs := range a {
			if len(cs) != 1 || !allowed[cs[0]] {
				return false
			}
			counts[cs[0]]++
		}
		// Balanced within one over every allowed capture.
		min, max := tables, 0
		for cp := range allowed {
			n := counts[cp]
			if n < min {
				min = n
			}
			if n > max {
				max = n
			}
		}
		return max-min <= 1
	})
	return counts
}

// storageURI is a storage sink in dir that the verifier can read (commit
// ts in every message) and that flushes often.
func storageURI(dir string) string {
	return "file://" + dir + "?protocol=canal-json&enable-tidb-extension=true&flush-interval=100ms"
}

func (c *feedCluster) verify(src, dir string, start, cp model.Ts) {
	c.t.Helper()
	rep, err := verify.CompareState(context.Background(), verify.StateParams{SourceURI: src, Downstream: storageURI(dir), StartTs: start, CheckpointTs: cp})
	if err != nil {
		c.t.Fatal(err)
	}
	if !rep.OK() {
		c.t.Fatalf("verification failed:\n%s", rep.String())
	}
	if rep.Expected == 0 {
		c.t.Fatal("verification covered no rows")
	}
	c.t.Logf("verified %d rows at %d (%d duplicates)", rep.Expected, cp, rep.Duplicates)
}

func nodeIDs(c *testcluster.Cluster, idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, c.NodeID(i))
	}
	return out
}

const feedSource = "datagen://?tables=12&rate=40"

func TestChangefeedBalancedPauseResumeRemove(t *testing.T) {
	c := makeFeedCluster(t)
	dir := t.TempDir()
	start := model.TsFromTime(time.Now().Add(-2 * time.Second))
	c.create(api.ChangefeedRequest{ID: "orders", SourceURI: feedSource, SinkURI: storageURI(dir), StartTs: start})
	counts := c.waitAllAssignedOnce("orders", 12, nodeIDs(c.Cluster, 0, 1, 2), 20*time.Second)
	if len(counts) != 3 {
		t.Fatalf("tables placed on %d captures, want 3: %v", len(counts), counts)
	}
	for capture, n := range counts {
		if n < 3 || n > 5 {
			t.Errorf("capture %s runs %d tables; 12 over 3 must be balanced within one", capture, n)
		}
	}
	cp := c.waitCheckpointAbove("orders", start, 20*time.Second)
	c.verify(feedSource, dir, start, cp)

	// Pause: the checkpoint stops moving, the tasks are gone, and the row
	// count the processors had reported stays (in the status).
	counted := c.detail("orders").Count
	if code, body := c.call(-1, http.MethodPost, "/api/v1/changefeeds/orders/pause", nil, nil); code != http.StatusAccepted {
		t.Fatalf("pause: %d %s", code, body)
	}
	c.waitState("orders", model.StateStopped, 10*time.Second)
	pausedDetail := c.detail("orders")
	paused, pausedCount := pausedDetail.CheckpointTs(), pausedDetail.Count
	if pausedCount == 0 || pausedCount < counted {
		t.Fatalf("rows_written %d before the pause, %d after it", counted, pausedCount)
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		d := c.detail("orders")
		if d.CheckpointTs() != paused || len(d.Tasks) != 0 || d.Count != pausedCount {
			t.Fatalf("paused changefeed moved: checkpoint %d → %d, %d tasks, rows_written %d → %d", paused, d.CheckpointTs(), len(d.Tasks), pausedCount, d.Count)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Resume continues from where it stopped.
	if code, body := c.call(-1, http.MethodPost, "/api/v1/changefeeds/orders/resume", nil, nil); code != http.StatusAccepted {
		t.Fatalf("resume: %d %s", code, body)
	}
	cp = c.waitCheckpointAbove("orders", paused+1, 20*time.Second)
	c.verify(feedSource, dir, start, cp)
	if n := c.detail("orders").Count; n < pausedCount {
		t.Errorf("rows_written fell from %d to %d after the resume", pausedCount, n)
	}

	// Remove cleans every key but the tombstone.
	if code, body := c.call(-1, http.MethodDelete, "/api/v1/changefeeds/orders", nil, nil); code != http.StatusAccepted {
		t.Fatalf("remove: %d %s", code, body)
	}
	c.waitState("orders", model.StateRemoved, 10*time.Second)
	testcluster.WaitFor(t, 10*time.Second, "every key of the removed changefeed gone", func() bool {
		for _, prefix := range []string{meta.ChangefeedStatusKey("orders"), meta.TaskStatusPrefix("orders"), meta.TaskPositionPrefix("orders"), meta.TaskWorkloadPrefix("orders")} {
			kvs, _ := c.Node(c.Up()[0]).FSM().List(prefix)
			if len(kvs) > 0 {
				return false
			}
		}
		return true
	})
}

func TestChangefeedSurvivesFollowerAndLeaderDeath(t *testing.T) {
	c := makeFeedCluster(t)
	dir := t.TempDir()
	start := model.TsFromTime(time.Now().Add(-time.Second))
	c.create(api.ChangefeedRequest{ID: "survive", SourceURI: feedSource, SinkURI: storageURI(dir), StartTs: start})
	c.waitAllAssignedOnce("survive", 12, nodeIDs(c.Cluster, 0, 1, 2), 20*time.Second)
	cp := c.waitCheckpointAbove("survive", start, 20*time.Second)

	// A follower dies: its tables move to the two others, and its rows stay
	// counted after the owner deletes its position.
	leader := c.WaitForLeader(10 * time.Second)
	follower := (leader + 1) % 3
	var followerRows uint64
	testcluster.WaitFor(t, 10*time.Second, "the follower has counted rows", func() bool {
		if p := c.detail("survive").Positions[c.NodeID(follower)]; p != nil {
			followerRows = p.Count
		}
		return followerRows > 0
	})
	c.KillNode(follower)
	others := []int{leader, (leader + 2) % 3}
	c.waitAllAssignedOnce("survive", 12, nodeIDs(c.Cluster, others...), 30*time.Second)
	if d := c.detail("survive"); d.Status == nil || d.Status.RetiredCount < followerRows || d.Positions[c.NodeID(follower)] != nil {
		t.Errorf("after the follower's eviction: status %+v, its position %+v; it had counted %d rows", d.Status, d.Positions[c.NodeID(follower)], followerRows)
	}
	cp = c.waitCheckpointAbove("survive", cp, 20*time.Second)
	c.verify(feedSource, filepath.Clean(dir), start, cp)

	// The leader dies: a new owner takes over, every table runs exactly once.
	c.RestartNode(follower)
	c.KillNode(leader)
	newLeader := c.WaitForLeader(electionBound, follower, (leader+2)%3)
	if newLeader == leader {
		t.Fatal("no new leader")
	}
	c.waitAllAssignedOnce("survive", 12, nodeIDs(c.Cluster, follower, (leader+2)%3), 30*time.Second)
	cp = c.waitCheckpointAbove("survive", cp, 20*time.Second)
	c.verify(feedSource, dir, start, cp)
}

func TestChangefeedFullClusterRestartAndTargetTs(t *testing.T) {
	c := makeFeedCluster(t)
	dir, dir2 := t.TempDir(), t.TempDir()
	start := model.TsFromTime(time.Now().Add(-time.Second))
	c.create(api.ChangefeedRequest{ID: "restart", SourceURI: feedSource, SinkURI: storageURI(dir), StartTs: start})
	target := model.TsFromTime(time.Now().Add(2 * time.Second))
	c.create(api.ChangefeedRequest{ID: "bounded", SourceURI: "datagen://?tables=3&rate=20", SinkURI: storageURI(dir2), StartTs: start, TargetTs: target})
	cp := c.waitCheckpointAbove("restart", start, 20*time.Second)

	// A changefeed with a target ts finishes there, with every row up to it.
	c.waitState("bounded", model.StateFinished, 30*time.Second)
	if got := c.detail("bounded").CheckpointTs(); got < target {
		t.Fatalf("finished at %d, before the target %d", got, target)
	}
	c.verify("datagen://?tables=3&rate=20", dir2, start, target)

	// Everything stops; everything starts again; the checkpoint resumes from
	// where it was and never goes back.
	for i := 0; i < 3; i++ {
		c.KillNode(i)
	}
	c.RestartNodes(0, 1, 2)
	testcluster.WaitFor(t, 30*time.Second, "all three nodes back", func() bool { return len(c.Up()) == 3 })
	c.WaitForLeader(20 * time.Second)
	if got := c.detail("restart").CheckpointTs(); got < cp {
		t.Fatalf("checkpoint went back from %d to %d across the restart", cp, got)
	}
	cp = c.waitCheckpointAbove("restart", cp, 30*time.Second)
	c.verify(feedSource, dir, start, cp)
}

// TestGCSafepointPerUpstream: two changefeeds read one datagen upstream
// through two spellings of its URI. The owner keeps one service safepoint
// for the upstream (one /gc/ record, at the lower checkpoint), and removing
// one changefeed keeps the other's checkpoint protected.
func TestGCSafepointPerUpstream(t *testing.T) {
	c := makeFeedCluster(t)
	const a = "datagen://?tables=2&rate=5&seed=9"
	const b = "datagen://?seed=9&rate=5&tables=2&cluster-id=datagen-9-datagen"
	start := model.TsFromTime(time.Now().Add(-time.Second))
	c.create(api.ChangefeedRequest{ID: "spelled-a", SourceURI: a, SinkURI: "blackhole://", StartTs: start})
	c.create(api.ChangefeedRequest{ID: "spelled-b", SourceURI: b, SinkURI: "blackhole://", StartTs: start})
	c.waitCheckpointAbove("spelled-b", start, 20*time.Second)
	// b paused holds the upstream's GC at its checkpoint while a goes on.
	if code, body := c.call(-1, http.MethodPost, "/api/v1/changefeeds/spelled-b/pause", nil, nil); code != http.StatusAccepted {
		t.Fatalf("pause: %d %s", code, body)
	}
	c.waitState("spelled-b", model.StateStopped, 10*time.Second)
	held := c.detail("spelled-b").CheckpointTs()
	c.waitCheckpointAbove("spelled-a", held, 20*time.Second)

	records := func() []model.GCSafepoint {
		kvs, _ := c.Node(c.Up()[0]).FSM().List(meta.PrefixGC)
		var out []model.GCSafepoint
		for _, kv := range kvs {
			var g model.GCSafepoint
			if err := json.Unmarshal(kv.Value, &g); err != nil {
				t.Fatalf("%s: %v", kv.Key, err)
			}
			out = append(out, g)
		}
		return out
	}
	testcluster.WaitFor(t, 10*time.Second, "one GC record for the upstream at the paused checkpoint", func() bool {
		r := records()
		return len(r) == 1 && r[0].UpstreamID == "datagen-9-datagen" && r[0].Safepoint == held
	})
	// Removing a (the other spelling) must not clear b's protection.
	if code, body := c.call(-1, http.MethodDelete, "/api/v1/changefeeds/spelled-a", nil, nil); code != http.StatusAccepted {
		t.Fatalf("remove: %d %s", code, body)
	}
	c.waitState("spelled-a", model.StateRemoved, 10*time.Second)
	// The owner's last write for a removed changefeed is its upstream
	// clean-up, ticks after the one that removed it, and the owner's worker
	// carries out each tick's GC actions before its clean-up: once it is
	// recorded, the GC passes that no longer count spelled-a have written
	// whatever they would. A fixed window alone could end before that on a
	// loaded machine and then prove nothing.
	testcluster.WaitFor(t, 20*time.Second, "the owner done with spelled-a", func() bool { return c.detail("spelled-a").Info.UpstreamCleaned })
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r := records(); len(r) != 1 || r[0].Safepoint != held {
			t.Fatalf("after removing spelled-a: GC records %+v, want the paused checkpoint %d still held", r, held)
		}
	}
	if code, body := c.call(-1, http.MethodDelete, "/api/v1/changefeeds/spelled-b", nil, nil); code != http.StatusAccepted {
		t.Fatalf("remove: %d %s", code, body)
	}
	testcluster.WaitFor(t, 10*time.Second, "the GC record cleared once no changefeed needs the upstream", func() bool { return len(records()) == 0 })
}
