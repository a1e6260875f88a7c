package server_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/testcluster"
)

// loadTables is the heavy changefeed of the admin-under-load scenario:
// three nodes in one test process, under -race, on a shared 2-core
// machine, are saturated by it.
const loadTables = 100

// An operator's pause and remove are carried out while the cluster is
// saturated by a changefeed of many tables. The bounds are generous (the
// machine is shared); bench ManyTables records the times (bench/RESULTS.md).
func TestAdminCommandsCompleteUnderLoad(t *testing.T) {
	c := budgetCluster(t, loadTables)
	if code, body := c.post("/api/v1/changefeeds", api.ChangefeedRequest{ID: "small", SourceURI: "datagen://?tables=4&rate=20", SinkURI: "blackhole://"}); code != http.StatusCreated {
		t.Fatalf("create small: %d %s", code, body)
	}
	if code, body := c.post("/api/v1/changefeeds", api.ChangefeedRequest{ID: "load", SourceURI: fmt.Sprintf("datagen://?tables=%d&rate=5", loadTables), SinkURI: "blackhole://"}); code != http.StatusCreated {
		t.Fatalf("create load: %d %s", code, body)
	}
	testcluster.WaitFor(t, 4*time.Minute, "every table of load replicating", func() bool {
		d, ok := c.tryDetail("load")
		n := 0
		for _, p := range d.Positions {
			n += len(p.Running)
		}
		return ok && n == loadTables
	})

	start := time.Now()
	if code, body := c.post("/api/v1/changefeeds/small/pause", nil); code != http.StatusAccepted {
		t.Fatalf("pause small: %d %s", code, body)
	}
	c.waitGone("small", model.StateStopped, time.Minute)
	t.Logf("pause of small under load carried out in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if code, body := c.write(http.MethodDelete, "/api/v1/changefeeds/load", nil); code != http.StatusAccepted {
		t.Fatalf("remove load: %d %s", code, body)
	}
	c.waitGone("load", model.StateRemoved, time.Minute)
	t.Logf("remove of load (%d tables) under load carried out in %v", loadTables, time.Since(start).Round(time.Millisecond))
}

// waitGone waits until the changefeed is in state with its admin job done
// and no task left on any capture.
func (c *feedCluster) waitGone(id string, state model.FeedState, timeout time.Duration) {
	c.t.Helper()
	testcluster.WaitFor(c.t, timeout, fmt.Sprintf("%s %s with no task left", id, state), func() bool {
		d, ok := c.tryDetail(id)
		return ok && d.Info.State == state && d.Info.AdminJob == "" && len(d.Tasks) == 0
	})
}

// tryDetail is one consistent read of a changefeed; ok is false on a 503
// (no leader right now: the caller's deadline decides how long that may
// last). Any other failure fails the test.
func (c *feedCluster) tryDetail(id string) (d api.ChangefeedDetail, ok bool) {
	c.t.Helper()
	code, body := c.call(-1, http.MethodGet, "/api/v1/changefeeds/"+id+"?consistent=true", nil, &d)
	switch code {
	case http.StatusOK:
		return d, true
	case http.StatusServiceUnavailable:
		return d, false
	}
	c.t.Fatalf("query %s: %d %s", id, code, body)
	return d, false
}
