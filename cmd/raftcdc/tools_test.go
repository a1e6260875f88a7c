package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/storage"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// writeStorage replicates a small datagen history (no DDL) into a storage
// sink directory and publishes the checkpoint.
func writeStorage(t *testing.T, src, uri string, upto time.Duration) {
	t.Helper()
	ctx := context.Background()
	h, err := datagen.ParseHistory(src)
	if err != nil {
		t.Fatal(err)
	}
	s, err := storage.Open(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	end := model.TsFromTime(model.TsTime(h.EpochTs()).Add(upto))
	for _, tn := range h.TablesAt(0) {
		sch, _ := h.SchemaAt(tn.ID, 0)
		ts, err := s.OpenTable(ctx, tn, sink.TableOptions{Schema: sch})
		if err != nil {
			t.Fatal(err)
		}
		var txns []*model.Txn
		h.Txns(tn.ID, 0, end, func(txn *model.Txn) bool { txns = append(txns, txn); return true })
		if err := ts.Write(ctx, txns); err != nil {
			t.Fatal(err)
		}
		if err := ts.Flush(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EmitCheckpoint(ctx, end); err != nil {
		t.Fatal(err)
	}
}

func TestToolsVerifyComparesAStorageSinkWithDatagen(t *testing.T) {
	const src = "datagen://?tables=2&rate=20&keys=15&epoch=2026-01-01T00:00:00Z"
	root := t.TempDir()
	uri := "file://" + root + "?protocol=canal-json&enable-tidb-extension=true&flush-interval=10ms&date-separator=none"
	writeStorage(t, src, uri, 3*time.Second)

	r := run(t, nil, "tools", "verify", "--source-uri", src, "--downstream", uri).mustOK(t)
	if !strings.Contains(r.stdout, "verify OK") || !strings.Contains(r.stdout, "missing 0") {
		t.Fatalf("stdout: %s", r.stdout)
	}

	// Lose a file: exit 1, and the report says what is missing.
	files, _ := filepath.Glob(filepath.Join(root, "datagen", "t0002", "*", "CDC*.json"))
	if len(files) == 0 {
		t.Fatal("no data files")
	}
	os.Remove(files[len(files)-1])
	r = run(t, nil, "tools", "verify", "--source-uri", src, "--downstream", uri)
	if r.code != 1 || !strings.Contains(r.stdout, "verify FAILED") || !strings.Contains(r.stderr, "verification failed") {
		t.Fatalf("after losing a file: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

func TestToolsVerifyRefusesBadInput(t *testing.T) {
	root := t.TempDir()
	const src = "datagen://?tables=1"
	for name, args := range map[string][]string{
		"no source":          {"--downstream", "file://" + root + "?protocol=canal-json&enable-tidb-extension=true"},
		"bad ts":             {"--source-uri", src, "--downstream", "file://" + root, "--checkpoint-ts", "yesterday"},
		"no commit ts":       {"--source-uri", src, "--downstream", "file://" + root + "?protocol=canal-json"},
		"unknown parameter":  {"--source-uri", src, "--downstream", "file://" + root + "?protocl=csv"},
		"nothing to compare": {"--source-uri", src},
	} {
		r := run(t, nil, append([]string{"tools", "verify"}, args...)...)
		if r.code == 0 || r.stderr == "" {
			t.Errorf("%s: exit %d, stderr %q", name, r.code, r.stderr)
		}
	}
}
