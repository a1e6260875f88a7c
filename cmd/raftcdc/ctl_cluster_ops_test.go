package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/backup"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

func TestCtlSnapshotSave(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	s.Store.PutInfo(t, model.ChangefeedInfo{ID: "secret", SourceURI: "datagen://", SinkURI: "mysql://u:pw-in-backup@h:3306/", State: model.StateStopped})
	file := filepath.Join(t.TempDir(), "b.jsonl")
	r := ctlRun(t, s.Addr(), nil, "cluster", "snapshot", "save", file).mustOK(t)
	if !strings.HasPrefix(r.stdout, "Saved a snapshot of cluster ") || !strings.Contains(r.stdout, "sha256 ") || !strings.HasSuffix(r.stdout, " in "+file+".\n") {
		t.Errorf("output %q", r.stdout)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("the backup is readable by others: %v", st.Mode())
	}
	f, _ := os.Open(file)
	_, tr, err := backup.Read(f, nil)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	all, _ := s.Store.FSM.List("/")
	if tr.Keys != len(all) {
		t.Errorf("%d keys saved, the state has %d", tr.Keys, len(all))
	}
	raw, _ := os.ReadFile(file)
	if !strings.Contains(string(raw), "pw-in-backup") {
		t.Error("the backup lost a changefeed's credentials")
	}
	// No second file over the first, and no temporary file left.
	before := string(raw)
	r = ctlRun(t, s.Addr(), nil, "cluster", "snapshot", "save", file)
	if r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("saving over a file: exit %d %q", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(file); string(after) != before {
		t.Error("the existing file changed")
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("files left: %v", entries)
	}
	// -o json reports the header and trailer.
	var res struct {
		File    string         `json:"file"`
		Trailer backup.Trailer `json:"trailer"`
	}
	r = ctlRun(t, s.Addr(), nil, "-o", "json", "cluster", "snapshot", "save", file+"2").mustOK(t)
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Trailer.Keys != len(all) {
		t.Errorf("json %q: %v", r.stdout, err)
	}
	if r := ctlRun(t, s.Addr(), nil, "cluster", "snapshot", "save"); r.code != 2 {
		t.Errorf("no file: exit %d", r.code)
	}
	// No leader: an error, and no file.
	s.Store.SetLeader(false)
	r = ctlRun(t, s.Addr(), nil, "cluster", "snapshot", "save", file+"3")
	if r.code != 1 {
		t.Errorf("without a leader: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(file + "3"); !os.IsNotExist(err) {
		t.Errorf("a failed save left a file: %v", err)
	}
}

func TestCtlShowMetadata(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	s.Store.PutInfo(t, model.ChangefeedInfo{ID: "secret", SourceURI: "datagen://", SinkURI: "mysql://u:pw-not-shown@h:3306/", State: model.StateStopped})
	r := ctlRun(t, s.Addr(), nil, "cluster", "show-metadata").mustOK(t)
	if strings.Contains(r.stdout, "pw-not-shown") {
		t.Fatalf("a password in show-metadata:\n%s", r.stdout)
	}
	var m api.Metadata
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	all, _ := s.Store.FSM.List("/")
	if len(m.Keys) != len(all) {
		t.Errorf("%d keys shown, %d stored", len(m.Keys), len(all))
	}
	r = ctlRun(t, s.Addr(), nil, "cluster", "show-metadata", "--prefix", meta.PrefixChangefeedInfo).mustOK(t)
	m = api.Metadata{}
	json.Unmarshal([]byte(r.stdout), &m)
	for _, k := range m.Keys {
		if !strings.HasPrefix(k.Key, meta.PrefixChangefeedInfo) || k.Kind != string(meta.KindChangefeedInfo) {
			t.Errorf("key %s (%s) under --prefix %s", k.Key, k.Kind, meta.PrefixChangefeedInfo)
		}
	}
	if len(m.Keys) == 0 {
		t.Error("nothing under /changefeed/info/")
	}
	if r := ctlRun(t, s.Addr(), nil, "cluster", "show-metadata", "--prefix", "changefeed"); r.code != 2 || !strings.Contains(r.stderr, "must start with /") {
		t.Errorf("a relative prefix: exit %d %q", r.code, r.stderr)
	}
}

// TestToolsBadInputChangesNothing: the data dir tools refuse bad flags and
// files with a usage error or a clear one, and leave the directory alone.
func TestToolsBadInputChangesNothing(t *testing.T) {
	empty := t.TempDir()
	junk := filepath.Join(t.TempDir(), "junk.jsonl")
	os.WriteFile(junk, []byte("{\"format\":\"raftcdc-backup\",\"version\":1}\n{\"k\":\"/kv/a\",\"v\":1,\"c\":1,\"m\":1}\n"), 0o600)
	fresh := filepath.Join(t.TempDir(), "fresh")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"migrate without --to", []string{"tools", "migrate-log", "--data-dir", empty}, 2, "--to is required"},
		{"migrate to nowhere", []string{"tools", "migrate-log", "--data-dir", empty, "--to", "lmdb"}, 2, `"lmdb" is not a log store`},
		{"migrate an empty dir", []string{"tools", "migrate-log", "--data-dir", empty, "--to", "wal"}, 1, "holds no Raft state"},
		{"recover without peers", []string{"tools", "recover", "--data-dir", empty}, 2, "--peers is empty"},
		{"recover with a bad peer", []string{"tools", "recover", "--data-dir", empty, "--peers", "n1=nohost"}, 2, "is not host:port"},
		{"recover an empty dir", []string{"tools", "recover", "--data-dir", empty, "--peers", "n1=127.0.0.1:7000"}, 1, "holds no Raft state"},
		{"restore without a file", []string{"tools", "restore", "--data-dir", fresh, "--raft-addr", "127.0.0.1:7000"}, 2, "exactly one backup file"},
		{"restore a truncated file", []string{"tools", "restore", junk, "--data-dir", fresh, "--raft-addr", "127.0.0.1:7000"}, 1, "nothing was restored"},
		{"restore without an address", []string{"tools", "restore", junk, "--data-dir", fresh}, 2, "--raft-addr are required"},
		{"restore with a bad node ID", []string{"tools", "restore", junk, "--data-dir", fresh, "--raft-addr", "127.0.0.1:7000", "--node-id", "a_b"}, 2, "--node-id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, nil, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d with %q", r.code, r.stderr, c.code, c.want)
			}
		})
	}
	if entries, _ := os.ReadDir(empty); len(entries) > 1 {
		t.Errorf("refused tools left %v in the data dir", entries)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("a refused restore created %s: %v", fresh, err)
	}
}
