package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// Limits that bound the memory between the server and Next: a transaction
// is handed on in pieces of at most pieceRows rows, at most outDepth
// pieces wait in the channel, and Next merges at most batchRows rows.
const (
	pieceRows      = 2048
	pieceBytes     = 8 << 20
	outDepth       = 4
	batchRows      = 8192
	statusInterval = 5 * time.Second
	receiveWindow  = time.Second
)

// item is what the reader hands to Next.
type item struct {
	txns     []*model.Txn
	ddls     []*model.DDLEvent
	resolved model.Ts // 0: unchanged
	pos      string   // "": unchanged
	rows     int
}

// Stream is one open replication stream. It implements source.Stream.
type Stream struct {
	cfg    *Config
	log    zerolog.Logger
	out    chan item
	cancel context.CancelFunc
	wg     sync.WaitGroup

	confirmed atomic.Uint64
	nudge     chan struct{}
	addReq    chan []model.TableName

	mu       sync.Mutex
	err      error
	progress Progress
	closed   bool
}

// Progress is the initial snapshot's (or a later table copy's) progress,
// for the API's changefeed query and statistics.
type Progress struct {
	Copying     bool      `json:"copying"`
	TablesTotal int       `json:"tables_total"`
	TablesDone  int       `json:"tables_done"`
	Rows        int64     `json:"rows"`
	Bytes       int64     `json:"bytes"`
	EstRows     int64     `json:"estimated_rows"`
	Started     time.Time `json:"started"`
	// ETA is the estimated time left, from the rows copied so far against
	// the planner's row estimate (pg_class.reltuples); zero when unknown.
	ETA time.Duration `json:"eta"`
}

// Progress reports the copy's progress.
func (s *Stream) Progress() Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.progress
	if p.Copying && p.Rows > 0 && p.EstRows > p.Rows {
		el := time.Since(p.Started)
		p.ETA = time.Duration(float64(el) * float64(p.EstRows-p.Rows) / float64(p.Rows))
	}
	return p
}

func (s *Stream) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// Next blocks until the stream has something: transactions (or pieces of
// one), DDL, or a higher resolved ts.
func (s *Stream) Next(ctx context.Context) (source.StreamBatch, error) {
	var b source.StreamBatch
	var it item
	var ok bool
	select {
	case <-ctx.Done():
		return b, ctx.Err()
	case it, ok = <-s.out:
	}
	rows := 0
	for {
		if !ok {
			s.mu.Lock()
			err := s.err
			s.mu.Unlock()
			if err == nil {
				err = errors.New("postgres stream closed")
			}
			if len(b.Txns) > 0 || len(b.DDLs) > 0 || b.Position != "" {
				return b, nil // the error comes with the next call
			}
			return b, err
		}
		b.Txns = append(b.Txns, it.txns...)
		b.DDLs = append(b.DDLs, it.ddls...)
		if it.resolved != 0 {
			b.ResolvedTs = it.resolved
		}
		if it.pos != "" {
			b.Position = it.pos
		}
		rows += it.rows
		if rows >= batchRows {
			return b, nil
		}
		select {
		case it, ok = <-s.out:
		default:
			return b, nil
		}
	}
}

// Confirm lets the server discard WAL up to pos, a position this stream
// (or an earlier one on the same slot) returned. It never moves the slot
// beyond what it is told, and never backwards.
func (s *Stream) Confirm(ctx context.Context, pos string) error {
	p, err := decodePosition(pos)
	if err != nil {
		return err
	}
	if p.Slot != s.cfg.Slot {
		return fmt.Errorf("confirm position of slot %q on a stream of slot %q", p.Slot, s.cfg.Slot)
	}
	for {
		cur := s.confirmed.Load()
		if uint64(p.LSN) <= cur || s.confirmed.CompareAndSwap(cur, uint64(p.LSN)) {
			break
		}
	}
	select {
	case s.nudge <- struct{}{}:
	default:
	}
	return nil
}

// AddTables asks the stream to start replicating tables that appeared
// after it opened (the catalog poll does this on its own): they are added
// to the publication and copied at a consistent point.
func (s *Stream) AddTables(tables []model.TableName) {
	select {
	case s.addReq <- tables:
	default:
	}
}

// Close stops the stream and closes its connections. The slot stays.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// reader owns the replication connection: it decodes pgoutput, assembles
// transactions, delivers table copies at their consistent points, answers
// keepalives and reports the confirmed position.
type reader struct {
	s    *Stream
	repl *pgconn.PgConn
	cat  *catalog
	log  zerolog.Logger

	pos      *position // after the last delivered transaction
	resolved model.Ts
	tables   map[uint32]model.TableName // the changefeed's tables
	pending  map[uint32]bool            // copy owed: stream rows skipped until it is delivered
	rels     map[uint32][]relCol
	relSigs  map[uint32]string // signature(rels[id]), computed once per relation message
	schemas  map[uint32]*tableSchema
	copy     *copyJob
	walEnd   pglogrepl.LSN
	lastSent time.Time
	sentLSN  pglogrepl.LSN

	// the transaction being read
	inTxn    bool
	txnLSN   pglogrepl.LSN
	txn      *model.Txn
	txnRows  int
	txnBytes int
	ddls     []*model.DDLEvent
	commitT  time.Time
	newTs    model.Ts
	newCols  map[uint32]string

	// accumulated and not yet sent
	acc item
}

func (r *reader) run(ctx context.Context) {
	err := r.loop(ctx)
	if err != nil && ctx.Err() == nil {
		r.log.Error().Err(err).Msg("postgres stream failed")
		r.s.setErr(err)
	} else if err != nil {
		r.s.setErr(fmt.Errorf("postgres stream closed: %w", err))
	}
	close(r.s.out)
}

func (r *reader) loop(ctx context.Context) error {
	if r.copy != nil && r.pos.LSN >= r.copy.at {
		if err := r.deliverCopy(ctx); err != nil {
			return err
		}
	}
	// Reads wait at most receiveWindow through a read deadline on the
	// connection, set before each read, and ReceiveMessage gets a context
	// that is never done: a context per message (a timer, and pgconn's
	// watcher goroutine handshake on every call) cost about a third of the
	// reader's CPU at tens of thousands of messages a second. Closing the
	// stream still interrupts a read at once: ctx's cancellation moves the
	// deadline to now.
	conn := r.repl.Conn()
	stopWatch := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stopWatch()
	for {
		if err := r.maybeStatus(ctx, false); err != nil {
			return err
		}
		if !r.inTxn && r.copy == nil {
			select {
			case tables := <-r.s.addReq:
				if err := r.startCopy(ctx, tables); err != nil {
					return err
				}
			default:
			}
		}
		if err := conn.SetReadDeadline(time.Now().Add(receiveWindow)); err != nil {
			return fmt.Errorf("set the read deadline on slot %q's connection: %w", r.s.cfg.Slot, err)
		}
		// Checked after the deadline is set: a cancellation from here on
		// moves the deadline to now after this call, never before it.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg, err := r.repl.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				// Nothing to read: hand on what is accumulated.
				if err := r.flush(ctx, false); err != nil {
					return err
				}
				continue
			}
			return classifyStreamErr(r.s.cfg, fmt.Errorf("receive from replication slot %q: %w", r.s.cfg.Slot, err))
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				if ka.ServerWALEnd > r.walEnd {
					r.walEnd = ka.ServerWALEnd
				}
				if ka.ReplyRequested {
					if err := r.maybeStatus(ctx, true); err != nil {
						return err
					}
				}
				if !r.inTxn {
					if r.copy != nil && r.walEnd >= r.copy.at {
						if err := r.deliverCopy(ctx); err != nil {
							return err
						}
					}
					if err := r.flush(ctx, false); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse XLogData: %w", err)
				}
				if err := r.handle(ctx, xld.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return classifyStreamErr(r.s.cfg, fmt.Errorf("replication slot %q: %w", r.s.cfg.Slot, pgconn.ErrorResponseToPgError(m)))
		case *pgproto3.CopyDone:
			return fmt.Errorf("replication slot %q: the server ended the stream", r.s.cfg.Slot)
		default:
			// NoticeResponse and the like: nothing to do.
		}
	}
}

// maybeStatus sends a standby status update with the confirmed position
// when one is due, when asked for one, or when Confirm moved it.
func (r *reader) maybeStatus(ctx context.Context, force bool) error {
	conf := pglogrepl.LSN(r.s.confirmed.Load())
	select {
	case <-r.s.nudge:
		force = force || conf != r.sentLSN
	default:
	}
	if !force && time.Since(r.lastSent) < statusInterval {
		return nil
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: conf, WALFlushPosition: conf, WALApplyPosition: conf,
	})
	if err != nil {
		return fmt.Errorf("send standby status to slot %q: %w", r.s.cfg.Slot, err)
	}
	r.lastSent, r.sentLSN = time.Now(), conf
	return nil
}

// send hands an item to Next, answering the server while Next is slow.
func (r *reader) send(ctx context.Context, it item) error {
	t := time.NewTicker(statusInterval / 2)
	defer t.Stop()
	for {
		select {
		case r.s.out <- it:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := r.maybeStatus(ctx, false); err != nil {
				return err
			}
		case <-r.s.nudge:
			if err := r.maybeStatus(ctx, true); err != nil {
				return err
			}
		}
	}
}

// flush sends the accumulated item: always when force, otherwise when it
// is big or when Next is waiting.
func (r *reader) flush(ctx context.Context, force bool) error {
	if len(r.acc.txns) == 0 && len(r.acc.ddls) == 0 && r.acc.resolved == 0 {
		return nil
	}
	if r.acc.resolved != 0 {
		r.acc.pos = r.pos.encode()
	}
	if force || r.acc.rows >= pieceRows {
		err := r.send(ctx, r.acc)
		r.acc = item{}
		return err
	}
	select {
	case r.s.out <- r.acc:
		r.acc = item{}
	default:
	}
	return nil
}

func (r *reader) handle(ctx context.Context, data []byte) error {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("decode pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		cols := make([]relCol, len(m.Columns))
		for i, c := range m.Columns {
			cols[i] = relCol{Name: c.Name, TypeOID: c.DataType, Typmod: c.TypeModifier, Key: c.Flags&1 != 0}
		}
		r.rels[m.RelationID] = cols
		r.relSigs[m.RelationID] = signature(cols)
	case *pglogrepl.BeginMessage:
		if r.copy != nil && m.FinalLSN >= r.copy.at {
			if err := r.deliverCopy(ctx); err != nil {
				return err
			}
		}
		r.inTxn = true
		r.txnLSN = m.FinalLSN
		r.commitT = m.CommitTime
		r.newTs = nextTs(r.pos.Ts, m.CommitTime)
		r.txn = &model.Txn{CommitTs: r.newTs, StartTs: r.newTs}
		r.txnRows, r.txnBytes = 0, 0
		r.ddls = nil
		r.newCols = nil
	case *pglogrepl.InsertMessage:
		ts, ok, err := r.rowSchema(ctx, m.RelationID)
		if err != nil || !ok {
			return err
		}
		after, err := r.tuple(ts, m.Tuple, false)
		if err != nil {
			return err
		}
		return r.addRow(ctx, &model.RowChange{Schema: ts.schema, Op: model.OpInsert, After: after})
	case *pglogrepl.UpdateMessage:
		ts, ok, err := r.rowSchema(ctx, m.RelationID)
		if err != nil || !ok {
			return err
		}
		after, err := r.tuple(ts, m.NewTuple, false)
		if err != nil {
			return err
		}
		var before []model.Value
		if m.OldTuple != nil {
			if before, err = r.tuple(ts, m.OldTuple, m.OldTupleType == 'K'); err != nil {
				return err
			}
		}
		return r.addRow(ctx, &model.RowChange{Schema: ts.schema, Op: model.OpUpdate, Before: before, After: after})
	case *pglogrepl.DeleteMessage:
		ts, ok, err := r.rowSchema(ctx, m.RelationID)
		if err != nil || !ok {
			return err
		}
		if m.OldTuple == nil {
			return fmt.Errorf("delete on table %s carries no key (replica identity NOTHING?)", ts.schema.Table)
		}
		before, err := r.tuple(ts, m.OldTuple, m.OldTupleType == 'K')
		if err != nil {
			return err
		}
		return r.addRow(ctx, &model.RowChange{Schema: ts.schema, Op: model.OpDelete, Before: before})
	case *pglogrepl.TruncateMessage:
		for _, relid := range m.RelationIDs {
			t, ok := r.tables[relid]
			if !ok || r.pending[relid] {
				continue
			}
			r.ddls = append(r.ddls, &model.DDLEvent{CommitTs: r.newTs, StartTs: r.newTs, Kind: model.DDLTruncateTable,
				Query: "TRUNCATE TABLE " + model.QuoteIdent(t.Schema) + "." + model.QuoteIdent(t.Table), Schema: t.Schema,
				Tables: []model.TableName{t}, After: []*model.TableSchema{r.schemaOf(relid)}})
		}
	case *pglogrepl.CommitMessage:
		return r.commit(ctx, m)
	case *pglogrepl.LogicalDecodingMessage, *pglogrepl.OriginMessage, *pglogrepl.TypeMessage:
		// Heartbeats and other messages only move the position (at commit).
	default:
		return fmt.Errorf("unexpected pgoutput message %T (streaming of in-progress transactions is off)", msg)
	}
	return nil
}

func (r *reader) schemaOf(relid uint32) *model.TableSchema {
	if ts := r.schemas[relid]; ts != nil {
		return ts.schema
	}
	return nil
}

// rowSchema is the schema a row of relid is decoded with, and whether the
// row is wanted at all (a table of the changefeed whose copy is not owed).
func (r *reader) rowSchema(ctx context.Context, relid uint32) (*tableSchema, bool, error) {
	if _, ok := r.tables[relid]; !ok || r.pending[relid] {
		return nil, false, nil
	}
	ts := r.schemas[relid]
	if ts == nil || ts.sig != r.relSigs[relid] {
		if err := r.noteSchema(ctx, relid); err != nil {
			return nil, false, err
		}
		ts = r.schemas[relid]
	}
	return ts, true, nil
}

// noteSchema builds the schema version for relid's current relation and,
// when the position knew an earlier column list, turns the difference
// into DDL events at this transaction's ts (applied before its rows).
func (r *reader) noteSchema(ctx context.Context, relid uint32) error {
	cols, ok := r.rels[relid]
	if !ok {
		return fmt.Errorf("row for relation %d before its relation message", relid)
	}
	sig := signature(cols)
	if cur := r.schemas[relid]; cur != nil && cur.sig == sig {
		return nil
	}
	ts, err := r.cat.build(ctx, relid, cols, r.newTs)
	if err != nil {
		return fmt.Errorf("schema of table %d: %w", relid, err)
	}
	old := r.knownCols(relid)
	r.schemas[relid] = ts
	if old != nil && *old != sig {
		oldCols, err := parseSignature(*old)
		if err != nil {
			return err
		}
		r.ddls = append(r.ddls, diffDDL(ts.schema, oldCols, cols, r.newTs)...)
	}
	if r.newCols == nil {
		r.newCols = map[uint32]string{}
	}
	r.newCols[relid] = sig
	return nil
}

// knownCols is relid's column signature as of this transaction.
func (r *reader) knownCols(relid uint32) *string {
	if s, ok := r.newCols[relid]; ok {
		return &s
	}
	if s, ok := r.pos.Cols[relid]; ok {
		return &s
	}
	return nil
}

// tuple decodes a tuple against a schema. keyOnly marks a 'K' old tuple:
// only the replica identity columns are set, the rest are missing.
func (r *reader) tuple(ts *tableSchema, td *pglogrepl.TupleData, keyOnly bool) ([]model.Value, error) {
	if td == nil {
		return nil, nil
	}
	if len(td.Columns) != len(ts.codecs) {
		return nil, fmt.Errorf("table %s: tuple has %d columns, relation has %d", ts.schema.Table, len(td.Columns), len(ts.codecs))
	}
	out := make([]model.Value, len(td.Columns))
	for i, c := range td.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
			if keyOnly {
				continue // missing
			}
			out[i] = model.Null()
		case pglogrepl.TupleDataTypeToast:
			if !keyOnly {
				out[i] = model.Unchanged()
			}
		case pglogrepl.TupleDataTypeText:
			v, err := ts.codecs[i].decode(c.Data)
			if err != nil {
				return nil, fmt.Errorf("table %s column %s: %w", ts.schema.Table, ts.schema.Columns[i].Name, err)
			}
			r.txnBytes += len(c.Data)
			out[i] = v
		default:
			return nil, fmt.Errorf("table %s column %s: unexpected tuple data type %q", ts.schema.Table, ts.schema.Columns[i].Name, c.DataType)
		}
	}
	return out, nil
}

func (r *reader) addRow(ctx context.Context, row *model.RowChange) error {
	if !r.inTxn {
		return errors.New("row change outside a transaction")
	}
	row.CommitTs, row.StartTs = r.newTs, r.newTs
	r.txn.Rows = append(r.txn.Rows, row)
	r.txnRows++
	if len(r.txn.Rows) >= pieceRows || r.txnBytes >= pieceBytes {
		// A large transaction goes on in pieces with the same key; the
		// resolved ts passes it only at its commit.
		r.acc.txns = append(r.acc.txns, r.txn)
		r.acc.ddls = append(r.acc.ddls, r.ddls...)
		r.acc.rows += len(r.txn.Rows)
		r.ddls = nil
		r.txn = &model.Txn{CommitTs: r.newTs, StartTs: r.newTs}
		r.txnBytes = 0
		return r.flush(ctx, true)
	}
	return nil
}

func (r *reader) commit(ctx context.Context, m *pglogrepl.CommitMessage) error {
	if !r.inTxn {
		return errors.New("commit without begin")
	}
	r.inTxn = false
	if len(r.txn.Rows) > 0 {
		r.acc.txns = append(r.acc.txns, r.txn)
		r.acc.rows += len(r.txn.Rows)
	}
	r.acc.ddls = append(r.acc.ddls, r.ddls...)
	if len(r.newCols) > 0 {
		cols := make(map[uint32]string, len(r.pos.Cols)+len(r.newCols))
		for k, v := range r.pos.Cols {
			cols[k] = v
		}
		for k, v := range r.newCols {
			cols[k] = v
		}
		r.pos.Cols = cols
	}
	r.pos.Ts = r.newTs
	r.pos.LSN = m.TransactionEndLSN
	r.resolved = r.newTs
	r.acc.resolved = r.newTs
	r.txn, r.ddls, r.newCols = nil, nil, nil
	return r.flush(ctx, false)
}

// classifyStreamErr maps the server's errors about the slot to the
// errors callers test for.
func classifyStreamErr(cfg *Config, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42704": // undefined_object: the slot does not exist
			return fmt.Errorf("%w: %v", ErrSlotMissing, err)
		case "55000": // object_not_in_prerequisite_state: invalidated slot
			if containsFold(pe.Message, "invalidated") || containsFold(pe.Detail, "max_slot_wal_keep_size") {
				return fmt.Errorf("replication slot %q was invalidated (max_slot_wal_keep_size): %w: %v", cfg.Slot, source.ErrSnapshotLost, err)
			}
		}
	}
	return err
}

// SnapshotProgress reports the initial copy's progress through the generic
// interface the processor reads (source.ProgressReporter).
func (s *Stream) SnapshotProgress() source.SnapshotProgress {
	p := s.Progress()
	return source.SnapshotProgress{Copying: p.Copying, TablesTotal: p.TablesTotal, TablesDone: p.TablesDone,
		Rows: p.Rows, Bytes: p.Bytes, EstRows: p.EstRows, ETA: p.ETA}
}
