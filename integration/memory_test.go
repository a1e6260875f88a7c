package integration

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
)

// TestLargeTransactionStaysWithinMemoryQuota: one PostgreSQL transaction of
// 2,000,000 rows (about 250 MB as rows in memory, far above the 64 MiB
// quota) meets a sink slowed to 1,000 rows/s. While the sink crawls, no
// node's RSS goes above the quota plus 300 MiB: the stream's reader stops
// at the quota, and what one transaction needs beyond it is spilled to
// disk. Then the sink is let go at full speed, and the transaction arrives
// whole: exactly 2,000,000 more rows written, none lost, none twice.
func TestLongLargeTransactionStaysWithinMemoryQuota(t *testing.T) {
	requireLong(t, "about 5 minutes")
	const rows = 2_000_000
	const quota = 64 << 20
	pg := testserver.StartPostgres(t, testserver.PostgresLogicalReplication())
	pg.CreateDatabase(t, "big")
	pg.Exec(t, "big", `CREATE TABLE wide (id int PRIMARY KEY, v bigint NOT NULL, pad varchar(100))`)

	c := StartCluster(t, binPath, 3, ClusterOptions{})
	c.WaitForOwner(60*time.Second, 0)
	source := pg.SuperConnString("big")
	cfg := &model.ChangefeedConfig{MemoryQuota: quota}
	c.CreateChangefeed(api.ChangefeedRequest{ID: "big", SourceURI: source, SinkURI: "blackhole://?rate=1000", Config: cfg})
	c.WaitCheckpointAbove("big", model.TsFromTime(time.Now()), 2*time.Minute)

	pg.Exec(t, "big", fmt.Sprintf(`INSERT INTO wide SELECT g, g * 7, repeat('x', 60 + g %% 40) FROM generate_series(1, %d) g`, rows))
	committed := model.TsFromTime(time.Now())
	began := time.Now()

	// Sample every node's RSS while the transaction moves through at the
	// sink's pace: from the commit until the server has decoded it and the
	// stream has pressed on the quota (spilled), and 20 s beyond.
	var peak int64
	var spilled float64
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		if spilled > 0 && deadline.Sub(time.Now()) > 20*time.Second {
			deadline = time.Now().Add(20 * time.Second)
		}
		for i := range c.Procs {
			if rss := c.RSS(i); rss > peak {
				peak = rss
			}
			if v, ok, err := c.Metric(i, "raftcdc_processor_spilled_bytes_total"); err == nil && ok && v > spilled {
				spilled = v
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("peak RSS %d MiB with a %d MiB quota; %d MiB spilled (sampled for %v after the commit)", peak>>20, quota>>20, int64(spilled)>>20, time.Since(began).Round(time.Second))
	if peak == 0 {
		t.Fatal("no RSS sample")
	}
	if limit := int64(quota + 300<<20); peak > limit {
		t.Fatalf("peak RSS %d MiB is above the quota + 300 MiB (%d MiB)", peak>>20, limit>>20)
	}
	if spilled == 0 {
		t.Fatal("nothing was spilled: the transaction never pressed on the quota, so the test proves nothing")
	}

	// Nothing of the transaction was flushed at 1,000 rows/s (it is flushed
	// whole or not at all). Full speed now: pause, unthrottle, resume.
	d, err := c.Detail("big")
	if err != nil {
		t.Fatal(err)
	}
	before := d.Count
	for _, step := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/api/v1/changefeeds/big/pause", nil},
		{http.MethodPut, "/api/v1/changefeeds/big", api.ChangefeedRequest{SinkURI: "blackhole://"}},
		{http.MethodPost, "/api/v1/changefeeds/big/resume", nil},
	} {
		Eventually(t, 30*time.Second, step.method+" "+step.path, func() (bool, string) {
			for _, i := range c.Up() {
				code, body, err := c.Do(i, step.method, step.path, step.body)
				if err == nil && code < 300 {
					return true, ""
				}
				if err == nil {
					return false, strconv.Itoa(code) + " " + string(body)
				}
			}
			return false, "no node answered"
		})
	}
	resumed := time.Now()
	c.WaitCheckpointAbove("big", committed, 10*time.Minute)
	d, err = c.Detail("big")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the transaction flushed %v after the resume; rows written %d before, %d after", time.Since(resumed).Round(time.Second), before, d.Count)
	if got := d.Count - before; got != rows {
		t.Fatalf("the resumed changefeed wrote %d rows, want exactly the %d of the transaction", got, rows)
	}
}

// requireLong skips a test that takes minutes unless RAFTCDC_LONG_TESTS is
// set, as `make test-long` and CI (.ci/run) do: the default run stays
// short, and CI still runs every test.
func requireLong(t *testing.T, how string) {
	t.Helper()
	if os.Getenv("RAFTCDC_LONG_TESTS") == "" {
		t.Skipf("long test (%s): run it with make test-long, as CI does (or RAFTCDC_LONG_TESTS=1)", how)
	}
}
