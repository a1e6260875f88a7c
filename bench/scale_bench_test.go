//go:build bench

package bench

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	manyArgs   = flag.String("many-args", "", "many tables: more server flags, space-separated (e.g. \"--raft-heartbeat-timeout 1s --raft-election-timeout 1s\")")
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
	if cp := listedCheckpoint(w.c, id); cp != 0 {
		w.lags = append(w.lags, time.Since(model.TsTime(cp)))
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

// listedCheckpoint is a changefeed's checkpoint from the changefeed list of
// a running node (0: none answered). The list carries no per-table detail:
// at 100,000 tables the detail is megabytes of JSON, and fetching it twice
// a second loaded the machine the benchmark measures.
func listedCheckpoint(c *integration.Cluster, id string) model.Ts {
	var out struct {
		Changefeeds []struct {
			ID         string `json:"id"`
			Checkpoint *struct {
				TSO model.Ts `json:"tso"`
			} `json:"checkpoint"`
		} `json:"changefeeds"`
	}
	if anyGetJSON(c, "/api/v1/changefeeds", &out) != nil {
		return 0
	}
	for _, f := range out.Changefeeds {
		if f.ID == id && f.Checkpoint != nil {
			return f.Checkpoint.TSO
		}
	}
	return 0
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
			caught = err == nil && running(d) == n && cpOf(d) > model.TsFromTime(t0)
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

// running counts the tables that appear in a position's running set.
func running(d feedDetail) int {
	n := 0
	for _, p := range d.Positions {
		n += len(p.Running)
	}
	return n
}

// saveProfile fetches a CPU profile of process i into path.
func saveProfile(c *integration.Cluster, i int, path string, secs int) error {
	return saveDebug(c, i, "profile", path, secs)
}

// profileAsync saves a CPU profile of process i while the benchmark goes
// on, and answers a wait for it: a process takes one CPU profile at a time,
// so wait before asking for the next. The test waits for it too before its
// cluster stops.
func profileAsync(t *testing.T, c *integration.Cluster, i int, path string, secs int) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := saveProfile(c, i, path, secs); err != nil {
			t.Logf("profile %s: %v", path, err)
		}
	}()
	t.Cleanup(func() { <-done })
	return func() { <-done }
}

// saveDebug fetches /debug/pprof/<kind> of process i over secs seconds
// into path (kind "profile": CPU; "trace": an execution trace).
func saveDebug(c *integration.Cluster, i int, kind, path string, secs int) error {
	cl := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", c.Procs[i].API, kind, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Such as "cpu profiling already in use": not a profile.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("debug/pprof/%s: %s: %s", kind, resp.Status, bytes.TrimSpace(b))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// TestBenchManyTables is the probe of issue 16: one changefeed of
// -many-tables datagen tables at -many-rate rows/s each over three
// processes, beside a small changefeed. It records how long until every
// table replicates, the checkpoint lag, RSS, owner tick time, elections and
// heartbeat timeouts while it runs, and how long a pause of the small
// changefeed and a remove of the big one take to be carried out.
func TestBenchManyTables(t *testing.T) {
	args := append([]string{"--log-level", "warn", "--table-budget", strconv.Itoa(*manyBudget)}, strings.Fields(*manyArgs)...)
	c := integration.StartCluster(t, buildBinary(t), 3, integration.ClusterOptions{ExtraArgs: args})
	leader := c.WaitForLeader(30 * time.Second)
	// Every capture registered first: tables dispatched before one joins
	// are moved to it afterwards (a rebalance is measured on its own).
	integration.WaitFor(t, 60*time.Second, "three live captures", func() bool {
		var out struct {
			Captures []struct{ Liveness string } `json:"captures"`
		}
		if err := c.GetJSON(leader, "/api/v1/captures", &out); err != nil {
			return false
		}
		n := 0
		for _, cp := range out.Captures {
			if cp.Liveness == "alive" {
				n++
			}
		}
		return n == 3
	})
	createFeed(t, c, map[string]any{"id": "small", "source_uri": "datagen://?tables=10&rate=10", "sink_uri": "blackhole://"})
	// Heartbeat timeouts logged so far belong to the cluster's own first
	// election; the run's are those after.
	hbBefore := heartbeatTimeouts(c)
	fmt.Printf("RESULT many-tables heartbeat_timeouts_before_the_changefeed=%d\n", hbBefore)
	w := newWatch(c)
	t0 := time.Now()
	startupProfiled := func() {}
	if dir := os.Getenv("MANY_PROFILE_DIR"); dir != "" {
		// The start-up too: the first 10 s after the create, when every
		// node opens its share of the tables.
		startupProfiled = profileAsync(t, c, leader, filepath.Join(dir, "leader-startup.pprof"), 10)
	}
	createFeed(t, c, map[string]any{"id": "many", "source_uri": fmt.Sprintf("datagen://?tables=%d&rate=%g", *manyTables, *manyRate), "sink_uri": "blackhole://"})
	var upAfter time.Duration
	for time.Since(t0) < 5*time.Minute {
		w.sample("small")
		if d, err := anyFeed(c, "many"); err == nil && running(d) == *manyTables {
			upAfter = time.Since(t0)
			break
		}
		time.Sleep(time.Second)
	}
	d, _ := anyFeed(c, "many")
	fmt.Printf("RESULT many-tables tables=%d rate=%g all_replicating_after=%v running=%d elections_so_far=%d heartbeat_timeouts=%d (since the changefeed %d) rss=%s\n",
		*manyTables, *manyRate, upAfter.Round(time.Millisecond), running(d), w.elections(), heartbeatTimeouts(c), heartbeatTimeouts(c)-hbBefore, w.rss())
	if os.Getenv("MANY_PROFILE_DIR") != "" {
		startupProfiled()
		if l := c.Leader(); l >= 0 {
			leader = l
		}
		if err := saveProfile(c, leader, filepath.Join(os.Getenv("MANY_PROFILE_DIR"), "leader.pprof"), 15); err != nil {
			t.Logf("profile: %v", err)
		}
	}
	tickBefore, nBefore := ownerTickAvg(c, leader)
	lw := newWatch(c)
	end := time.Now().Add(*manySample)
	for time.Now().Before(end) {
		lw.sample("many")
		time.Sleep(500 * time.Millisecond)
	}
	tickAfter, nAfter := ownerTickAvg(c, leader)
	tick := time.Duration(0)
	if nAfter > nBefore {
		tick = time.Duration((float64(tickAfter)*nAfter - float64(tickBefore)*nBefore) / (nAfter - nBefore))
	}
	goroutines := scrapeMetric(c, leader, "go_goroutines")["go_goroutines"]
	// The share of the sampling time the owner spent ticking (if the
	// leader did not change meanwhile).
	busy := tick.Seconds() * (nAfter - nBefore) / manySample.Seconds()
	fmt.Printf("RESULT many-tables tables=%d samples=%d lag_p50=%v lag_p99=%v owner_tick_avg=%v owner_ticks=%.0f owner_busy=%.2f goroutines_leader=%.0f elections=%d heartbeat_timeouts_since_the_changefeed=%d rss=%s\n",
		*manyTables, len(lw.lags), percentile(lw.lags, 0.5).Round(time.Millisecond), percentile(lw.lags, 0.99).Round(time.Millisecond), tick.Round(time.Microsecond),
		nAfter-nBefore, busy, goroutines, lw.elections(), heartbeatTimeouts(c)-hbBefore, lw.rss())

	// Admin commands under load: pause the small one, remove the big one.
	t1 := time.Now()
	paused := time.Duration(-1)
	asked := false
	for time.Since(t1) < 2*time.Minute {
		for i := range c.Procs {
			if asked {
				break
			}
			if code, _, err := c.Do(i, http.MethodPost, "/api/v1/changefeeds/small/pause", nil); err == nil && code == http.StatusAccepted {
				asked = true
			}
		}
		if s, err := anyFeed(c, "small"); asked && err == nil && s.Info.State == string(model.StateStopped) && len(s.Tasks) == 0 {
			paused = time.Since(t1)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	removed := removeAndTime(t, c, "many", 2*time.Minute)
	fmt.Printf("RESULT many-tables tables=%d pause_small_took=%v remove_many_took=%v elections_total=%d heartbeat_timeouts_since_the_changefeed=%d\n",
		*manyTables, paused.Round(time.Millisecond), removed.Round(time.Millisecond), w.elections()+lw.elections(), heartbeatTimeouts(c)-hbBefore)
	if dir := os.Getenv("MANY_LOG_DIR"); dir != "" {
		// The nodes' logs outlive the test's temporary directory, to see
		// when and why leadership moved.
		for i := range c.Procs {
			if b, err := os.ReadFile(c.Procs[i].LogPath); err == nil {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)), b, 0o644)
			}
		}
		fmt.Printf("many-tables: created at %s\n", t0.UTC().Format(time.RFC3339Nano))
	}
}
