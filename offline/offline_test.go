package offline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/backup"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/storage"
	"github.com/raftcdc/raftcdc/testcluster"
	"github.com/rs/zerolog"
)

// startAlone starts a node on dataDir with fresh ports, no --join and
// --bootstrap-expect 1, and stops it when the test ends.
func startAlone(t *testing.T, dataDir string, cdc bool) *server.Node {
	t.Helper()
	ports := testcluster.FreePorts(t, 3)
	cfg := server.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.GossipAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	cfg.RaftAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	cfg.APIAddr = "127.0.0.1:" + strconv.Itoa(ports[2])
	n, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if cdc {
		server.EnableCDC(n, server.CDCOptions{})
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	testcluster.WaitFor(t, 15*time.Second, "the node to lead alone", func() bool { return n.IsLeader() })
	return n
}

// putKV writes a user key through node n, again while the cluster is
// between leaders (a put of the same value is harmless to repeat).
func putKV(t *testing.T, n *server.Node, key string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	testcluster.WaitFor(t, 20*time.Second, "put "+key, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := n.Apply(ctx, fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.PrefixUser + key, Value: b}}})
		if err == nil && res.Err != nil {
			t.Fatalf("put %s refused: %v", key, res.Err)
		}
		return err == nil
	})
}

func getKV(t *testing.T, n *server.Node, key string) string {
	t.Helper()
	kv, ok, err := n.FSM().Get(meta.PrefixUser + key)
	if err != nil || !ok {
		return ""
	}
	return string(kv.Value)
}

// TestRecoverOneSurvivor: three nodes write, all stop; the survivor's
// configuration is rewritten to itself alone, and started again without its
// peers it leads a one-node cluster with every acknowledged write, takes
// new writes, and a fresh node joins it.
func TestRecoverOneSurvivor(t *testing.T) {
	c := testcluster.MakeCluster(t, 3, testcluster.Options{NoCDC: true})
	l := c.WaitForLeader(10 * time.Second)
	for i := 0; i < 50; i++ {
		putKV(t, c.Node(l), fmt.Sprintf("k%02d", i), i)
	}
	c.EnsureSame(meta.PrefixUser, 10*time.Second)
	dir := c.Node(0).Config().DataDir
	for i := 0; i < 3; i++ {
		c.StopNode(i)
	}
	// The survivor alone: no quorum, so it stays without a leader.
	peers, err := ParsePeers("node1=127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Recover(dir, peers, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Previous) != 3 || res.NodeID != "node1" || res.Index == 0 {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "recover-fsm.db")); !os.IsNotExist(err) {
		t.Errorf("the scratch state machine was left behind: %v", err)
	}
	n := startAlone(t, dir, false)
	for i := 0; i < 50; i++ {
		if got := getKV(t, n, fmt.Sprintf("k%02d", i)); got != strconv.Itoa(i) {
			t.Fatalf("k%02d = %q after recovery", i, got)
		}
	}
	putKV(t, n, "after", 1)
	ms, err := n.ClusterMembers()
	if err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, m := range ms {
		if m.Suffrage == "voter" {
			voters++
		}
	}
	if voters != 1 {
		t.Errorf("%d voters after recovering to one: %+v", voters, ms)
	}
}

func TestRecoverRefusals(t *testing.T) {
	for _, bad := range []string{"", "node1", "node1=", "node1=host", "no_de=1.2.3.4:5", "a=1.2.3.4:5,a=1.2.3.5:5", "a=1.2.3.4:5,b=1.2.3.4:5", "a=0.0.0.0:5"} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q) accepted", bad)
		}
	}
	peers, _ := ParsePeers("node1=127.0.0.1:7000")
	empty := t.TempDir()
	if _, err := Recover(empty, peers, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "holds no Raft state") {
		t.Errorf("an empty data dir: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a refused recovery created %v", entries)
	}
	// A data dir of another node.
	dir := t.TempDir()
	s, err := storage.Open(dir, storage.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	s.Stable.SetUint64([]byte("CurrentTerm"), 1)
	s.Close()
	if _, err := storage.NodeID(dir, "node2"); err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(dir, peers, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "belongs to node node2, which is not among --peers") {
		t.Errorf("a node missing from its own peers: %v", err)
	}
}

// writeBackup writes a backup of kvs (in key order) to a file.
func writeBackup(t *testing.T, h backup.Header, kvs []fsm.KV) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := backup.Write(&b, h, func(yield func(fsm.KV) error) error {
		for _, kv := range kvs {
			if err := yield(kv); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backup.jsonl")
	if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func kvOf(key string, v any, rev uint64) fsm.KV {
	b, _ := json.Marshal(v)
	return fsm.KV{Key: key, Value: b, CreateRev: rev, ModRev: rev}
}

func sampleBackup(t *testing.T) (string, backup.Header) {
	h := backup.Header{ClusterID: "0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld00", SchemaVersion: 2, AppliedIndex: 500, Term: 7, Created: time.Now().UTC()}
	t0 := time.Unix(1700000000, 0).UTC()
	kvs := []fsm.KV{
		kvOf(meta.CaptureKey("old1"), model.CaptureInfo{ID: "old1", Incarnation: 9}, 10),
		kvOf(meta.ChangefeedInfoKey("orders"), model.ChangefeedInfo{ID: "orders", SourceURI: "datagen://?tables=2", SinkURI: "blackhole://", StartTs: model.TsFromTime(t0), State: model.StateNormal}, 20),
		kvOf(meta.ChangefeedInfoKey("parked"), model.ChangefeedInfo{ID: "parked", SourceURI: "datagen://", SinkURI: "blackhole://", StartTs: model.TsFromTime(t0), State: model.StateStopped}, 21),
		kvOf(meta.ChangefeedStatusKey("orders"), model.ChangefeedStatus{CheckpointTs: model.TsFromTime(t0.Add(time.Minute)), Initialized: true,
			Tables: []model.TableName{{ID: 1, Schema: "datagen", Table: "t0001"}}}, 400),
		kvOf(meta.KeyCluster, model.ClusterInfo{ID: h.ClusterID, SchemaVersion: 2}, 5),
		kvOf(meta.GCKey("abc"), model.GCSafepoint{ServiceID: "raftcdc-default", SourceURI: "datagen://", Safepoint: 1}, 300),
		kvOf("/kv/user", "kept", 30),
		kvOf(meta.KeyOwner, model.OwnerInfo{Epoch: 450, NodeID: "old1"}, 450),
		kvOf(meta.TaskPositionKey("orders", "old1"), model.TaskPosition{CheckpointTs: 5}, 480),
		kvOf(meta.TaskStatusKey("orders", "old1"), model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{1: {StartTs: 1}}}, 470),
	}
	return writeBackup(t, h, kvs), h
}

// TestRestoreSeedsANewCluster: the restored node leads a one-node cluster
// holding the changefeeds and user keys of the backup — not its owner,
// captures, tasks or GC records — under a new cluster identity that names
// the old one; with Paused, running changefeeds come back stopped.
func TestRestoreSeedsANewCluster(t *testing.T) {
	file, h := sampleBackup(t)
	dir := filepath.Join(t.TempDir(), "restored")
	res, err := Restore(RestoreOptions{File: file, DataDir: dir, NodeID: "fresh1", RaftAddr: "127.0.0.1:7000", Paused: true, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept != 4 || res.Dropped != 6 || res.Changefeeds != 2 || res.Index != 500 || len(res.Paused) != 1 || res.Paused[0] != "orders" {
		t.Fatalf("result %+v", res)
	}
	if res.Cluster.ID == h.ClusterID || len(res.Cluster.ID) != 32 || res.Cluster.RestoredFrom != h.ClusterID {
		t.Fatalf("cluster record %+v", res.Cluster)
	}
	n := startAlone(t, dir, false)
	kvs, err := n.FSM().List("/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range kvs {
		keys = append(keys, kv.Key)
	}
	for _, want := range []string{meta.ChangefeedInfoKey("orders"), meta.ChangefeedInfoKey("parked"), meta.ChangefeedStatusKey("orders"), meta.KeyCluster, "/kv/user"} {
		if !strings.Contains(strings.Join(keys, " "), want) {
			t.Errorf("%s missing after the restore: %v", want, keys)
		}
	}
	for _, gone := range []string{"/capture/", "/task/", "/gc/"} {
		if strings.Contains(strings.Join(keys, " "), gone) {
			t.Errorf("%s kept: %v", gone, keys)
		}
	}
	c, ok, err := meta.ReadCluster(n.FSM())
	if err != nil || !ok || c.ID != res.Cluster.ID {
		t.Fatalf("cluster record after start %+v %v %v", c, ok, err)
	}
	testcluster.WaitFor(t, 10*time.Second, "the node's status to show the new identity", func() bool { return n.Status().ClusterID == res.Cluster.ID })
	var info *model.ChangefeedInfo
	n.FSM().View(func(r fsm.Reader, _ uint64) error {
		info, _, _, _ = meta.GetInfo(r, "orders")
		return nil
	})
	if info == nil || info.State != model.StateStopped {
		t.Errorf("orders after a --paused restore: %+v", info)
	}
	var st *model.ChangefeedStatus
	n.FSM().View(func(r fsm.Reader, _ uint64) error {
		st, _, _, _ = meta.GetStatus(r, "orders")
		return nil
	})
	if st == nil || st.CheckpointTs != model.TsFromTime(time.Unix(1700000000, 0).UTC().Add(time.Minute)) {
		t.Errorf("the checkpoint did not survive: %+v", st)
	}
	// It takes writes in its own term and log.
	putKV(t, n, "after", 2)
}

func TestRestoreRefusals(t *testing.T) {
	file, _ := sampleBackup(t)
	ok := RestoreOptions{File: file, NodeID: "fresh1", RaftAddr: "127.0.0.1:7000", Logger: zerolog.Nop()}

	// A damaged file creates nothing.
	raw, _ := os.ReadFile(file)
	damaged := filepath.Join(t.TempDir(), "damaged.jsonl")
	os.WriteFile(damaged, raw[:len(raw)-40], 0o600)
	o := ok
	o.File, o.DataDir = damaged, filepath.Join(t.TempDir(), "d1")
	if _, err := Restore(o); err == nil || !strings.Contains(err.Error(), "not a complete raftcdc backup") {
		t.Errorf("a truncated backup: %v", err)
	}
	if _, err := os.Stat(o.DataDir); !os.IsNotExist(err) {
		t.Errorf("a refused restore created the data dir: %v", err)
	}
	// A data dir with Raft state is not overwritten.
	o = ok
	o.DataDir = filepath.Join(t.TempDir(), "d2")
	if _, err := Restore(o); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(o); err == nil || !strings.Contains(err.Error(), "already holds Raft state") {
		t.Errorf("restoring twice: %v", err)
	}
	// A bad address.
	o = ok
	o.DataDir, o.RaftAddr = filepath.Join(t.TempDir(), "d3"), "nowhere"
	if _, err := Restore(o); err == nil || !strings.Contains(err.Error(), "--raft-addr") {
		t.Errorf("a bad address: %v", err)
	}
	// A backup from a newer schema.
	newer := writeBackup(t, backup.Header{SchemaVersion: meta.SchemaVersion + 1, AppliedIndex: 3}, nil)
	o = ok
	o.File, o.DataDir = newer, filepath.Join(t.TempDir(), "d4")
	if _, err := Restore(o); err == nil || !strings.Contains(err.Error(), "restore it with a newer build") {
		t.Errorf("a newer schema: %v", err)
	}
}
