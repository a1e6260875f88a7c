package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
)

func sample(n int) []fsm.KV {
	var kvs []fsm.KV
	for i := 0; i < n; i++ {
		v, _ := json.Marshal(map[string]any{"i": i, "s": strings.Repeat("x", i%50)})
		kvs = append(kvs, fsm.KV{Key: fmt.Sprintf("/kv/%04d", i), Value: v, CreateRev: uint64(i + 1), ModRev: uint64(2*i + 1)})
	}
	return kvs
}

func write(t *testing.T, kvs []fsm.KV) ([]byte, Trailer) {
	t.Helper()
	var b bytes.Buffer
	tr, err := Write(&b, Header{ClusterID: "abc", AppliedIndex: 99, Created: time.Unix(1, 0).UTC()}, func(yield func(fsm.KV) error) error {
		for _, kv := range kvs {
			if err := yield(kv); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), tr
}

func TestRoundTrip(t *testing.T) {
	kvs := sample(200)
	file, tr := write(t, kvs)
	if tr.Keys != 200 || tr.SHA256 == "" {
		t.Fatalf("trailer %+v", tr)
	}
	var got []fsm.KV
	h, tr2, err := Read(bytes.NewReader(file), func(kv fsm.KV) error { got = append(got, kv); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if h.ClusterID != "abc" || h.AppliedIndex != 99 || h.Format != Format || tr2 != tr {
		t.Errorf("header %+v trailer %+v", h, tr2)
	}
	if len(got) != len(kvs) {
		t.Fatalf("%d keys back, want %d", len(got), len(kvs))
	}
	for i := range kvs {
		if got[i].Key != kvs[i].Key || !bytes.Equal(got[i].Value, kvs[i].Value) || got[i].CreateRev != kvs[i].CreateRev || got[i].ModRev != kvs[i].ModRev {
			t.Fatalf("key %d: %+v, want %+v", i, got[i], kvs[i])
		}
	}
	// Inspectable: every line is JSON.
	for _, l := range strings.Split(strings.TrimSpace(string(file)), "\n") {
		if !json.Valid([]byte(l)) {
			t.Fatalf("line %q is not JSON", l)
		}
	}
}

// TestDamageIsDetected: every truncation, a flipped byte anywhere, and
// trailing data each fail with ErrCorrupt.
func TestDamageIsDetected(t *testing.T) {
	file, _ := write(t, sample(30))
	for n := 0; n < len(file); n += 7 {
		if _, _, err := Read(bytes.NewReader(file[:n]), nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(file), err)
		}
	}
	for i := 0; i < len(file); i += 13 {
		bad := append([]byte(nil), file...)
		if bad[i] == '\n' {
			continue
		}
		bad[i] ^= 0x01
		if _, _, err := Read(bytes.NewReader(bad), nil); err == nil {
			t.Fatalf("byte %d flipped (%q): accepted", i, file[i])
		}
	}
	if _, _, err := Read(bytes.NewReader(append(append([]byte(nil), file...), "{}\n"...)), nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("data after the trailer: %v", err)
	}
	if _, _, err := Read(strings.NewReader(`{"format":"raftcdc-backup","version":7}`+"\n"), nil); err == nil || !strings.Contains(err.Error(), "version 7") {
		t.Errorf("unknown version: %v", err)
	}
	if _, _, err := Read(strings.NewReader("hello\n"), nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("not a backup: %v", err)
	}
}

func TestKeysMustBeInOrder(t *testing.T) {
	kvs := sample(3)
	kvs[1], kvs[2] = kvs[2], kvs[1]
	file, _ := write(t, kvs)
	if _, _, err := Read(bytes.NewReader(file), nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("out of order: %v", err)
	}
}
