// Package file is a sink that writes each flush of each table as one JSON
// lines file, made visible atomically.
//
// Layout: <dir>/<schema>.<table>/<firstTs>-<lastTs>-<random>.jsonl, with the
// commit ts zero-padded to 20 digits so that names sort by position. The
// random part keeps two writers of an overlapping range (the old and the new
// capture around a failover) from replacing each other's files. Files being
// written carry the suffix TempSuffix and are never data.
package file

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// Scheme is the URI scheme of this sink.
const Scheme = "file"

// DataSuffix ends every data file; TempSuffix ends files still being written.
const (
	DataSuffix = ".jsonl"
	TempSuffix = ".tmp"
	tempPrefix = ".flush-"
)

// ParseURI checks "file:///abs/dir" and returns the directory.
func ParseURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("parse file sink URI %q: %w", uri, err)
	}
	if u.Scheme != Scheme {
		return "", fmt.Errorf("file sink URI %q: scheme must be %q", uri, Scheme)
	}
	if u.Opaque != "" || u.Host != "" || !filepath.IsAbs(u.Path) {
		return "", fmt.Errorf("file sink URI %q: the directory must be an absolute path, as in file:///var/lib/raftcdc/out", uri)
	}
	if u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("file sink URI %q: only file:///abs/dir is accepted", uri)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", fmt.Errorf("file sink URI %q: parse query: %w", uri, err)
	}
	for name := range q {
		return "", fmt.Errorf("file sink URI %q: unknown parameter %q (the file sink takes no parameters)", uri, name)
	}
	return filepath.Clean(u.Path), nil
}

// Sink writes under one directory.
type Sink struct {
	dir string

	mu     sync.Mutex
	closed bool
}

var _ sink.LegacySink = (*Sink)(nil)

// Open parses the URI, creates the directory if needed and checks that it is
// writable, so that a bad sink fails at creation instead of at the first flush.
func Open(ctx context.Context, uri string) (*Sink, error) {
	dir, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return New(ctx, dir)
}

// New opens a sink on an absolute directory.
func New(ctx context.Context, dir string) (*Sink, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("open file sink: directory %q is not an absolute path", dir)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open file sink %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open file sink: create directory: %w", err)
	}
	probe, err := os.CreateTemp(dir, tempPrefix+"probe-*"+TempSuffix)
	if err != nil {
		return nil, fmt.Errorf("open file sink: directory %s is not writable: %w", dir, err)
	}
	probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return nil, fmt.Errorf("open file sink: remove probe file: %w", err)
	}
	return &Sink{dir: dir}, nil
}

// Dir is the sink's root directory.
func (s *Sink) Dir() string { return s.dir }

// TableDir is where a table's files go.
func TableDir(root string, table model.TableName) string {
	return filepath.Join(root, table.Schema+"."+table.Table)
}

// OpenTable creates the table's directory.
func (s *Sink) OpenTable(ctx context.Context, table model.TableName) (sink.LegacyTableSink, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errors.New("open table on file sink: sink is closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open table %s on file sink: %w", table, err)
	}
	for _, part := range []string{table.Schema, table.Table} {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, `/\`+"\x00") {
			return nil, fmt.Errorf("open table %s on file sink: name cannot be used as a directory name", table)
		}
	}
	dir := TableDir(s.dir, table)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open table %s on file sink: %w", table, err)
	}
	// The directory entry itself must survive a crash, or the files in it
	// could vanish with it.
	if err := syncDir(s.dir); err != nil {
		return nil, fmt.Errorf("open table %s on file sink: %w", table, err)
	}
	return &tableSink{table: table, dir: dir}, nil
}

// Close stops new tables from being opened.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

type tableSink struct {
	table model.TableName
	dir   string

	mu     sync.Mutex
	closed bool
	rows   []model.LegacyRow
	lastTs model.Ts // highest commit ts accepted, to enforce ordering
}

func (t *tableSink) Write(ctx context.Context, rows []model.LegacyRow) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("write to file sink table %s: closed", t.table)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write to file sink table %s: %w", t.table, err)
	}
	last := t.lastTs
	for i, r := range rows {
		if r.CommitTs < last {
			return fmt.Errorf("write to file sink table %s: row %d has commit ts %d below %d: rows must come in commit-ts order", t.table, i, r.CommitTs, last)
		}
		last = r.CommitTs
	}
	t.rows = append(t.rows, rows...)
	t.lastTs = last
	return nil
}

func (t *tableSink) Flush(ctx context.Context, upto model.Ts) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("flush file sink table %s: closed", t.table)
	}
	n := sort.Search(len(t.rows), func(i int) bool { return t.rows[i].CommitTs > upto })
	if n == 0 {
		return nil
	}
	if err := t.writeFile(ctx, t.rows[:n]); err != nil {
		return fmt.Errorf("flush file sink table %s up to %d: %w", t.table, upto, err)
	}
	clear(t.rows[:n]) // let the column maps go before the array is reused
	t.rows = t.rows[n:]
	if len(t.rows) == 0 {
		t.rows = nil
	}
	return nil
}

// writeFile makes rows visible all at once: a reader sees either no file or
// the whole file, even across a crash.
func (t *tableSink) writeFile(ctx context.Context, rows []model.LegacyRow) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("random file suffix: %w", err)
	}
	name := fmt.Sprintf("%020d-%020d-%s%s", rows[0].CommitTs, rows[len(rows)-1].CommitTs, hex.EncodeToString(rnd[:]), DataSuffix)

	tmp, err := os.CreateTemp(t.dir, tempPrefix+"*"+TempSuffix)
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 256<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range rows {
		if err := enc.Encode(&rows[i]); err != nil {
			return fmt.Errorf("encode row at commit ts %d: %w", rows[i].CommitTs, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	final := filepath.Join(t.dir, name)
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), final, err)
	}
	if err := syncDir(t.dir); err != nil {
		return err
	}
	return nil
}

func (t *tableSink) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.rows = nil
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
