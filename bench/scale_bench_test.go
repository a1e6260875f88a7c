//go:build bench

package bench

import (
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/integration"
	"github.com/raftcdc/raftcdc/model"
)

var (
	budgetTables = flag.String("budget-tables", "1000,2000,4000,8000", "table budget: table counts tried in turn on one node, ascending; stops at the first that does not hold")
	budgetRate   = flag.Float64("budget-rate", 0.5, "table budget: rows/s per table")
	budgetSample = flag.Duration("budget-sample", 20*time.Second, "table budget: lag sampling time per count")
	budgetLagMax = flag.Duration("budget-lag-max", 2*time.Second, "table budget: a count holds while its checkpoint lag p99 stays below this")

	manyTables = flag.Int("many-tables", 100000, "many tables: tables of the changefeed")
	manyRate   = flag.Float64("many-rate", 0.001, "many tables: rows/s per table")
	manySample = flag.Duration("many-sample", 60*time.Second, "many tables: sampling time once every table replicates")
	manyBudget = flag.Int("many-budget", 40000, "many tables: --table-budget of each node")
)

// watch samples what the scale runs record: checkpoint lag, Raft terms
// (an election raises the term), RSS of every process.
type watch struct {
	c        *integration.Cluster
	lags     []time.Duration
	firstTrm map[int]uint64
	lastTrm  map[int]uint64
	peakRSS  map[int]int64
}

func newWatch(c *integration.Cluster) *watch {
	return &watch{c: c, firstTrm: map[int]uint64{}, lastTrm: map[int]uint64{}, peakRSS: map[int]int64{}}
}

func (w *watch) sample(id string) {
	if d, err := anyFeed(w.c, id); err == nil && cpOf(d) != 0 {
		w.lags = append(w.lags, time.Since(model.TsTime(cpOf(d))))
	}
	for i := range w.c.Procs {
		if s, err := w.c.Status(i); err == nil {
			if _, ok := w.firstTrm[i]; !ok {
				w.firstTrm[i] = s.Term
			}
			w.lastTrm[i] = max(w.lastTrm[i], s.Term)
		}
		w.peakRSS[i] = max(w.peakRSS[i], w.c.RSS(i))
	}
}

// elections is the largest term increase any node saw.
func (w *watch) elections() uint64 {
	var n uint64
	for i, f := range w.firstTrm {
		n = max(n, w.lastTrm[i]-f)
	}
	return n
}

func (w *watch) rss() string {
	var parts []string
	for i := range w.c.Procs {
		parts = append(parts, fmt.Sprintf("%s=%dMiB", w.c.Procs[i].ID, w.peakRSS[i]>>20))
	}
	return strings.Join(parts, ",")
}

func ownerTickAvg(c *integration.Cluster, i int) (time.Duration, float64) {
	m := scrapeMetric(c, i, "raftcdc_owner_tick_duration_seconds")
	n := m["raftcdc_owner_tick_duration_seconds_count"]
	if n == 0 {
		return 0, 0
	}
	return time.Duration(m["raftcdc_owner_tick_duration_seconds_sum"] / n * float64(time.Second)), n
}

func heartbeatTimeouts(c *integration.Cluster) int {
	n := 0
	for i := range c.Procs {
		n += c.LogContains(i, "heartbeat timeout")
	}
	return n
}

// removeAndTime removes a changefeed and answers how long until it is
// removed (state removed, no task left), or -1 after the deadline.
func removeAndTime(t *testing.T, c *integration.Cluster, id string, deadline time.Duration) time.Duration {
	t0 := time.Now()
	ok := false
	for time.Since(t0) < 30*time.Second && !ok {
		for i := range c.Procs {
			if code, _, err := c.Do(i, http.MethodDelete, "/api/v1/changefeeds/"+id, nil); err == nil && code == http.StatusAccepted {
				ok = true
				break
			}
		}
		if !ok {
			time.Sleep(200 * time.Millisecond)
		}
	}
	for time.Since(t0) < deadline {
		d, err := anyFeed(c, id)
		if err == nil && d.Info.State == string(model.StateRemoved) && len(d.Tasks) == 0 {
			return time.Since(t0)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return -1
}

// TestBenchTableBudget measures what one node carries, for the default of
// --table-budget: one process, datagen tables at a low rate into
// blackhole, more tables each round until the checkpoint lag p99 passes
// -budget-lag-max.
func TestBenchTableBudget(t *testing.T) {
	c := integration.StartCluster(t, buildBinary(t), 1, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn", "--table-budget", "10000000"}})
	c.WaitForLeader(30 * time.Second)
	for _, s := range strings.Split(*budgetTables, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("-budget-tables: %v", err)
		}
		id := fmt.Sprintf("budget-%d", n)
		t0 := time.Now()
		createFeed(t, c, map[string]any{"id": id, "source_uri": fmt.Sprintf("datagen://?tables=%d&rate=%g", n, *budgetRate), "sink_uri": "blackhole://"})
		caught := false
		for time.Since(t0) < 2*time.Minute && !caught {
			d, err := anyFeed(c, id)
			caught = err == nil && cpOf(d) > model.TsFromTime(t0)
			time.Sleep(200 * time.Millisecond)
		}
		up := time.Since(t0)
		tick0, n0 := ownerTickAvg(c, 0)
		w := newWatch(c)
		end := time.Now().Add(*budgetSample)
		for caught && time.Now().Before(end) {
			w.sample(id)
			time.Sleep(100 * time.Millisecond)
		}
		tick1, n1 := ownerTickAvg(c, 0)
		tick := time.Duration(0)
		if n1 > n0 {
			tick = time.Duration((float64(tick1)*n1 - float64(tick0)*n0) / (n1 - n0))
		}
		p99 := percentile(w.lags, 0.99)
		holds := caught && p99 < *budgetLagMax && w.elections() == 0
		fmt.Printf("RESULT table-budget tables=%d rate=%g caught_up=%v after=%v samples=%d lag_p50=%v lag_p99=%v owner_tick_avg=%v elections=%d rss=%s holds=%v\n",
			n, *budgetRate, caught, up.Round(time.Millisecond), len(w.lags), percentile(w.lags, 0.5).Round(time.Millisecond), p99.Round(time.Millisecond),
			tick.Round(time.Microsecond), w.elections(), w.rss(), holds)
		rm := removeAndTime(t, c, id, 60*time.Second)
		fmt.Printf("RESULT table-budget tables=%d remove_took=%v\n", n, rm.Round(time.Millisecond))
		if !holds {
			break
		}
		time.Sleep(3 * time.Second)
	}
}
