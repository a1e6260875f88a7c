package simple

import (
	"encoding/base64"
	"encoding/json"
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

// The row encoder writes JSON by hand; what it writes must decode to the
// message encoding/json would have produced from the same fields, for
// every op, every edge value and both large-message variants.
func TestSimpleRowDecodesLikeEncodingJSON(t *testing.T) {
	s := modeltest.AllTypesSchema("db", "all", 3, 7)
	e := NewEncoder(func() time.Time { return time.UnixMilli(5) })
	imgs := modeltest.EdgeImages()
	key := map[int]bool{}
	for _, i := range s.KeyColumns(s.HandleKey()) {
		key[i] = true
	}
	ref := func(img []model.Value, onlyKey bool) map[string]*string {
		if img == nil {
			return nil
		}
		out := map[string]*string{}
		for i, v := range img {
			if v.IsMissing() || v.IsUnchanged() || (onlyKey && !key[i]) {
				continue
			}
			if v.IsNull() {
				out[s.Columns[i].Name] = nil
				continue
			}
			txt := v.Text()
			switch v.Kind {
			case model.ValueBytes:
				txt = base64.StdEncoding.EncodeToString(v.B)
			case model.ValueFloat:
				txt = model.FloatText(v.Float(), s.Columns[i].Type)
			}
			out[s.Columns[i].Name] = &txt
		}
		return out
	}
	for i, img := range imgs {
		for _, op := range []model.Op{model.OpInsert, model.OpUpdate, model.OpDelete} {
			for _, o := range []RowOptions{{}, {OnlyHandleKey: true}, {ClaimCheck: "s3://b/k\"1"}} {
				r := &model.RowChange{Schema: s, CommitTs: 100, Op: op, Before: imgs[(i+1)%len(imgs)], After: img}
				onlyKey := o.OnlyHandleKey || o.ClaimCheck != ""
				want := Message{Version: Version, Database: "db", Table: "all", TableID: 3, CommitTs: 100, BuildTs: 5, SchemaVersion: 7,
					HandleKeyOnly: onlyKey, ClaimCheckLocation: o.ClaimCheck}
				switch op {
				case model.OpInsert:
					want.Type, want.Data = "INSERT", ref(r.After, onlyKey)
				case model.OpUpdate:
					want.Type, want.Data, want.Old = "UPDATE", ref(r.After, onlyKey), ref(r.Before, onlyKey)
				case model.OpDelete:
					want.Type, want.Old = "DELETE", ref(r.Before, onlyKey)
				}
				wb, err := json.Marshal(want)
				if err != nil {
					t.Fatal(err)
				}
				b, err := e.EncodeRow(r, o)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Decode(b)
				if err != nil {
					t.Fatalf("image %d %s %+v: %v\n%s", i, op, o, err, b)
				}
				w, _ := Decode(wb)
				if !reflect.DeepEqual(got, w) {
					t.Errorf("image %d %s %+v:\n got %s\nwant %s", i, op, o, b, wb)
				}
			}
		}
	}
}
