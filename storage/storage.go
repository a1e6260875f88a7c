// Package storage owns a node's data directory: the Raft log, stable and
// snapshot stores, the node's persistent ID and the lock that keeps two
// processes from sharing one directory.
package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/raftcdc/raftcdc/logging"
	"github.com/rs/zerolog"
	"go.etcd.io/bbolt"
)

const (
	// logCacheSize keeps the most recent entries in memory so that
	// replication to followers that are only slightly behind does not hit
	// bbolt.
	logCacheSize = 512
	// snapshotsRetained: two lets a node fall back to the previous snapshot
	// if the newest one turns out to be unreadable.
	snapshotsRetained = 2
	// boltOpenTimeout bounds the wait for bbolt's own file lock. Without it
	// a second process would hang forever instead of failing with an error.
	boltOpenTimeout = 2 * time.Second
)

// Stores are the Raft stores kept under <dataDir>/raft.
type Stores struct {
	Log       raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore

	bolt *raftboltdb.BoltStore
	dir  string
}

// Open creates (if needed) and opens the Raft stores under dataDir/raft:
// raft.db serves as both log store (behind a log cache) and stable store,
// and snapshots go to dataDir/raft/snapshots.
func Open(dataDir string, logger zerolog.Logger) (*Stores, error) {
	if dataDir == "" {
		return nil, errors.New("open raft storage: empty data dir")
	}
	dir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open raft storage: create %s: %w", dir, err)
	}
	dbPath := filepath.Join(dir, "raft.db")
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        dbPath,
		BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
	})
	if err != nil {
		return nil, fmt.Errorf("open raft storage: open %s: %w", dbPath, err)
	}
	cached, err := raft.NewLogCache(logCacheSize, bolt)
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("open raft storage: create log cache: %w", err)
	}
	// FileSnapshotStore appends "snapshots" to the base directory itself.
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetained,
		logging.HCLog(logger, "raft.snapshots"))
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("open raft storage: open snapshot store in %s: %w", dir, err)
	}
	logger.Debug().Str("dir", dir).Msg("raft storage opened")
	return &Stores{Log: cached, Stable: bolt, Snapshots: snaps, bolt: bolt, dir: dir}, nil
}

// Dir is the directory holding the Raft stores.
func (s *Stores) Dir() string { return s.dir }

// HasState reports whether the stores hold any Raft state (a term, log
// entries or a snapshot). A node with state must never bootstrap again.
func (s *Stores) HasState() (bool, error) {
	ok, err := raft.HasExistingState(s.Log, s.Stable, s.Snapshots)
	if err != nil {
		return false, fmt.Errorf("check for existing raft state in %s: %w", s.dir, err)
	}
	return ok, nil
}

// Close closes the bolt database. The stores must not be used afterwards.
func (s *Stores) Close() error {
	if err := s.bolt.Close(); err != nil {
		return fmt.Errorf("close raft storage in %s: %w", s.dir, err)
	}
	return nil
}
