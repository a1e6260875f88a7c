package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/processor"
	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/testcluster"
)

// budgetCluster is three nodes of budget tables each: a capacity of 3×budget.
func budgetCluster(t *testing.T, budget int) *feedCluster {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{CDC: server.CDCOptions{Processor: processor.Config{TableBudget: budget}}})
	c.WaitForLeader(10 * time.Second)
	fc := &feedCluster{Cluster: c, t: t}
	// Capacity counts registered, live captures: wait for all three.
	testcluster.WaitFor(t, 20*time.Second, "three live captures", func() bool {
		var out struct{ Captures []api.CaptureView }
		if code, _ := fc.call(-1, http.MethodGet, "/api/v1/captures", nil, &out); code != http.StatusOK {
			return false
		}
		alive := 0
		for _, cv := range out.Captures {
			if cv.Liveness == "alive" && cv.TableBudget == budget {
				alive++
			}
		}
		return alive == 3
	})
	return fc
}

func datagenTables(n int) string { return fmt.Sprintf("datagen://?tables=%d&rate=1", n) }

// expectOverCapacity asserts a refusal with code over_capacity whose
// message carries the numbers: tables asked, running, capacity.
func expectOverCapacity(t *testing.T, what string, code int, body string, asked, running, capacity int) {
	t.Helper()
	var e api.Error
	_ = json.Unmarshal([]byte(body), &e)
	if code != http.StatusConflict || e.Code != api.CodeOverCapacity {
		t.Fatalf("%s: got %d %s, want 409 %s", what, code, body, api.CodeOverCapacity)
	}
	for _, want := range []string{
		fmt.Sprintf("it has %d tables", asked),
		fmt.Sprintf("changefeeds hold %d", running),
		fmt.Sprintf("cluster carries %d", capacity),
		"--table-budget",
	} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("%s: message %q does not say %q", what, e.Message, want)
		}
	}
}

func (c *feedCluster) expectAbsent(id string) {
	c.t.Helper()
	if code, body := c.call(-1, http.MethodGet, "/api/v1/changefeeds/"+id+"?consistent=true", nil, nil); code != http.StatusNotFound {
		c.t.Fatalf("refused changefeed %s was written: %d %s", id, code, body)
	}
}

// post sends a write, again while the answer is a 503 (an election: the
// machine is shared and loaded), for up to 20 s.
func (c *feedCluster) post(path string, body any) (int, string) {
	return c.write(http.MethodPost, path, body)
}

func (c *feedCluster) write(method, path string, body any) (code int, resp string) {
	deadline := time.Now().Add(20 * time.Second)
	retried := false
	for {
		code, resp = c.call(-1, method, path, body, nil)
		if retried && code == http.StatusConflict && strings.Contains(resp, `"admin_job_pending"`) {
			// A 503 can come after the command was committed ("it may
			// still apply"): the job pending now is the one this call
			// asked for.
			return http.StatusAccepted, resp
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return code, resp
		}
		retried = true
		time.Sleep(200 * time.Millisecond)
	}
}

// A create whose tables do not fit beside the running changefeeds' is
// refused with the numbers and writes nothing; pausing a changefeed makes
// room at once; a resume that would not fit is refused; an update that adds
// tables beyond the capacity is refused, one that drops tables is not.
func TestAdmissionRefusesChangefeedsOverCapacity(t *testing.T) {
	c := budgetCluster(t, 10) // capacity 30
	if code, body := c.post("/api/v1/changefeeds", api.ChangefeedRequest{ID: "a", SourceURI: datagenTables(20), SinkURI: "blackhole://"}); code != http.StatusCreated {
		t.Fatalf("create a: %d %s", code, body)
	}

	code, body := c.post("/api/v1/changefeeds", api.ChangefeedRequest{ID: "b", SourceURI: datagenTables(20), SinkURI: "blackhole://"})
	expectOverCapacity(t, "create b beside a", code, body, 20, 20, 30)
	c.expectAbsent("b")
	// Preview runs the same check.
	code, body = c.post("/api/v1/changefeeds/preview", api.ChangefeedRequest{SourceURI: datagenTables(20), SinkURI: "blackhole://"})
	expectOverCapacity(t, "preview of b", code, body, 20, 20, 30)
	// The filter is applied before counting: t0001..t0009 of b's 20
	// tables fit in the 10 free.
	filtered := &model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"*.t000*"}}}
	code, body = c.post("/api/v1/changefeeds/preview", api.ChangefeedRequest{SourceURI: datagenTables(20), SinkURI: "blackhole://", Config: filtered})
	if code != http.StatusOK {
		t.Fatalf("preview of a filtered b (9 tables, 10 free): %d %s", code, body)
	}

	// A pending pause frees a's share at once.
	if code, body := c.post("/api/v1/changefeeds/a/pause", nil); code != http.StatusAccepted {
		t.Fatalf("pause a: %d %s", code, body)
	}
	if code, body := c.post("/api/v1/changefeeds", api.ChangefeedRequest{ID: "b", SourceURI: datagenTables(20), SinkURI: "blackhole://"}); code != http.StatusCreated {
		t.Fatalf("create b after pausing a: %d %s", code, body)
	}
	c.waitState("a", model.StateStopped, 20*time.Second)
	code, body = c.post("/api/v1/changefeeds/a/resume", nil)
	expectOverCapacity(t, "resume a beside b", code, body, 20, 20, 30)
	if d := c.detail("a"); d.Info.State != model.StateStopped || d.Info.AdminJob != "" {
		t.Fatalf("refused resume changed a: state %s, admin job %q", d.Info.State, d.Info.AdminJob)
	}

	// b waits for its table set, then is paused and updated.
	testcluster.WaitFor(t, 20*time.Second, "b initialized", func() bool { d := c.detail("b"); return d.Status != nil && d.Status.Initialized })
	if code, body := c.post("/api/v1/changefeeds/b/pause", nil); code != http.StatusAccepted {
		t.Fatalf("pause b: %d %s", code, body)
	}
	c.waitState("b", model.StateStopped, 20*time.Second)
	code, body = c.write(http.MethodPut, "/api/v1/changefeeds/b", api.ChangefeedRequest{SourceURI: datagenTables(40)})
	expectOverCapacity(t, "update b to 40 tables", code, body, 40, 0, 30)
	if code, body := c.write(http.MethodPut, "/api/v1/changefeeds/b", api.ChangefeedRequest{SourceURI: datagenTables(5)}); code != http.StatusOK {
		t.Fatalf("update b to 5 tables: %d %s", code, body)
	}
	// a (20) and then b (5, as admitted by the update) fit in 30.
	for _, id := range []string{"a", "b"} {
		if code, body := c.post("/api/v1/changefeeds/"+id+"/resume", nil); code != http.StatusAccepted {
			t.Fatalf("resume %s: %d %s", id, code, body)
		}
	}
	// Now 25 run: a create of 6 does not fit, one of 5 does.
	code, body = c.post("/api/v1/changefeeds", api.ChangefeedRequest{ID: "c", SourceURI: datagenTables(6), SinkURI: "blackhole://"})
	expectOverCapacity(t, "create c of 6 beside 25", code, body, 6, 25, 30)
	if code, body := c.post("/api/v1/changefeeds", api.ChangefeedRequest{ID: "c", SourceURI: datagenTables(5), SinkURI: "blackhole://"}); code != http.StatusCreated {
		t.Fatalf("create c of 5 beside 25: %d %s", code, body)
	}
}

// The capacity is the budget of the live captures: when a node stops, a
// changefeed that fitted before is refused.
func TestAdmissionCapacityFollowsLiveCaptures(t *testing.T) {
	c := budgetCluster(t, 10)
	code, body := c.post("/api/v1/changefeeds/preview", api.ChangefeedRequest{SourceURI: datagenTables(25), SinkURI: "blackhole://"})
	if code != http.StatusOK {
		t.Fatalf("preview of 25 tables with three nodes of 10: %d %s", code, body)
	}
	c.StopNode(2)
	testcluster.WaitFor(t, 30*time.Second, "the stopped node's budget no longer counted", func() bool {
		code, body = c.post("/api/v1/changefeeds/preview", api.ChangefeedRequest{SourceURI: datagenTables(25), SinkURI: "blackhole://"})
		return code != http.StatusOK
	})
	expectOverCapacity(t, "preview of 25 tables with two nodes of 10", code, body, 25, 0, 20)
}
