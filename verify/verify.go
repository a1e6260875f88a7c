// Package verify checks a file sink's output against the exact stream datagen
// produces, for tests and chaos runs.
//
// Because every datagen event is a pure function of (seed, table, index) and
// commit ts maps to index in O(1), the verifier never materialises the
// expected rows: it keeps one bit per expected event, marks the events it
// finds, and regenerates a single event to check each row's content.
package verify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/file"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// MaxExamples bounds each list of examples in a Report.
const MaxExamples = 10

// maxExpected bounds the bitmap (256 MiB); a range this large is almost
// certainly a wrong StartTs rather than a real run.
const maxExpected = 1 << 31

// Params says what to check.
type Params struct {
	SourceURI string // a datagen URI; the same one the changefeed used
	SinkDir   string // the file sink's root directory
	// Rows with StartTs < commit ts <= CheckpointTs must all be present.
	StartTs, CheckpointTs model.Ts
	Filter                model.FilterConfig
}

// RowRef names one row.
type RowRef struct {
	Table    model.TableName
	Key      string
	CommitTs model.Ts
}

func (r RowRef) String() string {
	return fmt.Sprintf("%s key %s at %d", r.Table, r.Key, r.CommitTs)
}

// Problem is one finding tied to a place in the sink.
type Problem struct {
	File   string // relative to SinkDir
	Line   int
	Row    RowRef
	Reason string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Row, p.Reason)
}

// Report is the verifier's result. OK() says whether the sink is correct;
// the other fields say how it was judged and what was wrong.
type Report struct {
	Tables int    // tables matching the filter
	Files  int    // data files read
	Rows   uint64 // lines read

	Expected uint64 // events with StartTs < commit ts <= CheckpointTs
	Found    uint64 // distinct expected events present with the right content
	Missing  uint64
	// Duplicates counts every extra copy of an event already seen.
	Duplicates uint64
	// OutOfOrder counts rows that come after a later row of the same key in
	// the same file.
	OutOfOrder uint64
	// Unexpected counts rows datagen would never produce: malformed lines,
	// unknown or filtered-out tables, commit ts with no event, wrong content.
	Unexpected uint64
	// Valid rows outside the checked range; allowed.
	BeforeStart, AfterCheckpoint uint64
	// Decoded counts lines that were not byte for byte datagen's own
	// encoding and needed a full JSON decode: a cost figure, not a fault.
	Decoded uint64

	MissingExamples    []RowRef
	DuplicateExamples  []Problem
	OutOfOrderExamples []Problem
	UnexpectedExamples []Problem
}

// OK is true when nothing is missing and nothing unexpected.
func (r Report) OK() bool { return r.Missing == 0 && r.Unexpected == 0 }

func (r Report) String() string {
	var b strings.Builder
	status := "OK"
	if !r.OK() {
		status = "FAILED"
	}
	fmt.Fprintf(&b, "verify %s: %d tables, %d files, %d rows read; expected %d, found %d, missing %d, duplicates %d, out of order %d, unexpected %d, before start %d, after checkpoint %d",
		status, r.Tables, r.Files, r.Rows, r.Expected, r.Found, r.Missing, r.Duplicates, r.OutOfOrder, r.Unexpected, r.BeforeStart, r.AfterCheckpoint)
	for _, m := range r.MissingExamples {
		fmt.Fprintf(&b, "\n  missing: %s", m)
	}
	for _, p := range r.UnexpectedExamples {
		fmt.Fprintf(&b, "\n  unexpected: %s", p)
	}
	for _, p := range r.OutOfOrderExamples {
		fmt.Fprintf(&b, "\n  out of order: %s", p)
	}
	for _, p := range r.DuplicateExamples {
		fmt.Fprintf(&b, "\n  duplicate: %s", p)
	}
	return b.String()
}

// tableState tracks one matching table.
type tableState struct {
	name   model.TableName
	lo, hi uint64 // event indexes [lo, hi) are expected
	seen   []atomic.Uint64
}

// checker is shared by the file workers.
type checker struct {
	p      Params
	gen    *datagen.Generator
	filter *filter.Filter
	tables map[model.TableID]*tableState

	rows, found, dups, outOfOrder, unexpected, before, after atomic.Uint64
	// slowRows counts lines that needed a full decode; tests watch it to
	// keep the fast path honest.
	slowRows atomic.Uint64

	mu sync.Mutex
	// outside holds the valid rows outside the range, to count their
	// duplicates too; there are few of them.
	outside                   map[model.TableID]map[uint64]struct{}
	dupEx, orderEx, unknownEx []Problem
}

// Run checks the sink. An error means the check could not be made (bad
// parameters, unreadable directory); problems with the data are in the Report.
func Run(ctx context.Context, p Params) (Report, error) {
	cfg, err := datagen.ParseURI(p.SourceURI)
	if err != nil {
		return Report{}, fmt.Errorf("verify: only datagen sources can be verified: %w", err)
	}
	gen, err := datagen.NewGenerator(cfg)
	if err != nil {
		return Report{}, fmt.Errorf("verify: %w", err)
	}
	flt, err := filter.New(p.Filter)
	if err != nil {
		return Report{}, fmt.Errorf("verify: %w", err)
	}
	if p.CheckpointTs < p.StartTs {
		return Report{}, fmt.Errorf("verify: checkpoint ts %d is below start ts %d", p.CheckpointTs, p.StartTs)
	}
	if st, err := os.Stat(p.SinkDir); err != nil {
		return Report{}, fmt.Errorf("verify: sink directory: %w", err)
	} else if !st.IsDir() {
		return Report{}, fmt.Errorf("verify: sink directory %s is not a directory", p.SinkDir)
	}

	c := &checker{p: p, gen: gen, filter: flt, tables: map[model.TableID]*tableState{}, outside: map[model.TableID]map[uint64]struct{}{}}
	report := Report{}
	var ids []model.TableID
	for _, t := range gen.Tables() {
		if !flt.Match(t) {
			continue
		}
		lo, hi := gen.FirstAfter(t.ID, p.StartTs), gen.FirstAfter(t.ID, p.CheckpointTs)
		report.Expected += hi - lo
		if report.Expected > maxExpected {
			return Report{}, fmt.Errorf("verify: more than %d rows expected between ts %d and %d; narrow the range", uint64(maxExpected), p.StartTs, p.CheckpointTs)
		}
		c.tables[t.ID] = &tableState{name: t, lo: lo, hi: hi, seen: make([]atomic.Uint64, (hi-lo+63)/64)}
		ids = append(ids, t.ID)
	}
	report.Tables = len(ids)

	files, err := dataFiles(ctx, p.SinkDir)
	if err != nil {
		return Report{}, err
	}
	report.Files = len(files)
	if err := c.checkFiles(ctx, files); err != nil {
		return Report{}, err
	}

	report.Rows = c.rows.Load()
	report.Found = c.found.Load()
	report.Missing = report.Expected - report.Found
	report.Duplicates = c.dups.Load()
	report.OutOfOrder = c.outOfOrder.Load()
	report.Unexpected = c.unexpected.Load()
	report.BeforeStart = c.before.Load()
	report.AfterCheckpoint = c.after.Load()
	report.Decoded = c.slowRows.Load()
	report.DuplicateExamples = sortProblems(c.dupEx)
	report.OutOfOrderExamples = sortProblems(c.orderEx)
	report.UnexpectedExamples = sortProblems(c.unknownEx)
	if report.Missing > 0 {
		report.MissingExamples = c.missingExamples(ids)
	}
	return report, nil
}

func dataFiles(ctx context.Context, root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// Files still being written are hidden and end in the temp suffix;
		// they are not data until renamed.
		name := d.Name()
		if d.Type().IsRegular() && strings.HasSuffix(name, file.DataSuffix) && !strings.HasPrefix(name, ".") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: list files under %s: %w", root, err)
	}
	sort.Strings(files)
	return files, nil
}

func (c *checker) checkFiles(ctx context.Context, files []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(files), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range work {
				if err := c.checkFile(ctx, path); err != nil {
					select {
					case errs <- err:
					default:
					}
					cancel()
				}
			}
		}()
	}
feed:
	for _, f := range files {
		select {
		case work <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// fileRow keeps columns raw so that numbers are compared exactly, without a
// trip through float64.
type fileRow struct {
	Table    model.TableName            `json:"table"`
	Key      string                     `json:"key"`
	Op       model.Op                   `json:"op"`
	CommitTs model.Ts                   `json:"commit_ts"`
	Columns  map[string]json.RawMessage `json:"columns"`
}

type keyID struct {
	table model.TableID
	key   uint64
}

func (c *checker) checkFile(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	rel, err := filepath.Rel(c.p.SinkDir, path)
	if err != nil {
		rel = path
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	lastByKey := map[keyID]model.Ts{}
	var expect []byte
	line := 0
	for sc.Scan() {
		line++
		if line%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		c.rows.Add(1)
		var (
			id  model.TableID
			k   uint64
			ts  model.Ts
			key uint64
		)
		if qid, qts, ok := quickFields(sc.Bytes()); ok && c.tables[qid] != nil {
			if qk, ok := c.gen.IndexOf(qid, qts); ok {
				// The sink wrote exactly datagen's encoding of the event:
				// nothing left to check.
				expect = c.gen.AppendJSON(expect[:0], qid, qk)
				if bytes.Equal(expect, sc.Bytes()) {
					id, k, ts, key = qid, qk, qts, c.gen.KeyIndex(qid, qk)
				}
			}
		}
		if id == 0 {
			c.slowRows.Add(1)
			var r fileRow
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				c.addUnexpected(Problem{File: rel, Line: line, Reason: "malformed line: " + err.Error()})
				continue
			}
			var reason string
			k, reason = c.check(&r)
			if reason != "" {
				c.addUnexpected(Problem{File: rel, Line: line, Row: RowRef{Table: r.Table, Key: r.Key, CommitTs: r.CommitTs}, Reason: reason})
				continue
			}
			id, ts, key = r.Table.ID, r.CommitTs, c.gen.KeyIndex(r.Table.ID, k)
		}
		ref := func() RowRef {
			t, _ := c.gen.Table(id)
			return RowRef{Table: t, Key: strconv.FormatUint(key, 10), CommitTs: ts}
		}
		kid := keyID{id, key}
		if last, ok := lastByKey[kid]; ok && ts < last {
			c.outOfOrder.Add(1)
			c.addExample(&c.orderEx, Problem{File: rel, Line: line, Row: ref(), Reason: fmt.Sprintf("follows commit ts %d of the same key", last)})
		} else {
			lastByKey[kid] = ts
		}
		if c.mark(id, k) {
			c.dups.Add(1)
			c.addExample(&c.dupEx, Problem{File: rel, Line: line, Row: ref(), Reason: "seen before"})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("verify: read %s: %w", path, err)
	}
	return nil
}

// quickFields pulls the table ID and commit ts out of a line without
// decoding it, to pick the event whose exact encoding the line should be. A
// wrong guess only sends the line to the full decode.
func quickFields(line []byte) (model.TableID, model.Ts, bool) {
	const tablePrefix, tsField = `{"table":{"id":`, `"commit_ts":`
	rest, ok := bytes.CutPrefix(line, []byte(tablePrefix))
	if !ok {
		return 0, 0, false
	}
	id, ok := leadingUint(rest)
	if !ok {
		return 0, 0, false
	}
	i := bytes.Index(rest, []byte(tsField))
	if i < 0 {
		return 0, 0, false
	}
	ts, ok := leadingUint(rest[i+len(tsField):])
	if !ok || id > uint64(datagen.MaxTables) {
		return 0, 0, false
	}
	return model.TableID(id), ts, true
}

func leadingUint(b []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(b) && i < 20 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0')
	}
	return n, i > 0 && i < 20
}

// check returns the event index of a row that datagen produced exactly, or
// why it did not.
func (c *checker) check(r *fileRow) (uint64, string) {
	t, ok := c.gen.Table(r.Table.ID)
	if !ok || t != r.Table {
		return 0, "no such datagen table"
	}
	if _, ok := c.tables[t.ID]; !ok {
		return 0, "table is excluded by the filter"
	}
	k, ok := c.gen.IndexOf(t.ID, r.CommitTs)
	if !ok {
		return 0, "datagen has no event of this table at this commit ts"
	}
	want := c.gen.Event(t.ID, k)
	if r.Key != want.Key {
		return 0, fmt.Sprintf("key %q, want %q", r.Key, want.Key)
	}
	if r.Op != want.Op {
		return 0, fmt.Sprintf("op %q, want %q", r.Op, want.Op)
	}
	if len(r.Columns) != len(want.Columns) {
		return 0, fmt.Sprintf("%d columns, want %d", len(r.Columns), len(want.Columns))
	}
	for name, w := range want.Columns {
		raw, ok := r.Columns[name]
		if !ok {
			return 0, fmt.Sprintf("column %q is missing", name)
		}
		if !sameValue(raw, w) {
			return 0, fmt.Sprintf("column %q is %s, want %v", name, truncate(raw), w)
		}
	}
	return k, ""
}

func sameValue(raw json.RawMessage, want any) bool {
	switch w := want.(type) {
	case int64:
		return string(raw) == strconv.FormatInt(w, 10)
	case uint64:
		return string(raw) == strconv.FormatUint(w, 10)
	case string:
		// Payloads need no escaping, so the fast path nearly always decides.
		if len(raw) == len(w)+2 && raw[0] == '"' && raw[len(raw)-1] == '"' && string(raw[1:len(raw)-1]) == w {
			return true
		}
		if !bytes.ContainsRune(raw, '\\') {
			return false
		}
		var s string
		return json.Unmarshal(raw, &s) == nil && s == w
	default:
		return false
	}
}

func truncate(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "..."
	}
	return string(raw)
}

// mark records event k of a table and reports whether it was already seen.
func (c *checker) mark(id model.TableID, k uint64) bool {
	ts := c.tables[id]
	if k >= ts.lo && k < ts.hi {
		i := k - ts.lo
		bit := uint64(1) << (i % 64)
		if ts.seen[i/64].Or(bit)&bit != 0 {
			return true
		}
		c.found.Add(1)
		return false
	}
	if k < ts.lo {
		c.before.Add(1)
	} else {
		c.after.Add(1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.outside[id]
	if m == nil {
		m = map[uint64]struct{}{}
		c.outside[id] = m
	}
	if _, dup := m[k]; dup {
		return true
	}
	m[k] = struct{}{}
	return false
}

func (c *checker) addUnexpected(p Problem) {
	c.unexpected.Add(1)
	c.addExample(&c.unknownEx, p)
}

func (c *checker) addExample(list *[]Problem, p Problem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(*list) < MaxExamples {
		*list = append(*list, p)
	}
}

func (c *checker) missingExamples(ids []model.TableID) []RowRef {
	var out []RowRef
	for _, id := range ids {
		ts := c.tables[id]
		for i := uint64(0); i < ts.hi-ts.lo; i++ {
			word := ts.seen[i/64].Load()
			if word == ^uint64(0) {
				i += 63 - i%64 // the whole word is present
				continue
			}
			if word&(1<<(i%64)) != 0 {
				continue
			}
			ev := c.gen.Event(id, ts.lo+i)
			out = append(out, RowRef{Table: ev.Table, Key: ev.Key, CommitTs: ev.CommitTs})
			if len(out) == MaxExamples {
				return out
			}
		}
	}
	return out
}

func sortProblems(ps []Problem) []Problem {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
	return ps
}

// ErrNotOK is returned by Check when the report is not OK.
var ErrNotOK = errors.New("sink output does not match datagen")

// Check runs the verifier and turns a failed report into an error, for
// callers that only need a verdict.
func Check(ctx context.Context, p Params) (Report, error) {
	r, err := Run(ctx, p)
	if err != nil {
		return Report{}, err
	}
	if !r.OK() {
		return r, fmt.Errorf("%w: %s", ErrNotOK, r)
	}
	return r, nil
}
