package mysql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// The fence table (sink/sqlsink/DESIGN.md, "Fenced writers"): one row per
// (changefeed, upstream table) naming the table's current writer.
var (
	fenceTable  = model.QuoteIdent(sqlsink.FenceSchema) + "." + model.QuoteIdent(sqlsink.FenceTable)
	fenceCreate = []string{
		"CREATE DATABASE IF NOT EXISTS " + model.QuoteIdent(sqlsink.FenceSchema),
		"CREATE TABLE IF NOT EXISTS " + fenceTable + ` (
  changefeed VARCHAR(255) NOT NULL,
  table_id BIGINT NOT NULL,
  token VARCHAR(64) NOT NULL,
  writer VARCHAR(255) NOT NULL,
  claimed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (changefeed, table_id)
)`,
	}
)

// ClaimTable writes f's token into the table's fence row. The upsert holds
// the row's exclusive lock until the commit: a transaction of the earlier
// writer that read the row under its shared lock before commits first; one
// that reads it after sees the new token. The lease is checked with the
// lock held, so a writer whose lease lapsed while it waited for the lock
// claims nothing.
func (b *backend) ClaimTable(ctx context.Context, f sqlsink.Fence) error {
	c, err := b.session(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	b.mu.Lock()
	ready := b.fenceReady
	b.mu.Unlock()
	if !ready {
		for _, q := range fenceCreate {
			if _, err := c.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("create the writer fence table %s: %w", fenceTable, err)
			}
		}
		b.mu.Lock()
		b.fenceReady = true
		b.mu.Unlock()
	}
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+fenceTable+" (changefeed, table_id, token, writer) VALUES (?, ?, ?, ?)"+
		" ON DUPLICATE KEY UPDATE token = VALUES(token), writer = VALUES(writer), claimed_at = CURRENT_TIMESTAMP(6)",
		f.Changefeed, int64(f.Table), f.Token, f.Writer); err != nil {
		return fmt.Errorf("write the writer fence row: %w", err)
	}
	if err := sink.LeaseValid(ctx); err != nil {
		return err
	}
	return tx.Commit()
}

// checkFence reads the table's fence row under a shared lock, inside the
// open transaction, and fails with sink.ErrFenced unless it names f.
// TiDB refuses LOCK IN SHARE MODE (or, with tidb_enable_noop_functions,
// takes no lock, which would not order the commit against a claim): there
// the read locks the row exclusively, which makes a table's transactions
// commit one at a time.
func checkFence(ctx context.Context, dc any, f *sqlsink.Fence, flavour string) error {
	lock := " LOCK IN SHARE MODE"
	if flavour == FlavourTiDB {
		lock = " FOR UPDATE"
	}
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return fmt.Errorf("mysql driver connection %T cannot query", dc)
	}
	rows, err := q.QueryContext(ctx, "SELECT token, writer FROM "+fenceTable+" WHERE changefeed = "+quote(f.Changefeed)+
		" AND table_id = "+strconv.FormatInt(int64(f.Table), 10)+lock, nil)
	if err != nil {
		return fmt.Errorf("read the writer fence row: %w", err)
	}
	defer rows.Close()
	dest := make([]driver.Value, 2)
	if err := rows.Next(dest); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w (the table's writer fence row is gone)", sink.ErrFenced)
		}
		return fmt.Errorf("read the writer fence row: %w", err)
	}
	token, writer := text(dest[0]), text(dest[1])
	if token != f.Token {
		return fmt.Errorf("%w (the table's writer is now %s)", sink.ErrFenced, writer)
	}
	return nil
}

func text(v driver.Value) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}
