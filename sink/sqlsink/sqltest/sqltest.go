// Package sqltest is the test vocabulary the SQL sinks share: schemas,
// row and transaction builders, a serial model of the expected downstream
// state, random consistent workloads over overlapping keys, and
// comparisons. Imported by tests and benchmarks only.
package sqltest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// KVSchema is a small keyed table: id bigint primary key, v varchar(64),
// u int unique (nullable), n bigint.
func KVSchema(db, table string) *model.TableSchema {
	return &model.TableSchema{
		Table:   model.TableName{ID: 1, Schema: db, Table: table},
		Version: 1,
		Columns: []model.Column{
			{Name: "id", Type: model.ColumnType{Kind: model.TypeBigInt}},
			{Name: "v", Type: model.ColumnType{Kind: model.TypeVarchar, Length: 64, Charset: "utf8mb4", Collation: "utf8mb4_bin"}, Nullable: true},
			{Name: "u", Type: model.ColumnType{Kind: model.TypeInt}, Nullable: true},
			{Name: "n", Type: model.ColumnType{Kind: model.TypeBigInt}, Nullable: true},
		},
		Indexes: []model.Index{
			{Name: "PRIMARY", Columns: []string{"id"}, Primary: true},
			{Name: "uk_u", Columns: []string{"u"}, Unique: true},
		},
	}
}

// KeylessSchema is a table without any key: a bigint and a varchar.
func KeylessSchema(db, table string) *model.TableSchema {
	return &model.TableSchema{
		Table:   model.TableName{ID: 2, Schema: db, Table: table},
		Version: 1,
		Columns: []model.Column{
			{Name: "a", Type: model.ColumnType{Kind: model.TypeBigInt}, Nullable: true},
			{Name: "b", Type: model.ColumnType{Kind: model.TypeVarchar, Length: 32, Charset: "utf8mb4"}, Nullable: true},
		},
	}
}

// KV is an image of KVSchema; u < 0 is NULL.
func KV(id int64, v string, u int64, n int64) []model.Value {
	uv := model.IntValue(u)
	if u < 0 {
		uv = model.Null()
	}
	return []model.Value{model.IntValue(id), model.StringValue(v), uv, model.IntValue(n)}
}

// Insert, Update and Delete build row changes.
func Insert(s *model.TableSchema, after []model.Value) *model.RowChange {
	return &model.RowChange{Schema: s, Op: model.OpInsert, After: after}
}

func Update(s *model.TableSchema, before, after []model.Value) *model.RowChange {
	return &model.RowChange{Schema: s, Op: model.OpUpdate, Before: before, After: after}
}

func Delete(s *model.TableSchema, before []model.Value) *model.RowChange {
	return &model.RowChange{Schema: s, Op: model.OpDelete, Before: before}
}

// Txn makes a transaction at commitTs (start ts commitTs − 1) and stamps
// its rows.
func Txn(commitTs model.Ts, rows ...*model.RowChange) *model.Txn {
	for _, r := range rows {
		r.CommitTs, r.StartTs = commitTs, commitTs-1
	}
	return &model.Txn{CommitTs: commitTs, StartTs: commitTs - 1, Rows: rows}
}

// WriteFlush writes transactions and flushes up to the last one's ts.
func WriteFlush(t testing.TB, ts sink.TableSink, txns ...*model.Txn) {
	t.Helper()
	if err := TryWriteFlush(ts, txns...); err != nil {
		t.Fatal(err)
	}
}

// TryWriteFlush is WriteFlush that returns the error.
func TryWriteFlush(ts sink.TableSink, txns ...*model.Txn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if len(txns) == 0 {
		return nil
	}
	if err := ts.Write(ctx, txns); err != nil {
		return err
	}
	return ts.Flush(ctx, txns[len(txns)-1].CommitTs)
}

// Model is the expected downstream state of keyed tables: transactions
// applied one by one, in commit order.
type Model struct {
	rows map[string][]model.Value // by table and handle key
}

func NewModel() *Model { return &Model{rows: map[string][]model.Value{}} }

func handle(s *model.TableSchema, img []model.Value) string {
	var b strings.Builder
	b.WriteString(s.Table.String())
	for _, i := range s.KeyColumns(s.HandleKey()) {
		b.WriteString("\x00" + img[i].GoString())
	}
	return b.String()
}

// Apply applies a transaction.
func (m *Model) Apply(txn *model.Txn) {
	for _, r := range txn.Rows {
		switch r.Op {
		case model.OpInsert:
			m.rows[handle(r.Schema, r.After)] = r.After
		case model.OpDelete:
			delete(m.rows, handle(r.Schema, r.Before))
		case model.OpUpdate:
			delete(m.rows, handle(r.Schema, r.Before))
			m.rows[handle(r.Schema, r.After)] = r.After
		}
	}
}

// Rows are the table's rows in handle-key order (integer keys compare
// numerically).
func (m *Model) Rows(s *model.TableSchema) [][]model.Value {
	prefix := s.Table.String() + "\x00"
	var out [][]model.Value
	for k, v := range m.rows {
		if strings.HasPrefix(k, prefix) {
			out = append(out, v)
		}
	}
	SortByKey(s, out)
	return out
}

// SortByKey orders images by the handle key, integers numerically.
func SortByKey(s *model.TableSchema, rows [][]model.Value) {
	cols := s.KeyColumns(s.HandleKey())
	if cols == nil {
		cols = make([]int, len(s.Columns))
		for i := range cols {
			cols[i] = i
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		for _, c := range cols {
			a, b := rows[i][c], rows[j][c]
			if a.Kind != b.Kind {
				return a.Kind < b.Kind
			}
			switch a.Kind {
			case model.ValueInt:
				if a.I != b.I {
					return a.I < b.I
				}
			case model.ValueUint:
				if a.Uint() != b.Uint() {
					return a.Uint() < b.Uint()
				}
			default:
				if a.Text() != b.Text() {
					return a.Text() < b.Text()
				}
			}
		}
		return false
	})
}

// RequireRows fails unless got equals want, compared as the downstream
// would (JSON semantically, floats at their type's precision).
func RequireRows(t testing.TB, s *model.TableSchema, got, want [][]model.Value) {
	t.Helper()
	if diff := DiffRows(s, got, want); diff != "" {
		t.Fatalf("table %s: downstream differs from the expected state:\n%s", s.Table, diff)
	}
}

// DiffRows describes the first differences between two row sets ("" when
// equal).
func DiffRows(s *model.TableSchema, got, want [][]model.Value) string {
	var b strings.Builder
	if len(got) != len(want) {
		fmt.Fprintf(&b, "%d rows, want %d\n", len(got), len(want))
	}
	shown := 0
	for i := 0; i < len(got) && i < len(want) && shown < 5; i++ {
		for c := range s.Columns {
			if !model.ValueEqual(s.Columns[c].Type, got[i][c], want[i][c]) {
				g, w := got[i][c].GoString(), want[i][c].GoString()
				if len(g) > 200 {
					g = g[:200] + "…"
				}
				if len(w) > 200 {
					w = w[:200] + "…"
				}
				fmt.Fprintf(&b, "row %d column %s (%s): got %s, want %s\n", i, s.Columns[c].Name, s.Columns[c].Type, g, w)
				shown++
			}
		}
	}
	if b.Len() > 0 && len(got) != len(want) {
		max := min(len(got), len(want), 3)
		for i := 0; i < max; i++ {
			fmt.Fprintf(&b, "got[%d]=%v want[%d]=%v\n", i, got[i], i, want[i])
		}
	}
	return b.String()
}

// Workload generates random, consistent transactions over a KVSchema
// table: inserts of absent keys, updates (some changing the primary key,
// some the unique key) and deletes of present ones, over a small key space
// so that transactions overlap.
type Workload struct {
	r      *rand.Rand
	s      *model.TableSchema
	keys   int
	ts     model.Ts
	rows   map[int64][]model.Value // current state by id
	usedU  map[int64]bool
	nextID int64
}

// NewWorkload starts a workload at commit ts start.
func NewWorkload(seed uint64, s *model.TableSchema, keys int, start model.Ts) *Workload {
	return &Workload{r: rand.New(rand.NewPCG(seed, 99)), s: s, keys: keys, ts: start,
		rows: map[int64][]model.Value{}, usedU: map[int64]bool{}}
}

func (w *Workload) freeID() (int64, bool) {
	for tries := 0; tries < 20; tries++ {
		id := int64(w.r.IntN(w.keys))
		if _, ok := w.rows[id]; !ok {
			return id, true
		}
	}
	return 0, false
}

func (w *Workload) freeU() int64 {
	if w.r.IntN(4) == 0 {
		return -1 // NULL: any number may exist
	}
	for {
		u := int64(w.r.IntN(w.keys * 4))
		if !w.usedU[u] {
			return u
		}
	}
}

func (w *Workload) anyID() (int64, bool) {
	if len(w.rows) == 0 {
		return 0, false
	}
	ids := make([]int64, 0, len(w.rows))
	for id := range w.rows {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids[w.r.IntN(len(ids))], true
}

func uOf(img []model.Value) int64 {
	if img[2].IsNull() {
		return -1
	}
	return img[2].I
}

// Next makes the next transaction of 1–maxRows rows.
func (w *Workload) Next(maxRows int) *model.Txn {
	w.ts += model.Ts(1 + w.r.IntN(3))
	n := 1 + w.r.IntN(maxRows)
	var rows []*model.RowChange
	for i := 0; i < n; i++ {
		w.nextID++
		val := fmt.Sprintf("v%d-%d", w.ts, i)
		switch op := w.r.IntN(10); {
		case op < 4 || len(w.rows) == 0:
			id, ok := w.freeID()
			if !ok {
				continue
			}
			u := w.freeU()
			img := KV(id, val, u, int64(w.ts))
			w.rows[id] = img
			if u >= 0 {
				w.usedU[u] = true
			}
			rows = append(rows, Insert(w.s, img))
		case op < 8:
			id, _ := w.anyID()
			before := w.rows[id]
			newID := id
			if w.r.IntN(4) == 0 {
				if f, ok := w.freeID(); ok {
					newID = f
				}
			}
			u := uOf(before)
			if w.r.IntN(3) == 0 {
				if u >= 0 {
					delete(w.usedU, u)
				}
				u = w.freeU()
				if u >= 0 {
					w.usedU[u] = true
				}
			}
			after := KV(newID, val, u, int64(w.ts))
			delete(w.rows, id)
			w.rows[newID] = after
			rows = append(rows, Update(w.s, before, after))
		default:
			id, _ := w.anyID()
			before := w.rows[id]
			delete(w.rows, id)
			if u := uOf(before); u >= 0 {
				delete(w.usedU, u)
			}
			rows = append(rows, Delete(w.s, before))
		}
	}
	if len(rows) == 0 {
		return w.Next(maxRows)
	}
	return Txn(w.ts, rows...)
}

// State is the workload's current rows in key order.
func (w *Workload) State() [][]model.Value {
	var out [][]model.Value
	for _, img := range w.rows {
		out = append(out, img)
	}
	SortByKey(w.s, out)
	return out
}
