package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/codec/csv"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sinkroot"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// recordingStore wraps the file system store and records every write, to
// check that each data file is written once, whole, and never replaced.
// Its fenced views record into the same counts.
type recordingStore struct {
	Store
	*records
}

type records struct {
	mu      sync.Mutex
	creates map[string]int
	puts    map[string]int
}

func newRecordingStore(root string) *recordingStore {
	return &recordingStore{Store: &localStore{root: root}, records: &records{creates: map[string]int{}, puts: map[string]int{}}}
}

func (r *recordingStore) Fenced(dir string) Store {
	return &recordingStore{Store: r.Store.Fenced(dir), records: r.records}
}

func (r *recordingStore) Create(ctx context.Context, name string, data []byte) error {
	err := r.Store.Create(ctx, name, data)
	if err == nil {
		r.mu.Lock()
		r.creates[name]++
		r.mu.Unlock()
	}
	return err
}

func (r *recordingStore) Put(ctx context.Context, name string, data []byte) error {
	r.mu.Lock()
	r.puts[name]++
	r.mu.Unlock()
	return r.Store.Put(ctx, name, data)
}

var dataFileRE = regexp.MustCompile(`/CDC\d{6,}\.(json|csv)$`)

// checkSingleWrites fails if a data or schema file was written twice or
// replaced, or if anything but an index or the metadata was overwritten.
func (r *recordingStore) checkSingleWrites(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, n := range r.creates {
		if n != 1 {
			t.Errorf("%s created %d times", name, n)
		}
	}
	for name := range r.puts {
		if !strings.HasSuffix(name, "/meta/CDC.index") && name != MetadataFile && !strings.Contains(name, "/meta/schema_") {
			t.Errorf("%s was overwritten in place", name)
		}
		if dataFileRE.MatchString(name) {
			t.Errorf("data file %s written with Put", name)
		}
	}
}

const testEpoch = "2026-01-01T00:00:00Z"

func testHistory(t *testing.T, uri string) *datagen.History {
	t.Helper()
	h, err := datagen.ParseHistory(uri)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func at(h *datagen.History, d time.Duration) model.Ts {
	return model.TsFromTime(time.UnixMilli(h.Config().EpochMs).Add(d))
}

// drive runs what a changefeed does against a sink, from the history's
// epoch up to upto in steps: per table write the transactions and flush
// at the step's ts, emit each DDL once every table is flushed below it
// (the barrier), apply table-set changes, publish the checkpoint. It
// returns every transaction written.
func drive(t *testing.T, h *datagen.History, s *Sink, upto model.Ts, step time.Duration) map[model.TableID][]*model.Txn {
	t.Helper()
	ctx := context.Background()
	written := map[model.TableID][]*model.Txn{}
	open := map[model.TableID]sink.TableSink{}
	openTable := func(tn model.TableName, ts model.Ts) {
		sch, err := h.SchemaAt(tn.ID, ts)
		if err != nil {
			t.Fatal(err)
		}
		ts2, err := s.OpenTable(ctx, tn, sink.TableOptions{StartTs: ts, Schema: sch})
		if err != nil {
			t.Fatal(err)
		}
		open[tn.ID] = ts2
	}
	from := h.EpochTs()
	for _, tn := range h.TablesAt(from) {
		openTable(tn, from)
	}
	stepTicks := model.TsFromTime(time.UnixMilli(0).Add(step)) - model.TsFromTime(time.UnixMilli(0))
	for from < upto {
		to := min(from+stepTicks, upto)
		// The next DDL caps this step (the barrier).
		var ddl *model.DDLEvent
		h.DDLs(from, to, func(d *model.DDLEvent) bool { ddl = d; return false })
		if ddl != nil {
			to = ddl.CommitTs - 1
		}
		for id, ts := range open {
			var txns []*model.Txn
			h.Txns(id, from, to, func(txn *model.Txn) bool { txns = append(txns, txn); return true })
			if err := ts.Write(ctx, txns); err != nil {
				t.Fatal(err)
			}
			written[id] = append(written[id], txns...)
		}
		var wg sync.WaitGroup
		for id, ts := range open {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := ts.Flush(ctx, to); err != nil {
					t.Errorf("flush table %d: %v", id, err)
				}
			}()
		}
		wg.Wait()
		if err := s.EmitCheckpoint(ctx, to); err != nil {
			t.Fatal(err)
		}
		from = to
		if ddl != nil {
			if err := s.EmitDDL(ctx, ddl); err != nil {
				t.Fatal(err)
			}
			switch ddl.Kind {
			case model.DDLDropTable:
				open[ddl.Tables[0].ID].Close()
				delete(open, ddl.Tables[0].ID)
			case model.DDLTruncateTable:
				open[ddl.Tables[0].ID].Close()
				delete(open, ddl.Tables[0].ID)
				openTable(ddl.After[0].Table, ddl.CommitTs)
			case model.DDLCreateTable:
				openTable(ddl.After[0].Table, ddl.CommitTs)
			}
			from = ddl.CommitTs
		}
	}
	for _, ts := range open {
		ts.Close()
	}
	return written
}

func openTestSink(t *testing.T, uri string, opts ...Option) (*Sink, *recordingStore) {
	t.Helper()
	cfg, err := ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecordingStore(cfg.Root)
	s, err := New(context.Background(), cfg, append([]Option{WithStore(rec)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rec
}

// The layout is TiCDC's: data under schema/table/version/date/CDCn.json
// with an index per directory, schema files per version, the metadata
// file with the checkpoint; every transaction comes back from the files
// whole and in order, DDL messages included.
func TestCanalJSONLayoutAndContent(t *testing.T) {
	h := testHistory(t, "datagen://?tables=3&rate=30&keys=40&txn-rows=2&txn-tables=2&ddl-every=2s&epoch="+testEpoch)
	root := t.TempDir()
	s, rec := openTestSink(t, "file://"+root+"?protocol=canal-json&enable-tidb-extension=true&flush-interval=10ms")
	upto := at(h, 21*time.Second)
	written := drive(t, h, s, upto, 1300*time.Millisecond)
	rec.checkSingleWrites(t)

	meta, err := ReadMetadata(context.Background(), OpenDir(root))
	if err != nil || meta.CheckpointTs != upto {
		t.Fatalf("metadata %+v, %v; want checkpoint %d", meta, err, upto)
	}
	raw, _ := os.ReadFile(filepath.Join(root, MetadataFile))
	if !regexp.MustCompile(`^\{"checkpoint-ts":\d+\}$`).Match(raw) {
		t.Fatalf("metadata file %q is not TiCDC's form", raw)
	}

	files, err := ListDataFiles(context.Background(), OpenDir(root), ".json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no data files")
	}
	defs, err := ReadSchemaFiles(context.Background(), OpenDir(root))
	if err != nil {
		t.Fatal(err)
	}
	schemaFiles := map[string]TableDefinition{}
	for _, d := range defs {
		schemaFiles[fmt.Sprintf("%s.%s@%d", d.Schema, d.Table, d.TableVersion)] = d
	}
	// Decode everything back, per table name, in file order.
	got := map[string][]*canal.Message{}
	ddls := 0
	lastIndex := map[string]uint64{}
	for _, f := range files {
		if f.Dir.Date != dateOf(f.Dir.Version, DateDay) && f.Dir.Date < dateOf(f.Dir.Version, DateDay) {
			t.Errorf("%s: date directory before the version's date", f.Path)
		}
		if _, ok := schemaFiles[fmt.Sprintf("%s.%s@%d", f.Dir.Schema, f.Dir.Table, f.Dir.Version)]; !ok {
			t.Errorf("%s: no schema file for version %d", f.Path, f.Dir.Version)
		}
		b, err := os.ReadFile(filepath.Join(root, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(string(b), "\r\n") {
			t.Fatalf("%s does not end with the terminator", f.Path)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n") {
			m, err := canal.Decode([]byte(line))
			if err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			if m.Kind() == canal.KindDDL {
				ddls++
				if m.CommitTs() != f.Dir.Version || f.Index != 1 {
					t.Errorf("%s: DDL message at %d should open version %d's first file", f.Path, m.CommitTs(), f.Dir.Version)
				}
			}
			got[f.Dir.Table] = append(got[f.Dir.Table], m)
		}
		dir := f.Dir.Path()
		idx, err := os.ReadFile(filepath.Join(root, dir, indexFile))
		if err != nil {
			t.Fatalf("%s has no index file: %v", dir, err)
		}
		lastIndex[dir] = max(lastIndex[dir], f.Index)
		if want := dataFileName(lastIndex[dir], 6, ".json") + "\n"; f.Index == lastIndex[dir] && string(idx) < want[:len(want)-1] {
			t.Errorf("%s index %q is behind %s", dir, idx, want)
		}
	}
	if n := h.DDLCount(h.EpochTs(), upto); uint64(ddls) != n || n < 10 {
		t.Fatalf("%d DDL messages, %d DDLs happened", ddls, n)
	}
	for dir, last := range lastIndex {
		idx, _ := os.ReadFile(filepath.Join(root, dir, indexFile))
		if want := dataFileName(last, 6, ".json") + "\n"; string(idx) != want {
			t.Errorf("%s index %q, want %q", dir, idx, want)
		}
	}
	// Every written row is there, in commit order per table name.
	byTs := map[string]map[model.Ts][]*canal.Message{}
	for table, msgs := range got {
		byTs[table] = map[model.Ts][]*canal.Message{}
		for _, m := range msgs {
			byTs[table][m.CommitTs()] = append(byTs[table][m.CommitTs()], m)
		}
	}
	total := 0
	for id, txns := range written {
		for _, txn := range txns {
			for _, r := range txn.Rows {
				total++
				msgs := byTs[r.Schema.Table.Table][r.CommitTs]
				found := false
				for _, m := range msgs {
					if m.Kind() == canal.KindRow && m.CommitTs() == r.CommitTs {
						back, err := m.Row(r.Schema)
						if err == nil && back.Op == r.Op && sameImg(r.Schema, back.Image(), r.Image()) {
							found = true
							break
						}
					}
				}
				if !found {
					t.Fatalf("table %d row %s at %d is not in the files", id, r.Op, r.CommitTs)
				}
			}
		}
	}
	if total < 500 {
		t.Fatalf("only %d rows written", total)
	}
	for table, msgs := range got {
		var last model.Ts
		for _, m := range msgs {
			if m.CommitTs() < last {
				t.Fatalf("%s: message at %d after %d", table, m.CommitTs(), last)
			}
			last = m.CommitTs()
		}
	}
	// No temporary files are left behind (staging directories stay).
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if !d.IsDir() && strings.HasPrefix(d.Name(), tempPrefix) {
			t.Errorf("temporary file %s left behind", p)
		}
		return nil
	})
}

func sameImg(s *model.TableSchema, a, b []model.Value) bool {
	for i, c := range s.Columns {
		if !model.ValueEqual(c.Type, a[i], b[i]) {
			return false
		}
	}
	return true
}

// CSV: data decodes with the csv decoder against the schema, and DDL goes
// out as schema files only (no message in the data).
func TestCSVLayoutAndSchemaFiles(t *testing.T) {
	h := testHistory(t, "datagen://?tables=2&rate=50&keys=30&ddl-every=3s&epoch="+testEpoch)
	root := t.TempDir()
	s, rec := openTestSink(t, "file://"+root+"?protocol=csv&include-commit-ts=true&flush-interval=10ms&date-separator=none")
	upto := at(h, 14*time.Second)
	written := drive(t, h, s, upto, time.Second)
	rec.checkSingleWrites(t)
	files, err := ListDataFiles(context.Background(), OpenDir(root), ".csv")
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := csv.NewDecoder(s.Config().CSV)
	rows := 0
	for _, f := range files {
		if f.Dir.Date != "" {
			t.Fatalf("%s: date directory with date-separator=none", f.Path)
		}
		b, _ := os.ReadFile(filepath.Join(root, f.Path))
		recs, err := dec.Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		// The table's schema at the version the directory names.
		var id model.TableID
		for tid, txns := range written {
			for _, txn := range txns {
				if txn.Rows[0].Schema.Table.Table == f.Dir.Table && txn.Rows[0].Schema.Version == f.Dir.Version {
					id = tid
				}
			}
		}
		sch, err := h.SchemaAt(id, f.Dir.Version)
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		got, err := dec.Rows(recs, sch)
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		rows += len(got)
	}
	want := 0
	for _, txns := range written {
		for _, txn := range txns {
			want += len(txn.Rows)
		}
	}
	if rows != want || want == 0 {
		t.Fatalf("%d rows in the files, %d written", rows, want)
	}
	defs, err := ReadSchemaFiles(context.Background(), OpenDir(root))
	if err != nil {
		t.Fatal(err)
	}
	withQuery := 0
	for _, d := range defs {
		if d.Query != "" {
			withQuery++
			if d.Type == 0 {
				t.Errorf("schema file of %q has no DDL type", d.Query)
			}
		}
		if d.Table != "" && d.TotalColumns != len(d.Columns) {
			t.Errorf("schema file %s.%s@%d: total %d, %d columns", d.Schema, d.Table, d.TableVersion, d.TotalColumns, len(d.Columns))
		}
	}
	if n := h.DDLCount(h.EpochTs(), upto); uint64(withQuery) != n {
		t.Fatalf("%d schema files with a DDL, %d DDLs", withQuery, n)
	}
}

// Many small tables flushed often make one file per table per flush
// interval, not one per flush call: each table writes and flushes every
// 20 ms of wall time (as a processor following the resolved ts does), and
// the files are bounded by the rounds, not by the calls.
func TestManySmallTablesBatchPerFlushInterval(t *testing.T) {
	const tables = 40
	const interval = 300 * time.Millisecond
	h := testHistory(t, fmt.Sprintf("datagen://?tables=%d&rate=100&keys=50&epoch=%s", tables, testEpoch))
	root := t.TempDir()
	s, rec := openTestSink(t, "file://"+root+"?protocol=canal-json&flush-interval="+interval.String())
	ctx := context.Background()
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(1500 * time.Millisecond)
	for _, tn := range h.TablesAt(h.EpochTs()) {
		ts, err := s.OpenTable(ctx, tn, sink.TableOptions{StartTs: h.EpochTs()})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ts.Close()
			from := h.EpochTs()
			for time.Now().Before(deadline) {
				to := at(h, time.Since(start))
				var txns []*model.Txn
				h.Txns(tn.ID, from, to, func(txn *model.Txn) bool { txns = append(txns, txn); return true })
				if err := ts.Write(ctx, txns); err != nil {
					t.Error(err)
					return
				}
				if err := ts.Flush(ctx, to); err != nil {
					t.Error(err)
					return
				}
				from = to
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	rounds := int(elapsed/interval) + 2
	files, err := ListDataFiles(ctx, OpenDir(root), ".json")
	if err != nil {
		t.Fatal(err)
	}
	// Calling Flush every 20 ms without batching would make a file per
	// call: up to 75 per table in 1.5 s.
	if len(files) > tables*rounds {
		t.Fatalf("%d files for %d tables in %v: more than one per table per %v round", len(files), tables, elapsed, interval)
	}
	if len(files) < tables {
		t.Fatalf("only %d files for %d tables", len(files), tables)
	}
	rec.checkSingleWrites(t)
}

// file-size splits files between transactions, never inside one.
func TestFileSizeSplitsBetweenTransactions(t *testing.T) {
	h := testHistory(t, "datagen://?tables=1&rate=200&keys=100&txn-rows=4&epoch="+testEpoch)
	root := t.TempDir()
	s, rec := openTestSink(t, "file://"+root+"?protocol=canal-json&enable-tidb-extension=true&file-size=4096&flush-interval=10ms")
	ctx := context.Background()
	tn := h.TablesAt(0)[0]
	ts, err := s.OpenTable(ctx, tn, sink.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	upto := at(h, 2*time.Second)
	var txns []*model.Txn
	h.Txns(tn.ID, 0, upto, func(txn *model.Txn) bool { txns = append(txns, txn); return true })
	// Written in small pieces so that full files are cut while writing.
	for i := 0; i < len(txns); i += 5 {
		if err := ts.Write(ctx, txns[i:min(i+5, len(txns))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Flush(ctx, upto); err != nil {
		t.Fatal(err)
	}
	rec.checkSingleWrites(t)
	files, _ := ListDataFiles(ctx, OpenDir(root), ".json")
	if len(files) < 10 {
		t.Fatalf("%d files for %d txns at 4 KiB", len(files), len(txns))
	}
	seen := 0
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(root, f.Path))
		lines := strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n")
		if len(lines)%4 != 0 {
			t.Fatalf("%s holds %d rows: a 4-row transaction was split", f.Path, len(lines))
		}
		m, _ := canal.Decode([]byte(lines[0]))
		last, _ := canal.Decode([]byte(lines[len(lines)-1]))
		if len(b) > 4096 && len(lines) > 4 {
			t.Fatalf("%s has %d bytes over file-size with more than one transaction", f.Path, len(b))
		}
		if m.CommitTs() != last.CommitTs() && lines[0] == "" {
			t.Fatal("empty file")
		}
		seen += len(lines)
	}
	if seen != 4*len(txns) {
		t.Fatalf("%d rows in files, %d written", seen, 4*len(txns))
	}
}

// A new writer never overwrites: it continues after the index, and skips a
// name that is taken even if the index does not know it.
func TestNewWriterNeverOverwrites(t *testing.T) {
	h := testHistory(t, "datagen://?tables=1&rate=20&keys=10&epoch="+testEpoch)
	root := t.TempDir()
	ctx := context.Background()
	tn := h.TablesAt(0)[0]
	write := func(from, to model.Ts) {
		s, rec := openTestSink(t, "file://"+root+"?protocol=canal-json&flush-interval=10ms&date-separator=none")
		ts, err := s.OpenTable(ctx, tn, sink.TableOptions{StartTs: from})
		if err != nil {
			t.Fatal(err)
		}
		var txns []*model.Txn
		h.Txns(tn.ID, from, to, func(txn *model.Txn) bool { txns = append(txns, txn); return true })
		if err := ts.Write(ctx, txns); err != nil {
			t.Fatal(err)
		}
		if err := ts.Flush(ctx, to); err != nil {
			t.Fatal(err)
		}
		s.Close()
		rec.checkSingleWrites(t)
	}
	write(0, at(h, time.Second))
	dir := filepath.Join(root, "datagen", "t0001", fmt.Sprint(h.EpochTs()))
	first, err := os.ReadFile(filepath.Join(dir, "CDC000001.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Another capture replays an overlapping range.
	write(at(h, 500*time.Millisecond), at(h, 2*time.Second))
	// A file the index does not name (a writer that died between the data
	// file and the index) is skipped.
	if err := os.WriteFile(filepath.Join(dir, "CDC000003.json"), []byte("orphan\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write(at(h, 2*time.Second), at(h, 3*time.Second))
	again, _ := os.ReadFile(filepath.Join(dir, "CDC000001.json"))
	orphan, _ := os.ReadFile(filepath.Join(dir, "CDC000003.json"))
	if string(again) != string(first) || string(orphan) != "orphan\r\n" {
		t.Fatal("a file was overwritten")
	}
	for _, n := range []string{"CDC000002.json", "CDC000004.json"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	idx, _ := os.ReadFile(filepath.Join(dir, indexFile))
	if string(idx) != "CDC000004.json\n" {
		t.Fatalf("index %q", idx)
	}
}

// A DDL emitted again (after an owner change) is recognised and not
// written twice.
func TestEmitDDLTwiceIsApplied(t *testing.T) {
	h := testHistory(t, "datagen://?tables=1&ddl-every=1s&epoch="+testEpoch)
	root := t.TempDir()
	ctx := context.Background()
	var ddls []*model.DDLEvent
	h.DDLs(0, at(h, 5800*time.Millisecond), func(d *model.DDLEvent) bool { ddls = append(ddls, d); return true }) // the cycle: five, and the CREATE at 5.5 s
	for range 2 {
		s, rec := openTestSink(t, "file://"+root+"?protocol=canal-json")
		for _, d := range ddls {
			if err := s.EmitDDL(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		rec.checkSingleWrites(t)
	}
	files, _ := ListDataFiles(ctx, OpenDir(root), ".json")
	defs, _ := ReadSchemaFiles(ctx, OpenDir(root))
	if len(files) != len(ddls) || len(defs) != len(ddls) || len(ddls) != 6 {
		t.Fatalf("%d DDLs made %d message files and %d schema files", len(ddls), len(files), len(defs))
	}
	for _, d := range defs {
		if d.Query == "" || d.TotalColumns == 0 {
			t.Errorf("schema file of %s@%d: query %q, %d columns (a dropped table keeps its last columns)", d.Table, d.TableVersion, d.Query, d.TotalColumns)
		}
	}
}

// Flush waits for the sink's next round rather than writing a file per
// call; a caller that gives up has nothing written on its behalf.
func TestFlushWaitsForTheNextRound(t *testing.T) {
	h := testHistory(t, "datagen://?tables=1&rate=50&epoch="+testEpoch)
	root := t.TempDir()
	s, _ := openTestSink(t, "file://"+root+"?protocol=canal-json&flush-interval=10m")
	ctx := context.Background()
	tn := h.TablesAt(0)[0]
	ts, err := s.OpenTable(ctx, tn, sink.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write := func(from, to model.Ts) {
		var txns []*model.Txn
		h.Txns(tn.ID, from, to, func(txn *model.Txn) bool { txns = append(txns, txn); return true })
		if err := ts.Write(ctx, txns); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing pending: returns at once.
	if err := ts.Flush(ctx, at(h, time.Hour)); err != nil {
		t.Fatal(err)
	}
	write(0, at(h, time.Second))
	// The first round starts at once.
	if err := ts.Flush(ctx, at(h, time.Second)); err != nil {
		t.Fatal(err)
	}
	write(at(h, time.Second), at(h, 2*time.Second))
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := ts.Flush(short, at(h, 2*time.Second)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second flush inside the interval: %v, want it to wait for the next round", err)
	}
	files, _ := ListDataFiles(ctx, OpenDir(root), ".json")
	if len(files) != 1 {
		t.Fatalf("%d files, want the first round's only", len(files))
	}
	// Closing the sink fails a waiting flush instead of hanging it.
	errc := make(chan error, 1)
	go func() { errc <- ts.Flush(ctx, at(h, 2*time.Second)) }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	if err := <-errc; err == nil {
		t.Fatal("flush succeeded on a closed sink")
	}
}

func TestParseURIRefusesBadParameters(t *testing.T) {
	cases := map[string]string{
		"file://relative/dir":                                  "absolute path",
		"file:///d?protocol=avro":                              `"protocol"`,
		"file:///d?flush-interval=1ms":                         `"flush-interval"`,
		"file:///d?flush-interval=soon":                        `"flush-interval"`,
		"file:///d?file-size=10":                               `"file-size"`,
		"file:///d?file-size=1GiB":                             `"file-size"`,
		"file:///d?date-separator=week":                        `"date-separator"`,
		"file:///d?file-index-width=3":                         `"file-index-width"`,
		"file:///d?worker-count=0":                             `"worker-count"`,
		"file:///d?enable-tidb-extension=maybe":                `"enable-tidb-extension"`,
		"file:///d?protocol=canal-json&delimiter=%3B":          `"delimiter" applies to protocol=csv`,
		"file:///d?protocol=csv&enable-tidb-extension=true":    `"enable-tidb-extension" applies to protocol=canal-json`,
		"file:///d?protocol=csv&null=0":                        "null",
		"file:///d?protocol=csv&binary-encoding-method=base32": `"binary-encoding-method"`,
		"file:///d?terminator=%3B":                             `"terminator"`,
		"file:///d?flush-interval=1s&flush-interval=2s":        "2 times",
		"file:///d?flsuh-interval=1s":                          `unknown parameter "flsuh-interval"`,
		"file://host/d":                                        "absolute path",
		"s3://bucket/d":                                        `scheme must be "file"`,
	}
	for uri, want := range cases {
		_, err := ParseURI(uri)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error mentioning %s", uri, err, want)
		}
	}
	cfg, err := ParseURI("file:///d?protocol=csv&delimiter=%7C&quote=&null=%5CN&include-commit-ts=true&terminator=%5Cn&file-size=1048576&flush-interval=2s&date-separator=month")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CSV.Delimiter != "|" || cfg.CSV.Quote != "" || cfg.CSV.Terminator != "\n" || cfg.FileSize != 1<<20 || cfg.DateSeparator != DateMonth {
		t.Fatalf("%+v", cfg)
	}
}

// TestParseURIDefaultsAndParsedValues: a URI without parameters gets the
// documented defaults (canal-json, a 5 s flush interval, 64 MiB files, one
// directory a day, TiCDC's csv options), and the flush-interval, csv null
// and include-commit-ts a URI gives are the values in force, not the
// defaults.
func TestParseURIDefaultsAndParsedValues(t *testing.T) {
	cfg, err := ParseURI("file:///out")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/out" || cfg.Protocol != ProtocolCanalJSON || cfg.DateSeparator != DateDay || cfg.Extension() != ".json" {
		t.Errorf("root %q, protocol %q, date separator %q, extension %q: want /out, canal-json, day, .json", cfg.Root, cfg.Protocol, cfg.DateSeparator, cfg.Extension())
	}
	if cfg.FlushInterval != 5*time.Second {
		t.Errorf("default flush-interval %v, want 5s", cfg.FlushInterval)
	}
	if cfg.FileSize != 64<<20 {
		t.Errorf("default file-size %d, want 64 MiB (%d)", cfg.FileSize, 64<<20)
	}
	if want := (csv.Options{Delimiter: ",", Quote: `"`, Null: `\N`, BinaryEncoding: csv.BinaryBase64, Terminator: "\r\n"}); cfg.CSV != want {
		t.Errorf("default csv options %+v, want %+v", cfg.CSV, want)
	}
	if o := cfg.Canal; o.EnableTiDBExtension || o.OnlyOutputUpdatedColumns || o.ContentCompatible {
		t.Errorf("default canal-json options %+v, want none set", o)
	}

	for _, c := range []struct {
		uri             string
		flush           time.Duration
		null            string
		includeCommitTs bool
	}{
		{"file:///out?protocol=csv&flush-interval=750ms&null=NULL&include-commit-ts=true", 750 * time.Millisecond, "NULL", true},
		{"file:///out?protocol=csv&flush-interval=2m&null=%5CN%5CN&include-commit-ts=false", 2 * time.Minute, `\N\N`, false},
		{"file:///out?protocol=csv&quote=&null=%5Cx&flush-interval=10ms&include-commit-ts=1", 10 * time.Millisecond, `\x`, true},
	} {
		cfg, err := ParseURI(c.uri)
		if err != nil {
			t.Errorf("%s: %v", c.uri, err)
			continue
		}
		if cfg.FlushInterval != c.flush || cfg.CSV.Null != c.null || cfg.CSV.IncludeCommitTs != c.includeCommitTs {
			t.Errorf("%s: flush-interval %v, null %q, include-commit-ts %v; want %v, %q, %v",
				c.uri, cfg.FlushInterval, cfg.CSV.Null, cfg.CSV.IncludeCommitTs, c.flush, c.null, c.includeCommitTs)
		}
		if cfg.FileSize != 64<<20 || cfg.Protocol != ProtocolCSV || cfg.Extension() != ".csv" {
			t.Errorf("%s: file-size %d, protocol %q, extension %q; want the 64 MiB default, csv, .csv", c.uri, cfg.FileSize, cfg.Protocol, cfg.Extension())
		}
	}
}

type denyPolicy struct{}

func (denyPolicy) Check(dir string) error {
	return fmt.Errorf("sink directory %s is outside every --sink-root", dir)
}

func TestOpenRefusesADirectoryOutsideThePolicy(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	_, err := Open(context.Background(), "file://"+root, WithDirPolicy(denyPolicy{}))
	if err == nil || !strings.Contains(err.Error(), "--sink-root") {
		t.Fatalf("open outside the policy: %v", err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("the refused directory was created: %v", err)
	}
}

func TestOpenTableRefusesUnsafeNames(t *testing.T) {
	s, _ := openTestSink(t, "file://"+t.TempDir())
	for _, tn := range []model.TableName{{Schema: "..", Table: "t"}, {Schema: "d", Table: "a/b"}, {Schema: "d", Table: ""}, {Schema: "d", Table: ".tmp-x"}} {
		if _, err := s.OpenTable(context.Background(), tn, sink.TableOptions{}); err == nil {
			t.Errorf("opened %q.%q", tn.Schema, tn.Table)
		}
	}
	b, _ := json.Marshal(Metadata{CheckpointTs: 5})
	if string(b) != `{"checkpoint-ts":5}` {
		t.Fatal(string(b))
	}
}

// A table sink that sees a DDL's new version before the owner emits the DDL
// writes a schema file without the statement; the DDL then replaces it with
// one that has it (and still writes its message).
func TestEmitDDLAfterATableSinkSawTheNewVersion(t *testing.T) {
	h := testHistory(t, "datagen://?tables=1&rate=20&ddl-every=1s&epoch="+testEpoch)
	root := t.TempDir()
	ctx := context.Background()
	var ddl *model.DDLEvent
	h.DDLs(0, at(h, 1500*time.Millisecond), func(d *model.DDLEvent) bool { ddl = d; return false })
	s, rec := openTestSink(t, "file://"+root+"?protocol=canal-json")
	if _, err := s.OpenTable(ctx, ddl.After[0].Table, sink.TableOptions{StartTs: ddl.CommitTs, Schema: ddl.After[0]}); err != nil {
		t.Fatal(err)
	}
	if err := s.EmitDDL(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	defs, _ := ReadSchemaFiles(ctx, OpenDir(root))
	if len(defs) != 1 || defs[0].Query != ddl.Query {
		t.Fatalf("schema files %+v, want one with %q", defs, ddl.Query)
	}
	files, _ := ListDataFiles(ctx, OpenDir(root), ".json")
	if len(files) != 1 {
		t.Fatalf("%d data files, want the DDL message", len(files))
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for name, n := range rec.puts {
		if strings.Contains(name, "/meta/schema_") && n != 1 {
			t.Errorf("%s replaced %d times", name, n)
		}
	}
}

// The server's --sink-root policy plugs into WithDirPolicy: inside a root
// opens, outside is refused naming the flag, before anything is created.
func TestSinkRootPolicyConfinesTheRoot(t *testing.T) {
	base := t.TempDir()
	allowed := filepath.Join(base, "allowed")
	policy, err := sinkroot.New(allowed)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), "file://"+filepath.Join(allowed, "feed1"), WithDirPolicy(policy))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	outside := filepath.Join(base, "elsewhere")
	if _, err := Open(context.Background(), "file://"+outside, WithDirPolicy(policy)); err == nil || !strings.Contains(err.Error(), sinkroot.Flag) {
		t.Fatalf("outside the sink root: %v", err)
	}
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Fatalf("the refused directory was created: %v", err)
	}
}
