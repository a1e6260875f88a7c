package sqlsink

import (
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/sqlsink/sqltest"
)

// shape renders a plan as "kind:ids kind:ids" for comparison.
func shape(stmts []Stmt) string {
	var parts []string
	for _, s := range stmts {
		var ids []string
		for _, r := range s.Rows {
			ids = append(ids, KeyImage(s.Kind, r)[0].Text())
		}
		parts = append(parts, s.Kind.String()+":"+strings.Join(ids, ","))
	}
	return strings.Join(parts, " ")
}

func in(safe bool, rows ...*model.RowChange) planInput { return planInput{rows: rows, safe: safe} }

func TestPlan(t *testing.T) {
	s := sqltest.KVSchema("d", "t")
	kv := sqltest.KV
	ins := func(id int64) *model.RowChange { return sqltest.Insert(s, kv(id, "v", id, 0)) }
	cases := []struct {
		name  string
		in    []planInput
		batch bool
		max   int
		want  string
	}{
		{"inserts of several transactions make one statement", []planInput{in(false, ins(1), ins(2)), in(false, ins(3))}, true, 10, "insert:1,2,3"},
		{"max rows per statement", []planInput{in(false, ins(1), ins(2), ins(3))}, true, 2, "insert:1,2 insert:3"},
		{"batch-dml off", []planInput{in(false, ins(1), ins(2))}, false, 10, "insert:1 insert:2"},
		{"safe inserts are upserts", []planInput{in(true, ins(1)), in(false, ins(2))}, true, 10, "upsert:1 insert:2"},
		{"safe update keeping the key is an upsert", []planInput{in(true, sqltest.Update(s, kv(1, "a", 1, 0), kv(1, "b", 1, 0)))}, true, 10, "upsert:1"},
		{"safe update changing the key is delete + upsert", []planInput{in(true, sqltest.Update(s, kv(1, "a", 1, 0), kv(2, "a", 1, 0)))}, true, 10, "delete:1 upsert:2"},
		{"plain update", []planInput{in(false, sqltest.Update(s, kv(1, "a", 1, 0), kv(2, "a", 1, 0)))}, true, 10, "update:1"},
		{"safe update with unsent columns stays an update", []planInput{in(true, sqltest.Update(s, kv(1, "a", 1, 0), []model.Value{model.IntValue(1), model.Unchanged(), model.IntValue(1), model.IntValue(0)}))}, true, 10, "update:1"},
		{"disjoint rows are regrouped: deletes, updates, inserts",
			[]planInput{in(false, ins(1)), in(false, sqltest.Delete(s, kv(5, "v", 5, 0))), in(false, ins(2)), in(false, sqltest.Delete(s, kv(6, "v", 6, 0)))},
			true, 10, "delete:5,6 insert:1,2"},
		{"a repeated key keeps upstream order",
			[]planInput{in(false, ins(1), sqltest.Delete(s, kv(1, "v", 1, 0)), ins(1))},
			true, 10, "insert:1 delete:1 insert:1"},
		{"one key twice never shares a statement",
			[]planInput{in(true, ins(1), sqltest.Update(s, kv(1, "v", 1, 0), kv(1, "w", 1, 0)))},
			true, 10, "upsert:1 upsert:1"},
	}
	for _, c := range cases {
		if got := shape(Plan(c.in, c.batch, c.max)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestPlanKeylessTable(t *testing.T) {
	s := sqltest.KeylessSchema("d", "log")
	row := func(a int64) []model.Value { return []model.Value{model.IntValue(a), model.StringValue("x")} }
	got := shape(Plan([]planInput{in(true, sqltest.Insert(s, row(1)), sqltest.Insert(s, row(2)), sqltest.Delete(s, row(1)), sqltest.Delete(s, row(2)))}, true, 10))
	// No key: safe mode cannot help (plain inserts), deletes are one row
	// each, and order is kept.
	if want := "insert:1,2 delete:1 delete:2"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestRowKeysFoldCaseInsensitiveText(t *testing.T) {
	s := &model.TableSchema{Table: model.TableName{Schema: "d", Table: "t"}, Columns: []model.Column{
		{Name: "name", Type: model.ColumnType{Kind: model.TypeVarchar, Length: 10, Charset: "utf8mb4", Collation: "utf8mb4_general_ci"}},
		{Name: "code", Type: model.ColumnType{Kind: model.TypeVarchar, Length: 10, Charset: "utf8mb4", Collation: "utf8mb4_bin"}},
	}, Indexes: []model.Index{{Name: "PRIMARY", Columns: []string{"name"}, Primary: true}, {Name: "uk", Columns: []string{"code"}, Unique: true}}}
	a := RowKeys(nil, sqltest.Insert(s, []model.Value{model.StringValue("Émile "), model.StringValue("X")}))
	b := RowKeys(nil, sqltest.Insert(s, []model.Value{model.StringValue("emile"), model.StringValue("x")}))
	if a[0] != b[0] {
		t.Fatal("'Émile ' and 'emile' are one key under a _ci collation but hash apart")
	}
	if a[1] == b[1] {
		t.Fatal("'X' and 'x' hash together under a _bin collation")
	}
}
