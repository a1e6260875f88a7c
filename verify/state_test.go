package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/storage"
	"github.com/raftcdc/raftcdc/source/datagen"
)

const stateEpoch = "2026-01-01T00:00:00Z"

// stateURI has DDL every 2 s over 3 tables (every kind within a minute),
// 2-table transactions and a small key space so keys go through several
// lives.
const stateURI = "datagen://?tables=3&rate=40&keys=30&txn-rows=2&txn-tables=2&ddl-every=2s&row-size=8&epoch=" + stateEpoch

func stateHistory(t *testing.T, uri string) *datagen.History {
	t.Helper()
	h, err := datagen.ParseHistory(uri)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func after(h *datagen.History, d time.Duration) model.Ts {
	return model.TsFromTime(time.UnixMilli(h.Config().EpochMs).Add(d))
}

// replicate runs a changefeed's work against a storage sink without a
// cluster: from start to upto, each step writes and flushes every table,
// stops at the next DDL (the barrier), emits it, applies table-set
// changes, and publishes the checkpoint. replayFrom > 0 makes every table
// write again from that ts once, as a new capture does after a failover.
func replicate(t *testing.T, h *datagen.History, uri string, start, upto model.Ts, replayFrom model.Ts) {
	t.Helper()
	s, err := storage.Open(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	replicateTo(t, h, s, start, upto, replayFrom)
}

// replicateTo is replicate into any sink.
func replicateTo(t *testing.T, h *datagen.History, s sink.Sink, start, upto model.Ts, replayFrom model.Ts) {
	t.Helper()
	ctx := context.Background()
	open := map[model.TableID]sink.TableSink{}
	openTable := func(tn model.TableName, ts model.Ts) {
		sch, err := h.SchemaAt(tn.ID, ts)
		if err != nil {
			t.Fatal(err)
		}
		tsk, err := s.OpenTable(ctx, tn, sink.TableOptions{StartTs: ts, Schema: sch})
		if err != nil {
			t.Fatal(err)
		}
		open[tn.ID] = tsk
	}
	for _, tn := range h.TablesAt(start) {
		openTable(tn, start)
	}
	step := after(h, 1500*time.Millisecond) - after(h, 0)
	from := start
	replayed := replayFrom == 0
	for from < upto {
		to := min(from+step, upto)
		var ddl *model.DDLEvent
		h.DDLs(from, to, func(d *model.DDLEvent) bool { ddl = d; return false })
		if ddl != nil {
			to = ddl.CommitTs - 1
		}
		var wg sync.WaitGroup
		for id, tsk := range open {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var txns []*model.Txn
				h.Txns(id, from, to, func(txn *model.Txn) bool { txns = append(txns, txn); return true })
				if err := tsk.Write(ctx, txns); err != nil {
					t.Error(err)
					return
				}
				if err := tsk.Flush(ctx, to); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if err := s.EmitCheckpoint(ctx, to); err != nil {
			t.Fatal(err)
		}
		from = to
		if !replayed && from >= replayFrom {
			// A failover: every table restarts from replayFrom, writing
			// again what was already written.
			replayed = true
			for id, tsk := range open {
				tsk.Close()
				name, err := h.Name(id, replayFrom)
				if err != nil {
					t.Fatal(err)
				}
				openTable(name, replayFrom)
			}
			from = replayFrom
			continue
		}
		if ddl != nil {
			if err := s.EmitDDL(ctx, ddl); err != nil {
				t.Fatal(err)
			}
			switch ddl.Kind {
			case model.DDLDropTable, model.DDLTruncateTable:
				open[ddl.Tables[0].ID].Close()
				delete(open, ddl.Tables[0].ID)
			}
			switch ddl.Kind {
			case model.DDLTruncateTable, model.DDLCreateTable:
				openTable(ddl.After[0].Table, ddl.CommitTs)
			}
			from = ddl.CommitTs
		}
	}
	for _, tsk := range open {
		tsk.Close()
	}
}

func mustCompare(t *testing.T, p StateParams) StateReport {
	t.Helper()
	rep, err := CompareState(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A storage sink written the way a changefeed writes it — through every DDL
// kind, with a failover that replays a stretch — verifies: every row equal,
// every DDL there once, duplicates counted but not failed.
func TestStateOfACanalJSONStorageSinkMatchesDatagen(t *testing.T) {
	h := stateHistory(t, stateURI)
	root := t.TempDir()
	uri := "file://" + root + "?protocol=canal-json&enable-tidb-extension=true&flush-interval=10ms"
	start, upto := h.EpochTs(), after(h, 25*time.Second)
	replicate(t, h, uri, start, upto, after(h, 9*time.Second))
	rep := mustCompare(t, StateParams{SourceURI: stateURI, Downstream: uri, StartTs: start})
	if !rep.OK() || rep.CheckpointTs != upto || rep.Expected == 0 || rep.Matched != rep.Expected || rep.DDLs < 10 || rep.DDLsFound != rep.DDLs {
		t.Fatalf("%s", rep)
	}
	if rep.Duplicates == 0 {
		t.Fatalf("the replay after the failover was not counted as duplicates: %s", rep)
	}
	if rep.DDLOrderViolations != 0 {
		t.Fatalf("DDLs out of order after a replay: %s", rep)
	}
	t.Log(rep)
}

func TestStateOfACSVStorageSinkMatchesDatagen(t *testing.T) {
	const src = "datagen://?tables=3&rate=40&keys=1000&ddl-every=2s&row-size=8&epoch=" + stateEpoch
	h := stateHistory(t, src)
	root := t.TempDir()
	uri := "file://" + root + "?protocol=csv&include-commit-ts=true&flush-interval=10ms&quote=&delimiter=%7C"
	start, upto := after(h, 10*time.Second), after(h, 16*time.Second)
	replicate(t, h, uri, start, upto, 0)
	rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uri, StartTs: start})
	if !rep.OK() || rep.Expected == 0 || rep.Matched != rep.Expected || rep.DDLs == 0 {
		t.Fatalf("%s", rep)
	}
	// Started after the epoch: rows last changed before the start are not
	// downstream, and that is not an error.
	if rep.Unchanged == 0 {
		t.Fatalf("no unchanged rows counted: %s", rep)
	}
}

// Damage to the files shows up as what it is.
func TestStateReportsMissingExtraWrongAndDDLDamage(t *testing.T) {
	h := stateHistory(t, "datagen://?tables=2&rate=30&keys=20&ddl-every=4s&row-size=8&epoch="+stateEpoch)
	uriOf := func(root string) string {
		return "file://" + root + "?protocol=canal-json&enable-tidb-extension=true&flush-interval=10ms&date-separator=none"
	}
	start, upto := h.EpochTs(), after(h, 13*time.Second)
	fresh := func(t *testing.T) string {
		root := t.TempDir()
		replicate(t, h, uriOf(root), start, upto, 0)
		return root
	}
	src := strings.Replace("datagen://?tables=2&rate=30&keys=20&ddl-every=4s&row-size=8&epoch="+stateEpoch, "", "", 1)
	files := func(t *testing.T, root string) []storage.DataFile {
		fs, err := storage.ListDataFiles(context.Background(), storage.OpenDir(root), ".json")
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	lastRowFile := func(t *testing.T, root string) storage.DataFile {
		fs := files(t, root)
		for i := len(fs) - 1; i >= 0; i-- {
			if fs[i].Index > 1 || fs[i].Dir.Version == h.EpochTs() {
				return fs[i]
			}
		}
		t.Fatal("no row file")
		return storage.DataFile{}
	}

	t.Run("a lost file is missing or wrong rows", func(t *testing.T) {
		root := fresh(t)
		f := lastRowFile(t, root)
		if err := os.Remove(filepath.Join(root, f.Path)); err != nil {
			t.Fatal(err)
		}
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		if rep.OK() || rep.Missing+rep.Wrong == 0 {
			t.Fatalf("%s", rep)
		}
	})
	t.Run("a changed value names the column and both values", func(t *testing.T) {
		root := fresh(t)
		// The change that decides a key's final row: its last event.
		tn := h.TablesAt(upto)[0]
		var key uint64
		var last model.Ts
		h.StateAt(tn.ID, upto, func(_ *model.TableSchema, ks datagen.KeyState) bool {
			if ks.Exists && ks.LastTs > start {
				key, last = ks.Key, ks.LastTs
				return false
			}
			return true
		})
		if last == 0 {
			t.Fatal("no key changed")
		}
		changed := false
		for _, f := range files(t, root) {
			p := filepath.Join(root, f.Path)
			b, _ := os.ReadFile(p)
			lines := strings.Split(string(b), "\r\n")
			for n, line := range lines {
				if strings.Contains(line, fmt.Sprintf(`"commitTs":%d}`, last)) && strings.Contains(line, fmt.Sprintf(`"id":"%d"`, key)) {
					d := strings.Index(line, `"data":[{`)
					i := d + strings.Index(line[d:], `"seq":"`) + len(`"seq":"`) // in "data", before "old"
					lines[n] = line[:i] + "99999" + line[i:]
					changed = true
				}
			}
			os.WriteFile(p, []byte(strings.Join(lines, "\r\n")), 0o644)
		}
		if !changed {
			t.Fatalf("the last change of key %d at %d is not in the files", key, last)
		}
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		if rep.OK() || rep.Wrong != 1 || rep.WrongExamples[0].Column != "seq" || !strings.HasPrefix(rep.WrongExamples[0].Got, "99999") || rep.WrongExamples[0].Row.Key != key {
			t.Fatalf("%s", rep)
		}
	})
	t.Run("a row of a deleted key is extra", func(t *testing.T) {
		root := fresh(t)
		// Find a key that does not exist at the checkpoint and write an
		// insert for it, as a sink that lost a delete would leave it.
		tn := h.TablesAt(upto)[0]
		var key uint64
		var img []model.Value
		var sch *model.TableSchema
		h.StateAt(tn.ID, upto, func(s *model.TableSchema, ks datagen.KeyState) bool {
			if ks.Exists {
				img, sch = ks.Row, s
				return true
			}
			key = ks.Key
			return img == nil
		})
		if img == nil {
			t.Skip("no absent key")
		}
		img = append([]model.Value(nil), img...)
		img[sch.ColumnIndex("id")] = model.IntValue(int64(key))
		writeExtraRow(t, root, sch, img, upto-1)
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		if rep.OK() || rep.Extra != 1 || rep.ExtraExamples[0].Key != key {
			t.Fatalf("%s", rep)
		}
	})
	t.Run("a lost DDL is missing", func(t *testing.T) {
		root := fresh(t)
		defs, _ := storage.ReadSchemaFiles(context.Background(), storage.OpenDir(root))
		var victim storage.TableDefinition
		for _, d := range defs {
			if d.Query != "" {
				victim = d
			}
		}
		matches, _ := filepath.Glob(filepath.Join(root, victim.Schema, victim.Table, "meta", fmt.Sprintf("schema_%d_*.json", victim.TableVersion)))
		for _, m := range matches {
			os.Remove(m)
		}
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		if rep.OK() || rep.DDLsMissing != 1 {
			t.Fatalf("%s", rep)
		}
	})
	// The schema file of the table version in force at the checkpoint is
	// compared with datagen's schema at that version.
	schemaFileAtCheckpoint := func(t *testing.T, root string) (model.TableName, uint64, string) {
		for _, tn := range h.TablesAt(upto) {
			sch, err := h.SchemaAt(tn.ID, upto)
			if err != nil {
				t.Fatal(err)
			}
			matches, _ := filepath.Glob(filepath.Join(root, tn.Schema, tn.Table, "meta", fmt.Sprintf("schema_%d_*.json", sch.Version)))
			if len(matches) == 1 {
				return tn, sch.Version, matches[0]
			}
		}
		t.Fatal("no table has a schema file for its version at the checkpoint")
		return model.TableName{}, 0, ""
	}
	editSchemaFile := func(t *testing.T, path string, edit func(*storage.TableDefinition)) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var d storage.TableDefinition
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		edit(&d)
		if b, err = json.Marshal(d); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("a column type that differs in the schema file names the column and both types", func(t *testing.T) {
		root := fresh(t)
		tn, version, path := schemaFileAtCheckpoint(t, root)
		const col = 2 // the third column: past the key
		var was storage.TableColumn
		editSchemaFile(t, path, func(d *storage.TableDefinition) {
			was = d.Columns[col]
			d.Columns[col].Type = "GEOMETRY"
		})
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		want := fmt.Sprintf("%s version %d column %d: downstream", tn, version, col+1)
		if rep.OK() || len(rep.SchemaDiffs) != 1 || !strings.HasPrefix(rep.SchemaDiffs[0], want) ||
			!strings.Contains(rep.SchemaDiffs[0], "GEOMETRY") || !strings.Contains(rep.SchemaDiffs[0], "upstream {Name:"+was.Name+" Type:"+was.Type) {
			t.Fatalf("want one schema difference %q... naming GEOMETRY downstream and %s upstream:\n%s", want, was.Type, rep)
		}
		// The rows themselves still match: only the schema file differs.
		if rep.Missing+rep.Extra+rep.Wrong != 0 || rep.Matched != rep.Expected {
			t.Fatalf("a schema file's difference changed the row comparison:\n%s", rep)
		}
	})
	t.Run("a column missing from the schema file is a column count difference", func(t *testing.T) {
		root := fresh(t)
		tn, version, path := schemaFileAtCheckpoint(t, root)
		var n int
		editSchemaFile(t, path, func(d *storage.TableDefinition) {
			n = len(d.Columns)
			d.Columns = d.Columns[:n-1]
			d.TotalColumns = n - 1
		})
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		want := fmt.Sprintf("%s version %d: %d columns downstream, %d upstream", tn, version, n-1, n)
		if rep.OK() || len(rep.SchemaDiffs) != 1 || rep.SchemaDiffs[0] != want {
			t.Fatalf("want the schema difference %q:\n%s", want, rep)
		}
	})
	t.Run("a lost schema file for the version at the checkpoint is named", func(t *testing.T) {
		root := fresh(t)
		tn, version, path := schemaFileAtCheckpoint(t, root)
		if version <= start {
			t.Skip("the version in force began before the start: it need not have a schema file")
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		want := fmt.Sprintf("%s: no schema file for version %d", tn, version)
		if rep.OK() || !strings.Contains(strings.Join(rep.SchemaDiffs, "\n"), want) {
			t.Fatalf("want the schema difference %q:\n%s", want, rep)
		}
	})
	t.Run("a DDL message put before rows of the version it ends is out of order", func(t *testing.T) {
		root := fresh(t)
		// Find a table's version directory with rows (prev) followed by the
		// directory a DDL started (next), whose first line is that DDL.
		fs := files(t, root)
		var prev, next storage.DataFile
		var ddlLine string
		for i := 1; i < len(fs) && ddlLine == ""; i++ {
			a, b := fs[i-1], fs[i]
			if a.Dir.Schema != b.Dir.Schema || a.Dir.Table != b.Dir.Table || a.Dir.Version == b.Dir.Version {
				continue
			}
			data, _ := os.ReadFile(filepath.Join(root, b.Path))
			first, _, _ := strings.Cut(string(data), "\r\n")
			if !strings.Contains(first, `"isDdl":true`) {
				continue
			}
			// The first file of a's version.
			for j := i - 1; j >= 0 && fs[j].Dir == a.Dir; j-- {
				prev = fs[j]
			}
			next, ddlLine = b, first
		}
		if ddlLine == "" {
			t.Fatal("no DDL message opens a table's next version directory")
		}
		// Move the DDL message to the head of the previous version's first
		// file: still there once at its commit ts, but a consumer reading
		// the files in order applies it before rows that predate it.
		data, _ := os.ReadFile(filepath.Join(root, next.Path))
		if rest := strings.TrimPrefix(string(data), ddlLine+"\r\n"); rest == "" {
			// The file held only the DDL message (a sink writes no empty
			// file).
			if err := os.Remove(filepath.Join(root, next.Path)); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(filepath.Join(root, next.Path), []byte(rest), 0o644); err != nil {
			t.Fatal(err)
		}
		data, _ = os.ReadFile(filepath.Join(root, prev.Path))
		if err := os.WriteFile(filepath.Join(root, prev.Path), []byte(ddlLine+"\r\n"+string(data)), 0o644); err != nil {
			t.Fatal(err)
		}
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		table := prev.Dir.Schema + "." + prev.Dir.Table
		want := fmt.Sprintf("the DDL at %d (%s)", next.Dir.Version, prev.Path)
		if rep.OK() || rep.DDLOrderViolations == 0 || !strings.HasPrefix(rep.DDLOrderExample, table+": "+prev.Path+": ") || !strings.Contains(rep.DDLOrderExample, want) {
			t.Fatalf("want DDL order violations in %s naming %q:\n%s", table, want, rep)
		}
		// Matching by commit ts alone finds nothing wrong: the DDL is there
		// once, and every row is.
		if rep.DDLsMissing != 0 || rep.DDLsExtra != 0 || rep.DDLDuplicates != 0 || rep.Missing+rep.Extra+rep.Wrong != 0 || len(rep.SchemaDiffs) != 0 {
			t.Fatalf("the moved DDL message changed more than its order:\n%s", rep)
		}
		t.Log(rep)
	})
	t.Run("a file written twice is duplicates, still OK", func(t *testing.T) {
		root := fresh(t)
		f := lastRowFile(t, root)
		b, _ := os.ReadFile(filepath.Join(root, f.Path))
		dup := filepath.Join(root, filepath.Dir(f.Path), fmt.Sprintf("CDC%06d.json", f.Index+100))
		os.WriteFile(dup, b, 0o644)
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start})
		if !rep.OK() || rep.Duplicates == 0 {
			t.Fatalf("%s", rep)
		}
	})
	t.Run("a checkpoint past the data is missing rows", func(t *testing.T) {
		root := fresh(t)
		rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uriOf(root), StartTs: start, CheckpointTs: after(h, 20*time.Second)})
		if rep.OK() || rep.Missing+rep.Wrong+uint64(rep.DDLsMissing) == 0 {
			t.Fatalf("%s", rep)
		}
	})
}

// writeExtraRow writes one insert at ts as a new data file of its table
// version.
func writeExtraRow(t *testing.T, root string, s *model.TableSchema, img []model.Value, ts model.Ts) {
	t.Helper()
	ctx := context.Background()
	snk, err := storage.Open(ctx, "file://"+root+"?protocol=canal-json&enable-tidb-extension=true&flush-interval=10ms&date-separator=none")
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close()
	tsk, err := snk.OpenTable(ctx, s.Table, sink.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	txn := &model.Txn{CommitTs: ts, StartTs: ts - 1, Rows: []*model.RowChange{{Schema: s, CommitTs: ts, StartTs: ts - 1, Op: model.OpInsert, After: img}}}
	if err := tsk.Write(ctx, []*model.Txn{txn}); err != nil {
		t.Fatal(err)
	}
	if err := tsk.Flush(ctx, ts); err != nil {
		t.Fatal(err)
	}
}

func TestCompareStateRefusesWhatItCannotCheck(t *testing.T) {
	root := t.TempDir()
	for name, p := range map[string]StateParams{
		"not datagen":        {SourceURI: "mysql://x", Downstream: "file://" + root + "?protocol=canal-json&enable-tidb-extension=true"},
		"no commit ts":       {SourceURI: stateURI, Downstream: "file://" + root + "?protocol=canal-json"},
		"csv no commit ts":   {SourceURI: stateURI, Downstream: "file://" + root + "?protocol=csv"},
		"no metadata":        {SourceURI: stateURI, Downstream: "file://" + root + "?protocol=canal-json&enable-tidb-extension=true"},
		"unknown scheme":     {SourceURI: stateURI, Downstream: "kafka://b:9092/t", CheckpointTs: 5},
		"bad sink param":     {SourceURI: stateURI, Downstream: "file://" + root + "?flush=1", CheckpointTs: 5},
		"checkpoint < start": {SourceURI: stateURI, Downstream: "file://" + root + "?protocol=canal-json&enable-tidb-extension=true", StartTs: 9, CheckpointTs: 5},
	} {
		if _, err := CompareState(context.Background(), p); err == nil {
			t.Errorf("%s: compared", name)
		}
	}
}

// TestDDLOrderFollowsTheFilesInReadingOrder: checkDDLOrder, fed a table's
// files in the order a consumer reads them, accepts DDL messages in
// commit-ts order (a replayed one repeats its ts) with rows of the version
// each starts after it, and counts a DDL that comes after a later one and a
// row older than the DDL before it.
func TestDDLOrderFollowsTheFilesInReadingOrder(t *testing.T) {
	v1, v2, v3 := &model.TableSchema{Version: 100}, &model.TableSchema{Version: 200}, &model.TableSchema{Version: 300}
	row := func(s *model.TableSchema, ts model.Ts) *model.RowChange {
		return &model.RowChange{Schema: s, CommitTs: ts}
	}
	file := func(version model.Ts, index uint64) storage.DataFile {
		d := storage.DataDir{Schema: "db", Table: "t", Version: version}
		return storage.DataFile{Path: fmt.Sprintf("%s/CDC%06d.json", d.Path(), index), Dir: d, Index: index}
	}
	type content struct {
		f    storage.DataFile
		rows []*model.RowChange
		ddls []fileDDL
	}
	for _, c := range []struct {
		name    string
		files   []content
		want    int
		example string
	}{
		{"in order, with a replayed DDL and rows written again", []content{
			{file(100, 1), []*model.RowChange{row(v1, 110), row(v1, 120)}, nil},
			{file(100, 2), []*model.RowChange{row(v1, 110)}, nil},
			{file(200, 1), []*model.RowChange{row(v2, 210)}, []fileDDL{{ts: 200, after: 0}}},
			{file(200, 2), nil, []fileDDL{{ts: 200, after: 0}}},
			{file(300, 1), []*model.RowChange{row(v3, 310)}, []fileDDL{{ts: 300, after: 0}}},
		}, 0, ""},
		{"a table sink saw the new version before the DDL message", []content{
			{file(200, 1), []*model.RowChange{row(v2, 210)}, nil},
			{file(200, 2), []*model.RowChange{row(v2, 220)}, []fileDDL{{ts: 200, after: 0}}},
		}, 0, ""},
		{"a DDL after a later one", []content{
			{file(100, 1), []*model.RowChange{row(v1, 110)}, []fileDDL{{ts: 300, after: 1}}},
			{file(200, 1), nil, []fileDDL{{ts: 200, after: 0}}},
		}, 1, "db.t: db/t/200/CDC000001.json: the DDL at 200 comes after the DDL at 300 (db/t/100/CDC000001.json)"},
		{"rows of the old version after the DDL, in its file and the next", []content{
			{file(100, 1), []*model.RowChange{row(v1, 110), row(v1, 120)}, []fileDDL{{ts: 200, after: 1}}},
			{file(100, 2), []*model.RowChange{row(v1, 130)}, nil},
			{file(200, 1), []*model.RowChange{row(v2, 210)}, nil},
		}, 2, "db.t: db/t/100/CDC000001.json: a row at commit ts 120 of schema version 100 comes after the DDL at 200 (db/t/100/CDC000001.json)"},
	} {
		var rep StateReport
		order := map[string]*ddlOrder{}
		for _, fc := range c.files {
			checkDDLOrder(fc.f, fc.rows, fc.ddls, order, &rep)
		}
		if rep.DDLOrderViolations != c.want || rep.DDLOrderExample != c.example {
			t.Errorf("%s: %d violations, example %q; want %d, %q", c.name, rep.DDLOrderViolations, rep.DDLOrderExample, c.want, c.example)
		}
	}
}
