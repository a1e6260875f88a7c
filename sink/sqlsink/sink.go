// Package sqlsink is the engine the SQL sinks (sink/mysql, sink/postgres)
// share: table sinks that buffer transactions until a flush, a worker pool
// with conflict detection (sink/causality), batching into multi-row
// statements, safe mode in the replay window, retries of transient errors
// with backoff, and metrics. A dialect package supplies a Backend: how to
// connect, how to render and execute statements, how to classify errors,
// and how to create tables and run DDL.
//
// See DESIGN.md for the reasoning.
package sqlsink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/causality"
)

// Backend is one downstream dialect, as the engine needs it.
type Backend interface {
	// Connect opens the connection one worker uses for its transactions.
	Connect(ctx context.Context) (Conn, error)
	// Classify reports whether err is transient (worth retrying: the
	// connection or the server's state, not the data) and a short class
	// for metrics and logs: connection, deadlock, lock_wait,
	// too_many_connections, timeout, or permanent.
	Classify(err error) (transient bool, class string)
	// PrepareTable makes the downstream ready for a table's rows. With
	// create set and a schema, it creates the database/schema and the table
	// when missing; otherwise it checks that the table exists.
	PrepareTable(ctx context.Context, name model.TableName, schema *model.TableSchema, create bool) error
	// ExecDDL executes one DDL once; "already applied" errors of a replay
	// are success. It reports whether the DDL was applied now (false: it
	// had been before).
	ExecDDL(ctx context.Context, ddl *model.DDLEvent) (applied bool, err error)
	Close() error
}

// Conn is one worker's downstream connection.
type Conn interface {
	// Apply executes the statements in one downstream transaction: all of
	// them or, on error, none — unless the error struck the commit itself,
	// when the outcome is unknown (the engine then retries idempotently).
	// An error caused by one statement is a *StmtError.
	Apply(ctx context.Context, stmts []Stmt) error
	// Begin, Exec and Commit apply one transaction in parts, for a
	// transaction too large to hold in memory: Begin opens it, each Exec
	// adds statements (one at a time, so that an error names its
	// statement), Commit ends it. Closing the connection before Commit
	// rolls it back.
	Begin(ctx context.Context) error
	Exec(ctx context.Context, stmts []Stmt) error
	Commit(ctx context.Context) error
	Close() error
}

// Option configures New.
type Option func(*options)

type options struct {
	changefeed string
	log        zerolog.Logger
	metrics    *Metrics
}

// WithChangefeed names the changefeed in metrics and logs.
func WithChangefeed(id string) Option { return func(o *options) { o.changefeed = id } }

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics sets the process's SQL sink metrics (default: unregistered
// ones).
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// Sink is a SQL downstream shared by the table pipelines of one processor
// (and the owner's DDL). It implements sink.Sink.
type Sink struct {
	name    string // sink kind: mysql, tidb, postgres
	uri     string // redacted, for messages
	rawURI  string // for redacting driver messages
	cfg     Config
	backend Backend
	log     zerolog.Logger
	det     *causality.Detector[*unit]

	statements      map[StmtKind]prometheus.Counter
	rows            prometheus.Counter
	txnLatency      prometheus.Observer
	conflictsWaited prometheus.Counter
	retries         *prometheus.CounterVec
	ddl             *prometheus.CounterVec

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped chan struct{} // closed once every worker has exited

	failed   atomic.Pointer[error] // the first permanent error; every later write fails with it
	closed   atomic.Bool
	tableIDs atomic.Uint64 // numbers table sinks: their units' group in the detector
}

var _ sink.Sink = (*Sink)(nil)

// New starts the engine over a backend: cfg.WorkerCount workers, each with
// its own connection opened on first use. name is the sink kind for
// metrics and messages; uri the sink URI as the user gave it (only ever
// shown redacted).
func New(name, uri string, cfg Config, backend Backend, opts ...Option) *Sink {
	o := options{log: zerolog.Nop()}
	for _, f := range opts {
		f(&o)
	}
	if o.metrics == nil {
		o.metrics = NewMetrics(nil)
	}
	l := prometheus.Labels{"changefeed": o.changefeed, "sink": name}
	s := &Sink{
		name:            name,
		uri:             redact.URI(uri),
		rawURI:          uri,
		cfg:             cfg,
		backend:         backend,
		log:             o.log.With().Str("component", "sink").Str("sink", name).Str("changefeed", o.changefeed).Logger(),
		det:             causality.New[*unit](0),
		statements:      map[StmtKind]prometheus.Counter{},
		rows:            o.metrics.Rows.With(l),
		txnLatency:      o.metrics.TxnLatency.With(l),
		conflictsWaited: o.metrics.ConflictsWaited.With(l),
		retries:         o.metrics.Retries.MustCurryWith(l),
		ddl:             o.metrics.DDL.MustCurryWith(l),
		stopped:         make(chan struct{}),
	}
	for _, k := range []StmtKind{Insert, Upsert, Delete, Update} {
		s.statements[k] = o.metrics.Statements.With(prometheus.Labels{"changefeed": o.changefeed, "sink": name, "kind": k.String()})
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for i := 0; i < cfg.WorkerCount; i++ {
		s.wg.Add(1)
		go s.worker(i)
	}
	return s
}

// Config is the sink's configuration.
func (s *Sink) Config() Config { return s.cfg }

// unit is what the conflict detector schedules: one upstream transaction's
// rows of one table (or, with transaction-atomicity=none, a chunk of them).
type unit struct {
	table    *tableSink
	commitTs model.Ts
	rows     []*model.RowChange
	safe     bool
	done     chan struct{}
	err      error
}

// OpenTable prepares the downstream table (creating it from opts.Schema
// with create-tables) and returns its table sink.
func (s *Sink) OpenTable(ctx context.Context, table model.TableName, opts sink.TableOptions) (sink.TableSink, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("%s sink: open table %s: sink is closed", s.name, table)
	}
	if opts.Schema != nil {
		if err := opts.Schema.Validate(); err != nil {
			return nil, fmt.Errorf("%s sink: open table %s: %w", s.name, table, err)
		}
	}
	err := s.retry(ctx, "prepare table "+table.String(), func(ctx context.Context) error {
		return s.backend.PrepareTable(ctx, table, opts.Schema, s.cfg.CreateTables)
	})
	if err != nil {
		return nil, s.errorf("open table %s: %w", table, err)
	}
	t := &tableSink{s: s, name: table, opts: opts, id: s.tableIDs.Add(1)}
	t.ctx, t.cancel = context.WithCancel(s.ctx)
	return t, nil
}

// EmitDDL executes a DDL downstream once; a replay is success.
func (s *Sink) EmitDDL(ctx context.Context, ddl *model.DDLEvent) error {
	if err := ddl.Validate(); err != nil {
		return fmt.Errorf("%s sink: %w", s.name, err)
	}
	var applied bool
	err := s.retry(ctx, "DDL "+ddl.String(), func(ctx context.Context) error {
		var err error
		applied, err = s.backend.ExecDDL(ctx, ddl)
		return err
	})
	if err != nil {
		return s.errorf("DDL %s at %d (%s): %w", ddl.Kind, ddl.CommitTs, ddl.Query, err)
	}
	result := "applied"
	if !applied {
		result = "already_applied"
		s.log.Info().Str("ddl", ddl.Query).Uint64("commit_ts", ddl.CommitTs).Msg("DDL was already applied downstream (replay)")
	}
	s.ddl.WithLabelValues(result).Inc()
	return nil
}

// EmitCheckpoint does nothing: a SQL downstream has no place for the
// changefeed checkpoint.
func (s *Sink) EmitCheckpoint(context.Context, model.Ts) error { return nil }

// Close stops the workers and closes the connections; unflushed
// transactions are dropped.
func (s *Sink) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.cancel()
	s.det.Close()
	s.wg.Wait()
	close(s.stopped)
	return s.backend.Close()
}

// errorf formats an error of this sink with every secret of its URI
// hidden, keeping the chain for errors.As.
func (s *Sink) errorf(format string, args ...any) error {
	return redact.Error(fmt.Errorf(s.name+" sink: "+format, args...), s.rawURI)
}

// Backoff between retries of a transient error: 100 ms doubling to 10 s,
// with jitter so that workers hitting one restarting server spread out.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 7)
	if d > 10*time.Second {
		d = 10 * time.Second
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// retry runs op until it succeeds, fails permanently or ctx ends.
func (s *Sink) retry(ctx context.Context, what string, op func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		err := op(octx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		transient, class := s.backend.Classify(err)
		if errors.Is(err, context.DeadlineExceeded) {
			transient, class = true, "timeout"
		}
		if !transient {
			return err
		}
		s.retries.WithLabelValues(class).Inc()
		wait := backoff(attempt)
		s.log.Warn().Str("op", what).Str("class", class).Err(redact.Error(err, s.rawURI)).Dur("retry_in", wait).Msg("transient downstream error, retrying")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Sink) fail(err error) error {
	s.failed.CompareAndSwap(nil, &err)
	return *s.failed.Load()
}

func (s *Sink) failure() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// worker takes ready units from the conflict detector, batches ready units
// of the same table up to max-txn-row rows into one downstream
// transaction, and applies it.
func (s *Sink) worker(id int) {
	defer s.wg.Done()
	var conn Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var batch []*causality.Node[*unit]
	rows := func(u *unit) int { return len(u.rows) }
	for {
		var err error
		if batch, err = s.det.NextBatch(s.ctx, batch[:0], rows, s.cfg.MaxTxnRow); err != nil {
			return
		}
		err = s.apply(&conn, batch)
		for _, b := range batch {
			b.Item.err = err
			close(b.Item.done)
			s.det.Done(b)
		}
	}
}

var errTableClosed = errors.New("table sink closed")

// apply writes one batch of one table, retrying transient errors with
// backoff on a fresh connection, idempotently from the first retry on.
func (s *Sink) apply(conn *Conn, batch []*causality.Node[*unit]) error {
	if err := s.failure(); err != nil {
		return err
	}
	t := batch[0].Item.table
	if t.closed.Load() {
		return errTableClosed
	}
	in := make([]planInput, len(batch))
	rows := 0
	for i, b := range batch {
		in[i] = planInput{rows: b.Item.rows, safe: b.Item.safe}
		rows += len(b.Item.rows)
	}
	start := time.Now()
	stmts := Plan(in, s.cfg.BatchDML, s.cfg.MaxTxnRow)
	for attempt := 0; ; attempt++ {
		if *conn == nil {
			cctx, cancel := context.WithTimeout(t.ctx, s.cfg.WriteTimeout)
			c, err := s.backend.Connect(cctx)
			cancel()
			if err == nil {
				*conn = c
			} else if t.ctx.Err() != nil {
				return errTableClosed
			} else if ok, class := s.backend.Classify(err); ok || errors.Is(err, context.DeadlineExceeded) {
				if !s.wait(t, attempt, class, err) {
					return errTableClosed
				}
				continue
			} else {
				return s.fail(s.errorf("table %s: connect: %w", t.name, err))
			}
		}
		ctx, cancel := context.WithTimeout(t.ctx, s.cfg.WriteTimeout)
		err := (*conn).Apply(ctx, stmts)
		cancel()
		if err == nil {
			s.txnLatency.Observe(time.Since(start).Seconds())
			s.rows.Add(float64(rows))
			for _, st := range stmts {
				s.statements[st.Kind].Inc()
			}
			return nil
		}
		// The connection is in an unknown state (a half-done transaction,
		// a dead socket): never reuse it after an error.
		(*conn).Close()
		*conn = nil
		if t.ctx.Err() != nil {
			return errTableClosed
		}
		transient, class := s.backend.Classify(err)
		if errors.Is(err, context.DeadlineExceeded) {
			transient, class = true, "timeout"
		}
		if !transient {
			return s.fail(s.permanent(t, len(batch), err))
		}
		if !s.wait(t, attempt, class, err) {
			return errTableClosed
		}
		// The failed attempt may have committed (an error in the commit
		// itself) or half-applied nothing; either way the retry must not
		// trip over rows that are already there.
		for i := range in {
			in[i].safe = true
		}
		stmts = Plan(in, s.cfg.BatchDML, s.cfg.MaxTxnRow)
	}
}

// wait counts a retry and sleeps its backoff; false if the table closed.
func (s *Sink) wait(t *tableSink, attempt int, class string, err error) bool {
	s.retries.WithLabelValues(class).Inc()
	d := backoff(attempt)
	s.log.Warn().Str("table", t.name.String()).Str("class", class).Err(redact.Error(err, s.rawURI)).Dur("retry_in", d).Msg("transient downstream error, retrying the transaction")
	select {
	case <-time.After(d):
		return true
	case <-t.ctx.Done():
		return false
	}
}

func (s *Sink) permanent(t *tableSink, units int, err error) error {
	var se *StmtError
	if errors.As(err, &se) {
		return s.errorf("table %s: %w", se.Stmt.Table(), err)
	}
	return s.errorf("table %s: applying %d transaction(s): %w", t.name, units, err)
}

// Streaming thresholds: a transaction (all its fragments) larger than
// this is not held in memory to be scheduled as one unit; it is written
// through one downstream transaction opened for it, fragment by fragment,
// and committed when it ends. The processor hands fragments of up to 4,096
// rows, so a transaction streams from its third fragment on.
const (
	streamRows  = 8192
	streamBytes = 32 << 20
)

// tableSink is one table's view of the sink.
//
// Transactions are scheduled as they are written: the processor writes only
// what it is about to flush, so nothing can be above the DDL barrier. A
// transaction may come as several fragments with one key, over several
// Write calls; it is complete when the key changes or at Flush.
type tableSink struct {
	s    *Sink
	id   uint64
	name model.TableName
	opts sink.TableOptions

	ctx    context.Context
	cancel context.CancelFunc
	closed atomic.Bool

	cur        *pendingTxn // the transaction whose fragments are arriving
	last       model.TxnKey
	inflight   []*unit // submitted, in commit order
	queued     []*unit // submitted, not yet given to the detector
	queuedKeys [][]uint64
	err        error // a streamed transaction failed: the table must restart
}

// pendingTxn collects the fragments of one transaction, or streams them.
type pendingTxn struct {
	key    model.TxnKey
	safe   bool
	rows   []*model.RowChange
	bytes  int
	stream *stream
}

// stream is one large transaction being written through its own
// downstream transaction.
type stream struct {
	conn  Conn
	rows  int
	start time.Time
}

func (t *tableSink) fail(format string, args ...any) error {
	return fmt.Errorf("%s sink: table %s: "+format, append([]any{t.s.name, t.name}, args...)...)
}

// Write schedules complete transactions and collects (or streams) the
// fragments of the last one.
func (t *tableSink) Write(ctx context.Context, txns []*model.Txn) error {
	if t.closed.Load() {
		return t.fail("write after close")
	}
	if t.err != nil {
		return t.err
	}
	if err := t.s.failure(); err != nil {
		return err
	}
	for _, txn := range txns {
		if txn == nil {
			return t.fail("nil transaction")
		}
		key := txn.Key()
		if key.Less(t.last) {
			return t.fail("transaction at %d written after one at %d", txn.CommitTs, t.last.CommitTs)
		}
		for _, r := range txn.Rows {
			if r == nil || r.Schema == nil {
				return t.fail("transaction at %d has a row without a schema", txn.CommitTs)
			}
			if err := r.Validate(); err != nil {
				return fmt.Errorf("%s sink: %w", t.s.name, err)
			}
		}
		if t.cur != nil && t.cur.key != key {
			if err := t.finish(ctx); err != nil {
				return err
			}
		}
		t.last = key
		if t.cur == nil {
			t.cur = &pendingTxn{key: key, safe: t.s.cfg.SafeMode == SafeAlways ||
				(t.s.cfg.SafeMode == SafeAuto && txn.CommitTs <= t.opts.ReplayUntil)}
		}
		if err := t.add(ctx, txn.Rows); err != nil {
			t.release()
			return err
		}
	}
	t.release()
	return nil
}

// add takes one fragment of the current transaction.
func (t *tableSink) add(ctx context.Context, rows []*model.RowChange) error {
	p, cfg := t.cur, t.s.cfg
	if cfg.Atomicity == AtomicityNone {
		// Fragments need not be applied together: schedule them now, in
		// chunks of max-txn-row.
		for i := 0; i < len(rows); i += cfg.MaxTxnRow {
			t.submit(p.key.CommitTs, rows[i:min(i+cfg.MaxTxnRow, len(rows))], p.safe)
		}
		return nil
	}
	if p.stream != nil {
		return t.streamRows(ctx, rows)
	}
	p.rows = append(p.rows, rows...)
	for _, r := range rows {
		p.bytes += r.ApproxSize()
	}
	if len(p.rows) > streamRows || p.bytes > streamBytes {
		return t.startStream(ctx)
	}
	return nil
}

// finish ends the current transaction: scheduled as one unit, or its
// stream committed.
func (t *tableSink) finish(ctx context.Context) error {
	p := t.cur
	t.cur = nil
	if p == nil || t.s.cfg.Atomicity == AtomicityNone {
		return nil
	}
	if p.stream != nil {
		return t.commitStream(ctx, p.stream)
	}
	if len(p.rows) > 0 {
		t.submit(p.key.CommitTs, p.rows, p.safe)
	}
	return nil
}

// Flush ends the current transaction and waits until every transaction at
// or below upto is committed.
func (t *tableSink) Flush(ctx context.Context, upto model.Ts) error {
	if t.closed.Load() {
		return t.fail("flush after close")
	}
	if t.err != nil {
		return t.err
	}
	if err := t.s.failure(); err != nil {
		return err
	}
	if t.cur != nil && t.cur.key.CommitTs <= upto {
		if err := t.finish(ctx); err != nil {
			return err
		}
	}
	return t.wait(ctx, upto)
}

// wait waits for the submitted units at or below upto.
func (t *tableSink) wait(ctx context.Context, upto model.Ts) error {
	t.release()
	for len(t.inflight) > 0 && t.inflight[0].commitTs <= upto {
		u := t.inflight[0]
		select {
		case <-u.done:
		case <-t.s.stopped:
			return t.fail("sink closed during flush")
		case <-ctx.Done():
			return ctx.Err()
		}
		if u.err != nil {
			if errors.Is(u.err, errTableClosed) {
				return t.fail("closed during flush")
			}
			return u.err
		}
		t.inflight[0] = nil
		t.inflight = t.inflight[1:]
	}
	return nil
}

// submit queues a unit; the queue goes to the conflict detector at the end
// of the Write or Flush (release), all at once.
func (t *tableSink) submit(commitTs model.Ts, rows []*model.RowChange, safe bool) {
	u := &unit{table: t, commitTs: commitTs, rows: rows, safe: safe, done: make(chan struct{})}
	var keys []uint64
	for _, r := range rows {
		keys = RowKeys(keys, r)
	}
	t.queued = append(t.queued, u)
	t.queuedKeys = append(t.queuedKeys, keys)
	t.inflight = append(t.inflight, u)
}

// release hands the queued units to the worker pool.
func (t *tableSink) release() {
	if len(t.queued) == 0 {
		return
	}
	for _, n := range t.s.det.AddAll(t.id, t.queued, func(i int) []uint64 { return t.queuedKeys[i] }) {
		if n.Waited {
			t.s.conflictsWaited.Inc()
		}
	}
	clear(t.queued)
	clear(t.queuedKeys)
	t.queued, t.queuedKeys = t.queued[:0], t.queuedKeys[:0]
}

// startStream switches the current transaction to streaming: once every
// earlier transaction of the table is committed (a table-wide barrier, as
// the keys of the whole transaction are not known yet), it opens a
// downstream transaction on a connection of its own and writes what it
// has collected.
func (t *tableSink) startStream(ctx context.Context) error {
	if err := t.wait(ctx, ^model.Ts(0)); err != nil {
		return err
	}
	var conn Conn
	err := t.s.retry(ctx, "connect for a large transaction", func(ctx context.Context) error {
		c, err := t.s.backend.Connect(ctx)
		if err != nil {
			return err
		}
		if err := c.Begin(ctx); err != nil {
			c.Close()
			return err
		}
		conn = c
		return nil
	})
	if err != nil {
		return t.streamFailed(err)
	}
	p := t.cur
	p.stream = &stream{conn: conn, start: time.Now()}
	t.s.log.Info().Str("table", t.name.String()).Uint64("commit_ts", p.key.CommitTs).Int("rows_so_far", len(p.rows)).
		Msg("large transaction: writing it through one downstream transaction as its fragments arrive")
	rows := p.rows
	p.rows, p.bytes = nil, 0
	return t.streamRows(ctx, rows)
}

func (t *tableSink) streamRows(ctx context.Context, rows []*model.RowChange) error {
	st := t.cur.stream
	stmts := Plan([]planInput{{rows: rows, safe: t.cur.safe}}, t.s.cfg.BatchDML, t.s.cfg.MaxTxnRow)
	sctx, cancel := context.WithTimeout(ctx, t.s.cfg.WriteTimeout)
	defer cancel()
	if err := st.conn.Exec(sctx, stmts); err != nil {
		return t.streamFailed(err)
	}
	st.rows += len(rows)
	for _, x := range stmts {
		t.s.statements[x.Kind].Inc()
	}
	return nil
}

func (t *tableSink) commitStream(ctx context.Context, st *stream) error {
	sctx, cancel := context.WithTimeout(ctx, t.s.cfg.WriteTimeout)
	defer cancel()
	err := st.conn.Commit(sctx)
	st.conn.Close()
	if err != nil {
		return t.streamFailed(err)
	}
	t.s.rows.Add(float64(st.rows))
	t.s.txnLatency.Observe(time.Since(st.start).Seconds())
	return nil
}

// streamFailed ends a streamed transaction with an error. Its fragments
// are gone from memory, so the sink cannot retry it by itself: a transient
// error fails this table (the processor restarts it from its checkpoint,
// and nothing of the transaction was committed); a permanent one fails the
// sink.
func (t *tableSink) streamFailed(err error) error {
	if t.cur != nil && t.cur.stream != nil {
		t.cur.stream.conn.Close()
		t.cur.stream = nil
	}
	t.cur = nil
	if transient, class := t.s.backend.Classify(err); transient || errors.Is(err, context.DeadlineExceeded) {
		t.s.retries.WithLabelValues(class).Inc()
		t.err = t.s.errorf("table %s: a large transaction was interrupted (%v); restart the table from its checkpoint", t.name, err)
		return t.err
	}
	return t.s.fail(t.s.permanent(t, 1, err))
}

// Close drops unflushed transactions and waits for the ones being applied
// to finish or abort, so that nothing of this table is written after Close
// returns (its table may already run on another capture).
func (t *tableSink) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return nil
	}
	t.cancel()
	if t.cur != nil && t.cur.stream != nil {
		t.cur.stream.conn.Close() // rolls the open transaction back
	}
	t.cur = nil
	for _, u := range t.queued { // never handed to the workers
		u.err = errTableClosed
		close(u.done)
	}
	t.queued, t.queuedKeys = nil, nil
	for _, u := range t.inflight {
		select {
		case <-u.done:
		case <-t.s.stopped:
		}
	}
	t.inflight = nil
	return nil
}
