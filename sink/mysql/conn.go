package mysql

import (
	"container/list"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"

	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// conn is one worker's connection.
type conn struct {
	b        *backend
	c        *sql.Conn
	maxBytes int
	cache    *stmtCache
	bufs     bufPool // statement buffers, reused from batch to batch
}

// stmtCacheSize bounds the prepared statements a connection keeps: the
// server's max_prepared_stmt_count (16382 by default) is shared by every
// connection, and 64 workers × 128 stays well below it.
const stmtCacheSize = 128

// statementLimit is the most a multi-row statement or a multi-statement
// request may hold: below max_allowed_packet, and small enough that one
// request does not hold the server for long.
func statementLimit(maxPacket int) int {
	limit := 8 << 20
	if maxPacket > 0 && maxPacket-4096 < limit {
		limit = maxPacket - 4096
	}
	if limit < 4096 {
		limit = 4096
	}
	return limit
}

func newConn(b *backend, c *sql.Conn, maxPacket int) *conn {
	return &conn{b: b, c: c, maxBytes: statementLimit(maxPacket), cache: newStmtCache(stmtCacheSize)}
}

// Apply executes the statements in one downstream transaction.
//
// With multi-stmt-enable (the default) the whole transaction goes as
// "BEGIN;…;COMMIT" in as few requests as the packet size allows, with
// literal values: one round trip for a typical batch. Otherwise each
// statement is its own round trip, as a cached server-side prepared
// statement with cache-prep-stmts, or as text.
func (c *conn) Apply(ctx context.Context, stmts []sqlsink.Stmt) error {
	cfg := c.b.cfg
	prepared := !cfg.MultiStmt && cfg.CachePrepStmts
	rs, err := c.render(stmts, prepared)
	// The statements' text lives in the pooled buffers: free them only
	// once nothing uses it.
	defer c.bufs.release()
	if err != nil || len(rs) == 0 {
		return err
	}
	return c.c.Raw(func(dc any) error {
		ex, ok := dc.(driver.ExecerContext)
		if !ok {
			return fmt.Errorf("mysql driver connection %T cannot execute", dc)
		}
		if len(rs) == 1 {
			// One statement is atomic on its own in autocommit mode (the
			// session's default, which nothing here changes): no BEGIN and
			// COMMIT for the server to run around it, as a plain loader's
			// multi-row INSERT has none.
			return c.execEach(ctx, ex, dc, rs, prepared)
		}
		if cfg.MultiStmt {
			return c.applyMulti(ctx, ex, dc, rs)
		}
		if _, err := ex.ExecContext(ctx, "BEGIN", nil); err != nil {
			return err
		}
		if err := c.execEach(ctx, ex, dc, rs, prepared); err != nil {
			return err
		}
		_, err := ex.ExecContext(ctx, "COMMIT", nil)
		return err
	})
}

func (c *conn) render(stmts []sqlsink.Stmt, prepared bool) ([]rendered, error) {
	r := renderer{tz: c.b.cfg.TimeZone, literal: !prepared, maxBytes: c.maxBytes, maxArgs: maxPlaceholders, bufs: &c.bufs}
	var rs []rendered
	for i := range stmts {
		var err error
		if rs, err = r.render(rs, &stmts[i]); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// Begin opens a transaction that Exec adds to and Commit ends.
func (c *conn) Begin(ctx context.Context) error {
	_, err := c.c.ExecContext(ctx, "BEGIN")
	return err
}

// Exec runs statements inside the open transaction, one round trip each,
// so that an error names its statement and leaves the earlier ones in
// place for nobody to run twice.
func (c *conn) Exec(ctx context.Context, stmts []sqlsink.Stmt) error {
	prepared := c.b.cfg.CachePrepStmts
	rs, err := c.render(stmts, prepared)
	defer c.bufs.release()
	if err != nil || len(rs) == 0 {
		return err
	}
	return c.c.Raw(func(dc any) error {
		ex, ok := dc.(driver.ExecerContext)
		if !ok {
			return fmt.Errorf("mysql driver connection %T cannot execute", dc)
		}
		return c.execEach(ctx, ex, dc, rs, prepared)
	})
}

// Commit ends the transaction Begin opened.
func (c *conn) Commit(ctx context.Context) error {
	_, err := c.c.ExecContext(ctx, "COMMIT")
	return err
}

func (c *conn) applyMulti(ctx context.Context, ex driver.ExecerContext, dc any, rs []rendered) error {
	var chunks []string
	var b strings.Builder
	b.WriteString("BEGIN")
	for _, r := range rs {
		if b.Len()+len(r.sql)+1 > c.maxBytes && b.Len() > len("BEGIN") {
			chunks = append(chunks, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		if r.lenient {
			b.WriteString(c.setMode(true) + ";" + r.sql + ";" + c.setMode(false))
			continue
		}
		b.WriteString(r.sql)
	}
	b.WriteString(";COMMIT")
	chunks = append(chunks, b.String())
	for _, q := range chunks {
		if _, err := ex.ExecContext(ctx, q, nil); err != nil {
			if transient, _ := classify(err); transient {
				return err
			}
			// A multi-statement request does not say which statement
			// failed: roll back and run the batch again one statement at a
			// time, rolled back again, to name the table and the kind of
			// statement.
			if _, rerr := ex.ExecContext(ctx, "ROLLBACK;BEGIN", nil); rerr != nil {
				return err
			}
			if aerr := c.execEach(ctx, ex, dc, rs, false); aerr != nil {
				return aerr
			}
			return err
		}
	}
	return nil
}

// execEach runs rendered statements one by one in the open transaction.
func (c *conn) execEach(ctx context.Context, ex driver.ExecerContext, dc any, rs []rendered, prepared bool) error {
	for _, r := range rs {
		if r.lenient {
			if _, err := ex.ExecContext(ctx, c.setMode(true), nil); err != nil {
				return err
			}
		}
		var err error
		if prepared {
			err = c.execPrepared(ctx, dc, r)
		} else {
			_, err = ex.ExecContext(ctx, r.sql, nil)
		}
		if err != nil {
			return &sqlsink.StmtError{Stmt: r.stmt, Err: err}
		}
		if r.lenient {
			if _, err := ex.ExecContext(ctx, c.setMode(false), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *conn) execPrepared(ctx context.Context, dc any, r rendered) error {
	st, err := c.cache.get(ctx, dc, r.sql)
	if err != nil {
		return err
	}
	ex, ok := st.(driver.StmtExecContext)
	if !ok {
		return fmt.Errorf("mysql driver statement %T cannot execute", st)
	}
	args := make([]driver.NamedValue, len(r.args))
	for i, a := range r.args {
		args[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	_, err = ex.ExecContext(ctx, args)
	return err
}

// setMode is the statement that turns strict mode off (lenient) or back
// on for the session.
func (c *conn) setMode(lenient bool) string {
	c.b.mu.Lock()
	mode := c.b.sqlMode
	c.b.mu.Unlock()
	if lenient {
		var keep []string
		for _, m := range strings.Split(mode, ",") {
			if m != "STRICT_TRANS_TABLES" && m != "STRICT_ALL_TABLES" {
				keep = append(keep, m)
			}
		}
		mode = strings.Join(keep, ",")
	}
	return "SET SESSION sql_mode = " + quote(mode)
}

// Close drops the connection for good: the engine closes a connection
// after any error, when its state is unknown.
func (c *conn) Close() error {
	_ = c.c.Raw(func(any) error {
		c.cache.closeAll()
		return driver.ErrBadConn
	})
	return c.c.Close()
}

// stmtCache keeps the most recently used prepared statements of one
// connection.
type stmtCache struct {
	size  int
	order *list.List // of *cached, most recent first
	bySQL map[string]*list.Element
}

type cached struct {
	sql  string
	stmt driver.Stmt
}

func newStmtCache(size int) *stmtCache {
	return &stmtCache{size: size, order: list.New(), bySQL: map[string]*list.Element{}}
}

func (s *stmtCache) get(ctx context.Context, dc any, q string) (driver.Stmt, error) {
	if e, ok := s.bySQL[q]; ok {
		s.order.MoveToFront(e)
		return e.Value.(*cached).stmt, nil
	}
	p, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("mysql driver connection %T cannot prepare", dc)
	}
	// The text may be a view of a pooled buffer (see bufPool): the cache
	// keeps a copy.
	q = strings.Clone(q)
	st, err := p.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s.bySQL[q] = s.order.PushFront(&cached{sql: q, stmt: st})
	for s.order.Len() > s.size {
		e := s.order.Back()
		s.order.Remove(e)
		old := e.Value.(*cached)
		delete(s.bySQL, old.sql)
		old.stmt.Close()
	}
	return st, nil
}

func (s *stmtCache) closeAll() {
	for e := s.order.Front(); e != nil; e = e.Next() {
		e.Value.(*cached).stmt.Close()
	}
	s.order.Init()
	s.bySQL = map[string]*list.Element{}
}
