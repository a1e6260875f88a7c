// Package storage owns a node's data directory: the Raft log, stable and
// snapshot stores, the node's persistent ID and the lock that keeps two
// processes from sharing one directory.
//
// Layout under <data-dir>/raft:
//
//	raft.db      bbolt: Raft's stable store (term, vote); with the boltdb
//	             log store also the log
//	wal/         the segment-file log (raft-wal), with the wal log store
//	log-store    which log store this directory uses: "wal" or "boltdb"
//	snapshots/   Raft snapshots
//
// A data dir keeps the log store it was created with; `raftcdc tools
// migrate-log` moves it to the other one (see DESIGN.md).
package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
	"github.com/raftcdc/raftcdc/logging"
	"github.com/rs/zerolog"
	"go.etcd.io/bbolt"
)

const (
	// logCacheSize keeps the most recent entries in memory so that
	// replication to followers that are only slightly behind does not hit
	// the log store.
	logCacheSize = 512
	// snapshotsRetained: two lets a node fall back to the previous snapshot
	// if the newest one turns out to be unreadable.
	snapshotsRetained = 2
	// boltOpenTimeout bounds the wait for bbolt's own file lock. Without it
	// a second process would hang forever instead of failing with an error.
	boltOpenTimeout = 2 * time.Second

	raftDirName  = "raft"
	boltFileName = "raft.db"
	walDirName   = "wal"
	markerName   = "log-store"
	walMetaName  = "wal-meta.db"
	// walSegmentSize is preallocated per segment file. raft-wal's default
	// (64 MiB, Consul's) is sized for logs far busier than ours: Raft
	// snapshots every few thousand small entries and the WAL drops the
	// segments behind them, so a smaller segment holds the same history
	// and keeps a node's disk footprint (and a test run's) small.
	walSegmentSize = 16 << 20
)

// LogStore names a Raft log store implementation.
type LogStore string

const (
	// LogStoreWAL is hashicorp/raft-wal: append-only segment files, one
	// write and one fsync per batch of entries. The default for new data
	// dirs (bench/RESULTS.md: Raft log stores).
	LogStoreWAL LogStore = "wal"
	// LogStoreBoltDB is raft-boltdb: the log in the same bbolt file as the
	// stable store, a B+tree commit (two fsyncs) per batch. Every data dir
	// created before the WAL existed uses it.
	LogStoreBoltDB LogStore = "boltdb"
)

// DefaultLogStore is the log store of a new data dir.
const DefaultLogStore = LogStoreWAL

// ParseLogStore checks a --raft-log-store value; "" means "whatever the data
// dir has, DefaultLogStore for a new one".
func ParseLogStore(s string) (LogStore, error) {
	switch LogStore(s) {
	case "", LogStoreWAL, LogStoreBoltDB:
		return LogStore(s), nil
	}
	return "", fmt.Errorf("--raft-log-store %q is not a log store: use wal or boltdb", s)
}

// Options configure Open.
type Options struct {
	// LogStore is the log store wanted. "" takes the data dir's own, or
	// DefaultLogStore for a new data dir. A named store that differs from
	// the one an existing data dir holds is an error: the log would be
	// lost, so the data dir must be migrated first.
	LogStore LogStore
	// LeaderSync is how the leader writes its own entries; "" is
	// DefaultLeaderSync.
	LeaderSync LeaderSync
	// OnLogFailure is called when a deferred fsync of the leader's
	// entries fails (LeaderSyncParallel). nil panics: Raft has already
	// counted those entries as stored. Tests set it.
	OnLogFailure func(error)
	Logger       zerolog.Logger
}

// Stores are the Raft stores kept under <dataDir>/raft.
type Stores struct {
	Log       raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore

	kind   LogStore
	bolt   *raftboltdb.BoltStore
	stable *stableGuard // Stable: bolt, guarded against writes after Close
	wal    *walStore
	// leader is the wal store with the leader's syncs deferred
	// (LeaderSyncParallel); nil when the leader syncs serially or the
	// store is boltdb. It owns wal (closes it).
	leader *leaderLog
	dir    string
}

// Open creates (if needed) and opens the Raft stores under dataDir/raft.
func Open(dataDir string, o Options) (*Stores, error) {
	if dataDir == "" {
		return nil, errors.New("open raft storage: empty data dir")
	}
	if _, err := ParseLogStore(string(o.LogStore)); err != nil {
		return nil, fmt.Errorf("open raft storage: %w", err)
	}
	leaderSync, err := ParseLeaderSync(string(o.LeaderSync))
	if err != nil {
		return nil, fmt.Errorf("open raft storage: %w", err)
	}
	dir := filepath.Join(dataDir, raftDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open raft storage: create %s: %w", dir, err)
	}
	kind, found, err := detect(dir)
	if err != nil {
		return nil, fmt.Errorf("open raft storage: %w", err)
	}
	switch {
	case !found:
		kind = o.LogStore
		if kind == "" {
			kind = DefaultLogStore
		}
	case o.LogStore != "" && o.LogStore != kind:
		return nil, fmt.Errorf("open raft storage: data dir %s keeps its Raft log in %s, not %s; stop the node and run 'raftcdc tools migrate-log --data-dir %s --to %s' to move it, or leave --raft-log-store unset",
			dataDir, kind, o.LogStore, dataDir, o.LogStore)
	}
	// Record the choice before anything is written, so that a directory is
	// never read with the other store.
	if err := writeMarker(dir, kind); err != nil {
		return nil, fmt.Errorf("open raft storage: %w", err)
	}
	s := &Stores{kind: kind, dir: dir}
	if s.bolt, err = openBolt(dir); err != nil {
		return nil, fmt.Errorf("open raft storage: %w", err)
	}
	var logs raft.LogStore = s.bolt
	if kind == LogStoreWAL {
		var vfs *deferVFS
		if leaderSync == LeaderSyncParallel {
			vfs = newDeferVFS()
		}
		if s.wal, err = openWAL(filepath.Join(dir, walDirName), o.Logger, vfs, walSegmentSize); err != nil {
			_ = s.bolt.Close()
			return nil, fmt.Errorf("open raft storage: %w", err)
		}
		logs = s.wal
		if vfs != nil {
			if s.leader, err = newLeaderLog(s.wal, vfs, o.OnLogFailure); err != nil {
				s.closeStores()
				return nil, fmt.Errorf("open raft storage: %w", err)
			}
			logs = s.leader
		}
	}
	cached, err := raft.NewLogCache(logCacheSize, logs)
	if err != nil {
		s.closeStores()
		return nil, fmt.Errorf("open raft storage: create log cache: %w", err)
	}
	// FileSnapshotStore appends "snapshots" to the base directory itself.
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetained,
		logging.HCLog(o.Logger, "raft.snapshots"))
	if err != nil {
		s.closeStores()
		return nil, fmt.Errorf("open raft storage: open snapshot store in %s: %w", dir, err)
	}
	s.stable = &stableGuard{s: s.bolt}
	s.Log, s.Stable, s.Snapshots = cached, s.stable, snaps
	o.Logger.Debug().Str("dir", dir).Str("log_store", string(kind)).Msg("raft storage opened")
	return s, nil
}

// SetLeaderCheck tells the log how to know that this node leads, which is
// when it defers the fsync of its entries while they replicate. It must
// answer from Raft's own state: the log is asked from Raft's goroutine,
// between the state changes it makes.
func (s *Stores) SetLeaderCheck(isLeader func() bool) {
	if s.leader != nil {
		s.leader.setLeader(isLeader)
	}
}

// WaitDurable returns once entry idx is synced in this node's own log. With
// the parallel leader sync a committed entry may still wait for its fsync;
// what the node acknowledges must not.
func (s *Stores) WaitDurable(ctx context.Context, idx uint64) error {
	if s.leader == nil {
		return nil
	}
	return s.leader.WaitDurable(ctx, idx)
}

// Dir is the directory holding the Raft stores.
func (s *Stores) Dir() string { return s.dir }

// LogStore is the log store this data dir uses.
func (s *Stores) LogStore() LogStore { return s.kind }

// HasState reports whether the stores hold any Raft state (a term, log
// entries or a snapshot). A node with state must never bootstrap again.
func (s *Stores) HasState() (bool, error) {
	ok, err := raft.HasExistingState(s.Log, s.Stable, s.Snapshots)
	if err != nil {
		return false, fmt.Errorf("check for existing raft state in %s: %w", s.dir, err)
	}
	return ok, nil
}

// Close closes the log and stable stores. The stores must not be used
// afterwards.
func (s *Stores) Close() error {
	if err := s.closeStores(); err != nil {
		return fmt.Errorf("close raft storage in %s: %w", s.dir, err)
	}
	return nil
}

func (s *Stores) closeStores() error {
	if s.stable != nil {
		s.stable.close()
	}
	var errs []error
	if s.leader != nil {
		errs = append(errs, s.leader.Close())
	} else if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	if s.bolt != nil {
		errs = append(errs, s.bolt.Close())
	}
	return errors.Join(errs...)
}

// Detect tells which log store the data dir uses; found is false for a data
// dir without Raft state files.
func Detect(dataDir string) (kind LogStore, found bool, err error) {
	return detect(filepath.Join(dataDir, raftDirName))
}

// detect reads the marker; a directory from before the marker existed has
// only raft.db, which then holds the log.
func detect(dir string) (LogStore, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, markerName))
	switch {
	case err == nil:
		k := LogStore(strings.TrimSpace(string(b)))
		if k != LogStoreWAL && k != LogStoreBoltDB {
			return "", false, fmt.Errorf("%s names an unknown log store %q", filepath.Join(dir, markerName), k)
		}
		return k, true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("read %s: %w", filepath.Join(dir, markerName), err)
	}
	if exists(filepath.Join(dir, boltFileName)) {
		return LogStoreBoltDB, true, nil
	}
	if exists(filepath.Join(dir, walDirName, walMetaName)) {
		return LogStoreWAL, true, nil
	}
	return "", false, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func writeMarker(dir string, kind LogStore) error {
	path := filepath.Join(dir, markerName)
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == string(kind) {
		return nil
	}
	if err := writeFileAtomic(path, []byte(string(kind)+"\n")); err != nil {
		return fmt.Errorf("record the log store: %w", err)
	}
	return nil
}

func openBolt(dir string) (*raftboltdb.BoltStore, error) {
	path := filepath.Join(dir, boltFileName)
	b, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return b, nil
}

// walStore is the WAL together with its metadata database. raft-wal's Close
// leaves the metadata database open (and its file lock held), which would
// make a second open in the same process wait forever, so the two are
// closed together here.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

// openWAL opens the WAL in dir; vfs, when not nil, is the file system its
// segments are written through (the leader's deferred syncs).
func openWAL(dir string, logger zerolog.Logger, vfs *deferVFS, segmentSize int) (*walStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	meta := &metadb.BoltMetaDB{}
	// raft-wal's own file system unless the leader's syncs are deferred.
	var files types.VFS = walfs.New()
	if vfs != nil {
		files = vfs
	}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize), wal.WithLogger(logging.HCLog(logger, "raft.wal")),
		wal.WithSegmentFiler(segment.NewFiler(dir, files)))
	if err != nil {
		_ = meta.Close()
		return nil, fmt.Errorf("open the Raft WAL in %s: %w", dir, err)
	}
	return &walStore{WAL: w, meta: meta}, nil
}

func (w *walStore) Close() error {
	return errors.Join(w.WAL.Close(), w.meta.Close())
}
