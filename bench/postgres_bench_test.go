//go:build bench

package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/raftcdc/raftcdc/integration"
	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
	"github.com/raftcdc/raftcdc/source/postgres"
)

var (
	pgTxnRows      = flag.Int("pg-txn-rows", 2_000_000, "postgres large transaction: rows of the one transaction")
	pgDecodeRows   = flag.Int("pg-decode-rows", 1_000_000, "postgres decode: rows written")
	pgDecodeTxn    = flag.Int("pg-decode-txn-rows", 1000, "postgres decode: rows per transaction")
	pgSnapRows     = flag.Int("pg-snapshot-rows", 1_000_000, "postgres snapshot: rows, spread over -pg-snapshot-tables tables")
	pgSnapTables   = flag.Int("pg-snapshot-tables", 4, "postgres snapshot: tables")
	pgSnapWorkers  = flag.Int("pg-snapshot-workers", 2, "postgres snapshot: snapshot-workers, and COPY connections on the other side")
	pgE2ERate      = flag.Int("pg-e2e-rate", 5000, "postgres end to end: rows/s offered")
	pgE2ETxnRows   = flag.Int("pg-e2e-txn-rows", 10, "postgres end to end: rows per transaction")
	pgE2EDuration  = flag.Duration("pg-e2e-duration", 60*time.Second, "postgres end to end: sampling time")
	pgE2EWarmup    = flag.Duration("pg-e2e-warmup", 10*time.Second, "postgres end to end: load before sampling starts")
	pgE2EConns     = flag.Int("pg-e2e-conns", 4, "postgres end to end: writer connections")
	pgE2ESinkConns = flag.Int("pg-e2e-worker-count", 4, "postgres end to end: the sink's worker-count")
	pgStreamFirst  = flag.Bool("pg-stream-first", false, "postgres decode and large transaction: drain with the stream before pg_recvlogical (to see whether the order matters)")
)

func vmHWM(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

// cpuSelf is this process's user+system CPU time.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// decodeSetup is a database with one table t, a publication for it and two
// pgoutput slots at the same position: "raftcdc_bench" for the raftcdc
// stream and "recv", a copy of it (pg_copy_logical_replication_slot), for
// pg_recvlogical. Both then decode exactly the same WAL.
type decodeSetup struct {
	pg  *testserver.Postgres
	uri string
	cfg postgres.Config
}

func setupDecode(t *testing.T) *decodeSetup {
	pg := testserver.StartPostgres(t, testserver.PostgresLogicalReplication(), testserver.PostgresSettings("max_wal_size=4GB"))
	pg.CreateDatabase(t, "big")
	pg.Exec(t, "big",
		"CREATE TABLE t (id int PRIMARY KEY, a int, b text)",
		"CREATE PUBLICATION benchpub FOR TABLE t",
		"SELECT pg_create_logical_replication_slot('raftcdc_bench', 'pgoutput')",
		"SELECT pg_copy_logical_replication_slot('raftcdc_bench', 'recv')",
	)
	slots := pg.Query(t, "big", "SELECT slot_name, confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots ORDER BY slot_name")
	if len(slots) != 2 || *slots[0][1] != *slots[1][1] || *slots[0][2] != *slots[1][2] {
		t.Fatalf("the two slots do not start at the same position: %v", slots)
	}
	t.Logf("both slots at confirmed_flush_lsn %s", *slots[0][1])
	uri := pg.SuperConnString("big")
	// A heartbeat would add WAL of its own to the stream's side only: once
	// an hour is never within the run.
	cfg, err := postgres.ParseURI(uri+"&slot=raftcdc_bench&publication=benchpub&snapshot=never&heartbeat-interval=1h", "bench")
	if err != nil {
		t.Fatal(err)
	}
	return &decodeSetup{pg: pg, uri: uri, cfg: cfg}
}

// walEnd is the WAL insert position after a CHECKPOINT, so that neither
// reader pays for the checkpoint the workload left pending.
func (d *decodeSetup) walEnd(t *testing.T) string {
	d.pg.Exec(t, "big", "CHECKPOINT")
	return *d.pg.Query(t, "big", "SELECT pg_current_wal_lsn()::text")[0][0]
}

// recvlogical drains the "recv" slot to end with pg_recvlogical (pgoutput,
// protocol 1, output to /dev/null) and returns the wall time and the CPU
// time of the pg_recvlogical process.
func (d *decodeSetup) recvlogical(t *testing.T, ctx context.Context, end string) (wall, cpu time.Duration) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(d.pg.BinDir, "pg_recvlogical"), "-d", d.uri, "--slot", "recv", "--start",
		"-o", "proto_version=1", "-o", "publication_names=benchpub", "--endpos", end, "-f", "/dev/null", "--no-loop")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_recvlogical: %v\n%s", err, out)
	}
	wall = time.Since(start)
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// stream opens the raftcdc postgres stream on "raftcdc_bench" and counts
// rows (a blackhole) until it has seen rows; the time includes opening it,
// as pg_recvlogical's includes connecting.
func (d *decodeSetup) stream(t *testing.T, ctx context.Context, rows int) (wall, cpu time.Duration) {
	start, cpu0 := time.Now(), cpuSelf()
	src := postgres.New(d.cfg, "bench")
	defer src.Close()
	st, err := src.OpenStream(ctx, source.StreamOptions{StartTs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	for n < rows {
		b, err := st.Next(ctx)
		if err != nil {
			t.Fatalf("stream after %d of %d rows: %v", n, rows, err)
		}
		for _, txn := range b.Txns {
			n += len(txn.Rows)
		}
	}
	if n != rows {
		t.Fatalf("the stream delivered %d rows, the workload wrote %d", n, rows)
	}
	return time.Since(start), cpuSelf() - cpu0
}

// TestBenchPostgresDecode writes -pg-decode-rows rows in transactions of
// -pg-decode-txn-rows and drains that WAL twice, one reader after the
// other, from two slots at the same position: pg_recvlogical with pgoutput,
// then raftcdc's postgres stream counting rows. Both pay the server's
// decoding (a walsender each); the ratio is what raftcdc's client side
// (protocol handling, typed values, transaction assembly) costs on top.
func TestBenchPostgresDecode(t *testing.T) {
	d := setupDecode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rows, per := *pgDecodeRows, *pgDecodeTxn
	if rows%per != 0 {
		t.Fatalf("-pg-decode-rows %d is not a multiple of -pg-decode-txn-rows %d", rows, per)
	}
	wstart := time.Now()
	// One transaction per loop iteration: COMMIT inside a DO block (run
	// outside an explicit transaction) ends each one.
	d.pg.Exec(t, "big", fmt.Sprintf(`DO $$
BEGIN
  FOR i IN 0..%d LOOP
    INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(i * %d + 1, (i + 1) * %d) g;
    COMMIT;
  END LOOP;
END $$`, rows/per-1, per, per))
	end := d.walEnd(t)
	t.Logf("wrote %d rows in %d transactions in %v; WAL end %s", rows, rows/per, time.Since(wstart).Round(time.Millisecond), end)

	load := loadavg()
	var recv, recvCPU, ours, oursCPU time.Duration
	if *pgStreamFirst {
		ours, oursCPU = d.stream(t, ctx, rows)
		recv, recvCPU = d.recvlogical(t, ctx, end)
	} else {
		recv, recvCPU = d.recvlogical(t, ctx, end)
		ours, oursCPU = d.stream(t, ctx, rows)
	}
	rr, or := float64(rows)/recv.Seconds(), float64(rows)/ours.Seconds()
	fmt.Printf("RESULT pg-decode rows=%d txn_rows=%d pg_recvlogical=%v (%.0f rows/s, client CPU %v) raftcdc_stream=%v (%.0f rows/s, client CPU %v) ratio=%.2f stream_first=%v load=%s\n",
		rows, per, recv.Round(time.Millisecond), rr, recvCPU.Round(time.Millisecond), ours.Round(time.Millisecond), or, oursCPU.Round(time.Millisecond), or/rr, *pgStreamFirst, load)
}

// TestBenchPostgresLargeTransaction writes one transaction of -pg-txn-rows
// rows and drains it as TestBenchPostgresDecode does (pg_recvlogical, then
// the stream, from slots at the same position), reporting the test
// process's peak RSS before and after the stream drained it: the stream
// hands a large transaction on in bounded pieces, so memory must not grow
// with the transaction.
func TestBenchPostgresLargeTransaction(t *testing.T) {
	d := setupDecode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rows := *pgTxnRows
	start := time.Now()
	d.pg.Exec(t, "big", fmt.Sprintf("INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(1, %d) g", rows))
	end := d.walEnd(t)
	t.Logf("insert of %d rows took %v; WAL end %s", rows, time.Since(start).Round(time.Millisecond), end)

	load := loadavg()
	var recv, recvCPU, ours, oursCPU time.Duration
	hwm0 := vmHWM(t)
	if *pgStreamFirst {
		ours, oursCPU = d.stream(t, ctx, rows)
		recv, recvCPU = d.recvlogical(t, ctx, end)
	} else {
		recv, recvCPU = d.recvlogical(t, ctx, end)
		hwm0 = vmHWM(t)
		ours, oursCPU = d.stream(t, ctx, rows)
	}
	rr, or := float64(rows)/recv.Seconds(), float64(rows)/ours.Seconds()
	fmt.Printf("RESULT pg-large-txn rows=%d peak_rss_before=%s peak_rss_after=%s pg_recvlogical=%v (%.0f rows/s, client CPU %v) raftcdc_stream=%v (%.0f rows/s, client CPU %v) ratio=%.2f stream_first=%v load=%s\n",
		rows, hwm0, vmHWM(t), recv.Round(time.Millisecond), rr, recvCPU.Round(time.Millisecond), ours.Round(time.Millisecond), or, oursCPU.Round(time.Millisecond), or/rr, *pgStreamFirst, load)
}

// TestBenchPostgresSnapshot copies -pg-snapshot-rows rows in
// -pg-snapshot-tables tables twice in one run: first with COPY … TO STDOUT
// (text, to io.Discard) over -pg-snapshot-workers connections, then
// through the source's initial snapshot with as many snapshot-workers,
// counting rows off the stream. The source's time runs from OpenStream
// (slot creation, snapshot export and import) to the last copied row.
func TestBenchPostgresSnapshot(t *testing.T) {
	pg := testserver.StartPostgres(t, testserver.PostgresLogicalReplication(), testserver.PostgresSettings("max_wal_size=4GB"))
	pg.CreateDatabase(t, "snap")
	n, rows, workers := *pgSnapTables, *pgSnapRows, *pgSnapWorkers
	per := rows / n
	if per*n != rows {
		t.Fatalf("-pg-snapshot-rows %d is not a multiple of -pg-snapshot-tables %d", rows, n)
	}
	var tables []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d", i)
		tables = append(tables, name)
		pg.Exec(t, "snap",
			fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, a bigint NOT NULL, b text, c timestamp(6), d numeric(12,2))", name),
			fmt.Sprintf("INSERT INTO %s SELECT g, g * 7, md5(g::text), '2026-01-01'::timestamp + g * interval '1 second', g / 100.0 FROM generate_series(1, %d) g", name, per),
			"VACUUM ANALYZE "+name)
	}
	pg.Exec(t, "snap", "CHECKPOINT")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	load := loadavg()

	// COPY, the server's own bulk read.
	cstart := time.Now()
	var next atomic.Int64
	var copied atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, pg.SuperConnString("snap"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for {
				i := int(next.Add(1) - 1)
				if i >= len(tables) {
					return
				}
				tag, err := c.PgConn().CopyTo(ctx, io.Discard, "COPY "+tables[i]+" TO STDOUT")
				if err != nil {
					errs <- fmt.Errorf("COPY %s: %w", tables[i], err)
					return
				}
				copied.Add(tag.RowsAffected())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	copyTime := time.Since(cstart)
	if copied.Load() != int64(rows) {
		t.Fatalf("COPY read %d rows, the tables hold %d", copied.Load(), rows)
	}

	// The source's initial snapshot. A heartbeat every 100 ms moves the
	// stream past the slot's consistent point promptly, where the copy is
	// handed on.
	cfg, err := postgres.ParseURI(pg.SuperConnString("snap")+fmt.Sprintf("&snapshot=initial&snapshot-workers=%d&heartbeat-interval=100ms", workers), "snapbench")
	if err != nil {
		t.Fatal(err)
	}
	sstart, cpu0 := time.Now(), cpuSelf()
	src := postgres.New(cfg, "snapbench")
	defer src.Close()
	st, err := src.OpenStream(ctx, source.StreamOptions{StartTs: model.TsFromTime(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := 0
	var first time.Duration
	for got < rows {
		b, err := st.Next(ctx)
		if err != nil {
			t.Fatalf("snapshot after %d of %d rows: %v", got, rows, err)
		}
		for _, txn := range b.Txns {
			if got == 0 && len(txn.Rows) > 0 {
				first = time.Since(sstart)
			}
			got += len(txn.Rows)
		}
	}
	ours, oursCPU := time.Since(sstart), cpuSelf()-cpu0
	if got != rows {
		t.Fatalf("the snapshot delivered %d rows, the tables hold %d", got, rows)
	}
	cr, or := float64(rows)/copyTime.Seconds(), float64(rows)/ours.Seconds()
	fmt.Printf("RESULT pg-snapshot rows=%d tables=%d workers=%d copy_to=%v (%.0f rows/s) raftcdc_snapshot=%v (%.0f rows/s, first row after %v, client CPU %v) ratio=%.2f load=%s\n",
		rows, n, workers, copyTime.Round(time.Millisecond), cr, ours.Round(time.Millisecond), or, first.Round(time.Millisecond), oursCPU.Round(time.Millisecond), or/cr, load)
}

// TestBenchPostgresEndToEnd replicates PostgreSQL → PostgreSQL through one
// raftcdc node (the real binary) while writers offer -pg-e2e-rate rows/s in
// transactions of -pg-e2e-txn-rows rows over four tables, and samples the
// changefeed's checkpoint lag (now − the checkpoint's commit time) every
// 100 ms. Afterwards every table has as many rows downstream as upstream.
func TestBenchPostgresEndToEnd(t *testing.T) {
	up := testserver.StartPostgres(t, testserver.PostgresLogicalReplication())
	up.CreateDatabase(t, "src")
	down := testserver.StartPostgres(t)
	down.CreateDatabase(t, "dst")
	const nTables = 4
	for i := 0; i < nTables; i++ {
		up.Exec(t, "src", fmt.Sprintf("CREATE TABLE e%d (id bigint PRIMARY KEY, w int NOT NULL, a bigint NOT NULL, b text, c timestamp(6))", i))
	}
	c := integration.StartCluster(t, buildBinary(t), 1, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn"}})
	defer c.StopAll()
	c.WaitForLeader(30 * time.Second)
	created := time.Now()
	createFeed(t, c, map[string]any{"id": "e2e",
		"source_uri": up.SuperConnString("src") + "&heartbeat-interval=1s",
		"sink_uri":   down.SuperConnString("dst") + fmt.Sprintf("&worker-count=%d", *pgE2ESinkConns)})
	integration.WaitFor(t, 2*time.Minute, "the changefeed's checkpoint past its creation", func() bool {
		d, err := anyFeed(c, "e2e")
		return err == nil && cpOf(d) > model.TsFromTime(created)
	})

	// Writers: each owns a key range and runs transactions on an absolute
	// schedule (the k-th transaction is due at start + k × interval), so a
	// slow moment is caught up rather than lowering the offered rate.
	conns, per := *pgE2EConns, *pgE2ETxnRows
	interval := time.Duration(float64(time.Second) * float64(per*conns) / float64(*pgE2ERate))
	// Writers stop between transactions (stopping is closed), never in the
	// middle of one, so that their count is exact.
	stopping := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopping) }) }
	defer stop()
	wctx := context.Background()
	var written atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			conn, err := pgx.Connect(wctx, up.SuperConnString("src"))
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
				return
			}
			defer conn.Close(context.Background())
			start := time.Now()
			for k := 0; ; k++ {
				wait := time.Until(start.Add(time.Duration(k) * interval))
				if wait < 0 {
					wait = 0
				}
				select {
				case <-time.After(wait):
				case <-stopping:
					return
				}
				base := int64(w)<<40 | int64(k)*int64(per)
				q := fmt.Sprintf("INSERT INTO e%d SELECT $1::bigint + g, $2::int, g * 3, md5(g::text), clock_timestamp()::timestamp(6) FROM generate_series(0, %d) g", k%nTables, per-1)
				ectx, cancel := context.WithTimeout(wctx, time.Minute)
				_, err := conn.Exec(ectx, q, base, w)
				cancel()
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				written.Add(int64(per))
			}
		}(w)
	}
	time.Sleep(*pgE2EWarmup) // load before sampling, not a wait for a condition

	load := loadavg()
	w0, t0, cpu0 := written.Load(), time.Now(), c.CPUTime(0)
	var lags []time.Duration
	for time.Since(t0) < *pgE2EDuration {
		d, err := anyFeed(c, "e2e")
		if err == nil && cpOf(d) != 0 {
			lags = append(lags, time.Since(model.TsTime(model.Ts(cpOf(d)))))
		}
		time.Sleep(100 * time.Millisecond)
	}
	sustained := float64(written.Load()-w0) / time.Since(t0).Seconds()
	nodeCPU := c.CPUTime(0) - cpu0
	window := time.Since(t0)
	stop()
	wg.Wait()
	if t.Failed() {
		return
	}

	fmt.Printf("RESULT pg-e2e offered=%d rows/s sustained=%.0f rows/s txn_rows=%d samples=%d lag_p50=%v lag_p99=%v lag_max=%v node_cpu=%.0f%% load=%s\n",
		*pgE2ERate, sustained, per, len(lags), percentile(lags, 0.5).Round(time.Millisecond), percentile(lags, 0.99).Round(time.Millisecond),
		percentile(lags, 1).Round(time.Millisecond), 100*nodeCPU.Seconds()/window.Seconds(), load)

	// Everything written is downstream once the checkpoint passes now.
	endTs := model.TsFromTime(time.Now())
	integration.WaitFor(t, 5*time.Minute, "the checkpoint past the end of the load", func() bool {
		d, err := anyFeed(c, "e2e")
		return err == nil && cpOf(d) > endTs
	})
	var upRows, downRows int
	for i := 0; i < nTables; i++ {
		q := fmt.Sprintf("SELECT count(*) FROM public.e%d", i)
		var u, d int
		fmt.Sscan(*up.Query(t, "src", q)[0][0], &u)
		fmt.Sscan(*down.Query(t, "dst", q)[0][0], &d)
		upRows, downRows = upRows+u, downRows+d
	}
	if upRows != downRows || int64(upRows) != written.Load() {
		t.Fatalf("upstream holds %d rows (writers counted %d), downstream %d", upRows, written.Load(), downRows)
	}
	fmt.Printf("RESULT pg-e2e rows_verified=%d (upstream = downstream, per table counts summed)\n", downRows)
}
