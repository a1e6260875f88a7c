package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/testcluster"
)

// TestCtlRemoveForceRepairsACorruptChangefeed is the repair for the state a
// forged internal write left behind (issue: the info of a running
// changefeed overwritten with garbage): query and remove answer
// metadata_corrupt and point at --force; remove --force replaces the info,
// the owner deletes the changefeed's status and tasks, and the ID can be
// created again.
func TestCtlRemoveForceRepairsACorruptChangefeed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	t.Setenv(envToken, clusterToken)
	c := &liveCluster{Cluster: testcluster.MakeCluster(t, 1, testcluster.Options{})}
	c.WaitForLeader(15 * time.Second)
	create := []string{"changefeed", "create", "-c", "victim", "--source-uri", "datagen://?tables=3&rate=20", "--sink-uri", "blackhole://", "--no-confirm"}
	c.ctlOn(t, 0, create...).mustOK(t)
	hasTasks := func() bool {
		kvs, err := c.Node(0).FSM().List(meta.TaskStatusPrefix("victim"))
		return err == nil && len(kvs) > 0
	}
	testcluster.WaitFor(t, 30*time.Second, "victim's tables to run", hasTasks)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := c.Node(0).Apply(ctx, fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.ChangefeedInfoKey("victim"), Value: []byte(`"garbage"`)}}}); err != nil || res.Err != nil {
		t.Fatalf("corrupting the info: %v %v", err, res)
	}
	for _, args := range [][]string{{"changefeed", "query", "-c", "victim"}, {"changefeed", "remove", "-c", "victim"}} {
		r := c.ctlOn(t, 0, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "does not decode") || !strings.Contains(r.stderr, "remove --force") {
			t.Errorf("%v: exit %d %s", args, r.code, r.stderr)
		}
	}
	r := c.ctlOn(t, 0, "changefeed", "remove", "-c", "victim", "--force").mustOK(t)
	if !strings.Contains(r.stdout, "Removed changefeed victim, whose metadata did not decode") || !strings.Contains(r.stdout, "by hand") {
		t.Errorf("remove --force said: %s", r.stdout)
	}
	testcluster.WaitFor(t, 30*time.Second, "the owner to delete victim's tasks and status", func() bool {
		_, statusLeft, _ := c.Node(0).FSM().Get(meta.ChangefeedStatusKey("victim"))
		return !hasTasks() && !statusLeft
	})
	c.ctlOn(t, 0, create...).mustOK(t)
	testcluster.WaitFor(t, 30*time.Second, "the new victim's tables to run", hasTasks)
}
