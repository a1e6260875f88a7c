package simple

import (
	"reflect"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/model/modeltest"
)

func TestSimpleRoundTripsEveryTypeAndEdgeValue(t *testing.T) {
	s := modeltest.AllTypesSchema("db", "all", 3, 7)
	e := NewEncoder(func() time.Time { return time.UnixMilli(5) })
	imgs := modeltest.EdgeImages()
	for i, img := range imgs {
		r := &model.RowChange{Schema: s, CommitTs: 100, Op: model.OpUpdate, Before: imgs[(i+1)%len(imgs)], After: img}
		b, err := e.EncodeRow(r, RowOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != "UPDATE" || m.Database != "db" || m.Table != "all" || m.TableID != 3 || m.SchemaVersion != 7 || m.CommitTs != 100 || m.BuildTs != 5 {
			t.Fatalf("header %+v", m)
		}
		for what, want := range map[string][]model.Value{"data": img, "old": r.Before} {
			src := m.Data
			if what == "old" {
				src = m.Old
			}
			got, err := Image(s, src)
			if err != nil {
				t.Fatal(err)
			}
			for j, c := range s.Columns {
				if !model.ValueEqual(c.Type, want[j], got[j]) {
					t.Errorf("image %d %s column %s: got %#v want %#v", i, what, c.Name, got[j], want[j])
				}
			}
		}
	}
}

func TestSimpleDDLCarriesTheSchemaAndWatermark(t *testing.T) {
	s := modeltest.AllTypesSchema("db", "all", 3, 7)
	e := NewEncoder(nil)
	b, err := e.EncodeDDL(&model.DDLEvent{CommitTs: 9, Kind: model.DDLCreateTable, Schema: "db", Query: s.CreateTableSQL(false),
		Tables: []model.TableName{s.Table}, After: []*model.TableSchema{s}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != "CREATE" || m.TableSchema == nil || m.SQL == "" {
		t.Fatalf("DDL %+v", m)
	}
	back := m.TableSchema.Model()
	if !reflect.DeepEqual(back.Columns, s.Columns) || !reflect.DeepEqual(back.Indexes, s.Indexes) {
		t.Errorf("schema does not round trip:\n got %+v\nwant %+v", back, s)
	}
	w, err := Decode(e.EncodeWatermark(77))
	if err != nil || w.Type != "WATERMARK" || w.CommitTs != 77 {
		t.Fatalf("watermark %+v %v", w, err)
	}
	if _, err := Decode([]byte(`{"version":2,"type":"INSERT"}`)); err == nil {
		t.Error("version 2 accepted")
	}
}
