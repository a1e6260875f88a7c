package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/model/modeltest"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
	"github.com/raftcdc/raftcdc/sink/sqlsink/sqltest"
)

// The scenarios that do not crash the server share one MariaDB; each
// works in databases of its own (see internal/testserver/DESIGN.md).

const (
	cdcUser = "cdc"
	cdcPass = "cdc-secret-pw"
)

type env struct {
	t *testing.T
	m *testserver.MariaDB
}

func startEnv(t *testing.T) *env {
	m := testserver.StartMariaDB(t)
	m.CreateUser(t, cdcUser, cdcPass, "ALL ON *.*")
	return &env{t: t, m: m}
}

// uri is the sink URI for the cdc user with extra parameters.
func (e *env) uri(params string) string {
	u := e.m.URI(cdcUser, cdcPass, "")
	if params != "" {
		u += "?" + params
	}
	return u
}

// open opens a sink, closed at the end of the test.
func (e *env) open(t *testing.T, params string) *sqlsink.Sink {
	t.Helper()
	s, err := Open(context.Background(), e.uri(params), sqlsink.WithChangefeed(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTable(t *testing.T, s sink.Sink, schema *model.TableSchema, opts sink.TableOptions) sink.TableSink {
	t.Helper()
	if opts.Schema == nil {
		opts.Schema = schema
	}
	ts, err := s.OpenTable(context.Background(), schema.Table, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	return ts
}

func (e *env) rows(t *testing.T, schema *model.TableSchema) [][]model.Value {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := ReadRows(ctx, e.m.DB(), schema)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestMySQLSink(t *testing.T) {
	e := startEnv(t)
	t.Run("EveryTypeRoundTripsExactly", e.everyTypeRoundTrips)
	t.Run("UpdatesDeletesAndKeyChanges", e.updatesDeletesAndKeyChanges)
	t.Run("ReplayInSafeModeIsIdempotent", e.replayInSafeMode)
	t.Run("SafeModeFalseFailsOnPlantedRowNamingTheTable", e.safeModeFalseFailsOnPlantedRow)
	t.Run("ParallelWorkersEqualSerialExecution", e.parallelEqualsSerial)
	t.Run("KeylessTableKeepsOrder", e.keylessKeepsOrder)
	t.Run("TransactionIsAtomic", e.transactionIsAtomic)
	t.Run("LargeTransactionStreamsAtomically", e.largeTransactionStreams)
	t.Run("DDLRunsOnceAndReplayPasses", e.ddlReplay)
	t.Run("PermanentErrorNamesTableAndKind", e.permanentErrorNamesTable)
	t.Run("CheckReportsServerAndPrivileges", e.checkOK)
	t.Run("BadInputFailsAtCheckAndCreatesNothing", e.badInput)
}

func (e *env) everyTypeRoundTrips(t *testing.T) {
	for i, params := range []string{"", "multi-stmt-enable=false", "multi-stmt-enable=false&cache-prep-stmts=false", "batch-dml-enable=false", "safe-mode=true"} {
		t.Run(fmt.Sprintf("params=%q", params), func(t *testing.T) {
			schema := modeltest.AllTypesSchema(fmt.Sprintf("types%d", i), "all_types", 1, 1)
			s := e.open(t, params)
			ts := openTable(t, s, schema, sink.TableOptions{})
			var txns []*model.Txn
			var want [][]model.Value
			for j, img := range modeltest.EdgeImages() {
				txns = append(txns, sqltest.Txn(model.Ts(100+j), sqltest.Insert(schema, img)))
				want = append(want, img)
			}
			sqltest.WriteFlush(t, ts, txns...)
			sqltest.SortByKey(schema, want)
			sqltest.RequireRows(t, schema, e.rows(t, schema), want)
		})
	}
}

func (e *env) updatesDeletesAndKeyChanges(t *testing.T) {
	for _, params := range []string{"", "safe-mode=true", "multi-stmt-enable=false"} {
		t.Run(fmt.Sprintf("params=%q", params), func(t *testing.T) {
			schema := sqltest.KVSchema("upd"+strings.NewReplacer("=", "", "-", "", "&", "").Replace(params), "t")
			s := e.open(t, params)
			ts := openTable(t, s, schema, sink.TableOptions{})
			m := sqltest.NewModel()
			txns := []*model.Txn{
				sqltest.Txn(10, sqltest.Insert(schema, sqltest.KV(1, "a", 1, 0)), sqltest.Insert(schema, sqltest.KV(2, "b", 2, 0)), sqltest.Insert(schema, sqltest.KV(3, "c", -1, 0))),
				// the primary key moves; the unique key moves between rows
				sqltest.Txn(11, sqltest.Update(schema, sqltest.KV(1, "a", 1, 0), sqltest.KV(10, "a2", 1, 1))),
				sqltest.Txn(12, sqltest.Update(schema, sqltest.KV(2, "b", 2, 0), sqltest.KV(2, "b", -1, 0)), sqltest.Update(schema, sqltest.KV(3, "c", -1, 0), sqltest.KV(3, "c", 2, 2))),
				sqltest.Txn(13, sqltest.Delete(schema, sqltest.KV(10, "a2", 1, 1)), sqltest.Insert(schema, sqltest.KV(1, "again", 1, 3))),
				// a key used, freed and used again inside one transaction
				sqltest.Txn(14, sqltest.Delete(schema, sqltest.KV(1, "again", 1, 3)), sqltest.Insert(schema, sqltest.KV(1, "third", 7, 4)), sqltest.Update(schema, sqltest.KV(1, "third", 7, 4), sqltest.KV(1, "fourth", 7, 5))),
			}
			for _, tx := range txns {
				m.Apply(tx)
			}
			sqltest.WriteFlush(t, ts, txns...)
			sqltest.RequireRows(t, schema, e.rows(t, schema), m.Rows(schema))
		})
	}
}

func (e *env) replayInSafeMode(t *testing.T) {
	schema := sqltest.KVSchema("replay", "t")
	w := sqltest.NewWorkload(7, schema, 30, 1000)
	var txns []*model.Txn
	for i := 0; i < 200; i++ {
		txns = append(txns, w.Next(4))
	}
	s := e.open(t, "")
	first := openTable(t, s, schema, sink.TableOptions{})
	sqltest.WriteFlush(t, first, txns...)
	first.Close()

	// A failover: the new capture starts from an older checkpoint and the
	// replay window covers everything the first run wrote. The second half
	// is replayed; with plain statements its inserts would be duplicates.
	mid := txns[100].CommitTs - 1
	last := txns[len(txns)-1].CommitTs
	again := openTable(t, s, schema, sink.TableOptions{StartTs: mid, ReplayUntil: last})
	sqltest.WriteFlush(t, again, txns[100:]...)
	sqltest.RequireRows(t, schema, e.rows(t, schema), w.State())

	// Outside the window (ReplayUntil below the replayed rows) and with
	// safe-mode=false the same replay is a duplicate-key failure.
	s2 := e.open(t, "safe-mode=false")
	plain := openTable(t, s2, schema, sink.TableOptions{StartTs: mid, ReplayUntil: last})
	err := sqltest.TryWriteFlush(plain, txns[100:]...)
	if err == nil || !strings.Contains(err.Error(), "Duplicate entry") {
		t.Fatalf("a replay with safe-mode=false: got %v, want a duplicate-key error", err)
	}
}

func (e *env) safeModeFalseFailsOnPlantedRow(t *testing.T) {
	schema := sqltest.KVSchema("planted", "orders")
	s := e.open(t, "safe-mode=false")
	ts := openTable(t, s, schema, sink.TableOptions{ReplayUntil: 1 << 40})
	e.m.Exec(t, "INSERT INTO planted.orders (id, v) VALUES (5, 'planted')")
	err := sqltest.TryWriteFlush(ts, sqltest.Txn(100, sqltest.Insert(schema, sqltest.KV(5, "x", -1, 0))))
	if err == nil {
		t.Fatal("insert over a planted row succeeded with safe-mode=false")
	}
	for _, want := range []string{"planted.orders", "insert", "Duplicate entry"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), cdcPass) {
		t.Fatalf("error shows the password: %v", err)
	}
	// The sink stays failed: nothing after a permanent error is written.
	if err2 := sqltest.TryWriteFlush(ts, sqltest.Txn(101, sqltest.Insert(schema, sqltest.KV(6, "y", -1, 0)))); err2 == nil {
		t.Fatal("a write after a permanent failure succeeded")
	}
	if got := e.m.Query(t, "SELECT COUNT(*) FROM planted.orders WHERE id = 6"); *got[0][0] != "0" {
		t.Fatal("row 6 was written after the sink failed")
	}
}

func (e *env) parallelEqualsSerial(t *testing.T) {
	// The property on the real server: random transactions over a few
	// overlapping keys (primary and unique), applied by many workers,
	// leave exactly the state of serial execution.
	for seed := uint64(1); seed <= 4; seed++ {
		for _, keys := range []int{3, 50} {
			t.Run(fmt.Sprintf("seed=%d/keys=%d", seed, keys), func(t *testing.T) {
				schema := sqltest.KVSchema(fmt.Sprintf("par%d_%d", seed, keys), "t")
				s := e.open(t, "worker-count=16&max-txn-row=8")
				ts := openTable(t, s, schema, sink.TableOptions{})
				w := sqltest.NewWorkload(seed, schema, keys, 1)
				var txns []*model.Txn
				for i := 0; i < 300; i++ {
					txns = append(txns, w.Next(3))
				}
				// Flush in a few steps, as a pipeline does.
				for i := 0; i < len(txns); i += 75 {
					sqltest.WriteFlush(t, ts, txns[i:min(i+75, len(txns))]...)
				}
				sqltest.RequireRows(t, schema, e.rows(t, schema), w.State())
			})
		}
	}
}

func (e *env) keylessKeepsOrder(t *testing.T) {
	schema := sqltest.KeylessSchema("keyless", "log")
	s := e.open(t, "worker-count=8&max-txn-row=1")
	ts := openTable(t, s, schema, sink.TableOptions{})
	row := func(a int64, b string) []model.Value { return []model.Value{model.IntValue(a), model.StringValue(b)} }
	var txns []*model.Txn
	// Insert, change and delete the same keyless rows over and over: any
	// reordering leaves a different table.
	for i := 0; i < 40; i++ {
		ts0 := model.Ts(10 + 3*i)
		txns = append(txns,
			sqltest.Txn(ts0, sqltest.Insert(schema, row(int64(i%3), "x"))),
			sqltest.Txn(ts0+1, sqltest.Update(schema, row(int64(i%3), "x"), row(int64(i%3), fmt.Sprint("y", i)))),
		)
		if i%2 == 0 {
			txns = append(txns, sqltest.Txn(ts0+2, sqltest.Delete(schema, row(int64(i%3), fmt.Sprint("y", i)))))
		}
	}
	sqltest.WriteFlush(t, ts, txns...)
	var want [][]model.Value
	for i := 1; i < 40; i += 2 {
		want = append(want, row(int64(i%3), fmt.Sprint("y", i)))
	}
	sqltest.SortByKey(schema, want)
	sqltest.RequireRows(t, schema, e.rows(t, schema), want)
}

func (e *env) transactionIsAtomic(t *testing.T) {
	// The second row of a transaction fails (data too long): the first
	// must not be committed either.
	schema := sqltest.KVSchema("atomic", "t")
	s := e.open(t, "")
	ts := openTable(t, s, schema, sink.TableOptions{})
	err := sqltest.TryWriteFlush(ts, sqltest.Txn(10,
		sqltest.Insert(schema, sqltest.KV(1, "fits", -1, 0)),
		sqltest.Insert(schema, sqltest.KV(2, strings.Repeat("x", 65), -1, 0))))
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("got %v, want a data-too-long error", err)
	}
	if got := e.m.Query(t, "SELECT COUNT(*) FROM atomic.t"); *got[0][0] != "0" {
		t.Fatalf("%s rows committed from a failed transaction", *got[0][0])
	}
}

// fragments writes one transaction as the processor hands over a large
// one: several Txn values with one key, over several Write calls.
func fragments(t *testing.T, ts sink.TableSink, commitTs model.Ts, rows []*model.RowChange, size int) error {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(rows); i += size {
		part := rows[i:min(i+size, len(rows))]
		for _, r := range part {
			r.CommitTs, r.StartTs = commitTs, commitTs-1
		}
		if err := ts.Write(ctx, []*model.Txn{{CommitTs: commitTs, StartTs: commitTs - 1, Rows: part}}); err != nil {
			return err
		}
	}
	return ts.Flush(ctx, commitTs)
}

func (e *env) largeTransactionStreams(t *testing.T) {
	schema := sqltest.KVSchema("large", "t")
	s := e.open(t, "")
	ts := openTable(t, s, schema, sink.TableOptions{})
	m := sqltest.NewModel()
	small := sqltest.Txn(10)
	for i := int64(1); i <= 10; i++ {
		small.Rows = append(small.Rows, sqltest.Insert(schema, sqltest.KV(i, "small", -1, 0)))
	}
	small = sqltest.Txn(10, small.Rows...)
	m.Apply(small)
	if err := ts.Write(context.Background(), []*model.Txn{small}); err != nil {
		t.Fatal(err)
	}
	// 20,000 rows in fragments of 4,096 that also update the small
	// transaction's rows: the stream must wait for it.
	var big []*model.RowChange
	for i := int64(1); i <= 10; i++ {
		big = append(big, sqltest.Update(schema, sqltest.KV(i, "small", -1, 0), sqltest.KV(i, "big", -1, 1)))
	}
	for i := int64(100); len(big) < 20000; i++ {
		big = append(big, sqltest.Insert(schema, sqltest.KV(i, "big", -1, 1)))
	}
	m.Apply(&model.Txn{CommitTs: 20, Rows: big})
	if err := fragments(t, ts, 20, big, 4096); err != nil {
		t.Fatal(err)
	}
	sqltest.RequireRows(t, schema, e.rows(t, schema), m.Rows(schema))

	// A large transaction whose last fragment fails commits nothing.
	var bad []*model.RowChange
	for i := int64(100000); len(bad) < 12000; i++ {
		bad = append(bad, sqltest.Insert(schema, sqltest.KV(i, "bad", -1, 2)))
	}
	bad = append(bad, sqltest.Insert(schema, sqltest.KV(999999, strings.Repeat("x", 65), -1, 2)))
	err := fragments(t, ts, 30, bad, 4096)
	if err == nil || !strings.Contains(err.Error(), "too long") || !strings.Contains(err.Error(), "large.t") {
		t.Fatalf("a large transaction with a bad last row: %v", err)
	}
	if got := e.m.Query(t, "SELECT COUNT(*) FROM large.t WHERE n = 2"); *got[0][0] != "0" {
		t.Fatalf("%s rows of the failed large transaction were committed", *got[0][0])
	}
}

func (e *env) ddlReplay(t *testing.T) {
	s := e.open(t, "")
	ctx := context.Background()
	schema := sqltest.KVSchema("ddl", "t")
	after := schema.Clone()
	after.Columns = append(after.Columns, model.Column{Name: "extra", Type: model.ColumnType{Kind: model.TypeInt}, Nullable: true})
	ddls := []*model.DDLEvent{
		{CommitTs: 10, Kind: model.DDLCreateSchema, Schema: "ddl", Query: "CREATE DATABASE `ddl`"},
		{CommitTs: 11, Kind: model.DDLCreateTable, Schema: "ddl", Query: schema.CreateTableSQL(false), Tables: []model.TableName{schema.Table}, After: []*model.TableSchema{schema}},
		{CommitTs: 12, Kind: model.DDLAddColumn, Schema: "ddl", Query: "ALTER TABLE `ddl`.`t` ADD COLUMN `extra` INT", Tables: []model.TableName{schema.Table}, After: []*model.TableSchema{after}},
		{CommitTs: 13, Kind: model.DDLAddIndex, Schema: "ddl", Query: "CREATE INDEX `ix_extra` ON `ddl`.`t` (`extra`)", Tables: []model.TableName{schema.Table}},
	}
	for round := 0; round < 2; round++ { // the second round is an owner's replay
		for _, d := range ddls {
			if err := s.EmitDDL(ctx, d); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	ts := openTable(t, s, after, sink.TableOptions{})
	img := append(sqltest.KV(1, "a", -1, 0), model.IntValue(5))
	sqltest.WriteFlush(t, ts, sqltest.Txn(20, sqltest.Insert(after, img)))
	sqltest.RequireRows(t, after, e.rows(t, after), [][]model.Value{img})

	// A rename keeps the table sink; rows after it carry the new name.
	renamed := after.Clone()
	renamed.Table.Table, renamed.Version = "t2", 14
	rename := &model.DDLEvent{CommitTs: 14, Kind: model.DDLRenameTable, Schema: "ddl", Query: "RENAME TABLE `ddl`.`t` TO `ddl`.`t2`",
		Tables: []model.TableName{after.Table}, After: []*model.TableSchema{renamed}}
	for round := 0; round < 2; round++ {
		if err := s.EmitDDL(ctx, rename); err != nil {
			t.Fatalf("rename, round %d: %v", round, err)
		}
	}
	img2 := append(sqltest.KV(2, "b", -1, 0), model.IntValue(6))
	sqltest.WriteFlush(t, ts, sqltest.Txn(21, sqltest.Insert(renamed, img2)))
	sqltest.RequireRows(t, renamed, e.rows(t, renamed), [][]model.Value{img, img2})

	bad := &model.DDLEvent{CommitTs: 30, Kind: model.DDLAddColumn, Schema: "ddl", Query: "ALTER TABLE `ddl`.`missing` ADD COLUMN `x` INT"}
	err := s.EmitDDL(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), bad.Query) || !strings.Contains(err.Error(), "doesn't exist") {
		t.Fatalf("a DDL on a missing table: got %v, want an error naming the statement", err)
	}
}

func (e *env) permanentErrorNamesTable(t *testing.T) {
	schema := sqltest.KVSchema("perm", "customers")
	s := e.open(t, "create-tables=false")
	_, err := s.OpenTable(context.Background(), schema.Table, sink.TableOptions{Schema: schema})
	if err == nil || !strings.Contains(err.Error(), "unknown database `perm`") {
		t.Fatalf("opening a table in a missing database with create-tables=false: %v", err)
	}
	e.m.Exec(t, "CREATE DATABASE perm", "CREATE TABLE perm.customers (id BIGINT PRIMARY KEY, v VARCHAR(64), u INT UNIQUE)")
	ts := openTable(t, s, schema, sink.TableOptions{})
	// The downstream lacks column n: an unknown column is permanent.
	err = sqltest.TryWriteFlush(ts, sqltest.Txn(10, sqltest.Insert(schema, sqltest.KV(1, "a", -1, 0))))
	if err == nil {
		t.Fatal("insert into a table without the column succeeded")
	}
	for _, want := range []string{"perm.customers", "insert", "Unknown column"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
}

func (e *env) checkOK(t *testing.T) {
	ctx := context.Background()
	res, err := Check(ctx, e.uri("worker-count=4"), []string{"app1", "app2"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Flavour != FlavourMariaDB || !strings.HasPrefix(res.Version, "10.") {
		t.Fatalf("check found %s %s, want MariaDB 10.x", res.Flavour, res.Version)
	}
	if strings.Contains(res.URI, cdcPass) || !strings.Contains(res.URI, "xxxxx") {
		t.Fatalf("check result shows URI %q", res.URI)
	}
	// A user with database-level grants passes for its database only.
	e.m.CreateUser(t, "scoped", "scoped-pw", "ALL PRIVILEGES ON `app\\_%`.*")
	scoped := strings.Replace(e.uri(""), cdcUser+":"+cdcPass, "scoped:scoped-pw", 1)
	if _, err := Check(ctx, scoped, []string{"app_one"}); err != nil {
		t.Fatalf("scoped user on app_one: %v", err)
	}
	if _, err := Check(ctx, scoped, []string{"other"}); err == nil || !strings.Contains(err.Error(), "lacks") {
		t.Fatalf("scoped user on other: got %v, want a missing-privilege error", err)
	}
}

func (e *env) badInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.m.CreateUser(t, "dmlonly", "dml-pw", "SELECT, INSERT, UPDATE, DELETE ON *.*")
	before := e.m.Query(t, "SELECT COUNT(*) FROM information_schema.tables")
	beforeDBs := e.m.Query(t, "SELECT COUNT(*) FROM information_schema.schemata")
	host := e.m.Addr()
	cases := []struct {
		name, uri, want string
		dbs             []string
	}{
		{"wrong password", "mysql://cdc:not-the-password@" + host + "/", "access denied for user \"cdc\"", nil},
		{"unknown host", "mysql://cdc:" + cdcPass + "@no-such-host.invalid:3306/", "cannot resolve host \"no-such-host.invalid\"", nil},
		{"nothing listening", "mysql://cdc:" + cdcPass + "@127.0.0.1:1/", "connection refused at 127.0.0.1:1", nil},
		{"unknown parameter", e.uri("worker-cnt=4"), "unknown parameter \"worker-cnt\"", nil},
		{"bad parameter value", e.uri("worker-count=0"), "parameter worker-count=\"0\": want a whole number from 1 to 1024", nil},
		{"repeated parameter", e.uri("safe-mode=true&safe-mode=false"), "parameter safe-mode is given 2 times", nil},
		{"missing privilege", "mysql://dmlonly:dml-pw@" + host + "/", "lacks CREATE, DROP, ALTER, INDEX on *.*", nil},
		{"unknown database", e.uri("create-tables=false"), "unknown database \"nosuchdb\"", []string{"nosuchdb"}},
		{"tidb scheme on MariaDB", strings.Replace(e.uri(""), "mysql://", "tidb://", 1), "a tidb:// URI, but the server is MariaDB", nil},
		{"unknown time zone", e.uri("time-zone=Mars/Olympus"), "parameter time-zone=\"Mars/Olympus\"", nil},
		{"named zone the server lacks", e.uri("time-zone=Asia/Tokyo"), "parameter time-zone=Asia/Tokyo: the server does not accept it", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Check(ctx, c.uri, c.dbs)
			if err == nil {
				t.Fatalf("Check(%s) passed", c.name)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check: %v\nwant it to say %q", err, c.want)
			}
			for _, secret := range []string{cdcPass, "not-the-password", "dml-pw"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error shows a password: %v", err)
				}
			}
		})
	}
	if after := e.m.Query(t, "SELECT COUNT(*) FROM information_schema.tables"); *after[0][0] != *before[0][0] {
		t.Fatalf("checks created tables: %s → %s", *before[0][0], *after[0][0])
	}
	if after := e.m.Query(t, "SELECT COUNT(*) FROM information_schema.schemata"); *after[0][0] != *beforeDBs[0][0] {
		t.Fatalf("checks created databases: %s → %s", *beforeDBs[0][0], *after[0][0])
	}
}

// TestMySQLSinkSurvivesDownstreamCrash SIGKILLs MariaDB while a stream of
// transactions is being written and starts it again: the sink retries,
// nothing is lost, nothing fails, and the retries are counted.
func TestMySQLSinkSurvivesDownstreamCrash(t *testing.T) {
	e := startEnv(t)
	schema := sqltest.KVSchema("crash", "t")
	metrics := sqlsink.NewMetrics(nil)
	s, err := Open(context.Background(), e.uri("worker-count=4&read-timeout=10s&write-timeout=10s"), sqlsink.WithChangefeed("cf-crash"), sqlsink.WithMetrics(metrics))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := openTable(t, s, schema, sink.TableOptions{})
	w := sqltest.NewWorkload(11, schema, 200, 1)

	var wg sync.WaitGroup
	errs := make(chan error, 1)
	stop := make(chan struct{})
	progress := make(chan int, 1000)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var batch []*model.Txn
			for j := 0; j < 10; j++ {
				batch = append(batch, w.Next(3))
			}
			if err := sqltest.TryWriteFlush(ts, batch...); err != nil {
				errs <- err
				return
			}
			select {
			case progress <- i:
			default:
			}
		}
	}()
	waitProgress := func(n int) {
		deadline := time.After(2 * time.Minute)
		for seen := 0; seen < n; {
			select {
			case <-progress:
				seen++
			case err := <-errs:
				t.Fatalf("the stream failed: %v", err)
			case <-deadline:
				t.Fatalf("the stream made no progress (%d of %d flushes)", seen, n)
			}
		}
	}
	waitProgress(5)
	e.m.Kill(t)
	time.Sleep(500 * time.Millisecond) // let the sink hit the dead server
	e.m.Start(t)
	waitProgress(5)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("the stream failed: %v", err)
	default:
	}
	sqltest.RequireRows(t, schema, e.rows(t, schema), w.State())
	retries := testutil.ToFloat64(metrics.Retries.WithLabelValues("cf-crash", "mysql", "connection")) +
		testutil.ToFloat64(metrics.Retries.WithLabelValues("cf-crash", "mysql", "timeout"))
	if retries == 0 {
		t.Fatal("no retry was counted across a downstream crash")
	}
	if rows := testutil.ToFloat64(metrics.Rows.WithLabelValues("cf-crash", "mysql")); rows == 0 {
		t.Fatal("rows metric did not move")
	}
}

// errorsAs keeps errors imported for helpers that may need it.
var _ = errors.As

// sqlDB keeps database/sql imported for helpers.
var _ *sql.DB
