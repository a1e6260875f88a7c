package debezium

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/model/modeltest"
)

func fixedNow() time.Time { return time.UnixMilli(1707103832957) }

func TestDebeziumRoundTripsEveryTypeAndEdgeValue(t *testing.T) {
	s := modeltest.AllTypesSchema("db", "all", 1, 1)
	e := NewEncoder(Options{Now: fixedNow})
	imgs := modeltest.EdgeImages()
	for i, img := range imgs {
		r := &model.RowChange{Schema: s, CommitTs: 449189129134866433, StartTs: 1, Op: model.OpUpdate, Before: imgs[(i+1)%len(imgs)], After: img}
		_, v, err := e.EncodeRow(r, RowOptions{})
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		d, err := Decode(v)
		if err != nil {
			t.Fatal(err)
		}
		if d.Payload.Op != "u" || d.Payload.Source.DB != "db" || d.Payload.Source.Table != "all" || d.Payload.Source.CommitTs != r.CommitTs ||
			d.Payload.Source.TsMs != int64(r.CommitTs>>18) || d.Payload.TsMs != fixedNow().UnixMilli() || d.Schema == nil {
			t.Fatalf("image %d: envelope %+v", i, d.Payload)
		}
		for what, pair := range map[string][2][]model.Value{"after": {img, nil}, "before": {r.Before, nil}} {
			m := d.Payload.After
			if what == "before" {
				m = d.Payload.Before
			}
			got, err := Image(s, m)
			if err != nil {
				t.Fatalf("image %d %s: %v", i, what, err)
			}
			for j, c := range s.Columns {
				want := pair[0][j]
				if !model.ValueEqual(c.Type, want, got[j]) {
					t.Errorf("image %d %s column %s (%s): got %#v, want %#v (wire %s)", i, what, c.Name, c.Type, got[j], want, m[c.Name])
				}
			}
		}
	}
}

func TestDebeziumMatchesTheDocumentedShape(t *testing.T) {
	s := &model.TableSchema{Table: model.TableName{Schema: "test", Table: "t2"}, Version: 1,
		Columns: []model.Column{{Name: "a", Type: model.ColumnType{Kind: model.TypeInt}}, {Name: "b", Type: model.ColumnType{Kind: model.TypeInt}, Nullable: true}},
		Indexes: []model.Index{{Name: "PRIMARY", Columns: []string{"a"}, Primary: true}}}
	r := &model.RowChange{Schema: s, CommitTs: 447507027004751877, Op: model.OpInsert, After: []model.Value{model.IntValue(4), model.IntValue(2)}}
	k, v, err := NewEncoder(Options{Now: fixedNow}).EncodeRow(r, RowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var key map[string]any
	if err := json.Unmarshal(k, &key); err != nil {
		t.Fatal(err)
	}
	ks := key["schema"].(map[string]any)
	if key["payload"].(map[string]any)["a"] != 4.0 || ks["name"] != "default.test.t2.Key" || len(ks["fields"].([]any)) != 1 {
		t.Errorf("key %s", k)
	}
	for _, want := range []string{`"op":"c"`, `"before":null`, `"after":{"a":4,"b":2}`, `"connector":"TiCDC"`, `"name":"default"`,
		`"version":"2.4.0.Final"`, `"snapshot":"false"`, `"db":"test"`, `"table":"t2"`, `"commit_ts":447507027004751877`,
		`"name":"default.test.t2.Envelope"`, `"transaction":null`} {
		if !strings.Contains(string(v), want) {
			t.Errorf("value lacks %s: %s", want, v)
		}
	}
	// A snapshot read is Debezium's op "r" with source.snapshot "true"; the
	// rest of the message is the insert's, byte for byte.
	read := *r
	read.Snapshot = true
	rk, rv, err := NewEncoder(Options{Now: fixedNow}).EncodeRow(&read, RowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantRead := strings.Replace(strings.Replace(string(v), `"op":"c"`, `"op":"r"`, 1), `"snapshot":"false"`, `"snapshot":"true"`, 1)
	if string(rv) != wantRead || string(rk) != string(k) {
		t.Errorf("snapshot read:\n got %s\nwant %s", rv, wantRead)
	}
	_, v, _ = NewEncoder(Options{Now: fixedNow, DisableSchema: true}).EncodeRow(r, RowOptions{})
	if strings.Contains(string(v), `"schema"`) {
		t.Errorf("debezium-disable-schema still sends a schema: %s", v)
	}
	del := &model.RowChange{Schema: s, CommitTs: 9 << 18, Op: model.OpDelete, Before: r.After}
	_, v, _ = NewEncoder(Options{Now: fixedNow}).EncodeRow(del, RowOptions{ClaimCheck: "file:///x"})
	d, _ := Decode(v)
	if d.Payload.Op != "d" || d.Payload.After != nil || len(d.Payload.Before) != 1 || !d.Payload.OnlyHandleKey || d.Payload.ClaimCheckLocation != "file:///x" {
		t.Errorf("claim-check delete: %s", v)
	}
}

// TestDebeziumRoundTripsTheChangeKind: each kind of row decodes back to its
// op, a snapshot read to an insert marked as read by a snapshot, and only
// a snapshot read carries source.snapshot "true".
func TestDebeziumRoundTripsTheChangeKind(t *testing.T) {
	s := modeltest.AllTypesSchema("db", "all", 1, 1)
	img := modeltest.EdgeImages()[0]
	e := NewEncoder(Options{Now: fixedNow})
	for _, c := range []struct {
		row          *model.RowChange
		op           string
		sourceMarked string
	}{
		{&model.RowChange{Schema: s, CommitTs: 5 << 18, Op: model.OpInsert, After: img}, "c", "false"},
		{&model.RowChange{Schema: s, CommitTs: 5 << 18, Op: model.OpInsert, After: img, Snapshot: true}, "r", "true"},
		{&model.RowChange{Schema: s, CommitTs: 5 << 18, Op: model.OpUpdate, Before: img, After: img}, "u", "false"},
		{&model.RowChange{Schema: s, CommitTs: 5 << 18, Op: model.OpDelete, Before: img}, "d", "false"},
	} {
		_, v, err := e.EncodeRow(c.row, RowOptions{})
		if err != nil {
			t.Fatalf("%s (snapshot %v): %v", c.row.Op, c.row.Snapshot, err)
		}
		d, err := Decode(v)
		if err != nil {
			t.Fatal(err)
		}
		op, snapshot, err := d.Payload.RowOp()
		if err != nil || d.Payload.Op != c.op || op != c.row.Op || snapshot != c.row.Snapshot || d.Payload.Source.Snapshot != c.sourceMarked {
			t.Errorf("%s (snapshot %v): op %q source.snapshot %q decoded as %s, snapshot %v, %v", c.row.Op, c.row.Snapshot,
				d.Payload.Op, d.Payload.Source.Snapshot, op, snapshot, err)
		}
	}
	w := Payload{Op: "m"}
	if _, _, err := w.RowOp(); err == nil {
		t.Error("a watermark's op read as a row change")
	}
}

func TestDebeziumDDLAndWatermark(t *testing.T) {
	e := NewEncoder(Options{Now: fixedNow, EnableTiDBExtension: true})
	after := modeltest.AllTypesSchema("db", "all", 1, 2)
	k, v, err := e.EncodeDDL(&model.DDLEvent{CommitTs: 5 << 18, Kind: model.DDLCreateTable, Schema: "db", Query: after.CreateTableSQL(false),
		Tables: []model.TableName{after.Table}, After: []*model.TableSchema{after}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(k), `"payload":{"databaseName":"db"}`) {
		t.Errorf("DDL key %s", k)
	}
	d, err := Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	tc := d.Payload.TableChanges
	if d.Payload.DDL == "" || len(tc) != 1 || tc[0].Type != "CREATE" || tc[0].ID != `"db"."all"` || len(tc[0].Table.Columns) != len(after.Columns) {
		t.Fatalf("DDL payload %+v", d.Payload)
	}
	_, w, ok := e.EncodeWatermark(77 << 18)
	if d, err := Decode(w); !ok || err != nil || d.Payload.Op != "m" || d.Payload.Source.CommitTs != 77<<18 {
		t.Fatalf("watermark %s %v", w, err)
	}
	if _, _, ok := NewEncoder(Options{}).EncodeWatermark(1); ok {
		t.Error("a watermark without the TiDB extension")
	}
}
