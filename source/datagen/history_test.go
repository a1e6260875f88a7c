package datagen

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/raftcdc/raftcdc/model"
)

// A small history with every feature on: DDL every second, transactions
// of 3 rows over 2 tables, deletes, a short key space so that keys cycle
// through several lives.
const v2TestURI = "datagen://?tables=5&rate=40&keys=23&txn-rows=3&txn-tables=2&ddl-every=1s&mix=5:3:1&row-size=16&epoch=2026-01-01T00:00:00Z&seed=7"

func testHistory(t *testing.T, uri string) *History {
	t.Helper()
	h, err := ParseHistory(uri)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func epochPlus(h *History, d time.Duration) model.Ts {
	return model.TsFromTime(time.UnixMilli(h.cfg.EpochMs).Add(d))
}

// tableState is a test-side replica of one table, maintained by applying
// the history's DDLs and row changes in commit order.
type tableState struct {
	schema *model.TableSchema
	rows   map[uint64][]model.Value
}

// replay applies every DDL and transaction of the history up to upto to a
// replica, checking on the way that each row change is consistent with the
// replica (inserts only of absent keys, updates and deletes of present
// keys with the right before image) and that rows use the schema version
// the DDLs produced. It returns the replica keyed by table ID.
func replay(t *testing.T, h *History, upto model.Ts) (map[model.TableID]*tableState, int) {
	t.Helper()
	tables := map[model.TableID]*tableState{}
	for _, tn := range h.TablesAt(0) {
		s, err := h.SchemaAt(tn.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		tables[tn.ID] = &tableState{schema: s, rows: map[uint64][]model.Value{}}
	}
	// Events in commit order: DDLs and all tables' transactions merged.
	type event struct {
		ts  model.Ts
		ddl *model.DDLEvent
		txn *model.Txn
		id  model.TableID
	}
	var events []event
	h.DDLs(0, upto, func(d *model.DDLEvent) bool {
		events = append(events, event{ts: d.CommitTs, ddl: d})
		return true
	})
	// Every table ID that exists at some point up to upto.
	ids := map[model.TableID]bool{}
	for id := range tables {
		ids[id] = true
	}
	for _, e := range events {
		for _, s := range e.ddl.After {
			if s != nil {
				ids[s.Table.ID] = true
			}
		}
	}
	for id := range ids {
		h.Txns(id, 0, upto, func(txn *model.Txn) bool {
			events = append(events, event{ts: txn.CommitTs, txn: txn, id: id})
			return true
		})
	}
	slices.SortStableFunc(events, func(a, b event) int {
		if a.ts != b.ts {
			if a.ts < b.ts {
				return -1
			}
			return 1
		}
		return 0
	})
	rows := 0
	for _, e := range events {
		if e.ddl != nil {
			if e.ddl.CommitTs%2 != 1 {
				t.Fatalf("DDL at even ts %d could collide with a transaction", e.ddl.CommitTs)
			}
			applyDDL(t, tables, e.ddl)
			continue
		}
		st := tables[e.id]
		if st == nil {
			t.Fatalf("transaction at %d on table %d, which does not exist then", e.ts, e.id)
		}
		if e.txn.StartTs >= e.txn.CommitTs || e.txn.CommitTs%2 != 0 {
			t.Fatalf("txn start %d commit %d", e.txn.StartTs, e.txn.CommitTs)
		}
		for _, r := range e.txn.Rows {
			rows++
			applyRow(t, st, r, e.txn)
		}
	}
	return tables, rows
}

func applyDDL(t *testing.T, tables map[model.TableID]*tableState, d *model.DDLEvent) {
	t.Helper()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(d.Tables) != 1 || len(d.After) != 1 {
		t.Fatalf("%s: %d tables, %d schemas", d, len(d.Tables), len(d.After))
	}
	old := d.Tables[0]
	after := d.After[0]
	switch d.Kind {
	case model.DDLCreateTable:
		if tables[after.Table.ID] != nil {
			t.Fatalf("%s: table %d exists", d, after.Table.ID)
		}
		tables[after.Table.ID] = &tableState{schema: after, rows: map[uint64][]model.Value{}}
		return
	}
	st := tables[old.ID]
	if st == nil || st.schema.Table != old {
		t.Fatalf("%s: touches %v, which is not a table now", d, old)
	}
	switch d.Kind {
	case model.DDLDropTable:
		if after != nil {
			t.Fatalf("%s: drop leaves a schema", d)
		}
		delete(tables, old.ID)
	case model.DDLTruncateTable:
		if after.Table.ID == old.ID || after.Table.Table != old.Table {
			t.Fatalf("%s: truncate must keep the name and change the ID: %v", d, after.Table)
		}
		delete(tables, old.ID)
		tables[after.Table.ID] = &tableState{schema: after, rows: map[uint64][]model.Value{}}
	case model.DDLRenameTable:
		if after.Table.ID != old.ID || after.Table.Table == old.Table {
			t.Fatalf("%s: rename must keep the ID and change the name: %v", d, after.Table)
		}
		st.schema = after
	case model.DDLAddColumn:
		if len(after.Columns) != len(st.schema.Columns)+1 {
			t.Fatalf("%s: %d columns after, %d before", d, len(after.Columns), len(st.schema.Columns))
		}
		for k, img := range st.rows {
			st.rows[k] = append(img, model.Null())
		}
		st.schema = after
	case model.DDLDropColumn:
		gone := -1
		for i, c := range st.schema.Columns {
			if after.ColumnIndex(c.Name) < 0 {
				gone = i
			}
		}
		if gone < 0 || len(after.Columns) != len(st.schema.Columns)-1 || !strings.Contains(d.Query, st.schema.Columns[gone].Name) {
			t.Fatalf("%s: no column dropped", d)
		}
		for k, img := range st.rows {
			st.rows[k] = slices.Delete(slices.Clone(img), gone, gone+1)
		}
		st.schema = after
	default:
		t.Fatalf("unexpected DDL kind %s", d.Kind)
	}
	if after != nil && after.Version != d.CommitTs {
		t.Fatalf("%s: schema version %d, want the DDL's ts", d, after.Version)
	}
}

func applyRow(t *testing.T, st *tableState, r *model.RowChange, txn *model.Txn) {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.Schema != st.schema && (r.Schema.Version != st.schema.Version || r.Schema.Table != st.schema.Table) {
		t.Fatalf("row at %d uses schema %s v%d, the table is at %s v%d", r.CommitTs, r.Schema.Table, r.Schema.Version, st.schema.Table, st.schema.Version)
	}
	if r.CommitTs != txn.CommitTs || r.StartTs != txn.StartTs {
		t.Fatalf("row ts %d/%d in txn %d/%d", r.CommitTs, r.StartTs, txn.CommitTs, txn.StartTs)
	}
	img := r.Image()
	x, ok := KeyOf(r.Schema, img)
	if !ok {
		t.Fatalf("row without a key: %v", img)
	}
	cur, present := st.rows[x]
	switch r.Op {
	case model.OpInsert:
		if present {
			t.Fatalf("%s key %d inserted at %d while present", r.Table(), x, r.CommitTs)
		}
	default:
		if !present {
			t.Fatalf("%s key %d %s at %d while absent", r.Table(), x, r.Op, r.CommitTs)
		}
		for i, c := range r.Schema.Columns {
			if !model.ValueEqual(c.Type, r.Before[i], cur[i]) {
				t.Fatalf("%s key %d %s at %d: before image column %s = %#v, the row holds %#v", r.Table(), x, r.Op, r.CommitTs, c.Name, r.Before[i], cur[i])
			}
		}
	}
	if r.Op == model.OpDelete {
		delete(st.rows, x)
	} else {
		st.rows[x] = r.After
	}
}

// The core property: replaying every DDL and row change in commit order
// gives a consistent history (no insert of a present key, no update or
// delete of an absent one, before images equal to the row), and the
// O(1) state of every key at the end equals the replayed state.
func TestHistoryIsConsistentAndItsStateMatchesAReplay(t *testing.T) {
	h := testHistory(t, v2TestURI)
	upto := epochPlus(h, 47*time.Second+300*time.Millisecond)
	tables, rows := replay(t, h, upto)
	if rows < 5000 {
		t.Fatalf("only %d rows replayed", rows)
	}
	live := h.TablesAt(upto)
	if len(live) != len(tables) {
		t.Fatalf("TablesAt lists %d tables, the replay has %d", len(live), len(tables))
	}
	checked := 0
	for _, tn := range live {
		st := tables[tn.ID]
		if st == nil || st.schema.Table != tn {
			t.Fatalf("TablesAt lists %v, the replay has %v", tn, st)
		}
		err := h.StateAt(tn.ID, upto, func(s *model.TableSchema, ks KeyState) bool {
			if s.Version != st.schema.Version || len(s.Columns) != len(st.schema.Columns) {
				t.Fatalf("%s: StateAt schema v%d, replay v%d", tn, s.Version, st.schema.Version)
			}
			want, present := st.rows[ks.Key]
			if ks.Exists != present {
				t.Fatalf("%s key %d: StateAt exists=%v, replay %v", tn, ks.Key, ks.Exists, present)
			}
			for i, c := range s.Columns {
				if present && !model.ValueEqual(c.Type, ks.Row[i], want[i]) {
					t.Fatalf("%s key %d column %s: StateAt %#v, replay %#v", tn, ks.Key, c.Name, ks.Row[i], want[i])
				}
			}
			checked++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked == 0 {
		t.Fatal("no key checked")
	}
}

// A DROP TABLE is followed half an interval later by the CREATE that brings
// the table back, so the upstream never loses more than one table at a
// time. (With CREATE a round-robin round of its own, every table was
// missing through the same round, and the demo's changefeed create found
// "none of the 0 upstream tables" at 2026-12-03T02:18:24Z.)
func TestAtMostOneTableIsMissingAtATime(t *testing.T) {
	const uri = "datagen://?tables=12&rate=100&txn-rows=3&txn-tables=2&ddl-every=30s"
	h := testHistory(t, uri)
	failed := time.Date(2026, 12, 3, 2, 18, 24, 0, time.UTC)
	if n := len(h.TablesAt(model.TsFromTime(failed))); n < 11 {
		t.Fatalf("%d tables at %s, want at least 11", n, failed)
	}
	// Two whole cycles of every slot, sampled every quarter interval.
	from := model.TsFromTime(failed)
	upto := model.TsFromTime(failed.Add(2 * 12 * ddlCycle * 30 * time.Second))
	step := model.TsFromTime(time.UnixMilli(7500)) - model.TsFromTime(time.UnixMilli(0))
	missing := 0
	for ts := from; ts < upto; ts += step {
		n := len(h.TablesAt(ts))
		if n < 11 {
			t.Fatalf("%d tables at %s", n, model.TsTime(ts).UTC())
		}
		if n == 11 {
			missing++
		}
	}
	if missing == 0 {
		t.Fatal("no table was ever dropped: the check above checked nothing")
	}
	var drops, creates int
	h.DDLs(from, upto, func(d *model.DDLEvent) bool {
		switch d.Kind {
		case model.DDLDropTable:
			drops++
			i, _ := h.DDLIndexAt(d.CommitTs)
			next := h.DDL(i + 1)
			if next.Kind != model.DDLCreateTable || next.CommitTs-d.CommitTs != h.halfInterval() || next.Tables[0].Table != strings.Split(d.Tables[0].Table, "_")[0] {
				t.Fatalf("DROP %s at %d is followed by %s %v at %d", d.Tables[0], d.CommitTs, next.Kind, next.Tables, next.CommitTs)
			}
		case model.DDLCreateTable:
			creates++
		}
		return true
	})
	if drops < 12 || creates < 12 {
		t.Fatalf("%d drops and %d creates in two cycles of 12 tables", drops, creates)
	}
}

// Every DDL kind happens, in the documented per-slot cycle, and the DDL
// stream is the same from two instances and from any starting point.
func TestDDLScheduleIsDeterministicAndCoversEveryKind(t *testing.T) {
	h1 := testHistory(t, v2TestURI)
	h2 := testHistory(t, v2TestURI)
	upto := epochPlus(h1, 40*time.Second)
	var all []*model.DDLEvent
	kinds := map[model.DDLKind]int{}
	h1.DDLs(0, upto, func(d *model.DDLEvent) bool {
		all = append(all, d)
		kinds[d.Kind]++
		return true
	})
	// 39 positions (the first one interval after the epoch), and the
	// CREATE after each of the 5 tables' DROP in the fifth round.
	if len(all) != 44 || h1.DDLCount(0, upto) != 44 {
		t.Fatalf("%d DDLs in 40 s at ddl-every=1s, want 44", len(all))
	}
	for _, k := range []model.DDLKind{model.DDLAddColumn, model.DDLDropColumn, model.DDLCreateTable, model.DDLDropTable, model.DDLTruncateTable, model.DDLRenameTable} {
		if kinds[k] == 0 {
			t.Errorf("no %s DDL in %v", k, kinds)
		}
	}
	for i, d := range all {
		if i > 0 && d.CommitTs <= all[i-1].CommitTs {
			t.Fatalf("DDL %d at %d not after %d", i, d.CommitTs, all[i-1].CommitTs)
		}
		again := h2.DDL(uint64(i))
		b1, _ := json.Marshal(d)
		b2, _ := json.Marshal(again)
		if string(b1) != string(b2) {
			t.Fatalf("DDL %d differs between instances:\n%s\n%s", i, b1, b2)
		}
		if n, ok := h1.DDLIndexAt(d.CommitTs); !ok || n != uint64(i) {
			t.Fatalf("DDLIndexAt(%d) = %d,%v want %d", d.CommitTs, n, ok, i)
		}
		if n := h1.ddlCount(d.CommitTs); n != uint64(i)+1 {
			t.Fatalf("ddlCount(DDL %d's ts) = %d", i, n)
		}
		if n := h1.ddlCount(d.CommitTs - 1); n != uint64(i) {
			t.Fatalf("ddlCount(DDL %d's ts - 1) = %d", i, n)
		}
		// The slot's own numbering agrees with the global one.
		s, j, ts := h1.ddlEvent(uint64(i))
		if ts != d.CommitTs || h1.slotDDLTs(s, j) != ts || h1.slotDDLCount(s, ts) != j+1 || h1.slotDDLCount(s, ts-1) != j {
			t.Fatalf("DDL %d (slot %d, its DDL %d): slotDDLTs %d, counts %d/%d at ts/ts-1, want ts %d",
				i, s, j, h1.slotDDLTs(s, j), h1.slotDDLCount(s, ts), h1.slotDDLCount(s, ts-1), ts)
		}
		// From any start, the stream continues with the same events.
		var from []*model.DDLEvent
		h2.DDLs(d.CommitTs-1, upto, func(e *model.DDLEvent) bool { from = append(from, e); return true })
		if len(from) != len(all)-i || from[0].Query != d.Query {
			t.Fatalf("DDLs from %d: %d events starting %q, want %d starting %q", d.CommitTs-1, len(from), from[0].Query, len(all)-i, d.Query)
		}
		// The schema after the DDL is what SchemaAt reports at its ts.
		if s := d.After[0]; s != nil {
			got, err := h2.SchemaAt(s.Table.ID, d.CommitTs)
			if err != nil {
				t.Fatal(err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(s)
			if string(g) != string(w) {
				t.Fatalf("%s: schema after %s, SchemaAt %s", d, w, g)
			}
		}
	}
	// The first DDLs touch the initial tables in slot order, each slot
	// starting its cycle with ADD COLUMN.
	if all[0].Kind != model.DDLAddColumn || all[0].Tables[0].ID != 1 || all[5].Kind != model.DDLDropColumn || all[5].Tables[0].ID != 1 {
		t.Fatalf("schedule starts %s on %v, then %s on %v", all[0], all[0].Tables, all[5], all[5].Tables)
	}
}

// Rows of one transaction share its ts, and the transaction spans
// txn-tables tables with txn-rows rows in total.
func TestTransactionsSpanTablesAndKeepTheirRowsTogether(t *testing.T) {
	h := testHistory(t, "datagen://?tables=6&rate=30&keys=50&txn-rows=7&txn-tables=3&epoch=2026-01-01T00:00:00Z")
	upto := epochPlus(h, 10*time.Second)
	type key struct{ commit, start model.Ts }
	rowsPerTxn := map[key]int{}
	tablesPerTxn := map[key]map[model.TableID]bool{}
	for _, tn := range h.TablesAt(upto) {
		n := 0
		h.Txns(tn.ID, 0, upto, func(txn *model.Txn) bool {
			n++
			k := key{txn.CommitTs, txn.StartTs}
			rowsPerTxn[k] += len(txn.Rows)
			if tablesPerTxn[k] == nil {
				tablesPerTxn[k] = map[model.TableID]bool{}
			}
			tablesPerTxn[k][tn.ID] = true
			for _, r := range txn.Rows {
				if r.Table().ID != tn.ID {
					t.Fatalf("txn of table %d holds a row of %v", tn.ID, r.Table())
				}
			}
			return true
		})
		if uint64(n) != h.TxnCount(tn.ID, 0, upto) {
			t.Fatalf("table %d: %d txns, TxnCount says %d", tn.ID, n, h.TxnCount(tn.ID, 0, upto))
		}
	}
	if len(rowsPerTxn) < 100 {
		t.Fatalf("only %d transactions", len(rowsPerTxn))
	}
	for k, n := range rowsPerTxn {
		if n != 7 || len(tablesPerTxn[k]) != 3 {
			t.Fatalf("txn %v: %d rows over %d tables, want 7 over 3", k, n, len(tablesPerTxn[k]))
		}
	}
	// rate is per table: ~30 rows/s/table over 10 s.
	total := 0
	for _, n := range rowsPerTxn {
		total += n
	}
	if total < 6*30*10*9/10 || total > 6*30*10*11/10 {
		t.Fatalf("%d rows in 10 s over 6 tables at rate 30", total)
	}
}

// A replay from any ts is the suffix of the whole stream, row for row.
func TestReplayFromAnyTsEqualsTheOriginal(t *testing.T) {
	h := testHistory(t, v2TestURI)
	other := testHistory(t, v2TestURI)
	upto := epochPlus(h, 20*time.Second)
	ids := map[model.TableID]bool{}
	for _, tn := range h.TablesAt(0) {
		ids[tn.ID] = true
	}
	h.DDLs(0, upto, func(d *model.DDLEvent) bool {
		if d.After[0] != nil {
			ids[d.After[0].Table.ID] = true
		}
		return true
	})
	for id := range ids {
		var full []*model.Txn
		h.Txns(id, 0, upto, func(txn *model.Txn) bool { full = append(full, txn); return true })
		if len(full) == 0 {
			continue
		}
		for _, cut := range []int{0, 1, len(full) / 3, len(full) - 1} {
			from := full[cut].CommitTs - 1
			i := cut
			other.Txns(id, from, upto, func(txn *model.Txn) bool {
				if i >= len(full) {
					t.Fatalf("table %d: replay from %d has more txns than the original", id, from)
				}
				if !sameTxn(full[i], txn) {
					t.Fatalf("table %d: replay from %d differs at txn %d (commit %d)", id, from, i, txn.CommitTs)
				}
				i++
				return true
			})
			if i != len(full) {
				t.Fatalf("table %d: replay from %d ended after %d of %d txns", id, from, i, len(full))
			}
		}
	}
}

func sameTxn(a, b *model.Txn) bool {
	if a.CommitTs != b.CommitTs || a.StartTs != b.StartTs || len(a.Rows) != len(b.Rows) {
		return false
	}
	for i := range a.Rows {
		ra, rb := a.Rows[i], b.Rows[i]
		if ra.Op != rb.Op || ra.Schema.Version != rb.Schema.Version || ra.Schema.Table != rb.Schema.Table {
			return false
		}
		for _, p := range [][2][]model.Value{{ra.Before, rb.Before}, {ra.After, rb.After}} {
			if len(p[0]) != len(p[1]) {
				return false
			}
			for j := range p[0] {
				if !model.ValueEqual(ra.Schema.Columns[j].Type, p[0][j], p[1][j]) {
					return false
				}
			}
		}
	}
	return true
}

// Values are in model.Value's canonical form for their type, within the
// type's range, and the edges the issue names all occur.
func TestValuesAreCanonicalAndCoverTheEdges(t *testing.T) {
	h := testHistory(t, "datagen://?tables=3&rate=100&keys=500&mix=6:3:1&epoch=2026-01-01T00:00:00Z&seed=3")
	upto := epochPlus(h, 30*time.Second)
	seen := map[string]bool{}
	kinds := map[model.TypeKind]bool{}
	note := func(what string) { seen[what] = true }
	for _, tn := range h.TablesAt(upto) {
		h.Txns(tn.ID, 0, upto, func(txn *model.Txn) bool {
			for _, r := range txn.Rows {
				for _, img := range [][]model.Value{r.Before, r.After} {
					for i, v := range img {
						c := r.Schema.Columns[i]
						kinds[c.Type.Kind] = true
						if v.IsNull() {
							note("null")
							continue
						}
						if err := checkCanonical(c.Type, v, note); err != nil {
							t.Fatalf("%s column %s (%s): %v", tn, c.Name, c.Type, err)
						}
					}
				}
				if len(r.Schema.PrimaryKey().Columns) == 2 {
					note("composite key")
				}
			}
			return true
		})
	}
	for _, k := range model.AllTypeKinds {
		if !kinds[k] {
			t.Errorf("no column of type %s", k)
		}
	}
	for _, want := range []string{"null", "bigint unsigned max", "negative decimal", "decimal(65,30)", "datetime fsp 6", "multi-byte text", "binary zero byte", "large json", "bit64 max", "enum", "set", "empty set", "year", "negative time", "composite key", "float", "double"} {
		if !seen[want] {
			t.Errorf("no %s value seen", want)
		}
	}
}

var (
	decimalREs = map[string]*regexp.Regexp{}
	dateRE     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	timeRE     = regexp.MustCompile(`^-?(\d{2,3}):([0-5]\d):([0-5]\d)(\.\d+)?$`)
)

func checkCanonical(t model.ColumnType, v model.Value, note func(string)) error {
	if v.Kind != t.ValueKind() {
		return fmt.Errorf("value kind %s", v.Kind)
	}
	if t.IsInteger() {
		min, max, umax := model.IntRange(t.Kind)
		if t.Unsigned {
			if v.Uint() > umax {
				return fmt.Errorf("%d above %d", v.Uint(), umax)
			}
			if t.Kind == model.TypeBigInt && v.Uint() == math.MaxUint64 {
				note("bigint unsigned max")
			}
		} else if v.I < min || v.I > max {
			return fmt.Errorf("%d outside [%d,%d]", v.I, min, max)
		}
		return nil
	}
	switch t.Kind {
	case model.TypeDecimal:
		pattern := fmt.Sprintf(`^-?(0|[1-9]\d{0,%d})\.\d{%d}$`, t.Length-t.Scale-1, t.Scale)
		re, ok := decimalREs[pattern]
		if !ok {
			re = regexp.MustCompile(pattern)
			decimalREs[pattern] = re
		}
		if !re.MatchString(v.S) || strings.HasPrefix(v.S, "-") && strings.Trim(v.S, "-0.") == "" {
			return fmt.Errorf("decimal %q is not canonical", v.S)
		}
		if strings.HasPrefix(v.S, "-") {
			note("negative decimal")
		}
		if t.Length == 65 && t.Scale == 30 {
			note("decimal(65,30)")
		}
	case model.TypeFloat:
		if float64(float32(v.Float())) != v.Float() || math.IsInf(v.Float(), 0) || math.IsNaN(v.Float()) {
			return fmt.Errorf("float %v is not a finite float32", v.Float())
		}
		note("float")
	case model.TypeDouble:
		if math.IsInf(v.Float(), 0) || math.IsNaN(v.Float()) {
			return fmt.Errorf("double %v", v.Float())
		}
		note("double")
	case model.TypeChar, model.TypeVarchar, model.TypeTinyText, model.TypeText, model.TypeMediumText, model.TypeLongText:
		if !utf8.ValidString(v.S) {
			return fmt.Errorf("invalid UTF-8")
		}
		n := utf8.RuneCountInString(v.S)
		if (t.Kind == model.TypeChar || t.Kind == model.TypeVarchar) && n > t.Length || t.Kind == model.TypeTinyText && len(v.S) > 255 || t.Kind == model.TypeText && len(v.S) > 65535 {
			return fmt.Errorf("%d characters / %d bytes is too long", n, len(v.S))
		}
		if t.Kind == model.TypeChar && strings.HasSuffix(v.S, " ") {
			return fmt.Errorf("char with trailing spaces %q", v.S)
		}
		if n != len(v.S) {
			note("multi-byte text")
		}
	case model.TypeBinary:
		if len(v.B) != t.Length {
			return fmt.Errorf("binary(%d) holds %d bytes", t.Length, len(v.B))
		}
		if slices.Contains(v.B, 0) {
			note("binary zero byte")
		}
	case model.TypeVarbinary, model.TypeTinyBlob:
		if len(v.B) > max(t.Length, 255) {
			return fmt.Errorf("%d bytes", len(v.B))
		}
	case model.TypeDate:
		if _, err := time.Parse("2006-01-02", v.S); err != nil || !dateRE.MatchString(v.S) {
			return fmt.Errorf("date %q", v.S)
		}
	case model.TypeDatetime, model.TypeTimestamp:
		layout := "2006-01-02 15:04:05"
		if t.Fsp > 0 {
			layout += "." + strings.Repeat("0", t.Fsp)
		}
		ts, err := time.Parse(layout, v.S)
		if err != nil || len(v.S) != len(layout) {
			return fmt.Errorf("%s %q: %v", t.Kind, v.S, err)
		}
		if t.Kind == model.TypeTimestamp && (ts.Unix() < 1 || ts.Unix() > 2147483647) {
			return fmt.Errorf("timestamp %q out of range", v.S)
		}
		if t.Kind == model.TypeDatetime && t.Fsp == 6 {
			note("datetime fsp 6")
		}
	case model.TypeTime:
		m := timeRE.FindStringSubmatch(v.S)
		if m == nil || (t.Fsp == 0) != (m[4] == "") || t.Fsp > 0 && len(m[4]) != t.Fsp+1 || m[1] > "838" && len(m[1]) == 3 || v.S == "-00:00:00"+m[4] && strings.Trim(m[4], ".0") == "" {
			return fmt.Errorf("time %q", v.S)
		}
		if strings.HasPrefix(v.S, "-") {
			note("negative time")
		}
	case model.TypeYear:
		if v.I < 1901 || v.I > 2155 {
			return fmt.Errorf("year %d", v.I)
		}
		note("year")
	case model.TypeEnum:
		if !slices.Contains(t.Elems, v.S) {
			return fmt.Errorf("enum %q", v.S)
		}
		note("enum")
	case model.TypeSet:
		if v.S == "" {
			note("empty set")
			return nil
		}
		last := -1
		for _, m := range strings.Split(v.S, ",") {
			i := slices.Index(t.Elems, m)
			if i <= last {
				return fmt.Errorf("set %q not in definition order", v.S)
			}
			last = i
		}
		note("set")
	case model.TypeBit:
		if t.Length < 64 && v.Uint()>>uint(t.Length) != 0 {
			return fmt.Errorf("bit(%d) holds %d", t.Length, v.Uint())
		}
		if t.Length == 64 && v.Uint() == math.MaxUint64 {
			note("bit64 max")
		}
	case model.TypeJSON:
		if !json.Valid([]byte(v.S)) {
			return fmt.Errorf("invalid JSON %q", v.S)
		}
		if len(v.S) > 4000 {
			note("large json")
		}
	}
	return nil
}

// Subscriptions through the source deliver exactly the history's
// transactions, from any start, with resolved ts that never pass an
// undelivered transaction.
func TestSubscribeTxnsDeliversTheHistoryFromAnyStart(t *testing.T) {
	ctx := context.Background()
	cfg, err := ParseURI(v2TestURI)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(cfg.EpochMs).Add(25 * time.Second)
	src, err := New(cfg, WithClock(fixedClock{now}))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	h := src.History()
	nowTs := model.TsFromTime(now)
	tables, err := src.TablesAt(ctx, nowTs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range tables {
		for _, start := range []model.Ts{h.EpochTs(), epochPlus(h, 7*time.Second+3)} {
			sub, err := src.SubscribeTxns(ctx, tn, start)
			if err != nil {
				t.Fatal(err)
			}
			var want []*model.Txn
			h.Txns(tn.ID, start, nowTs, func(txn *model.Txn) bool { want = append(want, txn); return true })
			var got []*model.Txn
			resolved := start
			for resolved < nowTs {
				b, err := sub.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, txn := range b.Txns {
					if txn.CommitTs <= resolved {
						t.Fatalf("txn at %d after resolved ts %d", txn.CommitTs, resolved)
					}
				}
				got = append(got, b.Txns...)
				if b.ResolvedTs < resolved {
					t.Fatalf("resolved ts went back from %d to %d", resolved, b.ResolvedTs)
				}
				resolved = b.ResolvedTs
			}
			sub.Close()
			if len(got) != len(want) {
				t.Fatalf("%s from %d: %d txns, want %d", tn, start, len(got), len(want))
			}
			for i := range got {
				if !sameTxn(got[i], want[i]) {
					t.Fatalf("%s from %d: txn %d differs", tn, start, i)
				}
			}
		}
	}

	ddl, err := src.SubscribeDDL(ctx, h.EpochTs())
	if err != nil {
		t.Fatal(err)
	}
	defer ddl.Close()
	var ddls []*model.DDLEvent
	for resolved := h.EpochTs(); resolved < nowTs; {
		b, err := ddl.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ddls = append(ddls, b.DDLs...)
		resolved = b.ResolvedTs
	}
	if uint64(len(ddls)) != h.DDLCount(h.EpochTs(), nowTs) || len(ddls) != 28 {
		t.Fatalf("%d DDLs by 25 s", len(ddls))
	}
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func TestSpanSourceRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	src, err := Open(v2TestURI, WithClock(fixedClock{time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)}))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for name, tn := range map[string]model.TableName{
		"unknown id":  {ID: 0, Schema: "datagen", Table: "t0001"},
		"wrong name":  {ID: 1, Schema: "datagen", Table: "t0002"},
		"wrong db":    {ID: 1, Schema: "other", Table: "t0001"},
		"negative id": {ID: -4, Schema: "datagen", Table: "t0001"},
	} {
		if _, err := src.SubscribeTxns(ctx, tn, 0); err == nil {
			t.Errorf("%s: subscribed", name)
		}
	}
	if _, err := src.SchemaAt(ctx, model.TableName{ID: 1 + 5*99, Schema: "datagen", Table: "t0001"}, 5); err == nil {
		t.Error("schema of a table that does not exist yet")
	}
	if _, err := src.SubscribeTxns(ctx, model.TableName{ID: 1, Schema: "datagen", Table: "t0001"}, 1); err == nil {
		t.Error("subscription below the GC safepoint")
	}
	id, err := src.UpstreamID(ctx)
	if err != nil || id == "" {
		t.Fatalf("upstream ID %q, %v", id, err)
	}
}

func BenchmarkHistoryTxns(b *testing.B) {
	cfg, err := ParseURI("datagen://?tables=1&rate=100000&keys=100000&epoch=2026-01-01T00:00:00Z")
	if err != nil {
		b.Fatal(err)
	}
	h, err := NewHistory(cfg)
	if err != nil {
		b.Fatal(err)
	}
	inc, _ := h.incarnationOf(1)
	c := h.cursor(inc, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.next(^model.Ts(0) - 1); !ok {
			b.Fatal("end")
		}
	}
}

// The size a row carries from the generator (model.RowChange.SizeHint) is
// exactly what ApproxSize counts by walking its images: inserts, deletes,
// and updates whose after image reuses values of the before image, across
// DDLs that add and drop columns.
func TestRowSizeHintIsWhatApproxSizeCounts(t *testing.T) {
	h := testHistory(t, "datagen://?tables=4&rate=50&keys=20&ddl-every=2s&epoch=2026-01-01T00:00:00Z")
	upto := epochPlus(h, 20*time.Second)
	ops := map[model.Op]int{}
	for _, tn := range h.TablesAt(upto) {
		h.Txns(tn.ID, 0, upto, func(txn *model.Txn) bool {
			for _, r := range txn.Rows {
				if r.SizeHint <= 0 {
					t.Fatalf("row of %s at %d has no size hint", r.Table(), r.CommitTs)
				}
				walked := *r
				walked.SizeHint = 0
				if got, want := r.ApproxSize(), walked.ApproxSize(); got != want {
					t.Fatalf("%s row of %s at %d: size hint %d, the images hold %d", r.Op, r.Table(), r.CommitTs, got, want)
				}
				ops[r.Op]++
			}
			return true
		})
	}
	if ops[model.OpInsert] == 0 || ops[model.OpUpdate] == 0 || ops[model.OpDelete] == 0 {
		t.Fatalf("the history lacks an op: %v", ops)
	}
}
