package open

import (
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/model/modeltest"
)

// decodeImage turns a decoded image back into values aligned with s.
func decodeImage(t *testing.T, s *model.TableSchema, img map[string]Column) []model.Value {
	t.Helper()
	out := make([]model.Value, len(s.Columns))
	for i, c := range s.Columns {
		col, ok := img[c.Name]
		if !ok {
			continue
		}
		if col.Type != TypeCode(c.Type) {
			t.Fatalf("column %s: type code %d, want %d", c.Name, col.Type, TypeCode(c.Type))
		}
		v, err := DecodeValue(col)
		if err != nil {
			t.Fatalf("column %s: %v", c.Name, err)
		}
		out[i] = v
	}
	return out
}

func TestOpenProtocolRoundTripsEveryTypeAndEdgeValue(t *testing.T) {
	s := modeltest.AllTypesSchema("db", "all", 1, 1)
	imgs := modeltest.EdgeImages()
	var keys, values [][]byte
	var rows []*model.RowChange
	for i, img := range imgs {
		r := &model.RowChange{Schema: s, CommitTs: model.Ts(100 + i), StartTs: model.Ts(99 + i), Op: model.OpInsert, After: img}
		if i%3 == 1 {
			r.Op, r.Before = model.OpUpdate, imgs[(i+1)%len(imgs)]
		}
		if i%3 == 2 {
			r.Op, r.Before, r.After = model.OpDelete, img, nil
		}
		k, v, err := EncodeRow(r, RowOptions{})
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		keys, values, rows = append(keys, k), append(values, v), append(rows, r)
	}
	fk, fv := Frame(keys, values)
	evs, err := Decode(fk, fv)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(rows) {
		t.Fatalf("%d events from %d rows", len(evs), len(rows))
	}
	for i, e := range evs {
		r := rows[i]
		if e.Key.Type != TypeRow || e.Key.Ts != r.CommitTs || e.Key.Schema != "db" || e.Key.Table != "all" {
			t.Fatalf("event %d key %+v", i, e.Key)
		}
		check := func(what string, want []model.Value, got map[string]Column) {
			g := decodeImage(t, s, got)
			for j, c := range s.Columns {
				if !model.ValueEqual(c.Type, want[j], g[j]) && !(c.Type.Kind == model.TypeFloat && want[j].Float() == float64(float32(g[j].Float()))) {
					t.Errorf("event %d %s column %s (%s): got %#v, want %#v", i, what, c.Name, c.Type, g[j], want[j])
				}
			}
		}
		switch r.Op {
		case model.OpInsert:
			check("after", r.After, e.Row.Update)
		case model.OpUpdate:
			check("after", r.After, e.Row.Update)
			check("before", r.Before, e.Row.Prev)
		case model.OpDelete:
			check("before", r.Before, e.Row.Delete)
		}
	}
}

func TestOpenProtocolHandleKeyOnlyAndDDLAndResolved(t *testing.T) {
	s := modeltest.AllTypesSchema("db", "all", 1, 1)
	r := &model.RowChange{Schema: s, CommitTs: 5, StartTs: 4, Op: model.OpInsert, After: modeltest.EdgeImages()[0]}
	k, v, err := EncodeRow(r, RowOptions{ClaimCheck: "file:///x"})
	if err != nil {
		t.Fatal(err)
	}
	fk, fv := Frame([][]byte{k}, [][]byte{v})
	evs, err := Decode(fk, fv)
	if err != nil {
		t.Fatal(err)
	}
	if !evs[0].Key.OnlyHandleKey || evs[0].Key.ClaimCheck != "file:///x" || len(evs[0].Row.Update) != 2 {
		t.Fatalf("handle-key-only event: %+v %s", evs[0].Key, evs[0].RawValue)
	}
	for name, c := range evs[0].Row.Update {
		if !c.Handle || c.Flag&FlagPrimaryKey == 0 {
			t.Errorf("column %s kept but not a handle key: %+v", name, c)
		}
	}
	dk, dv, err := EncodeDDL(&model.DDLEvent{CommitTs: 9, Kind: model.DDLTruncateTable, Schema: "db", Query: "TRUNCATE TABLE `db`.`all`", Tables: []model.TableName{{Schema: "db", Table: "all"}}})
	if err != nil {
		t.Fatal(err)
	}
	rk, rv := EncodeResolved(10)
	fk, fv = Frame([][]byte{dk, rk}, [][]byte{dv, rv})
	evs, err = Decode(fk, fv)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].DDL == nil || evs[0].DDL.Type != 11 || evs[0].Key.Table != "all" || evs[1].Key.Type != TypeResolved || evs[1].Key.Ts != 10 {
		t.Fatalf("DDL and resolved: %+v %+v", evs[0], evs[1])
	}
}

func TestOpenProtocolDecodeRefusesMalformedMessages(t *testing.T) {
	good, _ := EncodeResolved(1)
	fk, fv := Frame([][]byte{good}, [][]byte{nil})
	for _, c := range []struct {
		name       string
		key, value []byte
		want       string
	}{
		{"no header", []byte{0, 1}, nil, "no version header"},
		{"wrong version", append([]byte{0, 0, 0, 0, 0, 0, 0, 2}, fk[8:]...), fv, "version 2"},
		{"truncated key", fk[:len(fk)-3], fv, "key of"},
		{"value missing", fk, nil, "truncated value length"},
		{"extra value bytes", fk, append(append([]byte{}, fv...), 0, 0, 0, 0, 0, 0, 0, 0), "left after the last key"},
		{"not JSON", append(append([]byte{}, fk[:8]...), 0, 0, 0, 0, 0, 0, 0, 1, '{'), fv, "event key"},
	} {
		if _, err := Decode(c.key, c.value); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
