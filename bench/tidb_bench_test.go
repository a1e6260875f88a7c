//go:build bench

package bench

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/internal/tidbfake"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source/tidb"
)

// The TiDB source against the fake TiDB (PD and TiKV over kvproto, data in
// TiDB's codec), each number side by side with a bare cdcpb client on the
// same fake in the same run: the bare client only receives and counts, so
// the ratio is the source's own cost (matching, decoding, the pipeline
// hand-off), whatever the shared machine's load.

var (
	tidbScanRows      = flag.Int("tidb-scan-rows", 1_000_000, "rows pre-written for the incremental scan benchmark")
	tidbTables        = flag.Int("tidb-tables", 100, "tables of the many-regions benchmark")
	tidbRegionsPerTbl = flag.Int("tidb-regions-per-table", 100, "regions per table of the many-regions benchmark")
	tidbLagSample     = flag.Duration("tidb-lag-sample", 10*time.Second, "how long resolved-ts lag is sampled")
	tidbRounds        = flag.Int("tidb-rounds", 5, "rounds of the incremental scan benchmark (bare and source each)")
)

func startFake(t *testing.T, stores int, interval time.Duration) *tidbfake.Cluster {
	t.Helper()
	c, err := tidbfake.Start(tidbfake.Options{Stores: stores, ResolvedTsInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func openTiDB(t *testing.T, c *tidbfake.Cluster) *tidb.Source {
	t.Helper()
	cfg, err := tidb.ParseURI("tidb://" + c.PDAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := tidb.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestBenchTiDBIncrementalScan(t *testing.T) {
	n := *tidbScanRows
	c := startFake(t, 1, 100*time.Millisecond)
	if err := c.Exec("", "CREATE DATABASE b",
		"CREATE TABLE b.sbtest (id BIGINT PRIMARY KEY, k INT NOT NULL, c VARCHAR(120) NOT NULL, pad VARCHAR(60) NOT NULL, amount DECIMAL(12,2), at DATETIME(3))"); err != nil {
		t.Fatal(err)
	}
	start := c.Now()
	loadBegin := time.Now()
	for i := 0; i < n; i += 10000 {
		txn := c.Begin()
		for j := i; j < min(i+10000, n); j++ {
			txn.Insert("b", "sbtest", j, j%1000, fmt.Sprintf("%0110d", j), fmt.Sprintf("pad-%050d", j), fmt.Sprintf("%d.%02d", j%100000, j%100), "2026-01-02 03:04:05.678")
		}
		if _, err := txn.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SplitTable("b", "sbtest", 0, int64(n), 4); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d rows in %v", n, time.Since(loadBegin))
	info, _ := c.TableInfo("b", "sbtest")
	table := model.TableName{ID: info.ID, Schema: "b", Table: "sbtest"}

	bareRun := func() time.Duration {
		// The bare client: every row of every region, until INITIALIZED.
		began := time.Now()
		f, err := c.NewBareFeed("b", []string{"sbtest"}, start)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for {
			rows, inited, _, changed, err := f.State()
			if err != nil {
				t.Fatal(err)
			}
			if inited == f.Regions() {
				if rows != int64(n) {
					t.Fatalf("bare client counted %d rows, want %d", rows, n)
				}
				return time.Since(began)
			}
			<-changed
		}
	}
	sourceRun := func() time.Duration {
		// The source: rows decoded into transactions, as a pipeline gets
		// them, until all are there.
		src := openTiDB(t, c)
		defer src.Close()
		began := time.Now()
		sub, err := src.SubscribeTxns(context.Background(), table, start)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		got := 0
		for got < n {
			b, err := sub.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, txn := range b.Txns {
				got += len(txn.Rows)
			}
		}
		return time.Since(began)
	}
	// Besides wall time, the CPU time the whole process used in each run
	// (the fake's share is the same work in both): on a machine shared
	// with other work, wall-time ratios swing with the load, CPU per row
	// much less.
	//
	// A collection before each run: without it, each run paid for
	// collecting the garbage of the one before (the load's, or the
	// source's decoded rows), and the bare client's CPU per row moved
	// 1.2-3.6 µs between rounds of a quiet machine.
	timed := func(run func() time.Duration) (time.Duration, time.Duration) {
		runtime.GC()
		c0 := processCPU(t)
		wall := run()
		return wall, processCPU(t) - c0
	}
	var ratios, cpuRatios []float64
	for round := 1; round <= *tidbRounds; round++ {
		// Alternate which goes first, so neither always meets a warmer
		// (or busier) machine.
		var bare, ours, bareCPU, ourCPU time.Duration
		if round%2 == 1 {
			bare, bareCPU = timed(bareRun)
			ours, ourCPU = timed(sourceRun)
		} else {
			ours, ourCPU = timed(sourceRun)
			bare, bareCPU = timed(bareRun)
		}
		bareRate, ourRate := float64(n)/bare.Seconds(), float64(n)/ours.Seconds()
		ratios = append(ratios, ourRate/bareRate)
		cpuRatios = append(cpuRatios, bareCPU.Seconds()/ourCPU.Seconds())
		fmt.Printf("RESULT tidb-incremental-scan round=%d rows=%d bare=%v (%.0f rows/s, cpu %.2f µs/row) source=%v (%.0f rows/s, cpu %.2f µs/row) ratio=%.2f cpu-ratio=%.2f\n",
			round, n, bare.Round(time.Millisecond), bareRate, perRow(bareCPU, n), ours.Round(time.Millisecond), ourRate, perRow(ourCPU, n),
			ourRate/bareRate, bareCPU.Seconds()/ourCPU.Seconds())
	}
	fmt.Printf("RESULT tidb-incremental-scan rows=%d median-ratio=%.2f median-cpu-ratio=%.2f (target >= 0.8)\n", n, median(ratios), median(cpuRatios))
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func perRow(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

func TestBenchTiDBManyRegions(t *testing.T) {
	tables, per := *tidbTables, *tidbRegionsPerTbl
	c := startFake(t, 3, 200*time.Millisecond)
	if err := c.Exec("", "CREATE DATABASE m"); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 0; i < tables; i++ {
		name := fmt.Sprintf("t%03d", i)
		names = append(names, name)
		if err := c.Exec("m", fmt.Sprintf("CREATE TABLE %s (id BIGINT PRIMARY KEY, v VARCHAR(32))", name)); err != nil {
			t.Fatal(err)
		}
		if err := c.SplitTable("m", name, 0, 1_000_000, per); err != nil {
			t.Fatal(err)
		}
	}
	// Spread the leaders over the three stores.
	for i, r := range c.Regions() {
		if err := c.TransferLeader(r.ID, uint64(i%3+1)); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, name := range names {
		rs, _ := c.TableRegions("m", name)
		total += len(rs)
	}
	t.Logf("%d tables, %d regions holding their rows", tables, total)

	// A light write load on random tables throughout.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			name := names[rng.IntN(len(names))]
			if _, err := c.Begin().Insert("m", name, i, "x").Commit(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	start := c.Now()
	// The bare client: all regions registered until every one is
	// initialized and has a resolved ts past the start.
	began := time.Now()
	f, err := c.NewBareFeed("m", names, start)
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, inited, minRes, changed, err := f.State()
		if err != nil {
			t.Fatal(err)
		}
		if inited == f.Regions() && minRes > start {
			break
		}
		<-changed
	}
	bareSub := time.Since(began)
	bareLag := sampleLag(*tidbLagSample, func() []uint64 {
		_, _, minRes, _, _ := f.State()
		return []uint64{minRes}
	})
	f.Close()

	// The source: one table subscription per table, read as pipelines do.
	src := openTiDB(t, c)
	defer src.Close()
	// Warm the source up as a running node has it: PD and TiKV connections
	// made, the schema tracker running (it lingers between uses).
	first, _ := c.TableInfo("m", names[0])
	if _, err := src.SchemaAt(context.Background(), model.TableName{ID: first.ID, Schema: "m", Table: names[0]}, c.Now()); err != nil {
		t.Fatal(err)
	}
	start = c.Now()
	began = time.Now()
	resolved := make([]atomic.Uint64, tables)
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	var calls []time.Duration
	for i, name := range names {
		info, _ := c.TableInfo("m", name)
		callBegan := time.Now()
		sub, err := src.SubscribeTxns(ctx, model.TableName{ID: info.ID, Schema: "m", Table: name}, start)
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, time.Since(callBegan))
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer sub.Close()
			for {
				b, err := sub.Next(ctx)
				if err != nil {
					return
				}
				resolved[i].Store(b.ResolvedTs)
			}
		}()
	}
	made := time.Since(began)
	fmt.Printf("RESULT tidb-many-regions source: %d SubscribeTxns calls made in %v (first %v, p50 %v, max %v)\n",
		tables, made.Round(time.Millisecond), calls[0].Round(time.Millisecond), pct(calls, 0.5), pct(calls, 1))
	for {
		all := true
		for i := range resolved {
			all = all && resolved[i].Load() > start
		}
		if all {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	ourSub := time.Since(began)
	ourLag := sampleLag(*tidbLagSample, func() []uint64 {
		out := make([]uint64, tables)
		for i := range resolved {
			out[i] = resolved[i].Load()
		}
		return out
	})
	cancel()
	readers.Wait()
	fmt.Printf("RESULT tidb-many-regions tables=%d regions=%d subscribe bare=%v source=%v ratio=%.2f\n",
		tables, total, bareSub.Round(time.Millisecond), ourSub.Round(time.Millisecond), bareSub.Seconds()/ourSub.Seconds())
	fmt.Printf("RESULT tidb-many-regions resolved-lag bare(min over regions) p50=%v p99=%v; source(per table) p50=%v p99=%v worst-table p99=%v\n",
		bareLag.p(0.5), bareLag.p(0.99), ourLag.p(0.5), ourLag.p(0.99), ourLag.worstP(0.99))
}

type lagSamples struct {
	all   []time.Duration
	worst []time.Duration
}

func (l lagSamples) p(q float64) time.Duration      { return pct(l.all, q) }
func (l lagSamples) worstP(q float64) time.Duration { return pct(l.worst, q) }

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond)
}

// sampleLag samples now − resolved ts every 100 ms for d.
func sampleLag(d time.Duration, read func() []uint64) lagSamples {
	var out lagSamples
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(100 * time.Millisecond)
		now := time.Now()
		var worst time.Duration
		for _, ts := range read() {
			lag := now.Sub(model.TsTime(ts))
			out.all = append(out.all, lag)
			worst = max(worst, lag)
		}
		out.worst = append(out.worst, worst)
	}
	return out
}
