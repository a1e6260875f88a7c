//go:build bench

package bench

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/integration"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source/datagen"
)

var (
	steadyDuration = flag.Duration("steady-duration", 60*time.Second, "steady: sampling time")
	steadyTables   = flag.Int("steady-tables", 1000, "steady: tables (20 rows/s each)")
	steadyMoves    = flag.Duration("steady-moves-every", 0, "steady: move tables between captures this often while sampling (0: never), as a rebalance would")
	steadyMoveN    = flag.Int("steady-moves", 4, "steady: tables moved each time")
	cdcKills       = flag.Int("cdc-kills", 10, "cdc failover: kills of each kind")
	bigTables      = flag.Int("big-tables", 10000, "big: tables of the large changefeed")
	throughputURI  = flag.String("throughput-uri", "datagen://?tables=8&rate=20000&txn-rows=3&txn-tables=2", "throughput: the datagen source")
	catchUpHistory = flag.Duration("catchup-history", 10*time.Second, "throughput catch-up: the span of history both sides read")
	catchUpQuota   = flag.Uint64("catchup-quota", 0, "throughput catch-up: the changefeed's memory-quota in bytes (0: the default)")
	catchUpProfile = flag.String("catchup-profile", "", "throughput catch-up: write a 5 s CPU profile of the node, taken 1 s into round 0, to this file")
	catchUpTrace   = flag.String("catchup-trace", "", "throughput catch-up: write a 2 s execution trace of the node, taken 3 s into round 0, to this file (go tool trace -pprof=sync|sched|syscall reads where goroutines waited)")
)

type feedDetail struct {
	Info struct {
		State string `json:"state"`
	} `json:"info"`
	Status *struct {
		CheckpointTs uint64 `json:"checkpoint_ts"`
		Tables       []any  `json:"tables"`
	} `json:"status"`
	Tasks map[string]struct {
		Tables map[string]any `json:"tables"`
	} `json:"tasks"`
	Positions map[string]struct {
		Running map[string]uint64 `json:"running"`
	} `json:"positions"`
	Count uint64 `json:"rows_written"`
}

func getFeed(c *integration.Cluster, i int, id string) (feedDetail, error) {
	var d feedDetail
	err := c.GetJSON(i, "/api/v1/changefeeds/"+id, &d)
	return d, err
}

func anyFeed(c *integration.Cluster, id string) (feedDetail, error) {
	var d feedDetail
	err := anyGetJSON(c, "/api/v1/changefeeds/"+id, &d)
	return d, err
}

// anyGetJSON is GET path from the first running node that answers.
func anyGetJSON(c *integration.Cluster, path string, out any) error {
	last := errors.New("no node is running")
	for i := range c.Procs {
		if c.Running(i) {
			if last = c.GetJSON(i, path, out); last == nil {
				return nil
			}
		}
	}
	return last
}

func createFeed(t *testing.T, c *integration.Cluster, body map[string]any) {
	t.Helper()
	integration.WaitFor(t, 30*time.Second, "changefeed created", func() bool {
		for i := range c.Procs {
			if !c.Running(i) {
				continue
			}
			code, b, err := c.Do(i, http.MethodPost, "/api/v1/changefeeds", body)
			if err == nil && code == http.StatusCreated {
				return true
			}
			if err == nil && code != http.StatusServiceUnavailable {
				t.Fatalf("create: %d %s", code, b)
			}
		}
		return false
	})
}

func cpOf(d feedDetail) uint64 {
	if d.Status == nil {
		return 0
	}
	return d.Status.CheckpointTs
}

// TestBenchThroughput compares one node replicating datagen's typed history
// → blackhole with datagen generating the same history alone, in the same
// run: the ratio is the cost of the pipeline (sorter, quota, sink calls,
// progress reports), not of making rows.
func TestBenchThroughput(t *testing.T) {
	uri := *throughputURI
	window := 8 * time.Second
	history := 150 * time.Second
	bin := buildBinary(t)

	// Each side reports rows/s and rows per CPU second: on a shared machine
	// the second is what compares.
	alone := func() (float64, float64) {
		ctx, cancel := context.WithTimeout(context.Background(), window)
		defer cancel()
		total, wall, cpu := readAlone(ctx, t, uri, model.TsFromTime(time.Now().Add(-history)), 0)
		return float64(total) / wall.Seconds(), float64(total) / cpu.Seconds()
	}

	cluster := func(round int) (float64, float64) {
		c := integration.StartCluster(t, bin, 1, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn"}})
		defer c.StopAll()
		c.WaitForLeader(30 * time.Second)
		c.WaitCaptureAlive(c.Procs[0].ID, 0, 30*time.Second) // a node ready to take tables
		id := fmt.Sprintf("tp%d", round)
		createFeed(t, c, map[string]any{"id": id, "source_uri": uri, "sink_uri": "blackhole://", "start_ts": model.TsFromTime(time.Now().Add(-history))})
		integration.WaitFor(t, 30*time.Second, "rows flowing", func() bool {
			d, err := getFeed(c, 0, id)
			return err == nil && d.Count > 0
		})
		d0, _ := getFeed(c, 0, id)
		t0, cpu0 := time.Now(), c.CPUTime(0)
		time.Sleep(window) // a measurement window, not a wait for a condition
		d1, _ := getFeed(c, 0, id)
		n := float64(d1.Count - d0.Count)
		return n / time.Since(t0).Seconds(), n / (c.CPUTime(0) - cpu0).Seconds()
	}

	var a, b, ac, bc float64
	const rounds = 3
	for round := 0; round < rounds; round++ {
		ar, acpu := alone()
		br, bcpu := cluster(round)
		a, b, ac, bc = a+ar, b+br, ac+acpu, bc+bcpu
		t.Logf("round %d: datagen alone %.0f rows/s (%.0f per CPU s), one node → blackhole %.0f rows/s (%.0f per CPU s)", round, ar, acpu, br, bcpu)
	}
	fmt.Printf("RESULT throughput datagen-alone=%.0f rows/s (%.0f/CPU s) node=%.0f rows/s (%.0f/CPU s) ratio=%.2f per-CPU-ratio=%.2f\n",
		a/rounds, ac/rounds, b/rounds, bc/rounds, b/a, bc/ac)
}

// TestBenchThroughputCatchUp: the same comparison as TestBenchThroughput,
// over a fixed span of history read to its end instead of a window in the
// middle of a catch-up. A window counts the rows flushed in it, while the
// node may spend the window's CPU reading far ahead of what it flushes
// (tables ahead of a DDL barrier keep reading, into memory and spill);
// over the whole span both sides do exactly the same work: every row of
// (start, end] generated, and for the node also delivered to blackhole.
func TestBenchThroughputCatchUp(t *testing.T) {
	uri := *throughputURI
	bin := buildBinary(t)
	alone := func(start, end model.Ts) (uint64, time.Duration, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		return readAlone(ctx, t, uri, start, end)
	}
	node := func(round int, start, end model.Ts) (uint64, time.Duration, time.Duration) {
		c := integration.StartCluster(t, bin, 1, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn"}})
		defer c.StopAll()
		c.WaitForLeader(30 * time.Second)
		// Timing starts on a node ready to take tables: the comparison is
		// the pipeline against datagen, not a node's boot.
		c.WaitCaptureAlive(c.Procs[0].ID, 0, 30*time.Second)
		id := fmt.Sprintf("cu%d", round)
		t0, cpu0 := time.Now(), c.CPUTime(0)
		body := map[string]any{"id": id, "source_uri": uri, "sink_uri": "blackhole://", "start_ts": start, "target_ts": end}
		if *catchUpQuota != 0 {
			body["config"] = map[string]any{"memory_quota": *catchUpQuota}
		}
		createFeed(t, c, body)
		if round == 0 && *catchUpTrace != "" {
			go func() {
				time.Sleep(3 * time.Second) // into the catch-up's steady part
				if err := saveDebug(c, 0, "trace", *catchUpTrace, 2); err != nil {
					t.Errorf("trace: %v", err)
				}
			}()
		}
		if round == 0 && *catchUpProfile != "" {
			go func() {
				time.Sleep(time.Second) // into the catch-up, past the changefeed's start
				if err := saveProfile(c, 0, *catchUpProfile, 5); err != nil {
					t.Errorf("profile: %v", err)
				}
			}()
		}
		var d feedDetail
		// When the first row and the last were counted: what lies outside
		// is starting the changefeed and the checkpoint reaching its end.
		var first, last time.Time
		var lastCount uint64
		integration.WaitFor(t, 10*time.Minute, "the changefeed at its target ts", func() bool {
			var err error
			d, err = getFeed(c, 0, id)
			if err == nil && d.Count > lastCount {
				if lastCount == 0 {
					first = time.Now()
				}
				last, lastCount = time.Now(), d.Count
			}
			return err == nil && d.Status != nil && model.Ts(d.Status.CheckpointTs) >= end
		})
		wall := time.Since(t0)
		t.Logf("round %d: first rows counted after %s, the last after %s, the checkpoint at its end after %s", round, first.Sub(t0).Round(time.Millisecond), last.Sub(t0).Round(time.Millisecond), wall.Round(time.Millisecond))
		return d.Count, wall, c.CPUTime(0) - cpu0
	}
	const rounds = 3
	for round := 0; round < rounds; round++ {
		// A span that ended a few seconds ago: all of it is history for
		// both sides, read as fast as they can.
		end := model.TsFromTime(time.Now().Add(-5 * time.Second))
		start := model.TsFromTime(time.Now().Add(-5*time.Second - *catchUpHistory))
		ar, aw, ac := alone(start, end)
		nr, nw, nc := node(round, start, end)
		if ar != nr {
			t.Errorf("round %d: datagen alone produced %d rows in the span, the node wrote %d", round, ar, nr)
		}
		fmt.Printf("RESULT throughput-catchup round %d: %d rows; datagen alone %.0f rows/s (%.1f µs CPU/row), one node → blackhole %.0f rows/s (%.1f µs CPU/row); ratio %.2f, CPU ratio %.2f (load %s)\n",
			round, ar, float64(ar)/aw.Seconds(), float64(ac.Microseconds())/float64(ar), float64(nr)/nw.Seconds(), float64(nc.Microseconds())/float64(max(nr, 1)),
			(float64(nr)/nw.Seconds())/(float64(ar)/aw.Seconds()), (float64(ac)/float64(ar))/(float64(nc)/float64(max(nr, 1))), loadavg())
	}
}

// readAlone reads every table of a datagen source from start, one
// subscription per table as a node's pipelines do, and counts the rows:
// with end 0 until ctx ends, otherwise those committed at or below end,
// until every table's resolved ts has passed it. It returns the rows, the
// wall time and this process's CPU time.
func readAlone(ctx context.Context, t *testing.T, uri string, start, end model.Ts) (uint64, time.Duration, time.Duration) {
	src, err := datagen.Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tables, err := src.TablesAt(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	counts := make(chan uint64, len(tables))
	t0, cpu0 := time.Now(), cpuSelf()
	for _, tb := range tables {
		go func(tb model.TableName) {
			var n uint64
			defer func() { counts <- n }()
			sub, err := src.SubscribeTxns(ctx, tb, start)
			if err != nil {
				t.Error(err)
				return
			}
			defer sub.Close()
			for {
				b, err := sub.Next(ctx)
				if err != nil {
					if end != 0 {
						t.Error(err) // a span read to its end must not be cut short
					}
					return
				}
				for _, txn := range b.Txns {
					if end == 0 || txn.CommitTs <= end {
						n += uint64(len(txn.Rows))
					}
				}
				if end != 0 && b.ResolvedTs >= end {
					return
				}
			}
		}(tb)
	}
	var total uint64
	for range tables {
		total += <-counts
	}
	return total, time.Since(t0), cpuSelf() - cpu0
}

func scrapeMetric(c *integration.Cluster, i int, name string) map[string]float64 {
	resp, err := http.Get("http://" + c.Procs[i].API + "/metrics")
	out := map[string]float64{}
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name) {
			f := strings.Fields(line)
			if len(f) == 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				out[f[0]] = v
			}
		}
	}
	return out
}

// TestBenchSteady samples the checkpoint lag of a 1,000-table changefeed at
// 20,000 rows/s over three nodes.
func TestBenchSteady(t *testing.T) {
	bin := buildBinary(t)
	c := integration.StartCluster(t, bin, 3, clusterOptions(t, bin, "--log-level", "warn"))
	c.WaitForLeader(30 * time.Second)
	n := *steadyTables
	createFeed(t, c, map[string]any{"id": "steady", "source_uri": fmt.Sprintf("datagen://?tables=%d&rate=20", n), "sink_uri": "blackhole://"})
	start := time.Now()
	integration.WaitFor(t, 120*time.Second, "every table replicating", func() bool {
		d, err := anyFeed(c, "steady")
		return err == nil && cpOf(d) > model.TsFromTime(start)
	})
	t.Logf("all %d tables replicating after %v", n, time.Since(start))
	// Let the initial rebalancing settle before sampling.
	time.Sleep(10 * time.Second)
	var lags []time.Duration
	end := time.Now().Add(*steadyDuration)
	nextMove, moved := time.Now(), 0
	for time.Now().Before(end) {
		if *steadyMoves > 0 && !time.Now().Before(nextMove) {
			moved += moveSome(t, c, "steady", *steadyMoveN)
			nextMove = time.Now().Add(*steadyMoves)
		}
		d, err := anyFeed(c, "steady")
		if err == nil && cpOf(d) != 0 {
			lags = append(lags, time.Since(model.TsTime(cpOf(d))))
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("RESULT steady tables=%d rows/s=%d moves_every=%v tables_moved=%d samples=%d lag_p50=%v lag_p99=%v lag_max=%v\n", n, 20*n, *steadyMoves, moved, len(lags),
		percentile(lags, 0.5).Round(time.Millisecond), percentile(lags, 0.99).Round(time.Millisecond), percentile(lags, 1).Round(time.Millisecond))
}

// moveSome asks the owner to move up to n tables from the most loaded
// capture to the least loaded one (what a rebalance does), and returns how
// many it asked for.
func moveSome(t *testing.T, c *integration.Cluster, id string, n int) int {
	d, err := anyFeed(c, id)
	if err != nil {
		return 0
	}
	var from, to string
	for capture, task := range d.Tasks {
		if from == "" || len(task.Tables) > len(d.Tasks[from].Tables) {
			from = capture
		}
		if to == "" || len(task.Tables) < len(d.Tasks[to].Tables) {
			to = capture
		}
	}
	if from == "" || from == to {
		return 0
	}
	asked := 0
	for table := range d.Tasks[from].Tables {
		if asked == n {
			break
		}
		id64, err := strconv.ParseInt(table, 10, 64)
		if err != nil {
			continue
		}
		for i := range c.Procs {
			if !c.Running(i) {
				continue
			}
			code, _, err := c.Do(i, http.MethodPost, "/api/v1/changefeeds/"+id+"/move-table", map[string]any{"table_id": id64, "target_capture": to})
			if err == nil && code == http.StatusAccepted {
				asked++
				break
			}
		}
	}
	return asked
}

// TestBenchCDCFailover measures kill -9 of the leader → checkpoint advancing
// again, and kill -9 of a follower → its tables replicating elsewhere.
func TestBenchCDCFailover(t *testing.T) {
	c := integration.StartCluster(t, buildBinary(t), 3, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn"}})
	c.WaitForLeader(30 * time.Second)
	createFeed(t, c, map[string]any{"id": "fo", "source_uri": "datagen://?tables=32&rate=50", "sink_uri": "blackhole://"})
	integration.WaitFor(t, 60*time.Second, "replicating", func() bool {
		d, err := anyFeed(c, "fo")
		return err == nil && cpOf(d) > model.TsFromTime(time.Now().Add(-2*time.Second))
	})
	measure := func(kind string, victim func() int) []time.Duration {
		var out []time.Duration
		for k := 0; k < *cdcKills; k++ {
			// Start from a settled state: every node up and the checkpoint fresh.
			integration.WaitFor(t, 60*time.Second, "settled", func() bool {
				d, err := anyFeed(c, "fo")
				return err == nil && cpOf(d) > model.TsFromTime(time.Now().Add(-time.Second)) && len(d.Tasks) == 3
			})
			v := victim()
			d, _ := anyFeed(c, "fo")
			before := cpOf(d)
			var onVictim int
			if task, ok := d.Tasks[c.Procs[v].ID]; ok {
				onVictim = len(task.Tables)
			}
			c.Kill(v, syscall.SIGKILL)
			t0 := time.Now()
			integration.WaitFor(t, 60*time.Second, "checkpoint advancing with the victim's tables elsewhere", func() bool {
				d, err := anyFeed(c, "fo")
				if err != nil || cpOf(d) <= before {
					return false
				}
				_, still := d.Tasks[c.Procs[v].ID]
				return !still || onVictim == 0
			})
			out = append(out, time.Since(t0))
			t.Logf("%s kill %d (%s, %d tables): %v", kind, k+1, c.Procs[v].ID, onVictim, time.Since(t0).Round(time.Millisecond))
			c.Restart(v)
			integration.WaitFor(t, 30*time.Second, "restarted node ready", func() bool {
				code, _, err := c.Do(v, http.MethodGet, "/readyz", nil)
				return err == nil && code == http.StatusOK
			})
		}
		return out
	}
	leaderTimes := measure("leader", func() int { return c.WaitForLeader(30 * time.Second) })
	followerTimes := measure("follower", func() int { return (c.WaitForLeader(30*time.Second) + 1) % 3 })
	fmt.Printf("RESULT cdc-failover leader kills=%d p50=%v max=%v\n", len(leaderTimes), percentile(leaderTimes, 0.5).Round(time.Millisecond), percentile(leaderTimes, 1).Round(time.Millisecond))
	fmt.Printf("RESULT cdc-failover follower kills=%d p50=%v max=%v\n", len(followerTimes), percentile(followerTimes, 0.5).Round(time.Millisecond), percentile(followerTimes, 1).Round(time.Millisecond))
}

// TestBenchBigChangefeed creates a 10,000-table changefeed and measures the
// time until every table replicates, the state machine's size, and the
// owner's tick time.
func TestBenchBigChangefeed(t *testing.T) {
	// The budget is raised to let the probe in: it measures past the
	// default capacity on purpose.
	c := integration.StartCluster(t, buildBinary(t), 3, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn", "--table-budget", strconv.Itoa(*bigTables)}})
	leader := c.WaitForLeader(30 * time.Second)
	t0 := time.Now()
	createFeed(t, c, map[string]any{"id": "big", "source_uri": fmt.Sprintf("datagen://?tables=%d&rate=0.5", *bigTables), "sink_uri": "blackhole://"})
	// "Replicating" = every table's pipeline is up and has reported progress
	// (it appears in a position's Running set); "caught up" = the changefeed
	// checkpoint, the minimum over all 10,000 tables, passed the create time.
	var running, caughtUp time.Duration
	integration.WaitFor(t, 300*time.Second, "every table replicating and the checkpoint past the start", func() bool {
		d, err := getFeed(c, leader, "big")
		if err != nil {
			return false
		}
		if running == 0 {
			n := 0
			for _, p := range d.Positions {
				n += len(p.Running)
			}
			if n == *bigTables {
				running = time.Since(t0)
			}
		}
		if running != 0 && cpOf(d) > model.TsFromTime(t0) {
			caughtUp = time.Since(t0)
			return true
		}
		return false
	})
	all := running
	time.Sleep(5 * time.Second) // a few more owner ticks for the tick-time histogram
	m := scrapeMetric(c, leader, "raftcdc_owner_tick_duration_seconds")
	tickAvg := m["raftcdc_owner_tick_duration_seconds_sum"] / m["raftcdc_owner_tick_duration_seconds_count"]
	var fsmSize int64
	if st, err := os.Stat(filepath.Join(c.Procs[leader].DataDir, "fsm.db")); err == nil {
		fsmSize = st.Size()
	}
	fmt.Printf("RESULT big tables=%d all_replicating_after=%v checkpoint_past_start_after=%v fsm_file=%.1fMiB owner_tick_avg=%v ticks=%.0f\n",
		*bigTables, all.Round(time.Millisecond), caughtUp.Round(time.Millisecond), float64(fsmSize)/(1<<20), time.Duration(tickAvg*float64(time.Second)).Round(time.Microsecond), m["raftcdc_owner_tick_duration_seconds_count"])
}
