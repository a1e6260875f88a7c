package tidb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

const allTypes = `CREATE TABLE d.all_types (
	id BIGINT PRIMARY KEY,
	ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, bu BIGINT UNSIGNED,
	dec1 DECIMAL(10,3), dec2 DECIMAL(65,30), f FLOAT, dbl DOUBLE,
	c CHAR(5), vc VARCHAR(20), tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT,
	b BINARY(4), vb VARBINARY(10), tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB,
	dt DATE, dtm DATETIME(6), ts TIMESTAMP(3), tm TIME(6), y YEAR,
	e ENUM('a','b','c'), s SET('x','y','z'), bit1 BIT(1), bit64 BIT(64), j JSON)`

// edgeRow and edgeWant are one row of every type, as written (Go values
// that TiDB's conversion takes) and as model.Value's canonical forms.
func edgeRow(id int) []any {
	return []any{id,
		-128, 255, -32768, 8388607, -2147483648, uint64(math.MaxUint64),
		"-0.5", "12345678901234567890123456789012345.123456789012345678901234567890", 1.5, 2.25e-300,
		"ab", "héllo wörld", "t", "multi\nline", "", strings.Repeat("x", 300),
		[]byte{1, 2}, []byte{0xff, 0}, []byte{}, []byte{1}, []byte("mb"), []byte("lb"),
		"1000-01-01", "9999-12-31 23:59:59.999999", "2024-02-29 12:34:56.789", "-838:59:59.000000", 2155,
		"b", "z,x", uint64(1), uint64(math.MaxUint64), `{"b": "c", "a": [1, 2.5, null]}`}
}

func edgeWant(id int) []model.Value {
	s := model.StringValue
	return []model.Value{model.IntValue(int64(id)),
		model.IntValue(-128), model.UintValue(255), model.IntValue(-32768), model.IntValue(8388607), model.IntValue(-2147483648), model.UintValue(math.MaxUint64),
		s("-0.500"), s("12345678901234567890123456789012345.123456789012345678901234567890"), model.FloatValue(1.5), model.FloatValue(2.25e-300),
		s("ab"), s("héllo wörld"), s("t"), s("multi\nline"), s(""), s(strings.Repeat("x", 300)),
		model.BytesValue([]byte{1, 2, 0, 0}), model.BytesValue([]byte{0xff, 0}), model.BytesValue([]byte{}), model.BytesValue([]byte{1}), model.BytesValue([]byte("mb")), model.BytesValue([]byte("lb")),
		s("1000-01-01"), s("9999-12-31 23:59:59.999999"), s("2024-02-29 12:34:56.789"), s("-838:59:59.000000"), model.IntValue(2155),
		s("b"), s("x,z"), model.UintValue(1), model.UintValue(math.MaxUint64), s(`{"a": [1, 2.5, null], "b": "c"}`)}
}

func TestDecodesEveryTypeInBothRowFormats(t *testing.T) {
	e := newEnv(t, withStores(1))
	e.exec("", "CREATE DATABASE d", allTypes)
	start := e.c.Now()
	e.commit(e.c.Begin().Insert("d", "all_types", edgeRow(1)...))
	e.c.SetRowFormatV1(true)
	e.commit(e.c.Begin().Insert("d", "all_types", edgeRow(2)...))
	nulls := make([]any, len(edgeRow(3)))
	nulls[0] = 3
	e.commit(e.c.Begin().Insert("d", "all_types", nulls...))
	e.c.SetRowFormatV1(false)
	e.commit(e.c.Begin().Insert("d", "all_types", append([]any{4}, nulls[1:]...)...))

	f := e.subscribe(e.table("d", "all_types"), start)
	f.waitResolved(e.c.Now(), 20*time.Second)
	rows := f.rows(^uint64(0))
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4", len(rows))
	}
	schema := rows[0].Schema
	if err := schema.Validate(); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows[:2] {
		want := edgeWant(i + 1)
		for c, col := range schema.Columns {
			if !model.ValueEqual(col.Type, r.After[c], want[c]) {
				t.Errorf("row format v%d, column %s (%s): got %#v, want %#v", 2-i, col.Name, col.Type, r.After[c], want[c])
			}
		}
	}
	for _, r := range rows[2:] {
		for c, col := range schema.Columns[1:] {
			if !r.After[c+1].IsNull() {
				t.Errorf("NULL row %s, column %s: got %#v", r.After[0], col.Name, r.After[c+1])
			}
		}
	}
	wantTypes := map[string]string{"tiu": "tinyint unsigned", "dec2": "decimal(65,30)", "c": "char(5)", "b": "binary(4)", "tb": "tinyblob",
		"tt": "tinytext", "dtm": "datetime(6)", "ts": "timestamp(3)", "tm": "time(6)", "e": "enum('a','b','c')", "bit64": "bit(64)", "j": "json"}
	for name, typ := range wantTypes {
		if got := schema.Columns[schema.ColumnIndex(name)].Type.String(); got != typ {
			t.Errorf("column %s type %s, want %s", name, got, typ)
		}
	}
	if pk := schema.PrimaryKey(); pk == nil || pk.Columns[0] != "id" {
		t.Errorf("primary key %+v", pk)
	}
}

func TestOldValuesBecomeBeforeImages(t *testing.T) {
	e := newEnv(t, withStores(1))
	e.exec("", "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10), n INT)")
	start := e.c.Now()
	e.commit(e.c.Begin().Insert("d", "t", 1, "a", 10))
	e.commit(e.c.Begin().Update("d", "t", 1, "b", 11))
	e.commit(e.c.Begin().Delete("d", "t", 1, "b", 11))
	f := e.subscribe(e.table("d", "t"), start)
	f.waitResolved(e.c.Now(), 20*time.Second)
	rows := f.rows(^uint64(0))
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	text := func(img []model.Value) string {
		var s []string
		for _, v := range img {
			s = append(s, v.Text())
		}
		return strings.Join(s, ",")
	}
	if rows[0].Op != model.OpInsert || rows[0].Before != nil || text(rows[0].After) != "1,a,10" {
		t.Errorf("insert: %s %v %v", rows[0].Op, rows[0].Before, rows[0].After)
	}
	if rows[1].Op != model.OpUpdate || text(rows[1].Before) != "1,a,10" || text(rows[1].After) != "1,b,11" {
		t.Errorf("update: %s %v %v", rows[1].Op, rows[1].Before, rows[1].After)
	}
	if rows[2].Op != model.OpDelete || text(rows[2].Before) != "1,b,11" || rows[2].After != nil {
		t.Errorf("delete: %s %v %v", rows[2].Op, rows[2].Before, rows[2].After)
	}
	if rows[1].StartTs >= rows[1].CommitTs || rows[0].CommitTs >= rows[1].CommitTs {
		t.Errorf("timestamps out of order: %d/%d", rows[1].StartTs, rows[1].CommitTs)
	}
}

func TestClusteredAndRowIDTables(t *testing.T) {
	e := newEnv(t, withStores(1))
	e.exec("", "CREATE DATABASE d",
		"CREATE TABLE d.ck (a VARCHAR(10), b INT, v VARCHAR(10), PRIMARY KEY (a, b) CLUSTERED)",
		"CREATE TABLE d.nk (a VARCHAR(10) PRIMARY KEY NONCLUSTERED, v INT)",
		"CREATE TABLE d.kl (x INT, y VARCHAR(5))")
	start := e.c.Now()
	e.commit(e.c.Begin().Insert("d", "ck", "k1", 1, "v").Insert("d", "nk", "n1", 5).Insert("d", "kl", 1, "a").Insert("d", "kl", 1, "b"))
	e.commit(e.c.Begin().Update("d", "ck", "k1", 1, "w").Delete("d", "nk", "n1", 5))
	for name, want := range map[string][]string{
		"ck": {"insert k1,1,v", "update k1,1,w"},
		"nk": {"insert n1,5", "delete n1,5"},
		"kl": {"insert 1,a", "insert 1,b"},
	} {
		f := e.subscribe(e.table("d", name), start)
		f.waitResolved(e.c.Now(), 20*time.Second)
		var got []string
		for _, r := range f.rows(^uint64(0)) {
			var vals []string
			for _, v := range r.Image() {
				vals = append(vals, v.Text())
			}
			got = append(got, string(r.Op)+" "+strings.Join(vals, ","))
		}
		if strings.Join(got, ";") != strings.Join(want, ";") {
			t.Errorf("table %s: got %q, want %q", name, got, want)
		}
	}
}

func TestURIParameters(t *testing.T) {
	good := map[string]string{
		"tidb://pd1:2379":                               "tidb://pd1:2379/",
		"tidb://pd2:2379,pd1:2379/":                     "tidb://pd1:2379,pd2:2379/",
		"tidb://127.0.0.1:2379/?kv-client-workers=16":   "tidb://127.0.0.1:2379/?kv-client-workers=16",
		"tidb://[::1]:2379/?ca=/a&cert=/b&key=/c":       "tidb://[::1]:2379/?ca=%2Fa&cert=%2Fb&key=%2Fc",
		"tidb://pd:2379/?kv-client-workers=8&ca=ca.pem": "tidb://pd:2379/?ca=ca.pem",
	}
	for in, want := range good {
		cfg, err := ParseURI(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if cfg.URI() != want {
			t.Errorf("%s: canonical %s, want %s", in, cfg.URI(), want)
		}
	}
	bad := map[string]string{
		"tidb://":                              "no PD address",
		"tidb://pd1":                           "not host:port",
		"tidb://pd1:99999/":                    "port",
		"tidb://pd1:2379,pd1:2379/":            "given twice",
		"tidb://u:p@pd1:2379/":                 "no user or password",
		"tidb://pd1:2379/db":                   "has a path",
		"tidb://pd1:2379/?bogus=1":             `parameter "bogus" is unknown`,
		"tidb://pd1:2379/?kv-client-workers=0": `"kv-client-workers"`,
		"tidb://pd1:2379/?kv-client-workers=x": `"kv-client-workers"`,
		"tidb://pd1:2379/?ca=a&ca=b":           `"ca" is given 2 times`,
		"tidb://pd1:2379/?cert=a":              "cert and key go together",
		"tidb://pd1:2379/?cert=a&key=b":        "needs ca=",
		"mysql://pd1:2379/":                    "write it as tidb://",
		"tidb://pd1:2379/?ca=%zz":              "malformed",
	}
	for in, want := range bad {
		_, err := ParseURI(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", in, err, want)
		}
	}
}

func TestCheckNamesAnUnreachablePD(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg, err := ParseURI("tidb://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	_, err = Check(ctx, cfg)
	if !errors.Is(err, ErrPDUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Check against a closed port: %v", err)
	}
	t.Logf("unreachable PD reported after %v: %v", time.Since(began), err)
	e := newEnv(t, withStores(1))
	cfg, _ = ParseURI("tidb://" + e.c.PDAddr() + "/")
	id, err := Check(ctx, cfg)
	if err != nil || id != e.c.ClusterID() {
		t.Fatalf("Check against the fake: %d %v", id, err)
	}
}

// Rows decoded one after another share allocations (slabs), but never
// memory: growing one row's image leaves the next row's alone.
func TestDecodedRowsDoNotShareImages(t *testing.T) {
	dec, raws := sbtestRows(t, 3)
	first, err := dec.decodeRow(&raws[0])
	if err != nil {
		t.Fatal(err)
	}
	second, err := dec.decodeRow(&raws[1])
	if err != nil {
		t.Fatal(err)
	}
	if first == second {
		t.Fatal("two decoded rows are one RowChange")
	}
	want := append([]model.Value(nil), second.After...)
	_ = append(first.After, model.StringValue("grown"))
	first.After[1] = model.IntValue(-1)
	*first = model.RowChange{}
	third, err := dec.decodeRow(&raws[2])
	if err != nil {
		t.Fatal(err)
	}
	if len(second.After) != len(want) || !second.After[0].Equal(want[0]) || !second.After[1].Equal(want[1]) || !second.After[2].Equal(want[2]) {
		t.Fatalf("the second row changed when the first was: %v, want %v", second.After, want)
	}
	if second.CommitTs != 2 || third.After[0].I != 2 || third.After[1].I != 2 {
		t.Fatalf("second %+v, third %v", second, third.After)
	}
}

// Many rows decoded one after another by one decoder (one transaction,
// one region) keep their own text: ENUM and SET names, strings and JSON
// are not views of a buffer the next row overwrites.
func TestManyRowsKeepTheirOwnText(t *testing.T) {
	e := newEnv(t, withStores(1))
	e.exec("", "CREATE DATABASE d", "CREATE TABLE d.es (id INT PRIMARY KEY, e ENUM('a','bb','ccc'), s SET('x','yy','zzz'), v VARCHAR(20), j JSON)")
	start := e.c.Now()
	txn := e.c.Begin()
	enums, sets := []string{"a", "bb", "ccc"}, []string{"x", "yy", "zzz", "x,zzz", "yy,zzz"}
	for i := 0; i < 60; i++ {
		txn.Insert("d", "es", i, enums[i%3], sets[i%5], strings.Repeat("v", i%20), fmt.Sprintf(`{"i": %d}`, i))
	}
	e.commit(txn)
	f := e.subscribe(e.table("d", "es"), start)
	e.checkState(f, "d", "es", e.c.Now())
}

// Text is cut from shared blocks: rows decoded across many blocks each keep
// their own, and decimals and fractional datetimes keep their exact form.
func TestDecodedTextSurvivesTheNextBlocks(t *testing.T) {
	const n = 300 // ~200 bytes of text a row: some 15 blocks
	dec, raws := sbtestRows(t, n)
	rows := make([]*model.RowChange, n)
	for i := range raws {
		rc, err := dec.decodeRow(&raws[i])
		if err != nil {
			t.Fatal(err)
		}
		rows[i] = rc
	}
	for i, rc := range rows {
		want := []string{fmt.Sprint(i), fmt.Sprint(i % 1000), fmt.Sprintf("%0110d", i), fmt.Sprintf("pad-%050d", i),
			fmt.Sprintf("%d.%02d", i, i%100), "2026-01-02 03:04:05.678"}
		for c, w := range want {
			if got := rc.After[c].Text(); got != w {
				t.Fatalf("row %d column %d: %q, want %q", i, c, got, w)
			}
		}
	}
}
