package storage

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
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

func TestOpenHasStateReopen(t *testing.T) {
	dir := t.TempDir()
	logger := zerolog.New(io.Discard)

	s, err := Open(dir, logger)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	for _, p := range []string{"raft/raft.db", "raft/snapshots"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("expected %s: %v", p, err)
		}
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

	s2, err := Open(dir, logger)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	has, err = s2.HasState()
	if err != nil || !has {
		t.Fatalf("reopened HasState = %v, %v; want true", has, err)
	}
	var l raft.Log
	if err := s2.Log.GetLog(1, &l); err != nil || string(l.Data) != "x" {
		t.Fatalf("GetLog after reopen = %+v, %v", l, err)
	}
}

func TestOpenLogOnlyCountsAsState(t *testing.T) {
	// A log entry without a term still means the node was part of a
	// cluster; HasState must say so or a restart could bootstrap again.
	dir := t.TempDir()
	s, err := Open(dir, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Log.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s, err = Open(dir, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if has, err := s.HasState(); err != nil || !has {
		t.Fatalf("HasState = %v, %v; want true", has, err)
	}
}

func TestOpenEmptyDir(t *testing.T) {
	if _, err := Open("", zerolog.Nop()); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
}
