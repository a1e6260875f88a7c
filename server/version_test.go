package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/membership"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/testcluster"
	"github.com/rs/zerolog"
)

// asOldBuild makes a node gossip like a build from before schema versions.
func asOldBuild(c *server.Config) {
	server.WithGossipMeta(c, func(m *membership.Meta) {
		m.SchemaVersion, m.CommandVersion, m.MetaVersion = 0, 0, 0
		m.Version = "old-build"
	})
}

func clusterRecord(t *testing.T, c *testcluster.Cluster, i int) (*model.ClusterInfo, bool) {
	t.Helper()
	rec, ok, err := meta.ReadCluster(c.Node(i).FSM())
	if err != nil {
		t.Fatalf("reading the cluster record on node %d: %v", i+1, err)
	}
	return rec, ok
}

func isVoter(c *testcluster.Cluster, leader int, id string) bool {
	ms, err := c.Node(leader).ClusterMembers()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.ID == id {
			return m.Suffrage == "voter"
		}
	}
	return false
}

// TestClusterRecordWaitsForEveryVoter: the leader records the cluster (its
// identity and schema version) only once every voter's build supports that
// schema. While one voter gossips like an older build, nothing is written —
// an older build would refuse the write and its replica would differ —
// and once it is "upgraded" the record appears, the same on every replica,
// and every node gossips the identity.
func TestClusterRecordWaitsForEveryVoter(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true, Configure: func(i int, cfg *server.Config) {
		if i == 2 {
			asOldBuild(cfg)
		}
	}})
	leader := c.WaitForLeader(10 * time.Second)
	// The old build leads for a while too: a leader judges itself by what
	// it gossips, like any voter (it once skipped itself and wrote the
	// record whenever the stand-in for the old build was elected).
	if leader != 2 {
		if err := c.Node(leader).TransferLeader(t.Context(), c.NodeID(2)); err != nil {
			t.Fatalf("moving leadership to the old build: %v", err)
		}
		leader = c.WaitForLeader(10*time.Second, 2)
	}
	// Several reconcile passes (500ms each here) with the old voter in.
	time.Sleep(2 * time.Second)
	for i := 0; i < 3; i++ {
		if rec, ok := clusterRecord(t, c, i); ok {
			t.Fatalf("node %d holds a cluster record %+v while a voter runs an older build", i+1, rec)
		}
	}
	if got := c.Node(leader).Status().SchemaVersion; got != 0 {
		t.Fatalf("status shows schema %d before any record", got)
	}
	// "Upgrade" node3: it now gossips this build's versions.
	err := c.Node(2).Members().UpdateMeta(t.Context(), func(m *membership.Meta) {
		m.SchemaVersion, m.CommandVersion, m.MetaVersion, m.Version = meta.SchemaVersion, 2, membership.CurrentMetaVersion, "dev"
	})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	testcluster.WaitFor(t, 15*time.Second, "the cluster record on every replica", func() bool {
		id = ""
		for i := 0; i < 3; i++ {
			rec, ok := clusterRecord(t, c, i)
			if !ok || rec.SchemaVersion != meta.SchemaVersion || (id != "" && rec.ID != id) {
				return false
			}
			id = rec.ID
		}
		return true
	})
	if len(id) != 32 {
		t.Errorf("cluster ID %q is not 128 random bits in hex", id)
	}
	testcluster.WaitFor(t, 15*time.Second, "every node gossiping the cluster ID", func() bool {
		for _, m := range c.Node(leader).Members().Members() {
			if m.Meta.ClusterID != id {
				return false
			}
		}
		return true
	})
	if s := c.Node(0).Status(); s.ClusterID != id || s.SchemaVersion != meta.SchemaVersion {
		t.Errorf("status shows cluster %q schema %d", s.ClusterID, s.SchemaVersion)
	}
}

// TestLeaderRefusesNodesItMustNotAdd: once the cluster records its schema (3), a
// joining node whose build supports only schema 1 is not added, nor is a
// node that holds another cluster's state; each refusal is logged once at
// error level, saying why (once per leader). A node of this build joins as
// usual.
func TestLeaderRefusesNodesItMustNotAdd(t *testing.T) {
	var logs lockedBuffer
	logger := zerolog.New(&logs)
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true, Logger: &logger})
	leader := c.WaitForLeader(10 * time.Second)
	testcluster.WaitFor(t, 15*time.Second, "the cluster record", func() bool {
		_, ok := clusterRecord(t, c, leader)
		return ok
	})
	rec, _ := clusterRecord(t, c, leader)

	old := c.AddNodeWith(asOldBuild)
	foreign := c.AddNodeWith(func(cfg *server.Config) {
		server.WithGossipMeta(cfg, func(m *membership.Meta) { m.ClusterID = "0123456789abcdef0123456789abcdef" })
	})
	fresh := c.AddNode()
	testcluster.WaitFor(t, 20*time.Second, "the fresh node added as a voter", func() bool {
		return isVoter(c, c.WaitForLeader(10*time.Second, 0, 1, 2), c.NodeID(fresh))
	})
	refusals := []string{
		"not adding member to the Raft configuration: node " + c.NodeID(old) + fmt.Sprintf(` (version \"old-build\") supports metadata schema 1, and the cluster runs at %d; upgrade it to join`, meta.SchemaVersion),
		"not adding member to the Raft configuration: node " + c.NodeID(foreign) + " holds the state of cluster 0123456789abcdef0123456789abcdef, and this is cluster " + rec.ID,
	}
	// The leader judges a member once its own gossip sees it alive, which
	// need not be before it saw fresh (each view fills in its own order):
	// wait for both judgements, then give it several more reconcile passes.
	testcluster.WaitFor(t, 20*time.Second, "the leader to judge the old and the foreign node", func() bool {
		out := logs.String()
		return strings.Contains(out, refusals[0]) && strings.Contains(out, refusals[1])
	})
	time.Sleep(2 * time.Second)
	leader = c.WaitForLeader(10*time.Second, 0, 1, 2)
	for _, i := range []int{old, foreign} {
		if isVoter(c, leader, c.NodeID(i)) {
			t.Errorf("%s was added to the configuration", c.NodeID(i))
		}
	}
	out := logs.String()
	for _, want := range refusals {
		// Once per leader: a leadership change on a loaded machine makes
		// the next leader say it again.
		if n := strings.Count(out, want); n < 1 || n > 3 {
			t.Errorf("log has %d lines %q, want one per leader (1 to 3)", n, want)
		}
	}
}
