package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
)

// pgbenchSchema is a pgbench-style database: three balance tables and a
// history table whose rows are inserted and deleted.
var pgbenchSchema = []string{
	`CREATE TABLE branches (bid int PRIMARY KEY, bbalance bigint NOT NULL, filler varchar(88))`,
	`CREATE TABLE tellers (tid int PRIMARY KEY, bid int NOT NULL, tbalance bigint NOT NULL, filler varchar(84))`,
	`CREATE TABLE accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance bigint NOT NULL, filler varchar(84))`,
	`CREATE TABLE history (hid bigserial PRIMARY KEY, tid int, bid int, aid int, delta int NOT NULL, mtime timestamp(6), note text)`,
	// docs holds bodies large enough to be TOASTed; the workload updates
	// other columns only, so the bodies arrive as "unchanged".
	`CREATE TABLE docs (id int PRIMARY KEY, version int NOT NULL, body text)`,
}

var pgbenchTables = map[string]string{"branches": "bid", "tellers": "tid", "accounts": "aid", "history": "hid", "docs": "id"}

const pgbenchAccounts = 100000

func seedPgbench(t *testing.T, pg *testserver.Postgres, db string) {
	t.Helper()
	pg.Exec(t, db, pgbenchSchema...)
	pg.Exec(t, db,
		`INSERT INTO branches SELECT g, 0, 'branch ' || g FROM generate_series(1, 10) g`,
		`INSERT INTO tellers SELECT g, (g - 1) / 10 + 1, 0, 'teller ' || g FROM generate_series(1, 100) g`,
		fmt.Sprintf(`INSERT INTO accounts SELECT g, (g - 1) / 10000 + 1, 0, repeat('a', 20 + g %% 40) FROM generate_series(1, %d) g`, pgbenchAccounts),
		`INSERT INTO history (tid, bid, aid, delta, mtime, note) SELECT g, 1, g, g, '2026-01-01 00:00:00.123456', NULL FROM generate_series(1, 50) g`,
		`INSERT INTO docs SELECT g, 0, (SELECT string_agg(md5(random()::text || h), '') FROM generate_series(1, 300 + g) h) FROM generate_series(1, 20) g`,
	)
}

// pgbenchWorkload runs concurrent transactions until ctx ends: the TPC-B
// transaction, deletes of old history, key-changing updates of accounts and
// multi-statement transactions that insert and delete in one go. It
// returns the number of committed transactions.
func pgbenchWorkload(ctx context.Context, t *testing.T, connString string, workers int) *atomic.Int64 {
	var committed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			for ctx.Err() == nil {
				if conn == nil {
					c, err := pgx.Connect(ctx, connString)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					conn = c
				}
				if err := pgbenchTxn(ctx, conn, rng); err != nil {
					if ctx.Err() == nil && !strings.Contains(err.Error(), "deadlock") && !strings.Contains(err.Error(), "could not serialize") {
						t.Logf("workload transaction failed (retried): %v", err)
					}
					conn.Close(context.Background())
					conn = nil
					continue
				}
				committed.Add(1)
			}
		}(uint64(w + 1))
	}
	go func() { <-ctx.Done(); wg.Wait() }()
	t.Cleanup(wg.Wait)
	return &committed
}

func pgbenchTxn(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	aid := 1 + rng.IntN(pgbenchAccounts)
	tid := 1 + rng.IntN(100)
	bid := 1 + rng.IntN(10)
	delta := rng.IntN(10001) - 5000
	stmts := []struct {
		q    string
		args []any
	}{
		{`UPDATE accounts SET abalance = abalance + $1 WHERE aid = $2`, []any{delta, aid}},
		{`UPDATE tellers SET tbalance = tbalance + $1 WHERE tid = $2`, []any{delta, tid}},
		{`UPDATE branches SET bbalance = bbalance + $1 WHERE bid = $2`, []any{delta, bid}},
		{`INSERT INTO history (tid, bid, aid, delta, mtime, note) VALUES ($1, $2, $3, $4, clock_timestamp()::timestamp(6), $5)`, []any{tid, bid, aid, delta, fmt.Sprintf("d%d", delta)}},
	}
	if rng.IntN(4) == 0 {
		stmts = append(stmts, struct {
			q    string
			args []any
		}{`UPDATE docs SET version = version + 1 WHERE id = $1`, []any{1 + rng.IntN(20)}})
	}
	switch rng.IntN(10) {
	case 0:
		stmts = append(stmts, struct {
			q    string
			args []any
		}{`DELETE FROM history WHERE hid IN (SELECT hid FROM history ORDER BY hid LIMIT 3)`, nil})
	case 1:
		// A key change: the row moves to a fresh key above the original range.
		stmts = append(stmts, struct {
			q    string
			args []any
		}{`UPDATE accounts SET aid = aid + 1000000 WHERE aid = $1 AND aid <= $2`, []any{aid, pgbenchAccounts}})
	case 2:
		stmts = append(stmts, struct {
			q    string
			args []any
		}{`UPDATE accounts SET filler = NULL, abalance = 0 WHERE aid BETWEEN $1 AND $1 + 20`, []any{aid}})
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s.q, s.args...); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// tableDigest is a table's row count and an order-independent checksum of
// its rows as text (the sum of one hash per row).
type tableDigest struct {
	Rows int
	Sum  uint64
}

func digest(rows [][]*string) tableDigest {
	d := tableDigest{Rows: len(rows)}
	for _, r := range rows {
		h := fnv.New64a()
		for _, v := range r {
			if v == nil {
				h.Write([]byte{0xff})
			} else {
				h.Write([]byte(*v))
			}
			h.Write([]byte{0})
		}
		d.Sum += h.Sum64()
	}
	return d
}

// TestPostgresToMariaDBAndPostgresExact replicates a pgbench-style
// PostgreSQL database, with its 100k-row initial snapshot, to MariaDB and to
// a second PostgreSQL (two changefeeds, two slots) through three processes
// while the leader is killed, the capture holding a stream is killed and
// the capture holding it next is drained;
// afterwards every table is identical on all three servers, and the slot's
// confirmed_flush_lsn never passed the position stored with the checkpoint.
func TestPostgresToMariaDBAndPostgresExact(t *testing.T) {
	pg := testserver.StartPostgres(t, testserver.PostgresLogicalReplication())
	pg.CreateDatabase(t, "shop")
	seedPgbench(t, pg, "shop")
	my := testserver.StartMariaDB(t)
	pg2 := testserver.StartPostgres(t)
	pg2.CreateDatabase(t, "replica")

	c := StartCluster(t, binPath, 3, ClusterOptions{})
	c.WaitForOwner(60*time.Second, 0)
	source := pg.SuperConnString("shop")
	c.CreateChangefeed(api.ChangefeedRequest{ID: "pg", SourceURI: source, SinkURI: my.URI("root", "", "") + "?worker-count=4"})
	c.CreateChangefeed(api.ChangefeedRequest{ID: "pg2pg", SourceURI: source, SinkURI: pg2.SuperConnString("replica") + "&worker-count=4"})

	// Sample the slot against the position stored with the checkpoint: the
	// slot first, then the changefeed, so that a position recorded between
	// the two reads can only make the check stricter.
	slotConn := pg.Connect(t, "shop")
	var samples, violations atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for sampleCtx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			var confirmed *string
			err := slotConn.QueryRow(sampleCtx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'raftcdc_pg'`).Scan(&confirmed)
			if err != nil || confirmed == nil {
				continue
			}
			d, err := c.Detail("pg")
			if err != nil || d.Status == nil {
				continue
			}
			stored := ""
			if sp := d.Status.StreamPosition; sp != nil {
				var p struct {
					LSN string `json:"lsn"`
				}
				_ = json.Unmarshal([]byte(sp.Position), &p)
				stored = p.LSN
			}
			samples.Add(1)
			if stored != "" && lsnAfter(*confirmed, stored) {
				violations.Add(1)
				t.Errorf("confirmed_flush_lsn %s is past the LSN %s stored with the checkpoint", *confirmed, stored)
			}
		}
	}()
	defer func() { stopSampling(); sampler.Wait() }()

	// The initial snapshot's progress shows in changefeed query while it
	// runs, and it must be through before the faults start.
	snapTs := model.TsFromTime(time.Now())
	var progress *model.SnapshotProgress
	// What the polls saw, for a failure to say why none showed progress.
	var polls, pollsFailed, withPositions int
	var lastErr error
	began := time.Now()
	WaitFor(t, 3*time.Minute, "the snapshot's progress or its end", func() bool {
		polls++
		d, err := c.Detail("pg")
		if err != nil {
			pollsFailed, lastErr = pollsFailed+1, err
			return false
		}
		if len(d.Positions) > 0 {
			withPositions++
		}
		if d.Snapshot != nil && d.Snapshot.Rows > 0 {
			progress = d.Snapshot
		}
		return progress != nil || d.CheckpointTs() > snapTs
	})
	if progress == nil {
		t.Fatalf("the initial snapshot of 100k rows finished before changefeed query ever showed its progress (%d polls in %v: %d failed, last error %v; %d showed positions)",
			polls, time.Since(began).Round(time.Millisecond), pollsFailed, lastErr, withPositions)
	}
	t.Logf("snapshot progress seen: %+v", *progress)
	if progress.TablesTotal != len(pgbenchTables) {
		t.Fatalf("snapshot progress counts %d tables, the changefeed has %d", progress.TablesTotal, len(pgbenchTables))
	}
	c.WaitCheckpointAbove("pg", snapTs, 3*time.Minute)
	// The slot state is read live from PostgreSQL by the node answering;
	// a read that fails (the client's timeout while the cluster is busy)
	// shows nothing, and is asked again.
	Eventually(t, 30*time.Second, "changefeed query showing the slot state", func() (bool, string) {
		d, err := c.Detail("pg")
		if err != nil {
			return false, err.Error()
		}
		st, ok := d.Upstream.(map[string]any)
		return ok && st["retained_wal_bytes"] != nil && st["confirmed_flush_lsn"] != nil, fmt.Sprintf("%#v (warnings %v)", d.Upstream, d.Warnings)
	})

	wctx, stopWorkload := context.WithCancel(context.Background())
	committed := pgbenchWorkload(wctx, t, source, 3)
	time.Sleep(5 * time.Second)

	// Kill the leader.
	leader := c.WaitForLeader(30 * time.Second)
	t.Logf("killing the leader %s", c.Procs[leader].ID)
	c.Kill(leader, syscall.SIGKILL)
	c.WaitForOwner(30*time.Second, 0)
	time.Sleep(3 * time.Second)
	c.Restart(leader)

	// Kill the capture that holds the stream.
	holder := streamHolder(t, c, "pg")
	t.Logf("killing the stream's capture %s", holder)
	hi := c.Index(holder)
	c.Kill(hi, syscall.SIGKILL)
	WaitFor(t, 60*time.Second, "the stream unit on another capture", func() bool {
		h, ok := streamHolderNow(c, "pg")
		return ok && h != holder
	})
	time.Sleep(3 * time.Second)
	c.Restart(hi)

	// Drain the capture that now holds the stream, as a rolling upgrade
	// would: the owner moves the stream to another capture without a
	// kill, and the drained capture ends up holding nothing of either
	// changefeed while the workload keeps committing.
	c.WaitCaptureAlive(holder, 0, 60*time.Second)
	drained := streamHolder(t, c, "pg")
	t.Logf("draining the stream's capture %s", drained)
	drainStart := time.Now()
	c.DrainCapture(drained, 90*time.Second)
	t.Logf("capture %s drained in %v", drained, time.Since(drainStart).Round(time.Millisecond))
	var after string
	WaitFor(t, 60*time.Second, "the stream unit on a capture other than the drained one", func() bool {
		h, ok := streamHolderNow(c, "pg")
		after = h
		return ok && h != drained
	})
	WaitFor(t, 60*time.Second, "no table of either changefeed on the drained capture", func() bool {
		for _, cf := range []string{"pg", "pg2pg"} {
			d, err := c.Detail(cf)
			if err != nil {
				return false
			}
			for _, cs := range d.Assignments() {
				for _, cp := range cs {
					if cp == drained {
						return false
					}
				}
			}
		}
		return true
	})
	t.Logf("the stream moved from %s to %s", drained, after)
	// The moved stream carries the workload: the checkpoint passes a ts
	// taken after the drain.
	c.WaitCheckpointAbove("pg", model.TsFromTime(time.Now()), 60*time.Second)

	// A column added mid-stream arrives downstream, and later rows fill it.
	pg.Exec(t, "shop", `ALTER TABLE accounts ADD COLUMN note2 int`)
	pg.Exec(t, "shop", `UPDATE accounts SET note2 = aid % 7 WHERE aid % 1000 = 0`)
	time.Sleep(3 * time.Second)

	stopWorkload()
	t.Logf("workload committed %d transactions", committed.Load())
	if committed.Load() < 100 {
		t.Fatalf("only %d workload transactions committed: the test proves little", committed.Load())
	}
	// Everything committed by now must be downstream once the checkpoint
	// passes this ts (a heartbeat commits after it).
	endTs := model.TsFromTime(time.Now())
	c.WaitCheckpointAbove("pg", endTs, 3*time.Minute)
	c.WaitCheckpointAbove("pg2pg", endTs, 3*time.Minute)

	for table, key := range pgbenchTables {
		// PostgreSQL prints fractional seconds without trailing zeros;
		// MariaDB's datetime(6) prints all six digits.
		cols := "*"
		if table == "history" {
			cols = `hid, tid, bid, aid, delta, to_char(mtime, 'YYYY-MM-DD HH24:MI:SS.US'), note`
		}
		q := fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", cols, table, key)
		wantRows := pg.Query(t, "shop", q)
		gotRows := my.Query(t, fmt.Sprintf("SELECT * FROM `public`.`%s` ORDER BY `%s`", table, key))
		replRows := pg2.Query(t, "replica", strings.Replace(q, " FROM ", " FROM public.", 1))
		want, got, repl := digest(wantRows), digest(gotRows), digest(replRows)
		if got != want {
			t.Errorf("table %s: MariaDB has %d rows (checksum %x), PostgreSQL %d (checksum %x); first difference: %s", table, got.Rows, got.Sum, want.Rows, want.Sum, firstDifference(wantRows, gotRows))
		}
		if repl != want {
			t.Errorf("table %s: the PostgreSQL replica has %d rows (checksum %x), the upstream %d (checksum %x); first difference: %s", table, repl.Rows, repl.Sum, want.Rows, want.Sum, firstDifference(wantRows, replRows))
		}
		if got == want && repl == want {
			t.Logf("table %s: %d rows identical on all three servers", table, got.Rows)
		}
	}
	stopSampling()
	sampler.Wait()
	if samples.Load() < 10 {
		t.Fatalf("only %d slot samples: the confirmed_flush_lsn check proves nothing", samples.Load())
	}
	t.Logf("%d slot samples, %d past the stored position", samples.Load(), violations.Load())

	slotExists := func(name string) bool {
		rows := pg.Query(t, "shop", `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, name)
		return *rows[0][0] != "0"
	}
	pubExists := func(name string) bool {
		rows := pg.Query(t, "shop", `SELECT count(*) FROM pg_publication WHERE pubname = $1`, name)
		return *rows[0][0] != "0"
	}

	// A slot dropped behind raftcdc's back is never recreated silently:
	// the changefeed fails and says so.
	feedAction(t, c, http.MethodPost, "/api/v1/changefeeds/pg2pg/pause", nil)
	WaitFor(t, 60*time.Second, "pg2pg's slot released", func() bool {
		rows := pg.Query(t, "shop", `SELECT active::text FROM pg_replication_slots WHERE slot_name = 'raftcdc_pg2pg'`)
		return len(rows) == 1 && *rows[0][0] == "false"
	})
	pg.Exec(t, "shop", `SELECT pg_drop_replication_slot('raftcdc_pg2pg')`)
	feedAction(t, c, http.MethodPost, "/api/v1/changefeeds/pg2pg/resume", nil)
	var failed api.ChangefeedDetail
	WaitFor(t, 2*time.Minute, "pg2pg to fail with the slot's error", func() bool {
		d, err := c.Detail("pg2pg")
		failed = d
		return err == nil && d.Info.Error != nil && d.Info.State == model.StateFailed
	})
	if msg := failed.Info.Error.Message; failed.Info.Error.Code != "snapshot_lost" || !strings.Contains(msg, "raftcdc_pg2pg") || !strings.Contains(msg, "dropped outside raftcdc") {
		t.Fatalf("the changefeed's error does not say the slot was dropped: %+v", failed.Info.Error)
	}
	if slotExists("raftcdc_pg2pg") {
		t.Fatal("the dropped slot was recreated")
	}
	t.Logf("slot dropped by hand: changefeed %s: %s", failed.Info.State, failed.Info.Error.Message)

	// Remove drops the slot and the publication raftcdc created.
	if !slotExists("raftcdc_pg") || !pubExists("raftcdc_pg") {
		t.Fatal("the pg changefeed has no slot or publication before its remove")
	}
	feedAction(t, c, http.MethodDelete, "/api/v1/changefeeds/pg", nil)
	WaitFor(t, 60*time.Second, "the slot and publication dropped after the remove", func() bool {
		return !slotExists("raftcdc_pg") && !pubExists("raftcdc_pg")
	})
}

// feedAction sends an admin request through any node (Cluster.Request).
// After an attempt whose outcome was unknown, a 409 (the job is pending,
// the changefeed already paused or removed) or a 404 (already gone) is
// that attempt's effect; what the test waits for next checks the outcome.
func feedAction(t *testing.T, c *Cluster, method, path string, body any) {
	t.Helper()
	c.Request(method, path, body, func(code int, _ []byte) (bool, error) {
		return code == http.StatusConflict || code == http.StatusNotFound, nil
	})
}

func firstDifference(want, got [][]*string) string {
	row := func(r []*string) string {
		var b []string
		for _, v := range r {
			if v == nil {
				b = append(b, "NULL")
			} else {
				b = append(b, fmt.Sprintf("%q", *v))
			}
		}
		return "(" + strings.Join(b, ", ") + ")"
	}
	for i := 0; i < len(want) && i < len(got); i++ {
		if row(want[i]) != row(got[i]) {
			return fmt.Sprintf("row %d: PostgreSQL %s, MariaDB %s", i, row(want[i]), row(got[i]))
		}
	}
	return fmt.Sprintf("%d rows against %d", len(want), len(got))
}

// lsnAfter reports whether LSN a is after b ("X/Y" hex halves).
func lsnAfter(a, b string) bool {
	parse := func(s string) uint64 {
		var hi, lo uint64
		fmt.Sscanf(s, "%X/%X", &hi, &lo)
		return hi<<32 | lo
	}
	return parse(a) > parse(b)
}

func streamHolderNow(c *Cluster, cf string) (string, bool) {
	d, err := c.Detail(cf)
	if err != nil {
		return "", false
	}
	cs := d.Assignments()[model.StreamUnitID]
	if len(cs) != 1 {
		return "", false
	}
	return cs[0], true
}

func streamHolder(t *testing.T, c *Cluster, cf string) string {
	t.Helper()
	var h string
	WaitFor(t, 30*time.Second, "the stream unit assigned", func() bool {
		var ok bool
		h, ok = streamHolderNow(c, cf)
		return ok
	})
	return h
}
