package file

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

var tbl = model.TableName{ID: 7, Schema: "shop", Table: "orders"}

func rowsAt(ts ...model.Ts) []model.LegacyRow {
	out := make([]model.LegacyRow, len(ts))
	for i, t := range ts {
		out[i] = model.LegacyRow{
			Table: tbl, Key: fmt.Sprint(t % 5), Op: model.OpUpdate, CommitTs: t,
			Columns: map[string]any{"id": t % 5, "payload": fmt.Sprintf("v<%d>&\"q\"", t)},
		}
	}
	return out
}

func openTable(t *testing.T) (string, sink.LegacyTableSink) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ts, err := s.OpenTable(context.Background(), tbl)
	if err != nil {
		t.Fatalf("OpenTable: %v", err)
	}
	t.Cleanup(func() { ts.Close() })
	return TableDir(dir, tbl), ts
}

// listDir returns data files and anything else found, sorted.
func listDir(t *testing.T, dir string) (data, other []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), DataSuffix) && !strings.HasPrefix(e.Name(), ".") {
			data = append(data, e.Name())
		} else {
			other = append(other, e.Name())
		}
	}
	return data, other
}

func readRows(t *testing.T, path string) []model.LegacyRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []model.LegacyRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r model.LegacyRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: bad line %q: %v", path, sc.Text(), err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// jsonEqual compares rows through their JSON form, since decoding turns
// numbers into float64.
func jsonEqual(t *testing.T, got, want []model.LegacyRow) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("rows differ:\n got %s\nwant %s", g, w)
	}
}

func TestFlushWritesOneFilePerFlushUpToTs(t *testing.T) {
	ctx := context.Background()
	dir, ts := openTable(t)
	rows := rowsAt(10, 20, 20, 30, 40)
	if err := ts.Write(ctx, rows[:3]); err != nil {
		t.Fatal(err)
	}
	if err := ts.Write(ctx, rows[3:]); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if data, other := listDir(t, dir); len(data)+len(other) != 0 {
		t.Fatalf("flush below every row wrote %v %v", data, other)
	}
	if err := ts.Flush(ctx, 25); err != nil {
		t.Fatal(err)
	}
	data, other := listDir(t, dir)
	if len(data) != 1 || len(other) != 0 {
		t.Fatalf("after one flush: data %v, other %v", data, other)
	}
	if !strings.HasPrefix(data[0], fmt.Sprintf("%020d-%020d-", 10, 20)) {
		t.Fatalf("file %s does not carry the range 10-20", data[0])
	}
	jsonEqual(t, readRows(t, filepath.Join(dir, data[0])), rows[:3])

	// Nothing new below 25: no new file.
	if err := ts.Flush(ctx, 29); err != nil {
		t.Fatal(err)
	}
	if data, _ := listDir(t, dir); len(data) != 1 {
		t.Fatalf("empty flush wrote a file: %v", data)
	}
	if err := ts.Flush(ctx, 100); err != nil {
		t.Fatal(err)
	}
	data, other = listDir(t, dir)
	if len(data) != 2 || len(other) != 0 {
		t.Fatalf("after two flushes: data %v, other %v", data, other)
	}
	if !strings.HasPrefix(data[1], fmt.Sprintf("%020d-%020d-", 30, 40)) {
		t.Fatalf("file %s does not carry the range 30-40", data[1])
	}
	jsonEqual(t, readRows(t, filepath.Join(dir, data[1])), rows[3:])

	// Close drops what was not flushed.
	if err := ts.Write(ctx, rowsAt(50)); err != nil {
		t.Fatal(err)
	}
	ts.Close()
	if err := ts.Flush(ctx, 100); err == nil {
		t.Fatal("Flush after Close succeeded")
	}
	if err := ts.Write(ctx, rowsAt(60)); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if data, _ := listDir(t, dir); len(data) != 2 {
		t.Fatalf("unflushed rows reached disk: %v", data)
	}
}

func TestOverlappingWritersKeepBothFiles(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	var dir string
	for range 2 {
		s, err := New(ctx, root)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := s.OpenTable(ctx, tbl)
		if err != nil {
			t.Fatal(err)
		}
		if err := ts.Write(ctx, rowsAt(1, 2, 3)); err != nil {
			t.Fatal(err)
		}
		if err := ts.Flush(ctx, 3); err != nil {
			t.Fatal(err)
		}
		dir = TableDir(root, tbl)
	}
	if data, _ := listDir(t, dir); len(data) != 2 {
		t.Fatalf("two writers of the same range left %v", data)
	}
}

func TestReadersNeverSeePartialFiles(t *testing.T) {
	ctx := context.Background()
	dir, ts := openTable(t)
	const files, perFile = 20, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var problems []string
	var seen int
	wg.Add(1)
	go func() {
		defer wg.Done()
		checked := map[string]bool{}
		for {
			select {
			case <-stop:
				return
			default:
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				problems = append(problems, err.Error())
				return
			}
			for _, e := range entries {
				name := e.Name()
				if !strings.HasSuffix(name, DataSuffix) || checked[name] {
					continue
				}
				checked[name] = true
				seen++
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					problems = append(problems, err.Error())
					continue
				}
				if n := strings.Count(string(b), "\n"); n != perFile || !strings.HasSuffix(string(b), "\n") {
					problems = append(problems, fmt.Sprintf("%s has %d lines, want %d", name, n, perFile))
				}
			}
		}
	}()
	next := model.Ts(1)
	for range files {
		batch := make([]model.Ts, perFile)
		for i := range batch {
			batch[i] = next
			next++
		}
		if err := ts.Write(ctx, rowsAt(batch...)); err != nil {
			t.Fatal(err)
		}
		if err := ts.Flush(ctx, next-1); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	data, other := listDir(t, dir)
	if len(data) != files || len(other) != 0 {
		t.Fatalf("%d data files and leftovers %v, want %d and none", len(data), other, files)
	}
	t.Logf("the reader checked %d files while they were being written", seen)
}

func TestFailedFlushKeepsRowsAndLeavesNoTemp(t *testing.T) {
	ctx := context.Background()
	dir, ts := openTable(t)
	rows := rowsAt(5, 6)
	if err := ts.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := ts.Flush(cancelled, 10); err == nil {
		t.Fatal("Flush with a cancelled context succeeded")
	}
	// Take the directory away: the write fails whatever the permissions.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, 10); err == nil || !strings.Contains(err.Error(), "flush file sink table shop.orders") {
		t.Fatalf("Flush into a missing directory: %v", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, 10); err != nil {
		t.Fatal(err)
	}
	data, other := listDir(t, dir)
	if len(data) != 1 || len(other) != 0 {
		t.Fatalf("data %v, other %v", data, other)
	}
	jsonEqual(t, readRows(t, filepath.Join(dir, data[0])), rows)
}

func TestWriteRejectsDisorder(t *testing.T) {
	ctx := context.Background()
	_, ts := openTable(t)
	if err := ts.Write(ctx, rowsAt(5, 4)); err == nil || !strings.Contains(err.Error(), "commit-ts order") {
		t.Fatalf("Write of 5 then 4: %v", err)
	}
	if err := ts.Write(ctx, rowsAt(5)); err != nil {
		t.Fatal(err)
	}
	if err := ts.Write(ctx, rowsAt(3)); err == nil {
		t.Fatal("Write below an earlier Write succeeded")
	}
}

func TestBadURIs(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "plain")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ uri, want string }{
		{"file://relative/dir", "absolute path"},
		{"file:relative", "absolute path"},
		{"file://", "absolute path"},
		{"http:///tmp/x", `scheme must be "file"`},
		{"file://" + dir + "?fsync=0", `unknown parameter "fsync"`},
		{"file://" + dir + "#x", "only file:///abs/dir"},
		{"file://" + notDir + "/sub", "create directory"},
		{"file://%zz", "parse"},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			_, err := Open(context.Background(), tc.uri)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%q) = %v, want an error saying %q", tc.uri, err, tc.want)
			}
		})
	}
	s, err := Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenTable(context.Background(), model.TableName{Schema: "a/b", Table: "c"}); err == nil {
		t.Fatal("OpenTable accepted a schema with a slash")
	}
	s.Close()
	if _, err := s.OpenTable(context.Background(), tbl); err == nil {
		t.Fatal("OpenTable on a closed sink succeeded")
	}
}
