package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/raftcdc/raftcdc/model"
)

const copyPieceRows = 1024

// copyJob is a set of tables read on one snapshot whose consistent point
// is at: every transaction that committed before at is in the snapshot,
// none after it. The reader delivers the copy when the stream reaches at,
// so each table's rows are followed by exactly the changes the snapshot
// does not hold. Stream rows of these tables before at are skipped: the
// copy already holds their effect.
type copyJob struct {
	at     pglogrepl.LSN
	tables []model.TableName
	// initial: the first copy of a new slot. Table i gets ts base+1+i and
	// the resolved ts steps over each table as the tables finish in order,
	// so a failover re-copies only the unfinished ones.
	initial bool
	base    model.Ts
	// recopy: rows of an earlier, interrupted copy may be downstream, so
	// each table is truncated downstream first (a TRUNCATE DDL at the
	// copy's ts).
	recopy bool
	// created: tables new to the changefeed (a create_table DDL first).
	created map[uint32]bool
	estRows int64

	pieces chan copyPiece
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type copyPiece struct {
	idx    int
	schema *tableSchema // on a table's first piece
	rows   []*model.RowChange
	bytes  int64
	done   bool
	err    error
}

func (j *copyJob) stop() {
	if j == nil {
		return
	}
	j.cancel()
	go func() { // drain so that workers blocked on send can leave
		for range j.pieces {
		}
	}()
	j.wg.Wait()
}

// startWorkers opens the job's workers, each in a REPEATABLE READ
// transaction on the exported snapshot, and returns once every worker has
// imported it (the exporter may then go away) or one failed.
func startWorkers(ctx context.Context, cfg *Config, snapshot string, job *copyJob) error {
	wctx, cancel := context.WithCancel(ctx)
	job.cancel = cancel
	job.pieces = make(chan copyPiece, cfg.SnapshotWorkers*2)
	n := cfg.SnapshotWorkers
	if n > len(job.tables) {
		n = len(job.tables)
	}
	if n == 0 {
		n = 1
	}
	var next atomic.Int64
	imported := make(chan error, n)
	var active sync.WaitGroup
	active.Add(n)
	for w := 0; w < n; w++ {
		job.wg.Add(1)
		go func() {
			defer job.wg.Done()
			defer active.Done()
			conn, err := connectPgx(wctx, cfg)
			if err != nil {
				imported <- err
				return
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(wctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
				imported <- fmt.Errorf("begin copy transaction: %w", err)
				return
			}
			if _, err := conn.Exec(wctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(snapshot)); err != nil {
				imported <- fmt.Errorf("import snapshot %s: %w", snapshot, err)
				return
			}
			imported <- nil
			cat := newCatalog(conn)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(job.tables) {
					return
				}
				if err := copyTable(wctx, conn, cat, job, i); err != nil {
					select {
					case job.pieces <- copyPiece{idx: i, err: err}:
					case <-wctx.Done():
					}
					return
				}
			}
		}()
	}
	go func() { active.Wait(); close(job.pieces) }()
	for i := 0; i < n; i++ {
		if err := <-imported; err != nil {
			job.stop()
			return err
		}
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// copyTable reads one table in the worker's snapshot, in text format (the
// same forms pgoutput sends, so one decoder serves both).
func copyTable(ctx context.Context, conn *pgx.Conn, cat *catalog, job *copyJob, idx int) error {
	t := job.tables[idx]
	cols, err := cat.columns(ctx, uint32(t.ID))
	if err != nil {
		return fmt.Errorf("copy %s: %w", t, err)
	}
	if len(cols) == 0 {
		return fmt.Errorf("copy %s: the table no longer exists or has no columns", t)
	}
	sch, err := cat.build(ctx, uint32(t.ID), cols, 0)
	if err != nil {
		return fmt.Errorf("copy %s: %w", t, err)
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c.Name)
	}
	send := func(p copyPiece) error {
		select {
		case job.pieces <- p:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	first := true
	piece := copyPiece{idx: idx, schema: sch}
	rr := conn.PgConn().ExecParams(ctx, "SELECT "+strings.Join(names, ", ")+" FROM "+quoteTable(t), nil, nil, nil, []int16{0})
	for rr.NextRow() {
		vals := rr.Values()
		img := make([]model.Value, len(vals))
		for i, v := range vals {
			if v == nil {
				img[i] = model.Null()
				continue
			}
			img[i], err = sch.codecs[i].decode(v)
			if err != nil {
				rr.Close()
				return fmt.Errorf("copy %s column %s: %w", t, cols[i].Name, err)
			}
			piece.bytes += int64(len(v))
		}
		// Marked as a snapshot read: every copy (the initial snapshot, a
		// re-copy after a failover, a table added later) reads existing
		// rows, not changes, and Debezium's consumers tell them apart.
		piece.rows = append(piece.rows, &model.RowChange{Schema: sch.schema, Op: model.OpInsert, After: img, Snapshot: true})
		if len(piece.rows) >= copyPieceRows {
			if err := send(piece); err != nil {
				rr.Close()
				return err
			}
			first = false
			piece = copyPiece{idx: idx}
		}
	}
	if _, err := rr.Close(); err != nil {
		return fmt.Errorf("copy %s: %w", t, err)
	}
	_ = first
	piece.done = true
	return send(piece)
}

// createTempSlot makes a temporary slot with an exported snapshot on its
// own replication connection; the snapshot stays importable until conn is
// closed or used again.
func createTempSlot(ctx context.Context, cfg *Config) (*pgconn.PgConn, pglogrepl.LSN, string, error) {
	conn, err := connect(ctx, cfg, true)
	if err != nil {
		return nil, 0, "", err
	}
	name := fmt.Sprintf("%s_c%x", cfg.Slot, time.Now().UnixNano()&0xffffffffff)
	if len(name) > 63 {
		name = name[len(name)-63:]
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		conn.Close(context.Background())
		return nil, 0, "", fmt.Errorf("create temporary slot for a table copy: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		conn.Close(context.Background())
		return nil, 0, "", fmt.Errorf("temporary slot's consistent point %q: %w", res.ConsistentPoint, err)
	}
	return conn, lsn, res.SnapshotName, nil
}

// prepareCopy starts a copy of tables at a new consistent point of its own
// (a temporary slot), for tables added while streaming and for copies an
// earlier run did not finish.
func prepareCopy(ctx context.Context, cfg *Config, tables []model.TableName, recopy bool, created map[uint32]bool) (*copyJob, error) {
	conn, at, snap, err := createTempSlot(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	job := &copyJob{at: at, tables: tables, recopy: recopy, created: created}
	if err := startWorkers(ctx, cfg, snap, job); err != nil {
		return nil, err
	}
	return job, nil
}

// startCopy runs in the reader, between transactions: it prepares a copy
// of newly added tables while keeping the server answered. The reader has
// not read past its position, so the copy's consistent point is ahead of
// everything delivered so far.
func (r *reader) startCopy(ctx context.Context, tables []model.TableName) error {
	var add []model.TableName
	created := map[uint32]bool{}
	for _, t := range tables {
		if _, ok := r.tables[uint32(t.ID)]; !ok {
			add = append(add, t)
			created[uint32(t.ID)] = true
		}
	}
	if len(add) == 0 {
		return nil
	}
	type result struct {
		job *copyJob
		err error
	}
	done := make(chan result, 1)
	go func() {
		j, err := prepareCopy(ctx, r.s.cfg, add, false, created)
		done <- result{j, err}
	}()
	t := time.NewTicker(statusInterval / 2)
	defer t.Stop()
	for {
		select {
		case res := <-done:
			if res.err != nil {
				return fmt.Errorf("copy new tables: %w", res.err)
			}
			r.installCopy(res.job)
			r.log.Info().Int("tables", len(add)).Str("at", res.job.at.String()).Msg("copying tables added to the changefeed")
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := r.maybeStatus(ctx, false); err != nil {
				return err
			}
		}
	}
}

func (r *reader) installCopy(job *copyJob) {
	r.copy = job
	for _, t := range job.tables {
		oid := uint32(t.ID)
		r.tables[oid] = t
		if !job.initial {
			r.pending[oid] = true
			if !containsOID(r.pos.Copy, oid) && !r.pos.CopyAll {
				r.pos.Copy = append(r.pos.Copy, oid)
			}
		}
	}
	r.s.mu.Lock()
	r.s.progress = Progress{Copying: true, TablesTotal: len(job.tables), EstRows: job.estRows, Started: time.Now()}
	r.s.mu.Unlock()
}

func containsOID(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// deliverCopy hands the copy on at its consistent point.
func (r *reader) deliverCopy(ctx context.Context) error {
	job := r.copy
	n := len(job.tables)
	tsOf := func(i int) model.Ts {
		if job.initial {
			return job.base + 1 + model.Ts(i)
		}
		return r.pos.Ts + 1
	}
	done := make([]bool, n)
	next := 0 // tables before next are delivered (initial copies)
	left := n
	ticker := time.NewTicker(statusInterval / 2)
	defer ticker.Stop()
	for left > 0 {
		var p copyPiece
		var ok bool
		select {
		case p, ok = <-job.pieces:
		case <-ctx.Done():
			job.stop()
			return ctx.Err()
		case <-ticker.C:
			if err := r.maybeStatus(ctx, false); err != nil {
				return err
			}
			continue
		}
		if !ok {
			return fmt.Errorf("table copy ended with %d tables unfinished", left)
		}
		if p.err != nil {
			job.stop()
			return p.err
		}
		t := job.tables[p.idx]
		oid := uint32(t.ID)
		ts := tsOf(p.idx)
		if p.schema != nil {
			p.schema.schema.Version = ts
			old, known := r.pos.Cols[oid]
			if !job.initial {
				switch {
				case job.created[oid] || !known:
					r.acc.ddls = append(r.acc.ddls, &model.DDLEvent{CommitTs: ts, StartTs: ts, Kind: model.DDLCreateTable,
						Query: p.schema.schema.CreateTableSQL(true), Schema: t.Schema, Tables: []model.TableName{t}, After: []*model.TableSchema{p.schema.schema}})
				case old != p.schema.sig:
					if oc, err := parseSignature(old); err == nil {
						r.acc.ddls = append(r.acc.ddls, diffDDL(p.schema.schema, oc, parseSigOrNil(p.schema.sig), ts)...)
					}
				}
				if job.recopy {
					r.acc.ddls = append(r.acc.ddls, &model.DDLEvent{CommitTs: ts, StartTs: ts, Kind: model.DDLTruncateTable,
						Query: "TRUNCATE TABLE " + model.QuoteIdent(t.Schema) + "." + model.QuoteIdent(t.Table), Schema: t.Schema,
						Tables: []model.TableName{t}, After: []*model.TableSchema{p.schema.schema}})
				}
			}
			r.schemas[oid] = p.schema
			r.pos.Cols[oid] = p.schema.sig
		}
		if len(p.rows) > 0 {
			for _, row := range p.rows {
				row.CommitTs, row.StartTs = ts, ts
			}
			r.acc.txns = append(r.acc.txns, &model.Txn{CommitTs: ts, StartTs: ts, Rows: p.rows})
			r.acc.rows += len(p.rows)
		}
		r.s.mu.Lock()
		r.s.progress.Rows += int64(len(p.rows))
		r.s.progress.Bytes += p.bytes
		if p.done {
			r.s.progress.TablesDone++
		}
		r.s.mu.Unlock()
		if p.done {
			done[p.idx] = true
			left--
			if job.initial {
				moved := false
				for next < n && done[next] {
					next++
					moved = true
				}
				if moved && left > 0 {
					// Tables before next are complete: a position here
					// owes only the rest.
					r.pos.Copy = r.pos.Copy[:0]
					r.pos.CopyAll = false
					for _, t := range job.tables[next:] {
						r.pos.Copy = append(r.pos.Copy, uint32(t.ID))
					}
					r.acc.resolved = job.base + model.Ts(next)
				}
			}
		}
		if r.acc.rows >= pieceRows {
			if err := r.flush(ctx, true); err != nil {
				return err
			}
		}
	}
	job.wg.Wait()
	job.cancel()
	r.pos.Copy, r.pos.CopyAll = nil, false
	for _, t := range job.tables {
		delete(r.pending, uint32(t.ID))
	}
	if job.initial {
		r.resolved = job.base + model.Ts(n)
	} else {
		r.resolved = r.pos.Ts + 1
	}
	r.acc.resolved = r.resolved
	r.copy = nil
	r.s.mu.Lock()
	r.s.progress.Copying = false
	r.s.mu.Unlock()
	r.log.Info().Int("tables", n).Uint64("ts", r.resolved).Msg("table copy delivered")
	return r.flush(ctx, true)
}

func parseSigOrNil(s string) []relCol {
	c, _ := parseSignature(s)
	return c
}
