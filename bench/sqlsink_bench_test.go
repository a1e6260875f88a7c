//go:build bench

package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/mysql"
	"github.com/raftcdc/raftcdc/sink/postgres"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
	"github.com/raftcdc/raftcdc/sink/sqlsink/sqltest"
	"github.com/raftcdc/raftcdc/source/datagen"
)

var (
	sqlRows    = flag.Int("sql-rows", 40000, "sql sinks: datagen v2 rows per measurement")
	sqlWorkers = flag.Int("sql-workers", 16, "sql sinks: sink workers = loader connections")
	sqlRounds  = flag.Int("sql-rounds", 2, "sql sinks: interleaved rounds (the last is reported)")
	scaleTxns  = flag.Int("scale-txns", 20000, "worker scaling: single-row transactions per measurement")
	sqlFlush   = flag.Int("sql-flush-rows", 2000, "sql sinks: rows a table pipeline writes between flushes")
	sqlParams  = flag.String("sql-params", "", "sql sinks: extra sink URI parameters (a=b&c=d)")
)

// workload is datagen v2 history read into memory: each table's
// transactions in commit order.
type workload struct {
	tables []model.TableName
	txns   map[model.TableName][]*model.Txn
	rows   int
}

// genWorkload reads n rows of datagen v2 history (every type, the given
// mix over the given number of keys, single-table transactions of txnRows
// rows, no DDL), starting at the history's epoch so that the downstream
// starts empty.
func genWorkload(t *testing.T, n, txnRows int, mix string, keys int) *workload {
	tables := 4
	rate := 20000
	history := time.Duration(n/(tables*rate)+2) * time.Second
	epoch := time.Now().Add(-history - time.Second).UTC().Truncate(time.Millisecond)
	uri := fmt.Sprintf("datagen://?tables=%d&rate=%d&mix=%s&keys=%d&txn-rows=%d&ddl-every=0&seed=7&epoch=%s",
		tables, rate, mix, keys, txnRows, epoch.Format("2006-01-02T15:04:05.000Z07:00"))
	src, err := datagen.Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := model.TsFromTime(epoch)
	names, err := src.TablesAt(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	w := &workload{tables: names, txns: map[model.TableName][]*model.Txn{}}
	per := n / len(names)
	for _, tb := range names {
		sub, err := src.SubscribeTxns(ctx, tb, start)
		if err != nil {
			t.Fatal(err)
		}
		var got []*model.Txn
		rows := 0
		for rows < per {
			b, err := sub.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, tx := range b.Txns {
				got = append(got, tx)
				rows += len(tx.Rows)
			}
		}
		sub.Close()
		sort.Slice(got, func(i, j int) bool { return got[i].Key().Less(got[j].Key()) })
		w.txns[tb] = got
		w.rows += rows
	}
	return w
}

// requireInsertOnly fails unless every row is an insert (a loader can
// write the same rows then).
func (w *workload) requireInsertOnly(t *testing.T) {
	for _, tb := range w.tables {
		for _, tx := range w.txns[tb] {
			for _, r := range tx.Rows {
				if r.Op != model.OpInsert {
					t.Fatalf("the insert-only workload has a %s in %s at %d", r.Op, tb, tx.CommitTs)
				}
			}
		}
	}
}

// retarget gives the workload's rows a schema named db (a fresh database
// per measurement), sharing everything else.
func (w *workload) retarget(db string) *workload {
	out := &workload{txns: map[model.TableName][]*model.Txn{}, rows: w.rows}
	schemas := map[*model.TableSchema]*model.TableSchema{}
	for _, tb := range w.tables {
		nt := tb
		nt.Schema = db
		out.tables = append(out.tables, nt)
		var txns []*model.Txn
		for _, tx := range w.txns[tb] {
			ntx := *tx
			ntx.Rows = make([]*model.RowChange, len(tx.Rows))
			for i, r := range tx.Rows {
				s, ok := schemas[r.Schema]
				if !ok {
					s = r.Schema.Clone()
					s.Table.Schema = db
					schemas[r.Schema] = s
				}
				nr := *r
				nr.Schema = s
				ntx.Rows[i] = &nr
			}
			txns = append(txns, &ntx)
		}
		out.txns[nt] = txns
	}
	return out
}

func (w *workload) schema(tb model.TableName) *model.TableSchema {
	return w.txns[tb][0].Rows[0].Schema
}

// runSink writes the workload through a sink, one table pipeline per
// table in parallel, flushing every 2,000 rows as a processor does.
func runSink(t *testing.T, s sink.Sink, w *workload) time.Duration {
	ctx := context.Background()
	sinks := map[model.TableName]sink.TableSink{}
	for _, tb := range w.tables {
		ts, err := s.OpenTable(ctx, tb, sink.TableOptions{Schema: w.schema(tb)})
		if err != nil {
			t.Fatal(err)
		}
		sinks[tb] = ts
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, tb := range w.tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			txns := w.txns[tb]
			for i := 0; i < len(txns); {
				j, rows := i, 0
				for j < len(txns) && rows < *sqlFlush {
					rows += len(txns[j].Rows)
					j++
				}
				if err := sinks[tb].Write(ctx, txns[i:j]); err != nil {
					t.Error(err)
					return
				}
				if err := sinks[tb].Flush(ctx, txns[j-1].CommitTs); err != nil {
					t.Error(err)
					return
				}
				i = j
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	for _, ts := range sinks {
		ts.Close()
	}
	return el
}

// images are the workload's after images (an insert-only workload: every
// row once), by table.
func (w *workload) images() map[model.TableName][][]model.Value {
	out := map[model.TableName][][]model.Value{}
	for _, tb := range w.tables {
		for _, tx := range w.txns[tb] {
			for _, r := range tx.Rows {
				out[tb] = append(out[tb], r.After)
			}
		}
	}
	return out
}

// chunks deals (table, rows) pieces of size rows to conns connections.
type chunk struct {
	table model.TableName
	rows  [][]model.Value
}

func (w *workload) chunks(size int) []chunk {
	var out []chunk
	for tb, imgs := range w.images() {
		for i := 0; i < len(imgs); i += size {
			out = append(out, chunk{tb, imgs[i:min(i+size, len(imgs))]})
		}
	}
	return out
}

func parallel(conns int, chunks []chunk, do func(conn int, c chunk) error) error {
	work := make(chan chunk)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for c := range work {
				if err := do(i, c); err != nil {
					errs <- err
					for range work {
					}
					return
				}
			}
		}(i)
	}
	for _, c := range chunks {
		work <- c
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// mysqlArg is a value as a go-sql-driver argument: the plain loader's own
// conversion, independent of the sink's renderer.
func mysqlArg(v model.Value) any {
	switch v.Kind {
	case model.ValueInt:
		return v.I
	case model.ValueUint:
		return v.Uint()
	case model.ValueFloat:
		return v.Float()
	case model.ValueString:
		return v.S
	case model.ValueBytes:
		if v.B == nil {
			return []byte{}
		}
		return v.B
	}
	return nil
}

// loadMySQL is the plain loader: multi-row INSERTs of 256 rows with
// client-side interpolation, autocommit, over conns connections.
func loadMySQL(t *testing.T, m *testserver.MariaDB, w *workload, conns int) time.Duration {
	ctx := context.Background()
	cfg, err := gomysql.ParseDSN(m.DSN("root", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.InterpolateParams = true
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(conns)
	for _, tb := range w.tables {
		m.Exec(t, "CREATE DATABASE IF NOT EXISTS `"+tb.Schema+"`", w.schema(tb).CreateTableSQL(false))
	}
	chunks := w.chunks(256)
	start := time.Now()
	err = parallel(conns, chunks, func(_ int, c chunk) error {
		s := w.schema(c.table)
		cols := make([]string, len(s.Columns))
		for i, col := range s.Columns {
			cols[i] = "`" + col.Name + "`"
		}
		row := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
		q := "INSERT INTO `" + s.Table.Schema + "`.`" + s.Table.Table + "` (" + strings.Join(cols, ",") + ") VALUES " +
			strings.TrimSuffix(strings.Repeat(row+",", len(c.rows)), ",")
		args := make([]any, 0, len(c.rows)*len(cols))
		for _, img := range c.rows {
			for _, v := range img {
				args = append(args, mysqlArg(v))
			}
		}
		_, err := db.ExecContext(ctx, q, args...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// batchStats summarises the sink's downstream transactions: how many, rows
// per transaction, mean apply time.
func batchStats(m *sqlsink.Metrics, name string) string {
	var pb dto.Metric
	if err := m.TxnLatency.WithLabelValues("bench", name).(prometheus.Metric).Write(&pb); err != nil {
		return err.Error()
	}
	n := float64(pb.GetHistogram().GetSampleCount())
	rows := testutil.ToFloat64(m.Rows.WithLabelValues("bench", name))
	if n == 0 {
		return "no transactions"
	}
	return fmt.Sprintf("%.0f downstream transactions, %.1f rows each, %.1f ms mean", n, rows/n, 1000*pb.GetHistogram().GetSampleSum()/n)
}

// requireCountMySQL checks that every row of an insert-only workload is
// downstream: a benchmark of a sink that writes nothing would look fast.
func requireCountMySQL(t *testing.T, m *testserver.MariaDB, w *workload) {
	n := 0
	for _, tb := range w.tables {
		c, _ := strconv.Atoi(*m.Query(t, "SELECT COUNT(*) FROM `"+tb.Schema+"`.`"+tb.Table+"`")[0][0])
		n += c
	}
	if n != w.rows {
		t.Fatalf("%d rows downstream, want %d", n, w.rows)
	}
}

func rate(rows int, d time.Duration) float64 { return float64(rows) / d.Seconds() }

// costed is one contender's run: its rate and the CPU it cost per row, in
// this process (the client) and in the server. On a shared 2-core machine
// the rates swing with the load; what each client costs the server and
// itself per row says where a gap is, and swings much less.
type costed struct {
	rate                 float64
	clientCPU, serverCPU time.Duration // per row
}

func measure(rows int, serverCPU func() time.Duration, run func() time.Duration) costed {
	c0, s0 := cpuSelf(), serverCPU()
	d := run()
	c1, s1 := cpuSelf(), serverCPU()
	return costed{rate: rate(rows, d), clientCPU: (c1 - c0) / time.Duration(rows), serverCPU: (s1 - s0) / time.Duration(rows)}
}

func (c costed) String() string {
	return fmt.Sprintf("%.0f rows/s (CPU per row: client %v, server %v)", c.rate, c.clientCPU.Round(100*time.Nanosecond), c.serverCPU.Round(100*time.Nanosecond))
}

// TestBenchSQLMariaDB: the mysql:// sink against a plain loader writing
// the same rows into the same MariaDB with multi-row INSERTs over the same
// number of connections, in interleaved rounds; and the sink on a mixed
// workload (updates and deletes, which the loader cannot do).
func TestBenchSQLMariaDB(t *testing.T) {
	m := testserver.StartMariaDB(t)
	ins := genWorkload(t, *sqlRows, 1, "100:0:0", 1_000_000_000)
	ins.requireInsertOnly(t)
	mixed := genWorkload(t, *sqlRows, 4, "60:30:10", 2000)
	t.Logf("workloads: %d insert-only rows, %d mixed rows, %d tables, %d columns", ins.rows, mixed.rows, len(ins.tables), len(ins.schema(ins.tables[0]).Columns))
	uri := m.URI("root", "", "") + fmt.Sprintf("?worker-count=%d", *sqlWorkers)
	if *sqlParams != "" {
		uri += "&" + *sqlParams
	}
	for round := 1; round <= *sqlRounds; round++ {
		var load costed
		loader := func() {
			load = measure(ins.rows, m.CPU, func() time.Duration {
				return loadMySQL(t, m, ins.retarget(fmt.Sprintf("load%d", round)), *sqlWorkers)
			})
		}
		if round%2 == 0 { // alternate which goes first
			loader()
		}
		metrics := sqlsink.NewMetrics(nil)
		s, err := mysql.Open(context.Background(), uri, sqlsink.WithMetrics(metrics), sqlsink.WithChangefeed("bench"))
		if err != nil {
			t.Fatal(err)
		}
		sinkW := ins.retarget(fmt.Sprintf("sink%d", round))
		sk := measure(ins.rows, m.CPU, func() time.Duration { return runSink(t, s, sinkW) })
		t.Logf("sink: %s", batchStats(metrics, "mysql"))
		requireCountMySQL(t, m, sinkW)
		if round%2 == 1 {
			loader()
		}
		mixedT := runSink(t, s, mixed.retarget(fmt.Sprintf("mixed%d", round)))
		s.Close()
		fmt.Printf("RESULT mariadb round %d: sink %v, plain loader %v, ratio %.2f; sink on the mixed workload %.0f rows/s (%d workers/connections; load %s)\n",
			round, sk, load, sk.rate/load.rate, rate(mixed.rows, mixedT), *sqlWorkers, loadavg())
	}
}

// pgText is a value in PostgreSQL's text input form for the loaders
// (independent of the sink's renderer).
func pgText(c model.Column, v model.Value) (string, bool) {
	switch v.Kind {
	case model.ValueNull, model.ValueMissing:
		return "", false
	case model.ValueInt:
		return strconv.FormatInt(v.I, 10), true
	case model.ValueUint:
		if c.Type.Kind == model.TypeBit {
			s := strconv.FormatUint(v.Uint(), 2)
			return strings.Repeat("0", max(c.Type.Length-len(s), 0)) + s, true
		}
		return strconv.FormatUint(v.Uint(), 10), true
	case model.ValueFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), true
	case model.ValueBytes:
		return `\x` + hex.EncodeToString(v.B), true
	}
	if c.Type.Kind == model.TypeTimestamp {
		return v.S + "+00", true
	}
	return v.S, true
}

// copyEscaper escapes a value for COPY's text format.
var copyEscaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)

func pgCreate(t *testing.T, p *testserver.Postgres, db string, w *workload) {
	c := p.Connect(t, db)
	for _, tb := range w.tables {
		s := w.schema(tb)
		var cols []string
		for _, col := range s.Columns {
			cols = append(cols, `"`+col.Name+`" `+postgres.PGType(col.Type))
		}
		pk := s.PrimaryKey()
		q := `CREATE TABLE "` + tb.Schema + `"."` + tb.Table + `" (` + strings.Join(cols, ",") + `, PRIMARY KEY ("` + strings.Join(pk.Columns, `","`) + `"))`
		for _, stmt := range []string{`CREATE SCHEMA IF NOT EXISTS "` + tb.Schema + `"`, q} {
			if _, err := c.Exec(context.Background(), stmt); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// loadPostgres is a plain loader over conns connections: COPY (text
// format) or multi-row INSERT with text parameters, 256 rows a piece.
func loadPostgres(t *testing.T, p *testserver.Postgres, db string, w *workload, conns int, useCopy bool) time.Duration {
	ctx := context.Background()
	pgCreate(t, p, db, w)
	cs := make([]*pgx.Conn, conns)
	for i := range cs {
		c, err := pgx.Connect(ctx, p.SuperConnString(db)+"&timezone=UTC")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		cs[i] = c
	}
	chunks := w.chunks(256)
	start := time.Now()
	err := parallel(conns, chunks, func(i int, ch chunk) error {
		s := w.schema(ch.table)
		cols := make([]string, len(s.Columns))
		for j, col := range s.Columns {
			cols[j] = `"` + col.Name + `"`
		}
		name := `"` + s.Table.Schema + `"."` + s.Table.Table + `"`
		if useCopy {
			var buf bytes.Buffer
			for _, img := range ch.rows {
				for j, v := range img {
					if j > 0 {
						buf.WriteByte('\t')
					}
					txt, ok := pgText(s.Columns[j], v)
					if !ok {
						buf.WriteString(`\N`)
						continue
					}
					copyEscaper.WriteString(&buf, txt)
				}
				buf.WriteByte('\n')
			}
			_, err := cs[i].PgConn().CopyFrom(ctx, &buf, "COPY "+name+" ("+strings.Join(cols, ",")+") FROM STDIN")
			return err
		}
		var b strings.Builder
		b.WriteString("INSERT INTO " + name + " (" + strings.Join(cols, ",") + ") VALUES ")
		args := make([]any, 0, len(ch.rows)*len(cols))
		for r, img := range ch.rows {
			if r > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for j, v := range img {
				if j > 0 {
					b.WriteByte(',')
				}
				if txt, ok := pgText(s.Columns[j], v); ok {
					args = append(args, txt)
				} else {
					args = append(args, nil)
				}
				b.WriteString("$" + strconv.Itoa(len(args)))
			}
			b.WriteByte(')')
		}
		_, err := cs[i].Exec(ctx, b.String(), args...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// TestBenchSQLPostgres: the postgres:// sink (bulk=auto, and forced to
// multi-row INSERT and to COPY) against plain COPY and plain multi-row
// INSERT of the same rows over the same number of connections.
func TestBenchSQLPostgres(t *testing.T) {
	p := testserver.StartPostgres(t)
	p.CreateDatabase(t, "bench")
	ins := genWorkload(t, *sqlRows, 1, "100:0:0", 1_000_000_000)
	ins.requireInsertOnly(t)
	t.Logf("workload: %d insert-only rows, %d tables", ins.rows, len(ins.tables))
	base := p.SuperConnString("bench") + fmt.Sprintf("&worker-count=%d", *sqlWorkers)
	for round := 1; round <= *sqlRounds; round++ {
		res := map[string]float64{}
		runs := []func(){
			func() {
				for _, mode := range []string{"auto", "insert", "copy"} {
					s, err := postgres.Open(context.Background(), base+"&bulk="+mode)
					if err != nil {
						t.Fatal(err)
					}
					res["sink-"+mode] = rate(ins.rows, runSink(t, s, ins.retarget(fmt.Sprintf("sink_%s_%d", mode, round))))
					s.Close()
				}
			},
			func() {
				res["copy"] = rate(ins.rows, loadPostgres(t, p, "bench", ins.retarget(fmt.Sprintf("copy_%d", round)), *sqlWorkers, true))
			},
			func() {
				res["insert"] = rate(ins.rows, loadPostgres(t, p, "bench", ins.retarget(fmt.Sprintf("insert_%d", round)), *sqlWorkers, false))
			},
		}
		for i := range runs { // a different one goes first each round
			runs[(i+round)%len(runs)]()
		}
		fmt.Printf("RESULT postgres round %d: sink(auto) %.0f, sink(insert) %.0f, sink(copy) %.0f rows/s; plain COPY %.0f, plain multi-row INSERT %.0f rows/s; "+
			"sink(auto)/COPY %.2f, sink(auto)/INSERT %.2f (%d workers/connections)\n",
			round, res["sink-auto"], res["sink-insert"], res["sink-copy"], res["copy"], res["insert"],
			res["sink-auto"]/res["copy"], res["sink-auto"]/res["insert"], *sqlWorkers)
	}
}

// TestBenchSQLWorkerScaling: single-row update transactions through the
// mysql:// sink with 1, 4, 16 and 64 workers, on a low-conflict workload
// (random keys out of 100,000) and a hot-key one (8 keys).
func TestBenchSQLWorkerScaling(t *testing.T) {
	m := testserver.StartMariaDB(t)
	for _, wl := range []struct {
		name string
		keys int
	}{{"low-conflict", 100000}, {"hot-key", 8}} {
		for _, workers := range []int{1, 4, 16, 64} {
			db := fmt.Sprintf("scale_%s_%d", strings.ReplaceAll(wl.name, "-", "_"), workers)
			schema := sqltest.KVSchema(db, "t")
			schema.Indexes = schema.Indexes[:1] // primary key only
			metrics := sqlsink.NewMetrics(nil)
			s, err := mysql.Open(context.Background(), m.URI("root", "", "")+fmt.Sprintf("?worker-count=%d", workers),
				sqlsink.WithMetrics(metrics), sqlsink.WithChangefeed("scale"))
			if err != nil {
				t.Fatal(err)
			}
			ts, err := s.OpenTable(context.Background(), schema.Table, sink.TableOptions{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			// Seed the keys, then time the updates.
			var seed []*model.RowChange
			for k := 0; k < wl.keys; k++ {
				seed = append(seed, sqltest.Insert(schema, sqltest.KV(int64(k), "seed", -1, 0)))
			}
			for i := 0; i < len(seed); i += 5000 {
				sqltest.WriteFlush(t, ts, sqltest.Txn(model.Ts(1+i), seed[i:min(i+5000, len(seed))]...))
			}
			r := rand.New(rand.NewPCG(1, uint64(workers)))
			cur := make([]int64, wl.keys)
			var txns []*model.Txn
			for i := 0; i < *scaleTxns; i++ {
				k := r.IntN(wl.keys)
				before := sqltest.KV(int64(k), "seed", -1, cur[k])
				cur[k]++
				txns = append(txns, sqltest.Txn(model.Ts(1_000_000+i), sqltest.Update(schema, before, sqltest.KV(int64(k), "upd", -1, cur[k]))))
			}
			waited0 := testutil.ToFloat64(metrics.ConflictsWaited.WithLabelValues("scale", "mysql"))
			start := time.Now()
			for i := 0; i < len(txns); i += 2000 {
				sqltest.WriteFlush(t, ts, txns[i:min(i+2000, len(txns))]...)
			}
			el := time.Since(start)
			waited := testutil.ToFloat64(metrics.ConflictsWaited.WithLabelValues("scale", "mysql")) - waited0
			ts.Close()
			s.Close()
			fmt.Printf("RESULT scaling %s workers=%d: %.0f txns/s (%d single-row updates, %.0f waited on a conflict)\n",
				wl.name, workers, rate(len(txns), el), len(txns), waited)
		}
	}
}
