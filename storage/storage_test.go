package storage

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/rs/zerolog"
)

func TestValidateNodeID(t *testing.T) {
	good := []string{"a", "node-1", "N0de-a-b-c", strings.Repeat("x", 64)}
	bad := []string{"", "-a", "a-", "a--b", "a_b", "a.b", "a b", "ü", strings.Repeat("x", 65)}
	for _, id := range good {
		if err := ValidateNodeID(id); err != nil {
			t.Errorf("ValidateNodeID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range bad {
		if err := ValidateNodeID(id); err == nil {
			t.Errorf("ValidateNodeID(%q) = nil, want error", id)
		}
	}
}

func TestNodeID(t *testing.T) {
	generated := regexp.MustCompile(`^node-[0-9a-f]{8}$`)
	cases := []struct {
		name    string
		file    string // content of node-id before the call; "" = absent
		flag    string
		want    string // "" = expect a generated ID
		wantErr string
	}{
		{name: "file only", file: "node-a\n", want: "node-a"},
		{name: "flag only", flag: "node-b", want: "node-b"},
		{name: "both equal", file: "node-c", flag: "node-c", want: "node-c"},
		{name: "both differ", file: "node-a", flag: "node-b", wantErr: "belongs to node node-a, not node-b"},
		{name: "neither", want: ""},
		{name: "invalid flag", flag: "bad_id", wantErr: "invalid node ID"},
		{name: "corrupt file", file: "??", wantErr: "corrupt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if c.file != "" {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "node-id"), []byte(c.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := NodeID(dir, c.flag)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("NodeID error = %v, want containing %q", err, c.wantErr)
				}
				if c.name == "both differ" && !strings.Contains(err.Error(), dir) {
					t.Errorf("error %q does not name the data dir", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NodeID: %v", err)
			}
			if c.want == "" {
				if !generated.MatchString(got) {
					t.Fatalf("generated ID %q does not look like node-xxxxxxxx", got)
				}
			} else if got != c.want {
				t.Fatalf("NodeID = %q, want %q", got, c.want)
			}
			// The ID must be persisted and stable on the next call.
			again, err := NodeID(dir, "")
			if err != nil || again != got {
				t.Fatalf("second NodeID = %q, %v; want %q", again, err, got)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.Contains(e.Name(), "tmp") {
					t.Errorf("temp file %s left behind", e.Name())
				}
			}
		})
	}
}

func TestNodeIDGeneratedAreDistinct(t *testing.T) {
	a, err := NodeID(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NodeID(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two fresh data dirs got the same ID %q", a)
	}
}

func TestLockExclusive(t *testing.T) {
	dir := t.TempDir()
	l1, err := Lock(dir)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	_, err = Lock(dir)
	if err == nil {
		t.Fatal("second lock on the same dir succeeded")
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q does not name the dir", err)
	}
	if err := l1.Unlock(); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if err := l1.Unlock(); err != nil {
		t.Fatalf("second unlock: %v", err)
	}
	l2, err := Lock(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	_ = l2.Unlock()
}

var bothStores = []LogStore{LogStoreWAL, LogStoreBoltDB}

func openStores(t *testing.T, dir string, kind LogStore) *Stores {
	t.Helper()
	s, err := Open(dir, Options{LogStore: kind, Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatalf("open %s with %q: %v", dir, kind, err)
	}
	return s
}

func TestOpenHasStateReopen(t *testing.T) {
	for _, kind := range bothStores {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			s := openStores(t, dir, kind)
			want := []string{"raft/raft.db", "raft/snapshots", "raft/log-store"}
			if kind == LogStoreWAL {
				want = append(want, "raft/wal/wal-meta.db")
			}
			for _, p := range want {
				if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
					t.Errorf("expected %s: %v", p, err)
				}
			}
			if s.LogStore() != kind {
				t.Errorf("LogStore() = %s", s.LogStore())
			}
			has, err := s.HasState()
			if err != nil || has {
				t.Fatalf("fresh HasState = %v, %v; want false", has, err)
			}
			if err := s.Log.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
				t.Fatalf("store log: %v", err)
			}
			if err := s.Stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
				t.Fatalf("set term: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}

			// Reopened in the same process without naming a store: the data
			// dir's own is used (and a WAL reopens without waiting on its
			// own metadata file's lock).
			s2 := openStores(t, dir, "")
			defer s2.Close()
			if s2.LogStore() != kind {
				t.Errorf("reopened with %s, want the data dir's %s", s2.LogStore(), kind)
			}
			has, err = s2.HasState()
			if err != nil || !has {
				t.Fatalf("reopened HasState = %v, %v; want true", has, err)
			}
			var l raft.Log
			if err := s2.Log.GetLog(1, &l); err != nil || string(l.Data) != "x" {
				t.Fatalf("GetLog after reopen = %+v, %v", l, err)
			}
		})
	}
}

func TestNewDataDirGetsTheDefaultStore(t *testing.T) {
	s := openStores(t, t.TempDir(), "")
	defer s.Close()
	if s.LogStore() != DefaultLogStore {
		t.Fatalf("new data dir got %s, want %s", s.LogStore(), DefaultLogStore)
	}
}

func TestOpenLogOnlyCountsAsState(t *testing.T) {
	// A log entry without a term still means the node was part of a
	// cluster; HasState must say so or a restart could bootstrap again.
	for _, kind := range bothStores {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			s := openStores(t, dir, kind)
			if err := s.Log.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration}); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			s = openStores(t, dir, kind)
			defer s.Close()
			if has, err := s.HasState(); err != nil || !has {
				t.Fatalf("HasState = %v, %v; want true", has, err)
			}
		})
	}
}

func TestOpenEmptyDir(t *testing.T) {
	if _, err := Open("", Options{Logger: zerolog.Nop()}); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
	if _, err := Open(t.TempDir(), Options{LogStore: "rocksdb", Logger: zerolog.Nop()}); err == nil || !strings.Contains(err.Error(), `"rocksdb"`) {
		t.Fatalf("an unknown log store: %v", err)
	}
}

// TestExistingDirKeepsItsStore: naming the other store for an existing data
// dir is refused with the command that migrates it, and changes nothing.
func TestExistingDirKeepsItsStore(t *testing.T) {
	for _, kind := range bothStores {
		t.Run(string(kind), func(t *testing.T) {
			other := LogStoreWAL
			if kind == LogStoreWAL {
				other = LogStoreBoltDB
			}
			dir := t.TempDir()
			s := openStores(t, dir, kind)
			writeEntries(t, s, 1, 10)
			s.Close()
			_, err := Open(dir, Options{LogStore: other, Logger: zerolog.Nop()})
			if err == nil || !strings.Contains(err.Error(), "raftcdc tools migrate-log --data-dir "+dir+" --to "+string(other)) {
				t.Fatalf("opening a %s data dir as %s: %v", kind, other, err)
			}
			got, found, err := Detect(dir)
			if err != nil || !found || got != kind {
				t.Fatalf("after the refusal Detect = %s, %v, %v; want %s", got, found, err, kind)
			}
			s = openStores(t, dir, kind)
			defer s.Close()
			checkEntries(t, s, 1, 10)
		})
	}
}

// TestPreMarkerDataDirIsBoltDB: a data dir written before the WAL existed
// has only raft.db; it is read as a bolt log and keeps it.
func TestPreMarkerDataDirIsBoltDB(t *testing.T) {
	dir := t.TempDir()
	raftDir := filepath.Join(dir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := raftboltdb.NewBoltStore(filepath.Join(raftDir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 5; i++ {
		if err := b.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	s := openStores(t, dir, "")
	defer s.Close()
	if s.LogStore() != LogStoreBoltDB {
		t.Fatalf("pre-marker data dir opened as %s", s.LogStore())
	}
	checkEntries(t, s, 1, 5)
	if m, _ := os.ReadFile(filepath.Join(raftDir, "log-store")); strings.TrimSpace(string(m)) != "boltdb" {
		t.Errorf("marker %q, want boltdb", m)
	}
}

func writeEntries(t *testing.T, s *Stores, first, last uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1 + i/100, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry-%d", i)), AppendedAt: time.Unix(int64(i), 0)})
	}
	if err := s.Log.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

func checkEntries(t *testing.T, s *Stores, first, last uint64) {
	t.Helper()
	f, _ := s.Log.FirstIndex()
	l, _ := s.Log.LastIndex()
	if f != first || l != last {
		t.Fatalf("log holds %d..%d, want %d..%d", f, l, first, last)
	}
	for i := first; i <= last; i++ {
		var e raft.Log
		if err := s.Log.GetLog(i, &e); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if e.Index != i || e.Term != 1+i/100 || string(e.Data) != fmt.Sprintf("entry-%d", i) || e.Type != raft.LogCommand {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
}

// TestTruncatedTailReopens: a follower that clears a log suffix (raft's
// DeleteRange up to the last index, after a leader change) and restarts
// must read its log again. raft-wal before v0.4.2 marked the open tail
// segment sealed without writing its index block, and the restarted node
// panicked with "sealed segment has no index block" (seen in a chaos run).
func TestTruncatedTailReopens(t *testing.T) {
	for _, kind := range bothStores {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			s := openStores(t, dir, kind)
			for i := uint64(1); i <= 10; i++ {
				if err := s.Log.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}}); err != nil {
					t.Fatalf("store log %d: %v", i, err)
				}
			}
			if err := s.Log.DeleteRange(8, 10); err != nil {
				t.Fatalf("clear the suffix 8-10: %v", err)
			}
			if err := s.Log.StoreLog(&raft.Log{Index: 8, Term: 2, Type: raft.LogCommand, Data: []byte{80}}); err != nil {
				t.Fatalf("store the new entry 8: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			s2 := openStores(t, dir, "")
			defer s2.Close()
			for i, want := range map[uint64]byte{1: 1, 7: 7, 8: 80} {
				var l raft.Log
				if err := s2.Log.GetLog(i, &l); err != nil || len(l.Data) != 1 || l.Data[0] != want {
					t.Fatalf("after reopen GetLog(%d) = %+v, %v; want data %d", i, l, err, want)
				}
			}
			if last, err := s2.Log.LastIndex(); err != nil || last != 8 {
				t.Fatalf("after reopen LastIndex = %d, %v; want 8", last, err)
			}
		})
	}
}

// A Raft that was shut down can still save a term from a heartbeat that was
// in flight (see stableGuard): after Close such a write must not fail —
// Raft panics on any stable-store error — and reads say the store is
// closed.
func TestStableWritesAfterCloseAreDropped(t *testing.T) {
	for _, kind := range []LogStore{LogStoreWAL, LogStoreBoltDB} {
		s, err := Open(t.TempDir(), Options{LogStore: kind, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Stable.SetUint64([]byte("CurrentTerm"), 3); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Stable.SetUint64([]byte("CurrentTerm"), 4); err != nil {
			t.Errorf("%s: a term saved after Close: %v", kind, err)
		}
		if err := s.Stable.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
			t.Errorf("%s: a vote saved after Close: %v", kind, err)
		}
		if _, err := s.Stable.GetUint64([]byte("CurrentTerm")); err == nil {
			t.Errorf("%s: a read after Close succeeded", kind)
		}
	}
}
