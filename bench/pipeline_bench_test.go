//go:build bench

package bench

import (
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/integration"
	"github.com/raftcdc/raftcdc/model"
)

var (
	ddlLagDuration = flag.Duration("ddl-lag-duration", 60*time.Second, "ddl lag: sampling time per configuration")
	quotaDuration  = flag.Duration("quota-duration", 45*time.Second, "memory quota: sampling time per run")
)

// lagOf samples a changefeed's checkpoint lag every 100 ms for d.
func lagOf(t *testing.T, c *integration.Cluster, id string, d time.Duration) []time.Duration {
	var lags []time.Duration
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		f, err := anyFeed(c, id)
		if err == nil && cpOf(f) != 0 {
			lags = append(lags, time.Since(model.TsTime(cpOf(f))))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return lags
}

// TestBenchDDLLag: checkpoint lag of 100 tables at 20,000 rows/s over three
// nodes with a DDL every 10 s (each one stops every table at its ts − 1
// until the owner has executed it), next to the same changefeed without
// DDL, in the same run.
func TestBenchDDLLag(t *testing.T) {
	c := integration.StartCluster(t, buildBinary(t), 3, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn"}})
	c.WaitForLeader(30 * time.Second)
	for _, cfg := range []struct{ id, uri string }{
		{"noddl", "datagen://?tables=100&rate=200&txn-rows=3&txn-tables=3&seed=11"},
		{"ddl", "datagen://?tables=100&rate=200&txn-rows=3&txn-tables=3&seed=11&ddl-every=10s"},
	} {
		createFeed(t, c, map[string]any{"id": cfg.id, "source_uri": cfg.uri, "sink_uri": "blackhole://"})
		start := time.Now()
		integration.WaitFor(t, 2*time.Minute, cfg.id+" replicating", func() bool {
			d, err := anyFeed(c, cfg.id)
			return err == nil && cpOf(d) > model.TsFromTime(start)
		})
		time.Sleep(10 * time.Second) // let dispatch settle before sampling
		lags := lagOf(t, c, cfg.id, *ddlLagDuration)
		fmt.Printf("RESULT ddl-lag changefeed=%s tables=100 rows/s=20000 samples=%d lag_p50=%v lag_p99=%v lag_max=%v\n", cfg.id, len(lags),
			percentile(lags, 0.5).Round(time.Millisecond), percentile(lags, 0.99).Round(time.Millisecond), percentile(lags, 1).Round(time.Millisecond))
		for i := range c.Procs {
			c.Do(i, "DELETE", "/api/v1/changefeeds/"+cfg.id, nil)
			break
		}
		time.Sleep(5 * time.Second)
	}
}

// TestBenchMemoryQuota: peak RSS of a node whose sink is slowed to 1,000
// rows/s while the source offers far more, for two quotas. The sources are
// throttled at the quota, and what a transaction needs beyond it spills.
func TestBenchMemoryQuota(t *testing.T) {
	bin := buildBinary(t)
	for _, run := range []struct {
		quota uint64
		limit string
	}{{64 << 20, ""}, {64 << 20, "320MiB"}, {256 << 20, ""}, {256 << 20, "512MiB"}} {
		quota := run.quota
		args := []string{"--log-level", "warn"}
		if run.limit != "" {
			args = append(args, "--memory-limit", run.limit)
		}
		c := integration.StartCluster(t, bin, 1, integration.ClusterOptions{ExtraArgs: args})
		c.WaitForLeader(30 * time.Second)
		id := fmt.Sprintf("q%d", quota>>20)
		limit := run.limit
		if limit == "" {
			limit = "none"
		}
		createFeed(t, c, map[string]any{"id": id,
			"source_uri": "datagen://?tables=4&rate=5000&txn-rows=2000&txn-tables=2&keys=100000",
			"sink_uri":   "blackhole://?rate=1000",
			"start_ts":   model.TsFromTime(time.Now().Add(-2 * time.Minute)),
			"config":     map[string]any{"memory_quota": quota}})
		base := c.RSS(0)
		var peak int64
		end := time.Now().Add(*quotaDuration)
		for time.Now().Before(end) {
			peak = max(peak, c.RSS(0))
			time.Sleep(200 * time.Millisecond)
		}
		spilled := scrapeMetric(c, 0, "raftcdc_processor_spilled_bytes_total")
		var sp float64
		for _, v := range spilled {
			sp += v
		}
		fmt.Printf("RESULT memory-quota quota=%dMiB memory-limit=%s rss_before=%dMiB rss_peak=%dMiB over_quota=%dMiB spilled=%dMiB\n",
			quota>>20, limit, base>>20, peak>>20, (peak-int64(quota))>>20, int64(sp)>>20)
		c.StopAll()
	}
}
