package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// The harness plays the processor and the owner: it reads the stream,
// applies transactions to a downstream replica (which, like a real
// database, keeps what was written even when the reader dies), "flushes"
// by storing the position with the checkpoint, confirms only up to a
// checkpoint it chooses, and resumes from the stored position after it
// kills the stream.

type replica struct {
	mu     sync.Mutex
	tables map[string]map[string]map[string]model.Value // table -> key -> column -> value
	ddls   []*model.DDLEvent
	rows   int
}

func newReplica() *replica { return &replica{tables: map[string]map[string]map[string]model.Value{}} }

func keyOf(s *model.TableSchema, img []model.Value) string {
	ix := s.HandleKey()
	if ix == nil {
		panic("table " + s.Table.String() + " has no key")
	}
	var parts []string
	for _, i := range s.KeyColumns(ix) {
		parts = append(parts, img[i].Kind.String()+":"+img[i].Text())
	}
	return strings.Join(parts, "|")
}

// apply writes one transaction idempotently (upserts, delete if present),
// as a sink in safe mode does.
func (r *replica) apply(t testing.TB, txn *model.Txn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range txn.Rows {
		if err := row.Validate(); err != nil {
			t.Errorf("invalid row: %v", err)
			continue
		}
		name := row.Table().String()
		tb := r.tables[name]
		if tb == nil {
			tb = map[string]map[string]model.Value{}
			r.tables[name] = tb
		}
		r.rows++
		switch row.Op {
		case model.OpInsert:
			m := map[string]model.Value{}
			for i, c := range row.Schema.Columns {
				m[c.Name] = row.After[i]
			}
			tb[keyOf(row.Schema, row.After)] = m
		case model.OpUpdate:
			newKey := keyOf(row.Schema, row.After)
			var old map[string]model.Value
			if row.Before != nil && row.KeyChanged() {
				oldKey := keyOf(row.Schema, row.Before)
				old = tb[oldKey]
				delete(tb, oldKey)
			} else {
				old = tb[newKey]
			}
			m := map[string]model.Value{}
			for i, c := range row.Schema.Columns {
				v := row.After[i]
				if v.IsUnchanged() {
					v = old[c.Name] // missing if the row never arrived: the test then fails
				}
				m[c.Name] = v
			}
			tb[newKey] = m
		case model.OpDelete:
			delete(tb, keyOf(row.Schema, row.Before))
		}
	}
}

func (r *replica) applyDDL(d *model.DDLEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ddls = append(r.ddls, d)
	for _, t := range d.Tables {
		switch d.Kind {
		case model.DDLTruncateTable:
			r.tables[t.String()] = map[string]map[string]model.Value{}
		case model.DDLCreateTable:
			if r.tables[t.String()] == nil {
				r.tables[t.String()] = map[string]map[string]model.Value{}
			}
		}
	}
}

// tableSum is a table's row count and order-independent checksum over its
// rows rendered in the schema's column order.
type tableSum struct {
	Rows int
	Sum  uint64
}

func rowHash(cols []string, get func(string) model.Value) uint64 {
	h := fnv.New64a()
	for _, c := range cols {
		v := get(c)
		if v.IsMissing() {
			v = model.Null() // a column added after the row was written
		}
		fmt.Fprintf(h, "%s=%s:%q;", c, v.Kind, v.Text())
	}
	return h.Sum64()
}

func (r *replica) sums(cols map[string][]string) map[string]tableSum {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]tableSum{}
	for name, tb := range r.tables {
		s := tableSum{}
		for _, row := range tb {
			s.Rows++
			s.Sum += rowHash(cols[name], func(c string) model.Value { return row[c] })
		}
		out[name] = s
	}
	return out
}

// serverSums reads every table of the changefeed from the server with the
// copy's decoder and sums it the same way.
func serverSums(t testing.TB, cfg Config, tables []string) (map[string]tableSum, map[string][]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := connectPgx(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	cat := newCatalog(conn)
	all, err := listTables(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]tableSum{}
	colsOf := map[string][]string{}
	for _, tn := range all {
		if !containsStr(tables, tn.String()) {
			continue
		}
		cols, err := cat.columns(ctx, uint32(tn.ID))
		if err != nil {
			t.Fatal(err)
		}
		sch, err := cat.build(ctx, uint32(tn.ID), cols, 0)
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, len(cols))
		q := make([]string, len(cols))
		for i, c := range cols {
			names[i], q[i] = c.Name, quoteIdent(c.Name)
		}
		colsOf[tn.String()] = names
		rr := conn.PgConn().ExecParams(ctx, "SELECT "+strings.Join(q, ",")+" FROM "+quoteTable(tn), nil, nil, nil, []int16{0})
		s := tableSum{}
		for rr.NextRow() {
			vals := make([]model.Value, len(cols))
			for i, b := range rr.Values() {
				if b == nil {
					vals[i] = model.Null()
					continue
				}
				if vals[i], err = sch.codecs[i].decode(b); err != nil {
					t.Fatal(err)
				}
			}
			s.Rows++
			s.Sum += rowHash(names, func(c string) model.Value { return vals[indexOf(names, c)] })
		}
		if _, err := rr.Close(); err != nil {
			t.Fatal(err)
		}
		sums[tn.String()] = s
	}
	return sums, colsOf
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func containsStr(s []string, v string) bool { return indexOf(s, v) >= 0 }

// processor drives one stream at a time.
type processor struct {
	t   testing.TB
	src *Source
	rep *replica

	mu         sync.Mutex
	stored     string   // the position stored with the checkpoint
	checkpoint model.Ts // never decreases
	resolved   model.Ts
	lastPos    string
	maxConfirm atomic.Uint64 // highest LSN ever confirmed
	opens      int
	batches    int
	lastTxn    map[string]model.Ts // per table: commit ts order check
	seenTs     map[string]model.Ts // txn identity -> ts across replays (by commit LSN)
}

func newProcessor(t testing.TB, src *Source) *processor {
	return &processor{t: t, src: src, rep: newReplica(), lastTxn: map[string]model.Ts{}}
}

// run reads until stop says so, flushing every flushEvery batches and
// confirming the checkpoint of confirmLag flushes ago. It returns the
// stream's error if it ended on its own.
func (p *processor) run(ctx context.Context, opts source.StreamOptions, flushEvery, confirmLag int, stop func(b source.StreamBatch, n int) bool) error {
	p.mu.Lock()
	opts.Position = p.stored
	if opts.StartTs == 0 {
		opts.StartTs = p.checkpoint
	}
	p.opens++
	// A new stream replays from the checkpoint: its resolved ts starts
	// there, not where the killed one had got to.
	p.resolved = p.checkpoint
	p.mu.Unlock()
	st, err := p.src.OpenStream(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	var history []string
	n := 0
	for {
		b, err := st.Next(ctx)
		if err != nil {
			return err
		}
		n++
		p.batches++
		for _, d := range b.DDLs {
			if err := d.Validate(); err != nil {
				p.t.Errorf("invalid DDL: %v", err)
			}
			p.rep.applyDDL(d)
		}
		for _, txn := range b.Txns {
			if txn.CommitTs <= p.resolved {
				p.t.Errorf("transaction at %d arrived after resolved ts %d", txn.CommitTs, p.resolved)
			}
			p.rep.apply(p.t, txn)
		}
		if b.ResolvedTs != 0 {
			if b.ResolvedTs < p.resolved {
				p.t.Errorf("resolved ts went back from %d to %d", p.resolved, b.ResolvedTs)
			}
			p.resolved = b.ResolvedTs
		}
		if b.Position != "" {
			p.mu.Lock()
			p.lastPos = b.Position
			p.mu.Unlock()
		}
		if n%flushEvery == 0 && b.Position != "" {
			// Flush: everything applied is durable; store the position
			// with the checkpoint, then confirm an older one.
			p.mu.Lock()
			p.stored, p.checkpoint = b.Position, b.ResolvedTs
			p.mu.Unlock()
			history = append(history, b.Position)
			if len(history) > confirmLag {
				c := history[len(history)-1-confirmLag]
				pos, _ := decodePosition(c)
				for {
					cur := p.maxConfirm.Load()
					if uint64(pos.LSN) <= cur || p.maxConfirm.CompareAndSwap(cur, uint64(pos.LSN)) {
						break
					}
				}
				if err := st.Confirm(ctx, c); err != nil {
					return err
				}
			}
		}
		if stop != nil && stop(b, n) {
			return nil
		}
	}
}

func lsnOf(pos string) pglogrepl.LSN {
	if pos == "" {
		return 0
	}
	p, err := decodePosition(pos)
	if err != nil {
		panic(err)
	}
	return p.LSN
}

// ---- servers and workload ----

func startServer(t *testing.T, settings ...string) (*testserver.Postgres, string) {
	t.Helper()
	opts := []testserver.PostgresOption{testserver.PostgresLogicalReplication()}
	if len(settings) > 0 {
		opts = append(opts, testserver.PostgresSettings(settings...))
	}
	pg := testserver.StartPostgres(t, opts...)
	pg.CreateDatabase(t, "shop")
	return pg, pg.SuperConnString("shop")
}

func mustConfig(t testing.TB, uri, params, cf string) Config {
	t.Helper()
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	if params != "" {
		uri += sep + params
	}
	cfg, err := ParseURI(uri, cf)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func slotLSNs(ctx context.Context, conn *pgx.Conn, slot string) (confirmed, restart pglogrepl.LSN, exists bool, err error) {
	si, err := readSlot(ctx, conn, slot)
	return si.ConfirmedFlush, si.RestartLSN, si.Exists, err
}

// waitCaughtUp reads until the stream's position passes the server's
// current WAL position (the heartbeat guarantees a commit after it).
func catchUpStop(target pglogrepl.LSN) func(source.StreamBatch, int) bool {
	return func(b source.StreamBatch, _ int) bool {
		return b.Position != "" && lsnOf(b.Position) >= target
	}
}

func currentLSN(t testing.TB, conn *pgx.Conn) pglogrepl.LSN {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func isRetryable(err error) bool {
	return err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
