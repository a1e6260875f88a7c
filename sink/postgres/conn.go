package postgres

import (
	"bytes"
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// conn is one worker's connection.
type conn struct {
	b *backend
	c *pgx.Conn
}

// statementLimit bounds a multi-row statement and a multi-statement
// request.
const statementLimit = 8 << 20

func (c *conn) renderer(literal bool) renderer {
	r := renderer{literal: literal, maxBytes: statementLimit}
	switch c.b.cfg.Bulk {
	case "auto":
		r.copyMin = copyMinRows
	case "copy":
		r.copyMin = 1
	}
	return r
}

func (c *conn) render(stmts []sqlsink.Stmt, literal bool) ([]rendered, error) {
	r := c.renderer(literal)
	var rs []rendered
	for i := range stmts {
		var err error
		if rs, err = r.render(rs, &stmts[i]); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// Apply executes the statements in one transaction.
//
// With multi-stmt-enable (the default) statements go with literal values
// as one simple-protocol request "BEGIN;…;COMMIT", cut below 8 MiB and
// around COPYs: a typical batch is one round trip. Otherwise, with
// cache-prep-stmts, they go as one pipelined batch of cached prepared
// statements with text parameters (one round trip too, an implicit
// transaction), or one by one.
func (c *conn) Apply(ctx context.Context, stmts []sqlsink.Stmt) error {
	cfg := c.b.cfg
	literal := cfg.MultiStmt || !cfg.CachePrepStmts
	rs, err := c.render(stmts, literal)
	if err != nil || len(rs) == 0 {
		return err
	}
	if len(rs) == 1 && rs[0].copy != nil {
		// One COPY is atomic by itself: no BEGIN and COMMIT round trips.
		return c.copy(ctx, rs[0])
	}
	if cfg.MultiStmt {
		return c.applyMulti(ctx, rs)
	}
	if !literal && !hasCopy(rs) {
		return c.applyBatch(ctx, rs)
	}
	if err := c.Begin(ctx); err != nil {
		return err
	}
	if err := c.execEach(ctx, rs); err != nil {
		return err
	}
	return c.Commit(ctx)
}

func hasCopy(rs []rendered) bool {
	for _, r := range rs {
		if r.copy != nil {
			return true
		}
	}
	return false
}

func (c *conn) applyMulti(ctx context.Context, rs []rendered) error {
	var b strings.Builder
	b.WriteString("BEGIN")
	run := func() error {
		if b.Len() == 0 {
			return nil
		}
		err := c.c.PgConn().Exec(ctx, b.String()).Close()
		b.Reset()
		return err
	}
	fail := func(err error) error {
		if transient, _ := classify(err); transient {
			return err
		}
		// A multi-statement request does not say which statement failed:
		// roll back and run the batch again one statement at a time (rolled
		// back again) to name the table and the kind of statement.
		if rerr := c.c.PgConn().Exec(ctx, "ROLLBACK; BEGIN").Close(); rerr != nil {
			return err
		}
		if aerr := c.execEach(ctx, rs); aerr != nil {
			return aerr
		}
		return err
	}
	for _, r := range rs {
		if r.copy != nil {
			if err := run(); err != nil {
				return fail(err)
			}
			if err := c.copy(ctx, r); err != nil {
				return err
			}
			continue
		}
		if b.Len()+len(r.sql)+1 > statementLimit && b.Len() > 0 {
			if err := run(); err != nil {
				return fail(err)
			}
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(r.sql)
	}
	if b.Len() > 0 {
		b.WriteByte(';')
	}
	b.WriteString("COMMIT")
	if err := run(); err != nil {
		return fail(err)
	}
	return nil
}

func (c *conn) copy(ctx context.Context, r rendered) error {
	if _, err := c.c.PgConn().CopyFrom(ctx, bytes.NewReader(r.copy.data), r.copy.sql); err != nil {
		return &sqlsink.StmtError{Stmt: r.stmt, Err: err}
	}
	return nil
}

// applyBatch pipelines every statement in one round trip; the batch is one
// implicit transaction.
func (c *conn) applyBatch(ctx context.Context, rs []rendered) error {
	var batch pgx.Batch
	for _, r := range rs {
		batch.Queue(r.sql, r.args...)
	}
	br := c.c.SendBatch(ctx, &batch)
	for _, r := range rs {
		if _, err := br.Exec(); err != nil {
			br.Close()
			if transient, _ := classify(err); transient {
				return err
			}
			return &sqlsink.StmtError{Stmt: r.stmt, Err: err}
		}
	}
	return br.Close()
}

// execEach runs statements one at a time in the open transaction.
func (c *conn) execEach(ctx context.Context, rs []rendered) error {
	for _, r := range rs {
		if r.copy != nil {
			if err := c.copy(ctx, r); err != nil {
				return err
			}
			continue
		}
		var err error
		if r.args == nil {
			err = c.c.PgConn().Exec(ctx, r.sql).Close()
		} else {
			_, err = c.c.Exec(ctx, r.sql, r.args...)
		}
		if err != nil {
			if transient, _ := classify(err); transient {
				return err
			}
			return &sqlsink.StmtError{Stmt: r.stmt, Err: err}
		}
	}
	return nil
}

// Begin opens a transaction that Exec adds to and Commit ends.
func (c *conn) Begin(ctx context.Context) error {
	return c.c.PgConn().Exec(ctx, "BEGIN").Close()
}

// Exec runs statements in the open transaction, one at a time.
func (c *conn) Exec(ctx context.Context, stmts []sqlsink.Stmt) error {
	rs, err := c.render(stmts, !c.b.cfg.CachePrepStmts)
	if err != nil {
		return err
	}
	return c.execEach(ctx, rs)
}

// Commit ends the transaction Begin opened.
func (c *conn) Commit(ctx context.Context) error {
	return c.c.PgConn().Exec(ctx, "COMMIT").Close()
}

// Close drops the connection (an open transaction rolls back).
func (c *conn) Close() error {
	return c.c.Close(context.Background())
}
