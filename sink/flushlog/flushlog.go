// Package flushlog is a test instrument: it wraps a sink and records every
// table flush — which table, which writer (capture and incarnation) through
// which table sink, when it began and when its data became visible — as
// JSON lines, one file per process, and checks a directory of such files
// for two table sinks of one table whose stays intersect: two writers
// flushing a table at the same time, or one flushing it again after
// another had taken it over. The chaos run and the failover tests use it to
// show that no table is ever written by two captures at once.
package flushlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// Suffix ends the name of every log file.
const Suffix = ".flushes.jsonl"

// Record is one flush.
type Record struct {
	Changefeed  string `json:"changefeed"`
	Table       string `json:"table"`
	Capture     string `json:"capture"`
	Incarnation uint64 `json:"incarnation"`
	// Sink names the table sink (one per OpenTable): one table pipeline's
	// stay on a capture.
	Sink string `json:"sink"`
	// Start is when the flush was called; End is when its data became
	// visible (the latest instant the sink's commit hook reported, which
	// for files is the file system's own time of the link or rename, not
	// when the process got round to reporting it), or when the call returned for a
	// sink that does not report its commit. Unix nanoseconds, wall clock:
	// the files of every process on one machine compare.
	Start int64    `json:"start_ns"`
	End   int64    `json:"end_ns"`
	Upto  model.Ts `json:"upto"`
	// Committed says the sink reported that data became visible; Err is the
	// flush's error. A flush that failed without committing wrote nothing
	// and is no writer.
	Committed bool   `json:"committed,omitempty"`
	Err       string `json:"err,omitempty"`
	// Fenced says the error was the downstream's writer fence
	// (sink.ErrFenced): a write the lease check let through, that the
	// fence stopped.
	Fenced bool `json:"fenced,omitempty"`
	// Reports says the sink reports every commit (sink.CommitReporter):
	// then a flush without a commit wrote nothing even if it succeeded —
	// a storage sink's Flush with nothing pending returns nil at once, or
	// when a frozen process wakes, and is no writer.
	Reports bool `json:"reports_commits,omitempty"`
}

// wrote reports whether the flush may have made data visible.
func (r Record) wrote() bool { return r.Committed || (!r.Reports && r.Err == "") }

func (r Record) writer() string { return fmt.Sprintf("%s/%d", r.Capture, r.Incarnation) }

// Log is one process's log file.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// Open creates a new log file in dir (which must exist) named after node.
func Open(dir, node string) (*Log, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	path := filepath.Join(dir, fmt.Sprintf("%s-%d-%s%s", node, os.Getpid(), hex.EncodeToString(rnd[:]), Suffix))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the flush log: %w", err)
	}
	return &Log{f: f, path: path}, nil
}

// Path is the log's file.
func (l *Log) Path() string { return l.path }

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

func (l *Log) write(r Record) {
	b, _ := json.Marshal(r)
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	// One write per record: lines of concurrent flushes never interleave.
	_, _ = l.f.Write(b)
}

// Wrap returns s recording the flushes of every table sink it opens.
func (l *Log) Wrap(changefeed string, s sink.Sink) sink.Sink {
	return &recSink{Sink: s, log: l, changefeed: changefeed}
}

type recSink struct {
	sink.Sink
	log        *Log
	changefeed string
}

func (s *recSink) OpenTable(ctx context.Context, table model.TableName, opts sink.TableOptions) (sink.TableSink, error) {
	ts, err := s.Sink.OpenTable(ctx, table, opts)
	if err != nil {
		return nil, err
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &recTable{TableSink: ts, s: s, name: table.String(), id: hex.EncodeToString(id[:])}, nil
}

type recTable struct {
	sink.TableSink
	s    *recSink
	name string
	id   string
}

func (t *recTable) Flush(ctx context.Context, upto model.Ts) error {
	w, _ := sink.WriterFrom(ctx)
	cf := t.s.changefeed
	if cf == "" {
		cf = w.Changefeed
	}
	r := Record{Changefeed: cf, Table: t.name, Capture: w.Capture, Incarnation: w.Incarnation, Sink: t.id, Upto: upto}
	if cr, ok := t.s.Sink.(sink.CommitReporter); ok && cr.ReportsCommits() {
		r.Reports = true
	}
	var mu sync.Mutex
	var committedAt time.Time
	ctx = sink.WithCommitHook(ctx, func(at time.Time) {
		mu.Lock()
		if at.After(committedAt) {
			committedAt = at
		}
		mu.Unlock()
	})
	r.Start = time.Now().UnixNano()
	err := t.TableSink.Flush(ctx, upto)
	end := time.Now()
	mu.Lock()
	if !committedAt.IsZero() {
		r.Committed, end = true, committedAt
	}
	mu.Unlock()
	r.End = end.UnixNano()
	if err != nil {
		r.Err, r.Fenced = err.Error(), errors.Is(err, sink.ErrFenced)
	}
	t.s.log.write(r)
	return err
}

// Overlap is two table sinks of one table whose stays intersect: each
// stay runs from its first flush's start to its last flush's commit, so a
// writer that flushes after another began to write the table — at the same
// time, or later, as a capture would that missed its replacement — is one.
type Overlap struct {
	// A is the last flush of the stay that began first; B the first flush
	// of the one that began while A's lasted.
	A, B Record
}

func (o Overlap) String() string {
	return fmt.Sprintf("%s %s: %s (sink %s) flushed until %s, after %s (sink %s) began flushing at %s", o.A.Changefeed, o.A.Table,
		o.A.writer(), o.A.Sink, stamp(o.A.End), o.B.writer(), o.B.Sink, stamp(o.B.Start))
}

func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format("15:04:05.000000") }

// Report is what Check found.
type Report struct {
	Files, Flushes, Tables, Writers int
	// Fenced counts flushes the downstream's writer fence refused
	// (Record.Fenced).
	Fenced   int
	Overlaps []Overlap
}

func (r Report) String() string {
	s := fmt.Sprintf("%d flushes of %d tables by %d writers (%d log files), %d overlaps", r.Flushes, r.Tables, r.Writers, r.Files, len(r.Overlaps))
	if r.Fenced > 0 {
		s += fmt.Sprintf(", %d flushes refused by a writer fence", r.Fenced)
	}
	for i, o := range r.Overlaps {
		if i == 10 {
			s += fmt.Sprintf("\n  ... and %d more", len(r.Overlaps)-10)
			break
		}
		s += "\n  " + o.String()
	}
	return s
}

// stay is one table sink's flushes of one table.
type stay struct {
	first, last Record // earliest start, latest end
}

// Check reads every log in dir and reports, per table, each pair of table
// sinks whose stays intersect. A flush that failed without committing
// wrote nothing and is skipped.
func Check(dir string) (Report, error) {
	var rep Report
	files, err := filepath.Glob(filepath.Join(dir, "*"+Suffix))
	if err != nil {
		return rep, err
	}
	rep.Files = len(files)
	byTable := map[string]map[string]*stay{}
	writers := map[string]bool{}
	for _, path := range files {
		if err := readLog(path, func(r Record) {
			if r.Fenced {
				rep.Fenced++
			}
			if !r.wrote() {
				return
			}
			rep.Flushes++
			writers[r.writer()] = true
			k := r.Changefeed + "\x00" + r.Table
			if byTable[k] == nil {
				byTable[k] = map[string]*stay{}
			}
			sk := r.writer() + "/" + r.Sink
			st := byTable[k][sk]
			if st == nil {
				byTable[k][sk] = &stay{first: r, last: r}
				return
			}
			if r.Start < st.first.Start {
				st.first = r
			}
			if r.End > st.last.End {
				st.last = r
			}
		}); err != nil {
			return rep, err
		}
	}
	rep.Tables, rep.Writers = len(byTable), len(writers)
	keys := make([]string, 0, len(byTable))
	for k := range byTable {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		stays := make([]*stay, 0, len(byTable[k]))
		for _, st := range byTable[k] {
			stays = append(stays, st)
		}
		sort.Slice(stays, func(i, j int) bool { return stays[i].first.Start < stays[j].first.Start })
		for i, a := range stays {
			for _, b := range stays[i+1:] {
				if b.first.Start < a.last.End {
					rep.Overlaps = append(rep.Overlaps, Overlap{A: a.last, B: b.first})
				}
			}
		}
	}
	return rep, nil
}

func readLog(path string, fn func(Record)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			if i == len(lines)-1 {
				return nil // a process killed mid-write leaves at most a torn last line
			}
			return fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		fn(r)
	}
	return nil
}
