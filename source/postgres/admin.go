package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/model"
)

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// keylessTables names the tables among ts that logical replication cannot
// update or delete in: no primary key and replica identity DEFAULT, or
// replica identity NOTHING, or an INDEX identity whose index is gone.
func keylessTables(ctx context.Context, c *pgx.Conn, ts []model.TableName) ([]string, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	rows, err := c.Query(ctx, `
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1::int8[]::oid[]) AND (
  c.relreplident = 'n'
  OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
  OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
ORDER BY 1`, ids)
	if err != nil {
		return nil, fmt.Errorf("check tables for keys: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ErrKeyless is wrapped by the error naming tables without a key.
var ErrKeyless = errors.New("tables without a primary key or replica identity")

func keylessError(names []string) error {
	return fmt.Errorf("%w: %s. PostgreSQL cannot publish their updates and deletes (and would refuse them to your application once they are in a publication): add a primary key, set REPLICA IDENTITY FULL or USING INDEX, or exclude them with the filter", ErrKeyless, strings.Join(names, ", "))
}

// CheckError lists every problem Check found, one specific message each.
type CheckError struct{ Problems []string }

func (e *CheckError) Error() string {
	return "postgres upstream is not ready for the changefeed: " + strings.Join(e.Problems, "; ")
}

// Check runs the create-time checks against the server: wal_level, the
// user's REPLICATION attribute, a free replication slot and WAL sender,
// the publication (when named), and tables without a key among those the
// filter selects. It changes nothing. The error is a *CheckError listing
// every problem, or a connection error.
func Check(ctx context.Context, cfg Config, match func(model.TableName) bool) error {
	c, err := connectPgx(ctx, &cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var problems []string
	var walLevel string
	var slots, senders, usedSlots, usedSenders int
	var canReplicate bool
	err = c.QueryRow(ctx, `SELECT current_setting('wal_level'),
  current_setting('max_replication_slots')::int, current_setting('max_wal_senders')::int,
  (SELECT count(*) FROM pg_replication_slots)::int, (SELECT count(*) FROM pg_stat_replication)::int,
  (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)`).
		Scan(&walLevel, &slots, &senders, &usedSlots, &usedSenders, &canReplicate)
	if err != nil {
		return fmt.Errorf("read server settings of %s: %w", cfg.Redacted(), err)
	}
	if walLevel != "logical" {
		problems = append(problems, fmt.Sprintf("wal_level is %q; logical replication needs wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart the server)", walLevel))
	}
	if !canReplicate {
		problems = append(problems, fmt.Sprintf("user %q has neither the REPLICATION attribute nor superuser (ALTER ROLE %s REPLICATION)", cfg.User, quoteIdent(cfg.User)))
	}
	slot, err := readSlot(ctx, c, cfg.Slot)
	if err != nil {
		return err
	}
	// The stream needs its slot and a WAL sender; a table copy briefly
	// needs one more of each (a temporary slot on its own connection).
	needSlots := 2
	if slot.Exists {
		needSlots = 1
	}
	if free := slots - usedSlots; free < needSlots {
		problems = append(problems, fmt.Sprintf("max_replication_slots is %d and %d are in use; the changefeed needs %d free (raise max_replication_slots and restart, or drop unused slots)", slots, usedSlots, needSlots))
	}
	if free := senders - usedSenders; free < 2 {
		problems = append(problems, fmt.Sprintf("max_wal_senders is %d and %d are in use; the changefeed needs 2 free (raise max_wal_senders and restart)", senders, usedSenders))
	}
	if slot.Exists && slot.WALStatus == "lost" {
		problems = append(problems, fmt.Sprintf("replication slot %q exists but was invalidated (max_slot_wal_keep_size); drop it or name another slot", cfg.Slot))
	}
	if slot.Exists && (slot.Plugin != "pgoutput" || slot.Database != cfg.Database) {
		problems = append(problems, fmt.Sprintf("replication slot %q exists for database %s with plugin %q; raftcdc needs pgoutput on %s: name another slot", cfg.Slot, slot.Database, slot.Plugin, cfg.Database))
	}
	all, err := listTables(ctx, c)
	if err != nil {
		return err
	}
	var selected []model.TableName
	for _, t := range all {
		if match == nil || match(t) {
			selected = append(selected, t)
		}
	}
	if bad, err := keylessTables(ctx, c, selected); err != nil {
		return err
	} else if len(bad) > 0 {
		problems = append(problems, keylessError(bad).Error())
	}
	ps, err := readPublication(ctx, c, cfg.Publication)
	if err != nil {
		return err
	}
	if cfg.PublicationGiven {
		if !ps.Exists {
			problems = append(problems, fmt.Sprintf("publication %q (named by publication=) does not exist", cfg.Publication))
		} else if !ps.AllTables {
			var missing []string
			for _, t := range selected {
				if !ps.Tables[t.String()] {
					missing = append(missing, t.String())
				}
			}
			if len(missing) > 0 {
				problems = append(problems, fmt.Sprintf("publication %q does not publish %s, which the filter selects", cfg.Publication, strings.Join(missing, ", ")))
			}
		}
	} else if ps.Exists && !ps.Ours {
		problems = append(problems, fmt.Sprintf("publication %q exists but raftcdc did not create it; name it with publication= or choose another slot name", cfg.Publication))
	}
	if len(problems) > 0 {
		return &CheckError{Problems: problems}
	}
	return nil
}

// SlotStatus is what changefeed query shows about the slot.
type SlotStatus struct {
	Exists         bool   `json:"exists"`
	Active         bool   `json:"active"`
	WALStatus      string `json:"wal_status"`
	ConfirmedFlush string `json:"confirmed_flush_lsn"`
	RestartLSN     string `json:"restart_lsn"`
	// RetainedWALBytes is how much WAL the slot keeps on the server
	// (current WAL position minus restart_lsn).
	RetainedWALBytes int64 `json:"retained_wal_bytes"`
	// Warning is set when the retained WAL is above wal-warn-bytes or the
	// slot is close to invalidation.
	Warning string `json:"warning,omitempty"`
}

// Status reads the slot's state.
func Status(ctx context.Context, cfg Config) (SlotStatus, error) {
	c, err := connectPgx(ctx, &cfg)
	if err != nil {
		return SlotStatus{}, err
	}
	defer c.Close(context.Background())
	si, err := readSlot(ctx, c, cfg.Slot)
	if err != nil {
		return SlotStatus{}, err
	}
	st := SlotStatus{Exists: si.Exists, Active: si.Active, WALStatus: si.WALStatus, RetainedWALBytes: si.RetainedBytes}
	if !si.Exists {
		st.Warning = fmt.Sprintf("replication slot %q does not exist", cfg.Slot)
		return st, nil
	}
	st.ConfirmedFlush, st.RestartLSN = si.ConfirmedFlush.String(), si.RestartLSN.String()
	switch {
	case si.WALStatus == "lost":
		st.Warning = "the slot was invalidated: the server removed WAL it needed"
	case si.WALStatus == "unreserved":
		st.Warning = "the slot is about to be invalidated (max_slot_wal_keep_size)"
	case si.RetainedBytes > cfg.WALWarnBytes:
		st.Warning = "the slot retains " + strconv.FormatInt(si.RetainedBytes, 10) + " bytes of WAL, above wal-warn-bytes=" + strconv.FormatInt(cfg.WALWarnBytes, 10)
	}
	return st, nil
}

// Remove drops the changefeed's slot, and its publication if raftcdc
// created it. A slot still in use (a stream open somewhere) is an error:
// stop the changefeed first. Missing objects are not errors, so remove can
// be retried.
func Remove(ctx context.Context, cfg Config) error {
	c, err := connectPgx(ctx, &cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	si, err := readSlot(ctx, c, cfg.Slot)
	if err != nil {
		return err
	}
	if si.Exists {
		if si.Active {
			return fmt.Errorf("replication slot %q is in use by server process %d: stop the changefeed's stream before removing it", cfg.Slot, si.ActivePID)
		}
		if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, cfg.Slot); err != nil {
			return fmt.Errorf("drop replication slot %q: %w", cfg.Slot, err)
		}
	}
	if !cfg.PublicationGiven {
		ps, err := readPublication(ctx, c, cfg.Publication)
		if err != nil {
			return err
		}
		if ps.Exists && ps.Ours {
			if _, err := c.Exec(ctx, "DROP PUBLICATION "+quoteIdent(cfg.Publication)); err != nil {
				return fmt.Errorf("drop publication %q: %w", cfg.Publication, err)
			}
		}
	}
	return nil
}
