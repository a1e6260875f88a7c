package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/migrate"
	"github.com/rs/zerolog"
)

// MigrateResult says what MigrateLog did.
type MigrateResult struct {
	From, To LogStore
	// Entries is how many log entries were copied; First and Last their
	// index range (0 when the log was empty).
	Entries     uint64
	First, Last uint64
	// Unchanged is true when the data dir already used To.
	Unchanged bool
}

// migrateBatchBytes groups copied entries into appends of about this size.
const migrateBatchBytes = 4 << 20

// MigrateLog moves the Raft log of a stopped node's data dir to another log
// store. The caller must hold the data dir's lock (Lock), so that no node
// runs on it meanwhile.
//
// The marker file is the commit point: the new store is written completely
// (and synced) beside the old one first, the marker is switched with an
// atomic rename, and only then is the old store's copy removed. A crash at
// any step leaves the directory readable with the store its marker names.
func MigrateLog(ctx context.Context, dataDir string, to LogStore, logger zerolog.Logger) (MigrateResult, error) {
	if to != LogStoreWAL && to != LogStoreBoltDB {
		return MigrateResult{}, fmt.Errorf("migrate the Raft log: --to %q is not a log store: use wal or boltdb", to)
	}
	dir := filepath.Join(dataDir, raftDirName)
	from, found, err := detect(dir)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("migrate the Raft log: %w", err)
	}
	if !found {
		return MigrateResult{}, fmt.Errorf("migrate the Raft log: %s holds no Raft state (is --data-dir the node's data dir?)", dataDir)
	}
	res := MigrateResult{From: from, To: to}
	if from == to {
		res.Unchanged = true
		return res, nil
	}
	// Pin what the directory is now, for directories from before the
	// marker, so that the half-written new store can never be picked up.
	if err := writeMarker(dir, from); err != nil {
		return res, fmt.Errorf("migrate the Raft log: %w", err)
	}
	bolt, err := openBolt(dir)
	if err != nil {
		return res, fmt.Errorf("migrate the Raft log: %w", err)
	}
	defer bolt.Close()

	switch to {
	case LogStoreWAL:
		tmp := filepath.Join(dir, walDirName+".migrating")
		final := filepath.Join(dir, walDirName)
		for _, p := range []string{tmp, final} {
			if err := os.RemoveAll(p); err != nil {
				return res, fmt.Errorf("migrate the Raft log: remove the leftover %s: %w", p, err)
			}
		}
		w, err := openWAL(tmp, logger, nil, walSegmentSize)
		if err != nil {
			return res, fmt.Errorf("migrate the Raft log: %w", err)
		}
		if err := copyLog(ctx, w, bolt, &res); err != nil {
			_ = w.Close()
			return res, fmt.Errorf("migrate the Raft log from %s to %s: %w", from, to, err)
		}
		if err := w.Close(); err != nil {
			return res, fmt.Errorf("migrate the Raft log: close the new WAL: %w", err)
		}
		if err := os.Rename(tmp, final); err != nil {
			return res, fmt.Errorf("migrate the Raft log: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return res, fmt.Errorf("migrate the Raft log: %w", err)
		}
		if err := writeMarker(dir, to); err != nil {
			return res, fmt.Errorf("migrate the Raft log: %w", err)
		}
		// The old copy in raft.db is dead weight now; failing to drop it
		// loses nothing, the next migration clears it first.
		if res.Entries > 0 {
			if err := bolt.DeleteRange(res.First, res.Last); err != nil {
				logger.Warn().Err(err).Msg("migrate-log: could not drop the old log entries from raft.db")
			}
		}
	case LogStoreBoltDB:
		// raft.db may hold the entries of an earlier migration to the WAL
		// that were never dropped: clear them, then copy.
		if err := clearLog(bolt); err != nil {
			return res, fmt.Errorf("migrate the Raft log: clear raft.db's old log: %w", err)
		}
		walDir := filepath.Join(dir, walDirName)
		w, err := openWAL(walDir, logger, nil, walSegmentSize)
		if err != nil {
			return res, fmt.Errorf("migrate the Raft log: %w", err)
		}
		err = copyLog(ctx, bolt, w, &res)
		cerr := w.Close()
		if err != nil {
			return res, fmt.Errorf("migrate the Raft log from %s to %s: %w", from, to, err)
		}
		if cerr != nil {
			return res, fmt.Errorf("migrate the Raft log: close the WAL: %w", cerr)
		}
		if err := bolt.Sync(); err != nil {
			return res, fmt.Errorf("migrate the Raft log: sync raft.db: %w", err)
		}
		if err := writeMarker(dir, to); err != nil {
			return res, fmt.Errorf("migrate the Raft log: %w", err)
		}
		if err := os.RemoveAll(walDir); err != nil {
			logger.Warn().Err(err).Str("dir", walDir).Msg("migrate-log: could not remove the old WAL")
		}
	}
	return res, nil
}

// copyLog copies every entry of src to the empty dst and checks that dst
// then holds the same range.
func copyLog(ctx context.Context, dst, src raft.LogStore, res *MigrateResult) error {
	first, err := src.FirstIndex()
	if err != nil {
		return fmt.Errorf("read the first index: %w", err)
	}
	last, err := src.LastIndex()
	if err != nil {
		return fmt.Errorf("read the last index: %w", err)
	}
	if last == 0 {
		return nil // an empty log (everything is in a snapshot)
	}
	if err := migrate.CopyLogs(ctx, dst, src, migrateBatchBytes, nil); err != nil {
		return err
	}
	gotFirst, err1 := dst.FirstIndex()
	gotLast, err2 := dst.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("read back the copy: %w", err)
	}
	if gotFirst != first || gotLast != last {
		return fmt.Errorf("the copy holds entries %d..%d, the source %d..%d", gotFirst, gotLast, first, last)
	}
	res.First, res.Last, res.Entries = first, last, last-first+1
	return nil
}

func clearLog(s raft.LogStore) error {
	first, err := s.FirstIndex()
	if err != nil {
		return err
	}
	last, err := s.LastIndex()
	if err != nil || last == 0 {
		return err
	}
	return s.DeleteRange(first, last)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
