package canal

import (
	"testing"

	"github.com/raftcdc/raftcdc/model"
)

func TestCanalJSONLargeRowKeepsOnlyTheHandleKeyAndSaysWhereTheRestIs(t *testing.T) {
	s := tpInt()
	row := &model.RowChange{Schema: s, CommitTs: 7 << 18, StartTs: 6 << 18, Op: model.OpUpdate,
		Before: []model.Value{model.IntValue(1), model.IntValue(1), model.IntValue(2), model.IntValue(3), model.IntValue(4), model.IntValue(5)},
		After:  []model.Value{model.IntValue(1), model.IntValue(9), model.IntValue(2), model.IntValue(3), model.IntValue(4), model.IntValue(5)}}
	for _, ext := range []bool{false, true} {
		b, err := testEncoder(ext).AppendLargeRow(nil, row, LargeMessage{ClaimCheckLocation: "file:///cc/x.value"})
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if m.TiDB == nil || !m.TiDB.OnlyHandleKey || m.TiDB.ClaimCheckLocation != "file:///cc/x.value" || m.TiDB.CommitTs != row.CommitTs {
			t.Fatalf("extension %v: _tidb %+v in %s", ext, m.TiDB, b)
		}
		if len(m.Data) != 1 || len(m.Data[0]) != 1 || *m.Data[0]["id"] != "1" || len(m.Old[0]) != 1 {
			t.Fatalf("extension %v: images should hold only id: %s", ext, b)
		}
		if len(m.SQLType) != 6 {
			t.Errorf("sqlType should still describe every column: %s", b)
		}
	}
	// The full row is unchanged by it.
	if len(row.After) != 6 || row.After[1].I != 9 {
		t.Fatal("AppendLargeRow changed the row it was given")
	}
}
