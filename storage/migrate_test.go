package storage

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func migrateLog(t *testing.T, dir string, to LogStore) MigrateResult {
	t.Helper()
	res, err := MigrateLog(context.Background(), dir, to, zerolog.New(io.Discard))
	if err != nil {
		t.Fatalf("migrate %s to %s: %v", dir, to, err)
	}
	return res
}

// TestMigrateLogRoundTrip: boltdb → wal → boltdb keeps every entry (after
// a compaction, so the log does not start at 1) and the stable store, and
// leaves no second copy behind.
func TestMigrateLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openStores(t, dir, LogStoreBoltDB)
	writeEntries(t, s, 1, 1200)
	if err := s.Log.DeleteRange(1, 199); err != nil {
		t.Fatal(err)
	}
	if err := s.Stable.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	s.Close()

	res := migrateLog(t, dir, LogStoreWAL)
	if res.From != LogStoreBoltDB || res.To != LogStoreWAL || res.Entries != 1001 || res.First != 200 || res.Last != 1200 {
		t.Fatalf("result %+v", res)
	}
	s = openStores(t, dir, "")
	if s.LogStore() != LogStoreWAL {
		t.Fatalf("after migration the data dir opens as %s", s.LogStore())
	}
	checkEntries(t, s, 200, 1200)
	if term, err := s.Stable.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Fatalf("stable store after migration: term %d, %v", term, err)
	}
	if f, l := s.bolt.FirstIndex(); f != 0 {
		t.Errorf("raft.db still holds log entries from %d (%v)", f, l)
	}
	// The node goes on appending to the WAL.
	writeEntries(t, s, 1201, 1210)
	s.Close()

	res = migrateLog(t, dir, LogStoreBoltDB)
	if res.Entries != 1011 {
		t.Fatalf("back to boltdb: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", "wal")); !os.IsNotExist(err) {
		t.Errorf("the WAL is still there after migrating away from it: %v", err)
	}
	s = openStores(t, dir, "")
	defer s.Close()
	if s.LogStore() != LogStoreBoltDB {
		t.Fatalf("after migrating back the data dir opens as %s", s.LogStore())
	}
	checkEntries(t, s, 200, 1210)

	if res := migrateLog(t, dir, LogStoreBoltDB); !res.Unchanged {
		t.Errorf("migrating to the store in use: %+v", res)
	}
}

// TestMigrateLogInterrupted: a migration that died before switching the
// marker leaves a half-written WAL beside the old log; the data dir still
// opens with the old log, and migrating again succeeds.
func TestMigrateLogInterrupted(t *testing.T) {
	dir := t.TempDir()
	s := openStores(t, dir, LogStoreBoltDB)
	writeEntries(t, s, 1, 50)
	s.Close()
	for _, junk := range []string{"raft/wal.migrating", "raft/wal"} {
		if err := os.MkdirAll(filepath.Join(dir, junk), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, junk, "00000000000000000001-0000000000000001.wal"), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openStores(t, dir, "")
	if s.LogStore() != LogStoreBoltDB {
		t.Fatalf("opens as %s with a leftover WAL", s.LogStore())
	}
	checkEntries(t, s, 1, 50)
	s.Close()
	migrateLog(t, dir, LogStoreWAL)
	s = openStores(t, dir, "")
	defer s.Close()
	checkEntries(t, s, 1, 50)
}

func TestMigrateLogBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := MigrateLog(ctx, t.TempDir(), "lmdb", zerolog.Nop()); err == nil || !strings.Contains(err.Error(), `"lmdb"`) {
		t.Errorf("unknown store: %v", err)
	}
	empty := t.TempDir()
	if _, err := MigrateLog(ctx, empty, LogStoreWAL, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "holds no Raft state") {
		t.Errorf("a directory without Raft state: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) > 0 {
		t.Errorf("refused migration created %v", entries)
	}
	// An empty log (everything in a snapshot) migrates as nothing.
	dir := t.TempDir()
	s := openStores(t, dir, LogStoreBoltDB)
	s.Close()
	if res := migrateLog(t, dir, LogStoreWAL); res.Entries != 0 {
		t.Errorf("empty log: %+v", res)
	}
}
