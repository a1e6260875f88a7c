package offline

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/backup"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/storage"
	"github.com/rs/zerolog"
)

// RestoreOptions say what to restore where.
type RestoreOptions struct {
	// File is the backup (ctl cluster snapshot save).
	File string
	// DataDir is the new node's data dir: empty, or without Raft state.
	DataDir string
	// NodeID is the new node's ID ("" keeps the one in DataDir, or makes
	// one up).
	NodeID string
	// RaftAddr is the Raft address the node will advertise: the one voter
	// of the restored cluster's first configuration.
	RaftAddr string
	// LogStore is the new data dir's Raft log store ("" for the default).
	LogStore storage.LogStore
	// Paused restores running changefeeds as stopped (paused), so that they
	// do not start writing to their sinks before an operator resumes them —
	// for when the original cluster may still be running them.
	Paused bool
	Logger zerolog.Logger
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	Header      backup.Header     `json:"backup"`
	NodeID      string            `json:"node_id"`
	Cluster     model.ClusterInfo `json:"cluster"`
	Index       uint64            `json:"index"`
	Kept        int               `json:"keys_restored"`
	Dropped     int               `json:"keys_dropped"`
	Paused      []string          `json:"paused,omitempty"`
	Changefeeds int               `json:"changefeeds"`
}

// Restore seeds a new cluster's first node from a backup. The data dir
// gets a Raft snapshot of the backed-up state with a one-voter
// configuration (this node), so the node starts as the leader of a
// one-node cluster that other nodes join with --join.
//
// What a new cluster must not inherit is left out: the owner record,
// captures and their tasks and positions (they belong to the old cluster's
// processes; every table of a running changefeed becomes an orphan at the
// changefeed's checkpoint and is dispatched again), and the upstream GC
// records (kept under the old cluster's GC service ID; the new owner pushes
// its own). The cluster record is new: a new random identity that names the
// backed-up cluster as its origin, so the two never join one Raft group and
// keep separate GC safepoints. Changefeed definitions and statuses —
// checkpoints, stream positions — are kept as they are.
func Restore(o RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	if o.File == "" || o.DataDir == "" {
		return res, errors.New("restore: the backup file and the data dir are required")
	}
	if _, err := (ParsePeers("x=" + o.RaftAddr)); err != nil {
		return res, fmt.Errorf("restore: --raft-addr %q is not host:port", o.RaftAddr)
	}
	// First pass: the whole file checks out, and what it holds is known.
	f, err := os.Open(o.File)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	kept, dropped, feeds := 0, 0, 0
	h, _, err := backup.Read(f, func(kv fsm.KV) error {
		if keep(kv.Key) {
			kept++
			if k, err := meta.ParseKey(kv.Key); err == nil && k.Kind == meta.KindChangefeedInfo {
				feeds++
			}
		} else {
			dropped++
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("restore: %s: %w", o.File, err)
	}
	if h.SchemaVersion > meta.SchemaVersion {
		return res, fmt.Errorf("restore: the backup comes from a cluster at metadata schema %d; this build supports up to %d: restore it with a newer build", h.SchemaVersion, meta.SchemaVersion)
	}
	res.Header, res.Kept, res.Dropped, res.Changefeeds = h, kept, dropped, feeds

	if _, found, err := storage.Detect(o.DataDir); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	} else if found {
		return res, fmt.Errorf("restore: %s already holds Raft state; restore into the empty data dir of a new node", o.DataDir)
	}
	if res.NodeID, err = storage.NodeID(o.DataDir, o.NodeID); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return res, fmt.Errorf("restore: generating a cluster ID: %w", err)
	}
	index := max(h.AppliedIndex, 1)
	res.Index = index
	res.Cluster = model.ClusterInfo{ID: hex.EncodeToString(b[:]), Created: time.Now().UTC(), SchemaVersion: meta.SchemaVersion,
		RestoredFrom: h.ClusterID, RestoredIndex: h.AppliedIndex}
	if res.Cluster.RestoredFrom == "" {
		res.Cluster.RestoredFrom = "unrecorded"
	}
	clusterValue, err := json.Marshal(res.Cluster)
	if err != nil {
		return res, err
	}

	stores, err := storage.Open(o.DataDir, storage.Options{LogStore: o.LogStore, Logger: o.Logger})
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer stores.Close()
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(res.NodeID), Address: raft.ServerAddress(o.RaftAddr)}}}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(o.RaftAddr))
	defer trans.Close()
	const term = 1
	sink, err := stores.Snapshots.Create(raft.SnapshotVersionMax, index, term, conf, index, trans)
	if err != nil {
		return res, fmt.Errorf("restore: creating the snapshot: %w", err)
	}
	// Second pass: the snapshot, from the same (checked) file.
	if _, err := f.Seek(0, 0); err != nil {
		sink.Cancel()
		return res, fmt.Errorf("restore: %w", err)
	}
	err = fsm.WriteSnapshot(sink, index, kept+1, func(yield func(fsm.KV) error) error {
		if err := yield(fsm.KV{Key: meta.KeyCluster, Value: clusterValue, CreateRev: index, ModRev: index}); err != nil {
			return err
		}
		_, _, err := backup.Read(f, func(kv fsm.KV) error {
			if !keep(kv.Key) {
				return nil
			}
			if o.Paused {
				v, paused, err := pause(kv)
				if err != nil {
					return err
				}
				if paused != "" {
					res.Paused = append(res.Paused, paused)
					kv.Value, kv.ModRev = v, index
				}
			}
			return yield(kv)
		})
		return err
	})
	if err != nil {
		sink.Cancel()
		return res, fmt.Errorf("restore: writing the snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return res, fmt.Errorf("restore: finishing the snapshot: %w", err)
	}
	// The node starts in the snapshot's term.
	if err := stores.Stable.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	return res, nil
}

// keep says whether a backed-up key belongs in a new cluster.
func keep(key string) bool {
	k, err := meta.ParseKey(key)
	if err != nil {
		return true // not ours to judge: restored as it was, reported as before
	}
	switch k.Kind {
	case meta.KindOwner, meta.KindCapture, meta.KindTaskStatus, meta.KindTaskPosition, meta.KindTaskWorkload, meta.KindGC, meta.KindCluster:
		return false
	}
	return true
}

// pause returns a running changefeed's info as stopped, and its ID; other
// keys come back unchanged with an empty ID.
func pause(kv fsm.KV) ([]byte, string, error) {
	k, err := meta.ParseKey(kv.Key)
	if err != nil || k.Kind != meta.KindChangefeedInfo {
		return kv.Value, "", nil
	}
	d, err := meta.Decode(kv.Key, kv.Value)
	if err != nil {
		return kv.Value, "", nil // corrupt: left for an operator, as before
	}
	info := d.(*model.ChangefeedInfo)
	switch info.State {
	case model.StateNormal, model.StateError, "":
	default:
		return kv.Value, "", nil
	}
	// Keep every field, known or not, and change only the state.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(kv.Value, &m); err != nil {
		return nil, "", err
	}
	m["state"], _ = json.Marshal(model.StateStopped)
	delete(m, "admin_job")
	v, err := json.Marshal(m)
	return v, k.Changefeed, err
}
