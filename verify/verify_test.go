package verify

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/file"
	"github.com/raftcdc/raftcdc/source/datagen"
)

const testURI = "datagen://?tables=3&rate=500&keys=7&row-size=24"

type fixture struct {
	dir               string
	gen               *datagen.Generator
	start, checkpoint model.Ts
}

// writeSink fills a file sink with every event of every table from start up
// to upto, flushing in chunks of flushEvery ticks, the way a changefeed would.
func writeSink(t testing.TB, uri string, start, upto, flushEvery model.Ts) fixture {
	t.Helper()
	ctx := context.Background()
	cfg, err := datagen.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	gen, err := datagen.NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := file.New(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tb := range gen.Tables() {
		ts, err := s.OpenTable(ctx, tb)
		if err != nil {
			t.Fatal(err)
		}
		for from := start; from < upto; from += flushEvery {
			to := min(from+flushEvery, upto)
			var rows []model.LegacyRow
			gen.Events(tb.ID, from, to, func(r model.LegacyRow) bool {
				rows = append(rows, r)
				return true
			})
			if err := ts.Write(ctx, rows); err != nil {
				t.Fatal(err)
			}
			if err := ts.Flush(ctx, to); err != nil {
				t.Fatal(err)
			}
		}
		ts.Close()
	}
	return fixture{dir: dir, gen: gen, start: start}
}

func newFixture(t *testing.T) fixture {
	start := model.TsFromTime(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
	second := model.TsFromTime(time.Unix(1, 0)) - model.TsFromTime(time.Unix(0, 0))
	// Data runs half a second past the checkpoint, as a sink that flushed
	// beyond the last recorded checkpoint would.
	f := writeSink(t, testURI, start, start+2*second+second/2, second/4)
	f.checkpoint = start + 2*second
	return f
}

func (f fixture) params() Params {
	return Params{SourceURI: testURI, SinkDir: f.dir, StartTs: f.start, CheckpointTs: f.checkpoint}
}

func run(t *testing.T, p Params) Report {
	t.Helper()
	r, err := Run(context.Background(), p)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Log(r)
	return r
}

// files lists a table's data files in name order.
func (f fixture) files(t *testing.T, table string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(f.dir, "datagen."+table, "*.jsonl"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no files for %s: %v", table, err)
	}
	sort.Strings(paths)
	return paths
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, line string) model.LegacyRow {
	t.Helper()
	var r model.LegacyRow
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCompleteSinkPasses(t *testing.T) {
	f := newFixture(t)
	r := run(t, f.params())
	if !r.OK() {
		t.Fatalf("complete sink failed: %s", r)
	}
	if r.Tables != 3 || r.Expected != 3000 || r.Found != 3000 || r.Missing != 0 {
		t.Fatalf("tables %d expected %d found %d missing %d; want 3, 3000, 3000, 0", r.Tables, r.Expected, r.Found, r.Missing)
	}
	if r.AfterCheckpoint != 750 || r.Rows != 3750 || r.Duplicates != 0 || r.OutOfOrder != 0 || r.Unexpected != 0 || r.Decoded != 0 {
		t.Fatalf("unexpected counts: %s", r)
	}
	// The same rows seen from a later start are partly before it.
	p := f.params()
	p.StartTs = f.start + (f.checkpoint-f.start)/2
	r = run(t, p)
	if !r.OK() || r.Expected != 1500 || r.BeforeStart != 1500 {
		t.Fatalf("later start: %s", r)
	}
}

func TestDeletedRowIsMissing(t *testing.T) {
	f := newFixture(t)
	path := f.files(t, "t0002")[1]
	lines := readLines(t, path)
	gone := decode(t, lines[17])
	writeLines(t, path, append(lines[:17:17], lines[18:]...))

	r := run(t, f.params())
	if r.OK() || r.Missing != 1 || r.Found != 2999 {
		t.Fatalf("deleted row not reported missing: %s", r)
	}
	want := RowRef{Table: gone.Table, Key: gone.Key, CommitTs: gone.CommitTs}
	if len(r.MissingExamples) != 1 || r.MissingExamples[0] != want {
		t.Fatalf("missing examples %v, want [%v]", r.MissingExamples, want)
	}
}

func TestDuplicatesAreCountedButAllowed(t *testing.T) {
	f := newFixture(t)
	paths := f.files(t, "t0001")
	lines := readLines(t, paths[0])
	// One row repeated in another file, and a whole file written twice, as
	// after a failover.
	writeLines(t, paths[2], append(readLines(t, paths[2]), lines[3]))
	copyLines := readLines(t, paths[1])
	writeLines(t, strings.Replace(paths[1], ".jsonl", "-again.jsonl", 1), copyLines)

	r := run(t, f.params())
	if !r.OK() {
		t.Fatalf("duplicates made the check fail: %s", r)
	}
	if want := uint64(1 + len(copyLines)); r.Duplicates != want {
		t.Fatalf("%d duplicates, want %d", r.Duplicates, want)
	}
	if len(r.DuplicateExamples) == 0 {
		t.Fatal("no duplicate examples")
	}
}

func TestReorderedRowIsOutOfOrder(t *testing.T) {
	f := newFixture(t)
	path := f.files(t, "t0003")[0]
	lines := readLines(t, path)
	// Swap the first two rows of one key.
	first := -1
	var key string
	for i, l := range lines {
		r := decode(t, l)
		if first < 0 {
			first, key = i, r.Key
			continue
		}
		if r.Key == key {
			lines[first], lines[i] = lines[i], lines[first]
			break
		}
	}
	writeLines(t, path, lines)

	r := run(t, f.params())
	if r.OutOfOrder != 1 || len(r.OutOfOrderExamples) != 1 {
		t.Fatalf("swap not reported out of order: %s", r)
	}
	if r.Missing != 0 || r.Unexpected != 0 {
		t.Fatalf("a swap lost or changed rows: %s", r)
	}
}

func TestCorruptedRowsAreUnexpected(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func(r *model.LegacyRow) string // returns the new line, "" to marshal r
		reason  string
		missing uint64
	}{
		{"payload", func(r *model.LegacyRow) string {
			p := r.Columns[datagen.ColPayload].(string)
			r.Columns[datagen.ColPayload] = "#" + p[1:]
			return ""
		}, `column "payload"`, 1},
		{"op", func(r *model.LegacyRow) string {
			r.Op = map[model.Op]model.Op{model.OpInsert: model.OpUpdate, model.OpUpdate: model.OpDelete, model.OpDelete: model.OpInsert}[r.Op]
			return ""
		}, "op", 1},
		{"key", func(r *model.LegacyRow) string { r.Key += "0"; return "" }, "key", 1},
		{"seq", func(r *model.LegacyRow) string { r.Columns[datagen.ColSeq] = 12; return "" }, `column "seq"`, 1},
		{"extra column", func(r *model.LegacyRow) string { r.Columns["x"] = 1; return "" }, "columns", 1},
		{"commit ts", func(r *model.LegacyRow) string { r.CommitTs++; return "" }, "no event", 1},
		{"table", func(r *model.LegacyRow) string { r.Table.Table = "t9999"; return "" }, "no such datagen table", 1},
		{"malformed", func(r *model.LegacyRow) string { return `{"table": {"id": 1` }, "malformed", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			path := f.files(t, "t0001")[2]
			lines := readLines(t, path)
			// Corrupt the first row that has a payload, so every case applies.
			for i := range lines {
				if row := decode(t, lines[i]); row.Op != model.OpDelete {
					lines[i] = corruptLine(t, &row, tc.corrupt)
					break
				}
			}
			writeLines(t, path, lines)

			r := run(t, f.params())
			if r.OK() || r.Unexpected != 1 || r.Missing != tc.missing || r.Decoded != 1 {
				t.Fatalf("corruption not caught: %s", r)
			}
			if len(r.UnexpectedExamples) != 1 || !strings.Contains(r.UnexpectedExamples[0].Reason, tc.reason) {
				t.Fatalf("examples %v, want a reason mentioning %q", r.UnexpectedExamples, tc.reason)
			}
		})
	}
}

func corruptLine(t *testing.T, r *model.LegacyRow, corrupt func(*model.LegacyRow) string) string {
	t.Helper()
	if line := corrupt(r); line != "" {
		return line
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFilterAndTempFiles(t *testing.T) {
	f := newFixture(t)
	// A half-written temp file is not data.
	tmp := filepath.Join(f.dir, "datagen.t0001", ".flush-123.tmp")
	if err := os.WriteFile(tmp, []byte(`{"garbage`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := f.params()
	p.Filter = model.FilterConfig{Rules: []string{"*.*", "!datagen.t0003"}}
	r := run(t, p)
	if r.Tables != 2 || r.Expected != 2000 || r.Missing != 0 {
		t.Fatalf("filtered check: %s", r)
	}
	// t0003's rows are in the sink though the filter excludes the table.
	if r.Unexpected != 1250 || r.OK() {
		t.Fatalf("rows of an excluded table not reported: %s", r)
	}
	if !strings.Contains(r.UnexpectedExamples[0].Reason, "excluded by the filter") {
		t.Fatalf("reason %q", r.UnexpectedExamples[0].Reason)
	}
}

func TestBadParams(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		mut  func(*Params)
		want string
	}{
		{func(p *Params) { p.SourceURI = "mysql://x" }, "only datagen"},
		{func(p *Params) { p.SourceURI = "datagen://?tables=0" }, `"tables"`},
		{func(p *Params) { p.SinkDir = filepath.Join(f.dir, "nope") }, "sink directory"},
		{func(p *Params) { p.CheckpointTs = p.StartTs - 1 }, "below start ts"},
		{func(p *Params) { p.Filter.Rules = []string{"x"} }, "no dot"},
		{func(p *Params) { p.StartTs = 0 }, "narrow the range"},
	}
	for _, tc := range cases {
		p := f.params()
		tc.mut(&p)
		if _, err := Run(context.Background(), p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run = %v, want an error saying %q", err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, f.params()); err == nil {
		t.Error("Run with a cancelled context succeeded")
	}
}

func BenchmarkVerify(b *testing.B) {
	start := model.TsFromTime(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
	second := model.TsFromTime(time.Unix(1, 0)) - model.TsFromTime(time.Unix(0, 0))
	const uri = "datagen://?tables=4&rate=25000"
	f := writeSink(b, uri, start, start+2*second, second/10)
	p := Params{SourceURI: uri, SinkDir: f.dir, StartTs: start, CheckpointTs: start + 2*second}
	var rows uint64
	for b.Loop() {
		r, err := Run(context.Background(), p)
		if err != nil || !r.OK() {
			b.Fatalf("%v %s", err, r)
		}
		rows += r.Rows
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

func TestEquivalentEncodingIsAccepted(t *testing.T) {
	f := newFixture(t)
	path := f.files(t, "t0002")[0]
	lines := readLines(t, path)
	// Same row, other key order and spacing: a different writer's output.
	dec := json.NewDecoder(strings.NewReader(lines[4]))
	dec.UseNumber()
	var generic map[string]any
	if err := dec.Decode(&generic); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(generic, "", "")
	if err != nil {
		t.Fatal(err)
	}
	lines[4] = strings.ReplaceAll(string(b), "\n", " ")
	writeLines(t, path, lines)

	r := run(t, f.params())
	if !r.OK() || r.Found != 3000 || r.Decoded != 1 {
		t.Fatalf("an equivalent encoding was not accepted through the full decode: %s", r)
	}
}

func TestReportString(t *testing.T) {
	f := newFixture(t)
	path := f.files(t, "t0001")[0]
	lines := readLines(t, path)
	writeLines(t, path, append(lines[1:], "not json"))
	r := run(t, f.params())
	s := r.String()
	for _, want := range []string{"verify FAILED", "missing 1", "unexpected 1", "missing: datagen.t0001 key", "malformed line"} {
		if !strings.Contains(s, want) {
			t.Errorf("report %q does not contain %q", s, want)
		}
	}
	if _, err := Check(context.Background(), f.params()); !errors.Is(err, ErrNotOK) {
		t.Errorf("Check = %v, want ErrNotOK", err)
	}
}
