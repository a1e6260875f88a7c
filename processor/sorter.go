package processor

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/raftcdc/raftcdc/model"
)

// sorter holds one table's transactions between the source and the sink and
// hands them out in commit order. What does not fit in memory goes to disk:
// spill writes the in-memory part as a sorted run file, and release merges
// the runs with what is in memory. That is what bounds a processor's memory
// when one transaction is bigger than the quota (see DESIGN.md, "Memory").
//
// Fragments: a large transaction may come from the source as several Txn
// values with the same key, and leaves the sorter the same way (runs store
// at most spillFragmentRows rows per record). Fragments of one key keep
// their order: the in-memory sort is stable and the merge takes equal keys
// from earlier runs first, then from memory.
type sorter struct {
	dir string // where run files go; created on the first spill
	mem []pendingTxn
	// memBytes is the quota held by mem.
	memBytes int64
	runs     []*run
	tail     *runWriter
	seq      int
	// schemas maps the schema versions spilled rows point at back to the
	// schema objects, which are never written to disk.
	schemas map[schemaKey]*model.TableSchema
}

type schemaKey struct {
	table   model.TableID
	version uint64
}

// spillFragmentRows caps the rows of one spilled record, so that reading a
// run back never needs more than one such fragment per run in memory.
const spillFragmentRows = 128

// releaseChunkRows caps the rows handed to the sink in one Write.
const releaseChunkRows = 4096

func newSorter(dir string) *sorter {
	return &sorter{dir: dir, schemas: map[schemaKey]*model.TableSchema{}}
}

func (s *sorter) add(p pendingTxn) {
	s.mem = append(s.mem, p)
	s.memBytes += p.bytes
}

func (s *sorter) empty() bool { return len(s.mem) == 0 && len(s.runs) == 0 && s.tail == nil }

// spilledRows is how many rows wait on disk.
func (s *sorter) spilledRows() int64 {
	var n int64
	for _, r := range s.runs {
		n += r.rows
	}
	if s.tail != nil {
		n += s.tail.rows
	}
	return n
}

func keyCmp(a, b *model.Txn) int {
	if c := cmp.Compare(a.CommitTs, b.CommitTs); c != 0 {
		return c
	}
	return cmp.Compare(a.StartTs, b.StartTs)
}

func (s *sorter) sortMem() {
	slices.SortStableFunc(s.mem, func(a, b pendingTxn) int { return keyCmp(a.txn, b.txn) })
}

// spill writes everything in memory to disk and reports the quota bytes
// that freed. What comes in commit order after the last spill (the normal
// case: sources deliver a table mostly in order, and a large transaction
// entirely so) is appended to the same run, so one huge transaction makes
// one file, not one per batch.
func (s *sorter) spill() (freed int64, err error) {
	if len(s.mem) == 0 {
		return 0, nil
	}
	s.sortMem()
	if s.tail != nil && s.tail.last != nil && keyCmp(s.mem[0].txn, s.tail.last) < 0 {
		if err := s.sealTail(); err != nil {
			return 0, err
		}
	}
	if s.tail == nil {
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return 0, fmt.Errorf("creating the spill directory: %w", err)
		}
		s.seq++
		path := filepath.Join(s.dir, fmt.Sprintf("run-%06d", s.seq))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return 0, fmt.Errorf("creating spill run: %w", err)
		}
		w := bufio.NewWriterSize(f, 256<<10)
		s.tail = &runWriter{path: path, f: f, w: w}
	}
	t := s.tail
	for _, p := range s.mem {
		for start := 0; start < len(p.txn.Rows) || start == 0; start += spillFragmentRows {
			end := min(start+spillFragmentRows, len(p.txn.Rows))
			rec := spillRecord{StartTs: p.txn.StartTs, CommitTs: p.txn.CommitTs, Rows: make([]spillRow, 0, end-start)}
			for _, r := range p.txn.Rows[start:end] {
				k := schemaKey{r.Schema.Table.ID, r.Schema.Version}
				s.schemas[k] = r.Schema
				rec.Rows = append(rec.Rows, spillRow{Table: k.table, Version: k.version, StartTs: r.StartTs, Op: r.Op, Snapshot: r.Snapshot, Before: r.Before, After: r.After})
			}
			t.buf = appendSpillRecord(t.buf[:0], &rec)
			if _, err := t.w.Write(t.buf); err != nil {
				s.dropTail()
				return 0, fmt.Errorf("writing spill run %s: %w", t.path, err)
			}
			t.rows += int64(end - start)
			if end >= len(p.txn.Rows) {
				break
			}
		}
		t.last = &model.Txn{StartTs: p.txn.StartTs, CommitTs: p.txn.CommitTs}
		if t.first == nil {
			t.first = t.last
		}
	}
	freed = s.memBytes
	clear(s.mem)
	s.mem = s.mem[:0]
	s.memBytes = 0
	return freed, nil
}

// runWriter is the run being appended to.
type runWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	buf  []byte // the frame being written, reused
	rows int64
	// first and last are the keys of the first and last transactions
	// written: the run is sorted, so first is its smallest commit ts.
	first, last *model.Txn
}

// sealTail finishes the run being written so it can be read.
func (s *sorter) sealTail() error {
	t := s.tail
	if t == nil {
		return nil
	}
	s.tail = nil
	if err := t.w.Flush(); err != nil {
		t.f.Close()
		os.Remove(t.path)
		return fmt.Errorf("writing spill run %s: %w", t.path, err)
	}
	if err := t.f.Close(); err != nil {
		os.Remove(t.path)
		return fmt.Errorf("closing spill run %s: %w", t.path, err)
	}
	r, err := openRun(t.path, t.rows)
	if err != nil {
		return err
	}
	s.runs = append(s.runs, r)
	return nil
}

func (s *sorter) dropTail() {
	if t := s.tail; t != nil {
		t.f.Close()
		os.Remove(t.path)
		s.tail = nil
	}
}

// release hands every transaction with CommitTs <= upto to emit, in commit
// order, at most releaseChunkRows rows per call (a larger transaction goes
// as consecutive fragments with the same key). It returns the rows handed
// out and the quota bytes of the in-memory transactions it consumed.
func (s *sorter) release(upto model.Ts, emit func([]*model.Txn) error) (rows uint64, freed int64, err error) {
	if s.tail != nil && s.tail.first != nil && s.tail.first.CommitTs <= upto {
		// Something on the tail is due: make it readable.
		if err := s.sealTail(); err != nil {
			return 0, 0, err
		}
	}
	s.sortMem()
	var (
		batch  []*model.Txn
		nrows  int
		memIdx int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := emit(batch)
		batch, nrows = nil, 0
		return err
	}
	push := func(t *model.Txn) error {
		if nrows > 0 && nrows+len(t.Rows) > releaseChunkRows {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, t)
		nrows += len(t.Rows)
		rows += uint64(len(t.Rows))
		if nrows >= releaseChunkRows {
			return flush()
		}
		return nil
	}
	for {
		// The next transaction in order: the smallest head over the runs
		// (earlier runs first on equal keys), then memory.
		best := -1
		var head *model.Txn
		for i, r := range s.runs {
			h, err := r.peek(s.schemas)
			if err != nil {
				return rows, freed, err
			}
			if h == nil || h.CommitTs > upto {
				continue
			}
			if head == nil || keyCmp(h, head) < 0 {
				best, head = i, h
			}
		}
		var memHead *model.Txn
		if memIdx < len(s.mem) && s.mem[memIdx].txn.CommitTs <= upto {
			memHead = s.mem[memIdx].txn
		}
		switch {
		case head != nil && (memHead == nil || keyCmp(head, memHead) <= 0):
			s.runs[best].next = nil // consumed
			if err := push(head); err != nil {
				return rows, freed, err
			}
		case memHead != nil:
			if err := s.pushMem(memHead, push); err != nil {
				return rows, freed, err
			}
			freed += s.mem[memIdx].bytes
			s.mem[memIdx] = pendingTxn{}
			memIdx++
		default:
			if err := flush(); err != nil {
				return rows, freed, err
			}
			s.mem = append(s.mem[:0], s.mem[memIdx:]...)
			s.memBytes -= freed
			s.dropDoneRuns()
			return rows, freed, nil
		}
	}
}

// pushMem hands out an in-memory transaction, in fragments if it is large.
func (s *sorter) pushMem(t *model.Txn, push func(*model.Txn) error) error {
	if len(t.Rows) <= releaseChunkRows {
		return push(t)
	}
	for start := 0; start < len(t.Rows); start += releaseChunkRows {
		end := min(start+releaseChunkRows, len(t.Rows))
		if err := push(&model.Txn{StartTs: t.StartTs, CommitTs: t.CommitTs, Rows: t.Rows[start:end]}); err != nil {
			return err
		}
	}
	return nil
}

func (s *sorter) dropDoneRuns() {
	keep := s.runs[:0]
	for _, r := range s.runs {
		if r.done() {
			r.remove()
			continue
		}
		keep = append(keep, r)
	}
	clear(s.runs[len(keep):])
	s.runs = keep
}

// close deletes the run files.
func (s *sorter) close() {
	s.dropTail()
	for _, r := range s.runs {
		r.remove()
	}
	s.runs = nil
	s.mem = nil
	s.memBytes = 0
}

type spillRow struct {
	Table    model.TableID
	Version  uint64
	StartTs  model.Ts
	Op       model.Op
	Snapshot bool
	Before   []model.Value
	After    []model.Value
}

type spillRecord struct {
	StartTs, CommitTs model.Ts
	Rows              []spillRow
}

// run is one sorted spill file, read front to back.
type run struct {
	path string
	rows int64
	f    *os.File
	dec  spillReader
	next *model.Txn // the decoded head, nil when not read yet
	eof  bool
}

func openRun(path string, rows int64) (*run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening spill run: %w", err)
	}
	return &run{path: path, rows: rows, f: f, dec: spillReader{bufio.NewReaderSize(f, 256<<10)}}, nil
}

func (r *run) peek(schemas map[schemaKey]*model.TableSchema) (*model.Txn, error) {
	if r.next != nil || r.eof {
		return r.next, nil
	}
	var rec spillRecord
	if err := r.dec.next(&rec); err != nil {
		if errors.Is(err, io.EOF) {
			r.eof = true
			return nil, nil
		}
		return nil, fmt.Errorf("reading spill run %s: %w", r.path, err)
	}
	t := &model.Txn{StartTs: rec.StartTs, CommitTs: rec.CommitTs, Rows: make([]*model.RowChange, len(rec.Rows))}
	for i, sr := range rec.Rows {
		sc := schemas[schemaKey{sr.Table, sr.Version}]
		if sc == nil {
			return nil, fmt.Errorf("reading spill run %s: no schema for table %d version %d", r.path, sr.Table, sr.Version)
		}
		t.Rows[i] = &model.RowChange{Schema: sc, StartTs: sr.StartTs, CommitTs: rec.CommitTs, Op: sr.Op, Snapshot: sr.Snapshot, Before: sr.Before, After: sr.After}
	}
	r.rows -= int64(len(rec.Rows))
	r.next = t
	return t, nil
}

func (r *run) done() bool { return r.eof && r.next == nil }

func (r *run) remove() {
	r.f.Close()
	os.Remove(r.path)
}
