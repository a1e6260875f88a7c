package verify

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
	mysqlsink "github.com/raftcdc/raftcdc/sink/mysql"
	pgsink "github.com/raftcdc/raftcdc/sink/postgres"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// sqlURI: two tables (one with the composite key), DDL so that the schema
// at the checkpoint has an added column, every column type.
const sqlURI = "datagen://?tables=2&rate=20&keys=40&ddl-every=3s&row-size=8&epoch=" + stateEpoch

// expectedRows is the upstream state at cp: every existing row of every
// table, with its schema.
func expectedRows(t *testing.T, h *datagen.History, cp model.Ts) map[*model.TableSchema][][]model.Value {
	t.Helper()
	out := map[*model.TableSchema][][]model.Value{}
	for _, tn := range h.TablesAt(cp) {
		err := h.StateAt(tn.ID, cp, func(s *model.TableSchema, ks datagen.KeyState) bool {
			if _, ok := out[s]; !ok {
				out[s] = nil
			}
			if ks.Exists {
				out[s] = append(out[s], ks.Row)
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func mysqlArg(v model.Value) any {
	switch v.Kind {
	case model.ValueNull:
		return nil
	case model.ValueInt:
		return v.I
	case model.ValueUint:
		return v.Uint()
	case model.ValueFloat:
		return v.Float()
	case model.ValueBytes:
		return v.B
	}
	return v.S
}

// One MariaDB for both MySQL tests (each uses its own database).
func TestMySQLDownstream(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBArgs("--explicit-defaults-for-timestamp=ON"))
	t.Run("a hand-filled database", func(t *testing.T) { testStateOfAMySQLDatabase(t, m) })
	t.Run("written by the MySQL sink", func(t *testing.T) { testMySQLSinkOutputVerifies(t, m) })
}

// A MariaDB holding exactly datagen's state verifies; a changed value, a
// lost row, an extra row and a dropped column are each reported as such.
func testStateOfAMySQLDatabase(t *testing.T, m *testserver.MariaDB) {
	h := stateHistory(t, sqlURI)
	cp := after(h, 10*time.Second)
	cfg, err := mysql.ParseDSN(m.DSN("root", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	cfg.InterpolateParams = false
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("CREATE DATABASE datagen")
	want := expectedRows(t, h, cp)
	for s, rows := range want {
		exec(s.CreateTableSQL(false))
		marks := strings.TrimSuffix(strings.Repeat("?,", len(s.Columns)), ",")
		for _, img := range rows {
			args := make([]any, len(img))
			for i, v := range img {
				args[i] = mysqlArg(v)
			}
			exec("INSERT INTO "+model.QuoteIdent(s.Table.Schema)+"."+model.QuoteIdent(s.Table.Table)+" VALUES ("+marks+")", args...)
		}
	}
	uri := m.URI("root", "", "")
	p := StateParams{SourceURI: sqlURI, Downstream: uri, StartTs: h.EpochTs(), CheckpointTs: cp}
	rep := mustCompare(t, p)
	if !rep.OK() || rep.Expected == 0 || rep.Matched != rep.Expected {
		t.Fatalf("%s", rep)
	}

	var s *model.TableSchema
	var row []model.Value
	for sch, rows := range want {
		if len(rows) > 1 {
			s, row = sch, rows[0]
		}
	}
	table := "datagen." + model.QuoteIdent(s.Table.Table)
	id := row[s.ColumnIndex("id")].I
	exec("UPDATE "+table+" SET seq = seq + 7 WHERE id = ?", id)
	rep = mustCompare(t, p)
	if rep.OK() || rep.Wrong != 1 || rep.WrongExamples[0].Column != "seq" || rep.WrongExamples[0].Row.Key != uint64(id) {
		t.Fatalf("changed seq: %s", rep)
	}
	exec("DELETE FROM "+table+" WHERE id = ?", id)
	rep = mustCompare(t, p)
	if rep.OK() || rep.Missing != 1 || rep.Wrong != 0 {
		t.Fatalf("deleted row: %s", rep)
	}
	// An absent key inserted: extra.
	var absent int64 = -1
	h.StateAt(s.Table.ID, cp, func(_ *model.TableSchema, ks datagen.KeyState) bool {
		if !ks.Exists {
			absent = int64(ks.Key)
			return false
		}
		return true
	})
	if absent >= 0 {
		args := make([]any, len(row))
		for i, v := range row {
			args[i] = mysqlArg(v)
		}
		args[s.ColumnIndex("id")] = absent
		exec("INSERT INTO "+table+" VALUES ("+strings.TrimSuffix(strings.Repeat("?,", len(row)), ",")+")", args...)
		rep = mustCompare(t, p)
		if rep.OK() || rep.Extra != 1 || rep.ExtraExamples[0].Key != uint64(absent) {
			t.Fatalf("inserted absent key: %s", rep)
		}
	}
	exec("ALTER TABLE " + table + " DROP COLUMN c_json")
	rep = mustCompare(t, p)
	if len(rep.SchemaDiffs) == 0 || !strings.Contains(strings.Join(rep.SchemaDiffs, "\n"), "c_json is missing downstream") {
		t.Fatalf("dropped column: %s", rep)
	}

	// A wrong password is refused without showing it.
	bad := strings.Replace(uri, "root:@", "root:hunter2@", 1)
	if _, err := CompareState(ctx, StateParams{SourceURI: sqlURI, Downstream: bad, CheckpointTs: cp}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("wrong password: %v", err)
	}
}

// pgType is the PostgreSQL type this test stores a MySQL type in: ranges
// that PostgreSQL's own types cannot hold move up (unsigned bigint to
// numeric, time to interval).
func pgType(t model.ColumnType) string {
	switch t.Kind {
	case model.TypeTinyInt:
		return "smallint"
	case model.TypeSmallInt:
		if t.Unsigned {
			return "integer"
		}
		return "smallint"
	case model.TypeMediumInt:
		return "integer"
	case model.TypeInt:
		if t.Unsigned {
			return "bigint"
		}
		return "integer"
	case model.TypeBigInt:
		if t.Unsigned {
			return "numeric(20)"
		}
		return "bigint"
	case model.TypeDecimal:
		return fmt.Sprintf("numeric(%d,%d)", t.Length, t.Scale)
	case model.TypeFloat:
		return "real"
	case model.TypeDouble:
		return "double precision"
	case model.TypeChar:
		return fmt.Sprintf("char(%d)", t.Length)
	case model.TypeVarchar:
		return fmt.Sprintf("varchar(%d)", t.Length)
	case model.TypeDate:
		return "date"
	case model.TypeDatetime:
		return fmt.Sprintf("timestamp(%d)", t.Fsp)
	case model.TypeTimestamp:
		return fmt.Sprintf("timestamptz(%d)", t.Fsp)
	case model.TypeTime:
		return fmt.Sprintf("interval(%d)", t.Fsp)
	case model.TypeYear:
		return "smallint"
	case model.TypeBit:
		return fmt.Sprintf("bit(%d)", t.Length)
	case model.TypeJSON:
		return "jsonb"
	}
	if t.IsBinary() {
		return "bytea"
	}
	return "text"
}

func pgLiteral(t model.ColumnType, v model.Value) any {
	switch v.Kind {
	case model.ValueNull:
		return nil
	case model.ValueInt:
		return strconv.FormatInt(v.I, 10)
	case model.ValueUint:
		if t.Kind == model.TypeBit {
			s := strconv.FormatUint(v.Uint(), 2)
			return strings.Repeat("0", t.Length-len(s)) + s
		}
		return strconv.FormatUint(v.Uint(), 10)
	case model.ValueFloat:
		return model.FloatText(v.Float(), t)
	case model.ValueBytes:
		return `\x` + hex.EncodeToString(v.B)
	}
	return v.S
}

// One PostgreSQL for both PostgreSQL tests (each uses its own schema).
func TestPostgreSQLDownstream(t *testing.T) {
	pg := testserver.StartPostgres(t)
	t.Run("a hand-filled database", func(t *testing.T) { testStateOfAPostgreSQLDatabase(t, pg) })
	t.Run("written by the PostgreSQL sink", func(t *testing.T) { testPostgresSinkOutputVerifies(t, pg) })
}

// The same for PostgreSQL: the reader takes every value's text form and
// reads it by the upstream type, whatever PostgreSQL type holds it.
func testStateOfAPostgreSQLDatabase(t *testing.T, pg *testserver.Postgres) {
	h := stateHistory(t, sqlURI)
	cp := after(h, 10*time.Second)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.SuperConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, q, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...); err != nil {
			t.Fatalf("%.200s: %v", q, err)
		}
	}
	exec("SET TIME ZONE 'UTC'")
	exec("CREATE SCHEMA datagen")
	want := expectedRows(t, h, cp)
	for s, rows := range want {
		var defs []string
		for _, c := range s.Columns {
			d := pgIdent(c.Name) + " " + pgType(c.Type)
			if !c.Nullable {
				d += " NOT NULL"
			}
			defs = append(defs, d)
		}
		var pk []string
		for _, c := range s.PrimaryKey().Columns {
			pk = append(pk, pgIdent(c))
		}
		table := pgIdent(s.Table.Schema) + "." + pgIdent(s.Table.Table)
		exec("CREATE TABLE " + table + " (" + strings.Join(defs, ", ") + ", PRIMARY KEY (" + strings.Join(pk, ", ") + "))")
		for _, img := range rows {
			args := make([]any, len(img))
			marks := make([]string, len(img))
			for i, v := range img {
				args[i] = pgLiteral(s.Columns[i].Type, v)
				marks[i] = "$" + strconv.Itoa(i+1)
			}
			exec("INSERT INTO "+table+" VALUES ("+strings.Join(marks, ", ")+")", args...)
		}
	}
	p := StateParams{SourceURI: sqlURI, Downstream: pg.SuperConnString("postgres") + "&worker-count=4", StartTs: h.EpochTs(), CheckpointTs: cp}
	rep := mustCompare(t, p)
	if !rep.OK() || rep.Expected == 0 || rep.Matched != rep.Expected {
		t.Fatalf("%s", rep)
	}
	var s *model.TableSchema
	var row []model.Value
	for sch, rows := range want {
		if len(rows) > 0 {
			s, row = sch, rows[0]
		}
	}
	id := row[s.ColumnIndex("id")].I
	exec("UPDATE datagen."+pgIdent(s.Table.Table)+" SET c_decimal65 = CASE WHEN c_decimal65 = 1.5 THEN 2.5 ELSE 1.5 END WHERE id = $1", strconv.FormatInt(id, 10))
	rep = mustCompare(t, p)
	if rep.OK() || rep.Wrong != 1 || rep.WrongExamples[0].Column != "c_decimal65" {
		t.Fatalf("changed decimal: %s", rep)
	}
	exec("CREATE TABLE datagen.stray (a int)")
	rep = mustCompare(t, p)
	if !strings.Contains(strings.Join(rep.SchemaDiffs, "\n"), "datagen.stray exists downstream") {
		t.Fatalf("stray table: %s", rep)
	}
}

// End to end through the real MySQL sink: datagen v2 with every DDL kind,
// 2-table transactions and a failover replay, written by sink/mysql into
// MariaDB and read back by the verifier — the SQL sink's type mapping and
// the verifier's reader agree on every column type.
func testMySQLSinkOutputVerifies(t *testing.T, m *testserver.MariaDB) {
	const src = "datagen://?tables=3&rate=15&keys=25&txn-rows=2&txn-tables=2&ddl-every=2s&row-size=8&schema=e2e&epoch=" + stateEpoch
	h := stateHistory(t, src)
	uri := m.URI("root", "", "")
	s, err := mysqlsink.Open(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	start, upto := h.EpochTs(), after(h, 25*time.Second)
	replicateTo(t, h, s, start, upto, after(h, 8*time.Second))
	s.Close()
	rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uri, StartTs: start, CheckpointTs: upto})
	if !rep.OK() || rep.Expected == 0 || rep.Matched != rep.Expected {
		t.Fatalf("%s", rep)
	}
	t.Log(rep)
}

// End to end through the real PostgreSQL sink, as for MySQL: the sink's
// documented type mapping and the verifier's reader agree on every type.
func testPostgresSinkOutputVerifies(t *testing.T, pg *testserver.Postgres) {
	const src = "datagen://?tables=3&rate=15&keys=25&txn-rows=2&txn-tables=2&ddl-every=2s&row-size=8&schema=e2e&epoch=" + stateEpoch
	h := stateHistory(t, src)
	uri := pg.SuperConnString("postgres")
	s, err := pgsink.Open(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	start, upto := h.EpochTs(), after(h, 25*time.Second)
	replicateTo(t, h, s, start, upto, after(h, 8*time.Second))
	s.Close()
	rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uri, StartTs: start, CheckpointTs: upto})
	if !rep.OK() || rep.Expected == 0 || rep.Matched != rep.Expected {
		t.Fatalf("%s", rep)
	}
}
