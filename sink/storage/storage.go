// Package storage is the storage sink: it writes a changefeed into TiCDC's
// storage-sink layout (see layout.go) in canal-json or CSV, so that the
// consumers built for TiCDC's output read it. file:// is the local (or
// mounted) file system; the sink writes through Store, whose operations
// (create a whole object once, overwrite a small object, list, read) are
// those of object storage, so that S3-like backends fit without a change
// of design. See DESIGN.md.
package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/codec/csv"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// DirPolicy decides whether the sink may write under a directory: the
// sink-root confinement of the server's --sink-root. A nil policy allows
// every directory.
type DirPolicy interface {
	Check(dir string) error
}

// Option configures a Sink.
type Option func(*Sink)

// WithStore replaces the file system store, for tests that record or
// break writes.
func WithStore(st Store) Option { return func(s *Sink) { s.st = st } }

// WithDirPolicy confines the root directory (the server passes its
// --sink-root policy).
func WithDirPolicy(p DirPolicy) Option { return func(s *Sink) { s.policy = p } }

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Sink) { s.log = l } }

// WithNow sets the clock of canal-json's "ts" field, for reproducible
// output in tests.
func WithNow(now func() time.Time) Option { return func(s *Sink) { s.now = now } }

// Sink writes one changefeed's output under a root directory. One Sink
// serves the table sinks of one processor (and the owner's DDL and
// checkpoint calls); its flusher writes every table's pending data once per
// flush interval, so that many small tables make one file each per
// interval rather than one per table per flush call.
type Sink struct {
	cfg    Config
	st     Store
	policy DirPolicy
	log    zerolog.Logger
	now    func() time.Time
	canal  *canal.Encoder
	csv    *csv.Encoder

	mu        sync.Mutex
	closed    bool
	requests  []*flushRequest
	wake      chan struct{}
	stop      chan struct{}
	flusherWG sync.WaitGroup
	lastCkpt  model.Ts

	dirMu     sync.Mutex
	nextIndex map[string]uint64 // data directory → next file index
	schemas   map[string]bool   // schema file prefixes known to exist
}

var _ sink.Sink = (*Sink)(nil)

// Open parses the URI and opens the sink.
func Open(ctx context.Context, uri string, opts ...Option) (*Sink, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg, opts...)
}

// New opens a sink: it checks the root against the policy, creates it and
// checks that it is writable, so that a bad sink fails at creation instead
// of at the first flush.
func New(ctx context.Context, cfg Config, opts ...Option) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{
		cfg:       cfg,
		log:       zerolog.Nop(),
		now:       time.Now,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		nextIndex: map[string]uint64{},
		schemas:   map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.policy != nil {
		if err := s.policy.Check(cfg.Root); err != nil {
			return nil, fmt.Errorf("open storage sink: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open storage sink %s: %w", cfg.Root, err)
	}
	if s.st == nil {
		if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
			return nil, fmt.Errorf("open storage sink: create directory: %w", err)
		}
		probe, err := os.CreateTemp(cfg.Root, tempPrefix+"probe-*")
		if err != nil {
			return nil, fmt.Errorf("open storage sink: directory %s is not writable: %w", cfg.Root, err)
		}
		probe.Close()
		if err := os.Remove(probe.Name()); err != nil {
			return nil, fmt.Errorf("open storage sink: remove probe file: %w", err)
		}
		s.st = &localStore{root: cfg.Root}
	}
	copts := cfg.Canal
	copts.Now = s.now
	s.canal = canal.NewEncoder(copts)
	enc, err := csv.NewEncoder(cfg.CSV)
	if err != nil {
		return nil, fmt.Errorf("open storage sink: %w", err)
	}
	s.csv = enc
	s.flusherWG.Add(1)
	go s.flusher()
	return s, nil
}

// Config is the sink's configuration.
func (s *Sink) Config() Config { return s.cfg }

// validName checks that a schema or table name can be a path component.
func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\\\x00") && !strings.HasPrefix(n, tempPrefix)
}

// OpenTable returns the table's view of the sink. When the table's schema
// is known, its schema file is written if no file of that version exists.
// ReportsCommits: every file, index and metadata write goes through the
// store, which reports its commit (sink.CommitReporter).
func (s *Sink) ReportsCommits() bool { return true }

func (s *Sink) OpenTable(ctx context.Context, table model.TableName, opts sink.TableOptions) (sink.TableSink, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errors.New("open table on storage sink: sink is closed")
	}
	if !validName(table.Schema) || !validName(table.Table) {
		return nil, fmt.Errorf("open table %s on storage sink: the name cannot be used as a directory name", table)
	}
	t := &tableSink{s: s, table: table, lastTs: opts.StartTs, stores: map[string]Store{}}
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	st, err := t.store(ctx, table.Schema, table.Table)
	if err != nil {
		return nil, fmt.Errorf("open table %s on storage sink: %w", table, err)
	}
	if opts.Schema != nil {
		if err := s.ensureSchemaFile(ctx, st, opts.Schema); err != nil {
			return nil, fmt.Errorf("open table %s on storage sink: %w", table, err)
		}
	}
	return t, nil
}

// ensureSchemaFile writes the schema file of a table version unless one
// exists (written by the DDL that made the version, or by another capture).
func (s *Sink) ensureSchemaFile(ctx context.Context, st Store, sch *model.TableSchema) error {
	prefix := schemaFilePrefix(sch.Table.Schema, sch.Table.Table, sch.Version)
	s.dirMu.Lock()
	known := s.schemas[prefix]
	s.dirMu.Unlock()
	if known {
		return nil
	}
	names, err := st.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("look for the schema file of %s version %d: %w", sch.Table, sch.Version, err)
	}
	if len(names) == 0 {
		def := TableDefinitionOf(sch, "", "")
		if err := st.Create(ctx, def.Path(), def.Marshal()); err != nil && !errors.Is(err, errExists) {
			return fmt.Errorf("write the schema file of %s version %d: %w", sch.Table, sch.Version, err)
		}
	}
	s.dirMu.Lock()
	s.schemas[prefix] = true
	s.dirMu.Unlock()
	return nil
}

// createDataFile writes data as the next data file of dir: the index file
// names the highest file in use, so a writer that starts on a directory
// another one used continues after it, and a name that is taken anyway is
// skipped, never overwritten.
func (s *Sink) createDataFile(ctx context.Context, st Store, dir DataDir, data []byte) (string, error) {
	dp := dir.Path()
	s.dirMu.Lock()
	next, ok := s.nextIndex[dp]
	s.dirMu.Unlock()
	ext := s.cfg.Extension()
	if !ok {
		next = 1
		b, err := st.Get(ctx, dp+"/"+indexFile)
		switch {
		case err == nil:
			if n, ok := parseDataFileName(strings.TrimSpace(string(b)), ext); ok {
				next = n + 1
			}
		case !isNotExist(err):
			return "", fmt.Errorf("read the index of %s: %w", dp, err)
		}
	}
	for tries := 0; ; tries++ {
		name := dataFileName(next, s.cfg.FileIndexWidth, ext)
		err := st.Create(ctx, dp+"/"+name, data)
		if errors.Is(err, errExists) && tries < 10000 {
			next++
			continue
		}
		if err != nil {
			return "", err
		}
		if err := st.Put(ctx, dp+"/"+indexFile, []byte(name+"\n")); err != nil {
			return "", fmt.Errorf("update the index of %s: %w", dp, err)
		}
		s.dirMu.Lock()
		s.nextIndex[dp] = next + 1
		s.dirMu.Unlock()
		s.log.Debug().Str("file", dp+"/"+name).Int("bytes", len(data)).Msg("storage sink wrote a data file")
		return dp + "/" + name, nil
	}
}

// EmitDDL records one DDL: a schema file per table it leaves behind (per
// database for create/drop schema) and, with canal-json, the DDL message as
// the first data file of the new table version. The schema file is written
// last and marks the DDL as applied, so a DDL emitted again after an owner
// change is recognised and skipped.
func (s *Sink) EmitDDL(ctx context.Context, ddl *model.DDLEvent) error {
	if err := ddl.Validate(); err != nil {
		return fmt.Errorf("storage sink: %w", err)
	}
	if len(ddl.Tables) == 0 {
		if !validName(ddl.Schema) {
			return fmt.Errorf("storage sink DDL %s: database %q cannot be used as a directory name", ddl, ddl.Schema)
		}
		def := TableDefinition{Schema: ddl.Schema, Version: schemaFileVersion, TableVersion: ddl.CommitTs, Query: ddl.Query, Type: tidbActionType(ddl.Kind)}
		return s.emitSchemaFile(ctx, ddl, def, nil)
	}
	for i, old := range ddl.Tables {
		var after *model.TableSchema
		if i < len(ddl.After) {
			after = ddl.After[i]
		}
		name := old
		if after != nil {
			name = after.Table
		}
		if !validName(name.Schema) || !validName(name.Table) {
			return fmt.Errorf("storage sink DDL %s: table %s cannot be used as a directory name", ddl, name)
		}
		var def TableDefinition
		if after != nil {
			def = TableDefinitionOf(after, ddl.Query, ddl.Kind)
		} else {
			// A dropped table: describe the columns it had, from its latest
			// schema file.
			def = TableDefinition{Table: name.Table, Schema: name.Schema, Version: schemaFileVersion, Query: ddl.Query, Type: tidbActionType(ddl.Kind)}
			if last, err := s.latestSchemaFile(ctx, name); err != nil {
				return fmt.Errorf("storage sink DDL %s: %w", ddl, err)
			} else if last != nil {
				def.Columns, def.TotalColumns = last.Columns, last.TotalColumns
			}
		}
		def.TableVersion = ddl.CommitTs
		var msg []byte
		if s.cfg.Protocol == ProtocolCanalJSON {
			b, err := s.canal.EncodeDDL(ddl)
			if err != nil {
				return fmt.Errorf("storage sink DDL %s: %w", ddl, err)
			}
			msg = append(b, s.cfg.Terminator()...)
		}
		if err := s.emitSchemaFile(ctx, ddl, def, msg); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sink) emitSchemaFile(ctx context.Context, ddl *model.DDLEvent, def TableDefinition, msg []byte) error {
	prefix := schemaFilePrefix(def.Schema, def.Table, def.TableVersion)
	names, err := s.st.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("storage sink DDL %s: look for its schema file: %w", ddl, err)
	}
	// A schema file of this version with the statement marks the DDL as
	// applied. One without it was written by a table sink that saw the new
	// version first (it knows no statement); the DDL replaces it.
	replace := false
	for _, n := range names {
		b, err := s.st.Get(ctx, n)
		if err != nil {
			return fmt.Errorf("storage sink DDL %s: read %s: %w", ddl, n, err)
		}
		var d TableDefinition
		if json.Unmarshal(b, &d) == nil && d.Query != "" {
			s.log.Info().Str("ddl", ddl.String()).Msg("storage sink: DDL already applied")
			return nil
		}
		replace = true
	}
	if msg != nil {
		dir := DataDir{Schema: def.Schema, Table: def.Table, Version: def.TableVersion, Date: dateOf(ddl.CommitTs, s.cfg.DateSeparator)}
		if _, err := s.createDataFile(ctx, s.st, dir, msg); err != nil {
			return fmt.Errorf("storage sink DDL %s: write its message: %w", ddl, err)
		}
	}
	write := s.st.Create
	if replace {
		write = s.st.Put
	}
	if err := write(ctx, def.Path(), def.Marshal()); err != nil && !errors.Is(err, errExists) {
		return fmt.Errorf("storage sink DDL %s: write its schema file: %w", ddl, err)
	}
	s.dirMu.Lock()
	s.schemas[prefix] = true
	s.dirMu.Unlock()
	return nil
}

// latestSchemaFile reads the newest schema file of a table, or nil.
func (s *Sink) latestSchemaFile(ctx context.Context, t model.TableName) (*TableDefinition, error) {
	names, err := s.st.List(ctx, t.Schema+"/"+t.Table+"/meta/schema_")
	if err != nil {
		return nil, err
	}
	var best *TableDefinition
	for _, n := range names {
		b, err := s.st.Get(ctx, n)
		if err != nil {
			return nil, err
		}
		var d TableDefinition
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("schema file %s: %w", n, err)
		}
		if best == nil || d.TableVersion > best.TableVersion {
			best = &d
		}
	}
	return best, nil
}

// EmitCheckpoint writes the metadata file. A lower ts than this sink last
// wrote is ignored, so the file never goes backwards because of a late
// call.
func (s *Sink) EmitCheckpoint(ctx context.Context, ts model.Ts) error {
	s.mu.Lock()
	if ts <= s.lastCkpt {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	b, _ := json.Marshal(Metadata{CheckpointTs: ts})
	if err := s.st.Put(ctx, MetadataFile, b); err != nil {
		return fmt.Errorf("storage sink: write checkpoint %d: %w", ts, err)
	}
	s.mu.Lock()
	s.lastCkpt = max(s.lastCkpt, ts)
	s.mu.Unlock()
	return nil
}

// Close stops the flusher; pending Flush calls fail.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.flusherWG.Wait()
	return nil
}

// ---- table sinks ----

// encTxn is one transaction, encoded, waiting to be written.
type encTxn struct {
	ts     model.Ts
	dir    DataDir
	schema *model.TableSchema
	data   []byte
}

type tableSink struct {
	s     *Sink
	table model.TableName

	// writeMu serialises writing the table's files (flush rounds and
	// size-triggered writes), so files appear in commit order.
	writeMu sync.Mutex
	// stores holds, per table directory this writer wrote ("schema/table":
	// a rename moves the table to another), the store as this writer sees
	// it. Under writeMu.
	stores map[string]Store

	mu      sync.Mutex
	closed  bool
	pending []encTxn
	bytes   int
	lastTs  model.Ts
}

func (t *tableSink) Write(ctx context.Context, txns []*model.Txn) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write to storage sink table %s: %w", t.table, err)
	}
	s := t.s
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("write to storage sink table %s: closed", t.table)
	}
	last := t.lastTs
	t.mu.Unlock()
	enc := make([]encTxn, 0, len(txns))
	for _, txn := range txns {
		if txn.CommitTs < last {
			return fmt.Errorf("write to storage sink table %s: transaction at %d after one at %d: transactions must come in commit-ts order", t.table, txn.CommitTs, last)
		}
		last = txn.CommitTs
		if len(txn.Rows) == 0 {
			continue
		}
		sch := txn.Rows[0].Schema
		if sch == nil || sch.Table.ID != t.table.ID {
			return fmt.Errorf("write to storage sink table %s: transaction at %d holds a row of another table", t.table, txn.CommitTs)
		}
		var data []byte
		var err error
		for _, r := range txn.Rows {
			if r.Schema != sch && (r.Schema == nil || r.Schema.Version != sch.Version || r.Schema.Table != sch.Table) {
				return fmt.Errorf("write to storage sink table %s: transaction at %d mixes schema versions", t.table, txn.CommitTs)
			}
			if s.cfg.Protocol == ProtocolCSV {
				data, err = s.csv.AppendRow(data, r)
			} else {
				data, err = s.canal.AppendRow(data, r)
				data = append(data, s.cfg.Terminator()...)
			}
			if err != nil {
				return fmt.Errorf("write to storage sink table %s: %w", t.table, err)
			}
		}
		enc = append(enc, encTxn{
			ts:     txn.CommitTs,
			dir:    DataDir{Schema: sch.Table.Schema, Table: sch.Table.Table, Version: sch.Version, Date: dateOf(txn.CommitTs, s.cfg.DateSeparator)},
			schema: sch,
			data:   data,
		})
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("write to storage sink table %s: closed", t.table)
	}
	t.pending = append(t.pending, enc...)
	for _, e := range enc {
		t.bytes += len(e.data)
	}
	t.lastTs = last
	full := t.bytes >= s.cfg.FileSize
	t.mu.Unlock()
	if full {
		// A file's worth is waiting: write the full files now rather than
		// hold file-size bytes per table until the next round.
		if err := t.writeUpTo(ctx, ^model.Ts(0), true); err != nil {
			return fmt.Errorf("write to storage sink table %s: %w", t.table, err)
		}
	}
	return nil
}

// Flush returns once every transaction written with commit ts <= upto is
// in a data file. The writing happens in the sink's next flush round (at
// most one per flush interval for all tables), unless there is nothing to
// write.
func (t *tableSink) Flush(ctx context.Context, upto model.Ts) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("flush storage sink table %s: closed", t.table)
	}
	waiting := len(t.pending) > 0 && t.pending[0].ts <= upto
	t.mu.Unlock()
	if !waiting {
		return nil
	}
	req := &flushRequest{t: t, upto: upto, ctx: ctx, done: make(chan error, 1)}
	s := t.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("flush storage sink table %s: sink is closed", t.table)
	}
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("flush storage sink table %s up to %d: %w", t.table, upto, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush storage sink table %s up to %d: %w", t.table, upto, ctx.Err())
	}
}

// Close drops unflushed transactions.
func (t *tableSink) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.pending = nil
	t.bytes = 0
	return nil
}

// store returns the store through which this writer writes the table
// directory schema/table. The first time, it fences the directory: a
// previous writer of the table (on another capture, paused between its
// lease check and a write) can no longer make a write visible there. The
// owner gives a table to a new capture only after the old one stopped or
// lost its lease, so no writer that may still write is fenced. Call with
// writeMu held.
func (t *tableSink) store(ctx context.Context, schema, table string) (Store, error) {
	dir := schema + "/" + table
	if st, ok := t.stores[dir]; ok {
		return st, nil
	}
	if err := t.s.st.Fence(ctx, dir); err != nil {
		return nil, err
	}
	st := t.s.st.Fenced(dir)
	t.stores[dir] = st
	return st, nil
}

// filePlan is one data file to write: a run of whole transactions of one
// directory.
type filePlan struct {
	dir    DataDir
	schema *model.TableSchema
	from   int // pending index of the first transaction
	to     int // one past the last
	size   int
}

// writeUpTo writes the table's pending transactions with commit ts <= upto
// as files: a new file per directory (version, date), and per file-size
// bytes, never splitting a transaction. With onlyFull it writes only files
// that reached file-size and leaves the rest pending.
func (t *tableSink) writeUpTo(ctx context.Context, upto model.Ts, onlyFull bool) error {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errors.New("table sink closed")
	}
	n := 0
	for n < len(t.pending) && t.pending[n].ts <= upto {
		n++
	}
	batch := t.pending[:n:n]
	t.mu.Unlock()

	limit := t.s.cfg.FileSize
	var plans []filePlan
	for i, e := range batch {
		if len(plans) > 0 {
			p := &plans[len(plans)-1]
			if p.dir == e.dir && p.size+len(e.data) <= limit {
				p.to, p.size = i+1, p.size+len(e.data)
				continue
			}
		}
		plans = append(plans, filePlan{dir: e.dir, schema: e.schema, from: i, to: i + 1, size: len(e.data)})
	}
	if onlyFull && len(plans) > 0 && plans[len(plans)-1].size < limit {
		// Every file but the last is complete: the next transaction did not
		// fit, or went to a later directory. The last may still grow.
		plans = plans[:len(plans)-1]
	}
	for _, p := range plans {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := t.store(ctx, p.dir.Schema, p.dir.Table)
		if err != nil {
			return err
		}
		if err := t.s.ensureSchemaFile(ctx, st, p.schema); err != nil {
			return err
		}
		data := make([]byte, 0, p.size)
		for _, e := range batch[p.from:p.to] {
			data = append(data, e.data...)
		}
		if _, err := t.s.createDataFile(ctx, st, p.dir, data); err != nil {
			return err
		}
		// Drop what is durable at once, so that an error in a later file
		// does not write it again.
		t.mu.Lock()
		if !t.closed {
			for _, e := range t.pending[:p.to-p.from] {
				t.bytes -= len(e.data)
			}
			clear(t.pending[:p.to-p.from])
			t.pending = t.pending[p.to-p.from:]
		}
		t.mu.Unlock()
	}
	return nil
}

// ---- the flusher ----

type flushRequest struct {
	t    *tableSink
	upto model.Ts
	ctx  context.Context
	done chan error
}

// flusher runs flush rounds: at most one per flush interval, each writing
// the pending data of every table that asked, in parallel over
// worker-count workers.
func (s *Sink) flusher() {
	defer s.flusherWG.Done()
	var lastRound time.Time
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			s.failRequests(errors.New("storage sink is closed"))
			return
		}
		if wait := time.Until(lastRound.Add(s.cfg.FlushInterval)); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-s.stop:
				timer.Stop()
				s.failRequests(errors.New("storage sink is closed"))
				return
			}
		}
		lastRound = time.Now()
		s.mu.Lock()
		reqs := s.requests
		s.requests = nil
		s.mu.Unlock()
		if len(reqs) > 0 {
			s.round(reqs)
		}
	}
}

func (s *Sink) failRequests(err error) {
	s.mu.Lock()
	reqs := s.requests
	s.requests = nil
	s.mu.Unlock()
	for _, r := range reqs {
		r.done <- err
	}
}

// round writes every requested table up to its highest requested ts.
func (s *Sink) round(reqs []*flushRequest) {
	byTable := map[*tableSink][]*flushRequest{}
	var order []*tableSink
	for _, r := range reqs {
		if byTable[r.t] == nil {
			order = append(order, r.t)
		}
		byTable[r.t] = append(byTable[r.t], r)
	}
	work := make(chan *tableSink)
	var wg sync.WaitGroup
	for range min(s.cfg.WorkerCount, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				rs := byTable[t]
				var upto model.Ts
				var ctx context.Context
				for _, r := range rs {
					// A caller that gave up (fenced, stopped) has its
					// request skipped: nothing is written on its behalf
					// after it stopped waiting.
					if r.ctx.Err() == nil && r.upto >= upto {
						upto, ctx = r.upto, r.ctx
					}
				}
				var err error
				if ctx != nil {
					err = t.writeUpTo(ctx, upto, false)
				}
				for _, r := range rs {
					if err == nil && r.ctx.Err() != nil {
						r.done <- r.ctx.Err()
						continue
					}
					r.done <- err
				}
			}
		}()
	}
	for _, t := range order {
		work <- t
	}
	close(work)
	wg.Wait()
}

// String describes the sink for logs.
func (s *Sink) String() string {
	return "storage sink " + s.cfg.Root + " (" + s.cfg.Protocol + ", flush every " + s.cfg.FlushInterval.String() + ", files up to " + strconv.Itoa(s.cfg.FileSize) + " bytes)"
}
