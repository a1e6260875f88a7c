package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// The fence table (sink/sqlsink/DESIGN.md, "Fenced writers"): one row per
// (changefeed, upstream table) naming the table's current writer.
var (
	fenceTable  = quoteIdent(sqlsink.FenceSchema) + "." + quoteIdent(sqlsink.FenceTable)
	fenceCreate = []string{
		"CREATE SCHEMA IF NOT EXISTS " + quoteIdent(sqlsink.FenceSchema),
		"CREATE TABLE IF NOT EXISTS " + fenceTable + ` (
  changefeed text NOT NULL,
  table_id bigint NOT NULL,
  token text NOT NULL,
  writer text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (changefeed, table_id)
)`,
	}
	fenceCheck = "SELECT token, writer FROM " + fenceTable + " WHERE changefeed = $1 AND table_id = $2 FOR SHARE"
)

// fenceOnce creates the fence table once per sink.
type fenceOnce struct {
	mu    sync.Mutex
	ready bool
}

// ClaimTable writes f's token into the table's fence row. The upsert holds
// the row's lock until the commit: a transaction of the earlier writer
// that read the row FOR SHARE before commits first; one that reads it
// after sees the new token. The lease is checked with the lock held.
func (b *backend) ClaimTable(ctx context.Context, f sqlsink.Fence) error {
	c, err := b.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	b.fence.mu.Lock()
	ready := b.fence.ready
	b.fence.mu.Unlock()
	if !ready {
		// Two sinks creating it at once can collide in the catalog; the
		// loser finds the table there.
		if err := inTx(ctx, c, fenceCreate); err != nil {
			var exists bool
			if qerr := c.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", fenceTable).Scan(&exists); qerr != nil || !exists {
				return fmt.Errorf("create the writer fence table %s: %w", fenceTable, err)
			}
		}
		b.fence.mu.Lock()
		b.fence.ready = true
		b.fence.mu.Unlock()
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "INSERT INTO "+fenceTable+" (changefeed, table_id, token, writer) VALUES ($1, $2, $3, $4)"+
		" ON CONFLICT (changefeed, table_id) DO UPDATE SET token = EXCLUDED.token, writer = EXCLUDED.writer, claimed_at = now()",
		f.Changefeed, int64(f.Table), f.Token, f.Writer); err != nil {
		return fmt.Errorf("write the writer fence row: %w", err)
	}
	if err := sink.LeaseValid(ctx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// fenced reads the fence row's token and writer (already scanned or an
// error) and says whether f still holds the table.
func fenced(token, writer string, err error, f *sqlsink.Fence) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w (the table's writer fence row is gone)", sink.ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("read the writer fence row: %w", err)
	}
	if token != f.Token {
		return fmt.Errorf("%w (the table's writer is now %s)", sink.ErrFenced, writer)
	}
	return nil
}

// commit ends the open transaction: with a fence, only if the fence row
// still names this writer (read FOR SHARE, the lock held to the commit);
// otherwise it rolls back.
func (c *conn) commit(ctx context.Context, f *sqlsink.Fence) error {
	if f != nil {
		var token, writer string
		err := c.c.QueryRow(ctx, fenceCheck, f.Changefeed, int64(f.Table)).Scan(&token, &writer)
		if err := fenced(token, writer, err, f); err != nil {
			_ = c.c.PgConn().Exec(ctx, "ROLLBACK").Close()
			return err
		}
	}
	return c.c.PgConn().Exec(ctx, "COMMIT").Close()
}
