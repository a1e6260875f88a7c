package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

const shopSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE branches (bid int PRIMARY KEY, bbalance int NOT NULL, bname text);
CREATE TABLE tellers (tid int PRIMARY KEY, bid int NOT NULL, tbalance int NOT NULL);
CREATE TABLE accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(40));
CREATE TABLE history (id bigserial PRIMARY KEY, tid int, bid int, aid int, delta int, mtime timestamptz DEFAULT now(), note varchar(30));
CREATE TABLE kinds (id int PRIMARY KEY, n numeric(12,3), f real, d double precision, b bool, dt date, tm time(3), ts timestamp,
  tz timestamptz, iv interval, u uuid, j jsonb, arr int[], tags text[], m mood, raw bytea, vc varchar(20), big text);
CREATE TABLE logs (msg text);
INSERT INTO branches SELECT g, 0, 'branch ' || g FROM generate_series(1, 10) g;
INSERT INTO tellers SELECT g, (g - 1) / 10 + 1, 0 FROM generate_series(1, 100) g;
INSERT INTO accounts SELECT g, (g - 1) / 10000 + 1, 0, 'acct' FROM generate_series(1, 100000) g;
INSERT INTO kinds SELECT g, g * 1.5, g / 3.0, g / 7.0, g % 2 = 0, date '2024-01-01' + g, time '10:00:00.123' + g * interval '1 s',
  timestamp '2024-02-03 04:05:06.789' + g * interval '1 min', timestamptz '2024-02-03 04:05:06+02' + g * interval '1 h',
  g * interval '1 day 3 hours', md5(g::text)::uuid, jsonb_build_object('k', g, 'a', jsonb_build_array(g, 'x')),
  ARRAY[g, g + 1], ARRAY['a "q"', 'b,c', NULL], (ARRAY['sad','ok','happy'])[g % 3 + 1]::mood, decode(md5(g::text), 'hex'),
  'v' || g, repeat(md5(g::text), 200 + g) FROM generate_series(1, 50) g;
`

// workload runs pgbench-style transactions until ctx ends: multi-statement
// transfers across accounts, tellers, branches and history, deletes,
// inserts, key changes and updates of every kind of column.
func workload(ctx context.Context, t testing.TB, uri string, workers int, txns *atomic.Int64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			conn, err := pgx.Connect(ctx, uri)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("workload connect: %v", err)
				}
				return
			}
			defer conn.Close(context.Background())
			next := int64(1_000_000 + w*1_000_000)
			for ctx.Err() == nil {
				tx, err := conn.Begin(ctx)
				if err != nil {
					break
				}
				aid, tid, bid, d := rng.Intn(100000)+1, rng.Intn(100)+1, rng.Intn(10)+1, rng.Intn(2000)-1000
				stmts := [][]any{
					{"UPDATE accounts SET abalance = abalance + $1 WHERE aid = $2", d, aid},
					{"UPDATE tellers SET tbalance = tbalance + $1 WHERE tid = $2", d, tid},
					{"UPDATE branches SET bbalance = bbalance + $1 WHERE bid = $2", d, bid},
					{"INSERT INTO history (tid, bid, aid, delta, note) VALUES ($1, $2, $3, $4, $5)", tid, bid, aid, d, fmt.Sprintf("w%d", w)},
				}
				switch rng.Intn(10) {
				case 0:
					stmts = append(stmts, []any{"DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id DESC LIMIT 2 OFFSET 5)"})
				case 1:
					next++
					stmts = append(stmts, []any{"INSERT INTO accounts VALUES ($1, 1, 0, 'new')", next})
				case 2:
					stmts = append(stmts, []any{"DELETE FROM accounts WHERE aid = $1", rng.Intn(100000) + 1})
				case 3:
					// A key change: the row moves to a new primary key.
					next++
					stmts = append(stmts, []any{"UPDATE accounts SET aid = $1 WHERE aid = $2", next, rng.Intn(100000) + 1})
				case 4:
					k := rng.Intn(50) + 1
					stmts = append(stmts, []any{`UPDATE kinds SET n = n + 0.001, f = f * 2, tz = tz + interval '1 s', j = j || jsonb_build_object('w', $1::int),
  arr = arr || $1::int, m = (ARRAY['sad','ok','happy'])[$1::int % 3 + 1]::mood, vc = 'u' || $1::int WHERE id = $2`, w, k})
				case 5:
					stmts = append(stmts, []any{"UPDATE kinds SET big = big || 'x' WHERE id = $1", rng.Intn(50) + 1})
				}
				ok := true
				for _, s := range stmts {
					if _, err := tx.Exec(ctx, s[0].(string), s[1:]...); err != nil {
						ok = false
						break
					}
				}
				if ok && tx.Commit(ctx) == nil {
					txns.Add(1)
				} else {
					tx.Rollback(context.Background())
				}
			}
		}(w)
	}
	return &wg
}

func sumsEqual(t *testing.T, want, got map[string]tableSum, tables []string) {
	t.Helper()
	for _, name := range tables {
		w, g := want[name], got[name]
		if w != g {
			t.Errorf("table %s: server has %d rows (sum %x), replica %d rows (sum %x)", name, w.Rows, w.Sum, g.Rows, g.Sum)
		} else {
			t.Logf("table %s: %d rows, checksums equal", name, w.Rows)
		}
	}
}

// TestWorkloadKilledAndResumedReplicatesExactly is the main scenario: an
// initial snapshot of 100k rows under a concurrent workload, the reader
// killed mid-snapshot and several times mid-stream, an ADD COLUMN along
// the way, and at the end every table equal to the server's, while
// confirmed_flush_lsn never passed what the processor confirmed.
func TestWorkloadKilledAndResumedReplicatesExactly(t *testing.T) {
	pg, uri := startServer(t)
	pg.Exec(t, "shop", shopSchema)
	cfg := mustConfig(t, uri, "heartbeat-interval=500ms&snapshot-workers=2&table-poll-interval=1s", "cf-main")
	match := func(tn model.TableName) bool { return tn.Table != "logs" }
	src := New(cfg, "cf-main", WithTableFilter(match))
	defer src.Close()
	p := newProcessor(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	mon, err := connectPgx(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(context.Background())

	// Sample confirmed_flush_lsn: it must never pass what was confirmed
	// (or the slot's starting point).
	var firstConfirmed atomic.Uint64
	var samples, violations atomic.Int64
	sctx, stopSampler := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		c, err := connectPgx(sctx, &cfg)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		for sctx.Err() == nil {
			conf, _, exists, err := slotLSNs(sctx, c, cfg.Slot)
			if err == nil && exists {
				firstConfirmed.CompareAndSwap(0, uint64(conf))
				limit := max(p.maxConfirm.Load(), firstConfirmed.Load())
				samples.Add(1)
				if uint64(conf) > limit {
					violations.Add(1)
					t.Errorf("confirmed_flush_lsn %s passed the confirmed position %s", conf, pglogrepl.LSN(limit))
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	wctx, stopWork := context.WithCancel(ctx)
	var txns atomic.Int64
	work := workload(wctx, t, uri, 3, &txns)
	defer func() { stopWork(); work.Wait() }()

	opts := source.StreamOptions{StartTs: model.TsFromTime(time.Now())}
	// 1. Killed mid-snapshot, before anything was stored.
	if err := p.run(ctx, opts, 1000, 0, func(b source.StreamBatch, n int) bool { return n == 3 }); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if p.stored != "" {
		t.Fatalf("a position was stored in the first run")
	}
	// 2. Killed mid-(re)snapshot with positions stored as tables finish.
	if err := p.run(ctx, opts, 1, 1, func(b source.StreamBatch, n int) bool { return n == 6 }); err != nil {
		t.Fatalf("second run: %v", err)
	}
	t.Logf("after two interrupted snapshots: %d rows applied, stored position %s", p.rep.rows, p.stored)
	// 3. The copy finishes (a third start), and streaming goes on.
	if err := p.run(ctx, opts, 1, 1, func(b source.StreamBatch, n int) bool {
		pos, err := decodePosition(b.Position)
		return err == nil && !pos.CopyAll && len(pos.Copy) == 0
	}); err != nil {
		t.Fatalf("third run: %v", err)
	}
	// 4. Several runs killed mid-stream at varying points.
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 5; i++ {
		until := time.Now().Add(time.Duration(500+rng.Intn(1500)) * time.Millisecond)
		if i == 2 {
			pg.Exec(t, "shop", "ALTER TABLE kinds ADD COLUMN extra int", "UPDATE kinds SET extra = id WHERE id <= 10")
		}
		flush := 1 + rng.Intn(5)
		if err := p.run(ctx, opts, flush, rng.Intn(3), func(b source.StreamBatch, n int) bool { return time.Now().After(until) }); err != nil {
			t.Fatalf("run %d: %v", i+4, err)
		}
	}
	stopWork()
	work.Wait()
	target := currentLSN(t, mon)
	if err := p.run(ctx, opts, 1, 0, catchUpStop(target)); err != nil {
		t.Fatalf("final run: %v", err)
	}
	stopSampler()
	sampler.Wait()

	tables := []string{"public.accounts", "public.branches", "public.history", "public.kinds", "public.tellers"}
	want, cols := serverSums(t, cfg, tables)
	got := p.rep.sums(cols)
	sumsEqual(t, want, got, tables)
	if _, ok := got["public.logs"]; ok {
		t.Errorf("the filtered-out table logs was replicated")
	}
	var sawAdd bool
	for _, d := range p.rep.ddls {
		if d.Kind == model.DDLAddColumn && strings.Contains(d.Query, "`extra` int") {
			sawAdd = true
		}
	}
	if !sawAdd {
		t.Errorf("no add_column DDL for kinds.extra; DDLs: %v", p.rep.ddls)
	}
	if samples.Load() < 20 {
		t.Errorf("only %d samples of confirmed_flush_lsn", samples.Load())
	}
	t.Logf("%d workload transactions, %d opens, %d batches, %d rows applied, %d confirmed_flush samples", txns.Load(), p.opens, p.batches, p.rep.rows, samples.Load())
}

// TestUnchangedToastArrivesAsUnchanged: an UPDATE that leaves a TOASTed
// column alone delivers it as Unchanged, and the replica keeps its value.
func TestUnchangedToastArrivesAsUnchanged(t *testing.T) {
	_, uri := startServer(t)
	pgx1, err := pgx.Connect(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	defer pgx1.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := pgx1.Exec(ctx, `CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
INSERT INTO docs VALUES (1, 't', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g))`); err != nil {
		t.Fatal(err)
	}
	cfg := mustConfig(t, uri, "heartbeat-interval=200ms", "toast")
	src := New(cfg, "toast")
	defer src.Close()
	p := newProcessor(t, src)
	var sawUnchanged bool
	err = p.run(ctx, source.StreamOptions{StartTs: 1}, 1, 0, func(b source.StreamBatch, n int) bool {
		if n == 1 {
			if _, err := pgx1.Exec(ctx, "UPDATE docs SET title = 'new' WHERE id = 1"); err != nil {
				t.Fatal(err)
			}
		}
		for _, txn := range b.Txns {
			for _, r := range txn.Rows {
				if r.Op == model.OpUpdate {
					i := r.Schema.ColumnIndex("body")
					sawUnchanged = r.After[i].IsUnchanged()
					return true
				}
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawUnchanged {
		t.Fatalf("the untouched TOAST column body did not arrive as Unchanged")
	}
	want, cols := serverSums(t, cfg, []string{"public.docs"})
	sumsEqual(t, want, p.rep.sums(cols), []string{"public.docs"})
}

// TestIdleDatabaseAdvancesRestartLSN: with nothing written for 60 s, the
// heartbeat gives the processor positions to confirm and the slot's
// restart_lsn moves, so WAL does not pile up behind an idle slot.
func TestIdleDatabaseAdvancesRestartLSN(t *testing.T) {
	t.Parallel()
	pg, uri := startServer(t, "checkpoint_timeout=30s")
	pg.Exec(t, "shop", "CREATE TABLE quiet (id int PRIMARY KEY)", "INSERT INTO quiet VALUES (1)")
	cfg := mustConfig(t, uri, "heartbeat-interval=1s", "idle")
	src := New(cfg, "idle")
	defer src.Close()
	p := newProcessor(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mon, err := connectPgx(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(context.Background())
	var startRestart pglogrepl.LSN
	start := time.Now()
	var resolvedAtStart model.Ts
	err = p.run(ctx, source.StreamOptions{StartTs: 1}, 1, 0, func(b source.StreamBatch, n int) bool {
		if startRestart == 0 {
			_, r, _, err := slotLSNs(ctx, mon, cfg.Slot)
			if err != nil {
				t.Fatal(err)
			}
			startRestart, resolvedAtStart = r, b.ResolvedTs
		}
		return time.Since(start) > 60*time.Second
	})
	if err != nil {
		t.Fatal(err)
	}
	_, restart, _, err := slotLSNs(ctx, mon, cfg.Slot)
	if err != nil {
		t.Fatal(err)
	}
	if restart <= startRestart {
		t.Errorf("restart_lsn did not advance over 60 idle seconds: %s then %s", startRestart, restart)
	}
	if model.TsTime(p.resolved).Sub(model.TsTime(resolvedAtStart)) < 50*time.Second {
		t.Errorf("resolved ts moved only from %v to %v in 60 idle seconds", model.TsTime(resolvedAtStart), model.TsTime(p.resolved))
	}
	t.Logf("restart_lsn %s -> %s; resolved ts advanced %v", startRestart, restart, model.TsTime(p.resolved).Sub(model.TsTime(resolvedAtStart)))
}

// TestRemoveDropsSlotAndDroppedSlotFailsClearly: remove drops the slot and
// raftcdc's publication; a slot dropped by hand under a stored position is
// never silently recreated.
func TestRemoveDropsSlotAndDroppedSlotFailsClearly(t *testing.T) {
	pg, uri := startServer(t)
	pg.Exec(t, "shop", "CREATE TABLE t1 (id int PRIMARY KEY, v text)", "INSERT INTO t1 VALUES (1, 'a')")
	cfg := mustConfig(t, uri, "heartbeat-interval=200ms", "gone")
	src := New(cfg, "gone")
	defer src.Close()
	p := newProcessor(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.run(ctx, source.StreamOptions{StartTs: 1}, 1, 0, func(b source.StreamBatch, n int) bool { return n >= 3 }); err != nil {
		t.Fatal(err)
	}
	if p.stored == "" {
		t.Fatal("no position stored")
	}
	// Dropped by hand: the next open fails with ErrSlotMissing.
	pg.Exec(t, "shop", "SELECT pg_drop_replication_slot('"+cfg.Slot+"')")
	err := p.run(ctx, source.StreamOptions{}, 1, 0, func(source.StreamBatch, int) bool { return true })
	if !errors.Is(err, ErrSlotMissing) || !strings.Contains(err.Error(), "dropped outside raftcdc") {
		t.Fatalf("open after the slot was dropped: %v, want ErrSlotMissing", err)
	}
	if slots := pg.ReplicationSlots(t); len(slots) != 0 {
		t.Fatalf("the failed open created slots: %v", slots)
	}
	// A new changefeed's slot, then remove.
	cfg2 := mustConfig(t, uri, "", "gone2")
	p2 := newProcessor(t, New(cfg2, "gone2"))
	if err := p2.run(ctx, source.StreamOptions{StartTs: 1}, 1, 0, func(b source.StreamBatch, n int) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if _, ok := pg.ReplicationSlots(t)[cfg2.Slot]; !ok {
		t.Fatalf("slot %s not created", cfg2.Slot)
	}
	if err := Remove(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	if _, ok := pg.ReplicationSlots(t)[cfg2.Slot]; ok {
		t.Fatalf("slot %s still there after remove", cfg2.Slot)
	}
	if rows := pg.Query(t, "shop", "SELECT pubname FROM pg_publication WHERE pubname = $1", cfg2.Publication); len(rows) != 0 {
		t.Fatalf("publication %s still there after remove", cfg2.Publication)
	}
	if err := Remove(ctx, cfg2); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

// TestCheckNamesEachProblem: wal_level, the REPLICATION attribute, free
// slots and senders, and keyless tables each get their own message; a
// filter that excludes the keyless table makes that problem go away.
func TestCheckNamesEachProblem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	plain := testserver.StartPostgres(t, testserver.PostgresSettings("max_replication_slots=1", "max_wal_senders=1"))
	plain.CreateDatabase(t, "shop")
	plain.CreateUser(t, "reader", "reader-pw")
	plain.Exec(t, "shop", "CREATE TABLE keyed (id int PRIMARY KEY)", "CREATE TABLE nokey (v text)", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
	cfg := mustConfig(t, plain.ConnString("reader", "reader-pw", "shop"), "", "chk")
	err := Check(ctx, cfg, nil)
	var ce *CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("Check: %v, want a CheckError", err)
	}
	for _, want := range []string{`wal_level is "replica"`, `user "reader" has neither the REPLICATION attribute`, "max_replication_slots is 1", "max_wal_senders is 1", "public.nokey"} {
		found := false
		for _, p := range ce.Problems {
			found = found || strings.Contains(p, want)
		}
		if !found {
			t.Errorf("no problem mentions %q: %q", want, ce.Problems)
		}
	}
	if strings.Contains(err.Error(), "reader-pw") {
		t.Errorf("the error shows the password: %v", err)
	}

	pg, uri := startServer(t)
	pg.Exec(t, "shop", "CREATE TABLE keyed (id int PRIMARY KEY)", "CREATE TABLE nokey (v text)", "CREATE TABLE full_ident (v text)", "ALTER TABLE full_ident REPLICA IDENTITY FULL")
	cfg = mustConfig(t, uri, "", "chk")
	err = Check(ctx, cfg, nil)
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(ce.Problems[0], "public.nokey") || strings.Contains(ce.Problems[0], "full_ident") {
		t.Fatalf("Check with a keyless table: %v", err)
	}
	if err := Check(ctx, cfg, func(tn model.TableName) bool { return tn.Table != "nokey" }); err != nil {
		t.Fatalf("Check with the keyless table excluded: %v", err)
	}
	cfg = mustConfig(t, uri, "publication=nope", "chk")
	if err := Check(ctx, cfg, func(tn model.TableName) bool { return tn.Table != "nokey" }); err == nil || !strings.Contains(err.Error(), `publication "nope" (named by publication=) does not exist`) {
		t.Fatalf("Check with a missing publication: %v", err)
	}
	bad := mustConfig(t, pg.ConnString("postgres", "wrong-pw", "shop"), "", "chk")
	if err := Check(ctx, bad, nil); err == nil || strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("Check with a wrong password: %v", err)
	}
}
