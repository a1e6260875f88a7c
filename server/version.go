package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/membership"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// The cluster record (/cluster) carries the cluster's identity and the
// metadata schema version every replica enforces (see meta/version.go and
// DESIGN.md, "Versions and rolling upgrades"). This file keeps it:
//
//   - every node follows the record and gossips the identity, so that the
//     leader of one cluster can tell a node of another apart;
//   - the leader writes the record, and raises its schema version only when
//     every voter's build supports the new one;
//   - the leader adds to the configuration only members of its own cluster
//     whose build supports the recorded schema.

// cluster is this replica's copy of the record, nil while there is none.
func (n *Node) cluster() *model.ClusterInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.clusterInfo
}

// followClusterRecord keeps n.clusterInfo and the gossiped cluster ID in
// step with the replicated record, on every node.
func (n *Node) followClusterRecord(ctx context.Context) {
	ch, cancel := n.fsm.Watch(meta.KeyCluster, 4)
	defer cancel()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	gossiped := ""
	for {
		c, ok, err := meta.ReadCluster(n.fsm)
		if err == nil && ok {
			n.mu.Lock()
			n.clusterInfo = c
			n.mu.Unlock()
			if c.ID != gossiped {
				if err := n.members.UpdateMeta(ctx, func(m *membership.Meta) { m.ClusterID = c.ID }); err == nil {
					gossiped = c.ID
					n.log.Info().Str("cluster_id", c.ID).Int("schema_version", c.SchemaVersion).Msg("cluster identity known")
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case _, open := <-ch:
			if !open {
				return
			}
		case <-t.C:
		}
	}
}

// memberSchema is the newest schema a member's build supports.
func memberSchema(m membership.Meta) int {
	if m.SchemaVersion == 0 {
		return meta.BaselineSchemaVersion
	}
	return m.SchemaVersion
}

// refuseMember says why the leader must not add member m to its Raft
// configuration, or "" when it may.
func (n *Node) refuseMember(m membership.Member) string {
	c := n.cluster()
	if c == nil {
		return ""
	}
	if m.Meta.ClusterID != "" && m.Meta.ClusterID != c.ID {
		return fmt.Sprintf("node %s holds the state of cluster %s, and this is cluster %s (a restored cluster and its original must not meet); give it an empty data dir to join this one",
			m.Meta.ID, m.Meta.ClusterID, c.ID)
	}
	if s := memberSchema(m.Meta); s < c.SchemaVersion {
		return fmt.Sprintf("node %s (version %q) supports metadata schema %d, and the cluster runs at %d; upgrade it to join",
			m.Meta.ID, m.Meta.Version, s, c.SchemaVersion)
	}
	return ""
}

// ensureClusterRecord writes the cluster record if there is none, and
// raises its schema version to this build's once every voter supports it.
// It runs on the leader, from the reconcile loop.
func (n *Node) ensureClusterRecord(ctx context.Context, logged map[string]string) {
	var cur *model.ClusterInfo
	var rev uint64
	var ok bool
	var derr error
	if err := n.fsm.View(func(r fsm.Reader, _ uint64) error {
		cur, rev, ok, derr = meta.GetCluster(r)
		return nil
	}); err != nil {
		return
	}
	if derr != nil {
		// Corrupt: reported by the tracker; overwriting an identity that
		// cannot be read would make a new one, which is not ours to decide.
		return
	}
	target := meta.SchemaVersion
	if ok && cur.SchemaVersion >= target {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	byID := map[string]membership.Meta{}
	for _, m := range n.members.Members() {
		byID[m.Meta.ID] = m.Meta
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		m, known := byID[string(s.ID)]
		why := ""
		// The leader judges itself by its own gossip metadata too: that is
		// what every other node sees of it (and what a test's stand-in
		// for an older build changes).
		switch {
		case !known:
			why = fmt.Sprintf("voter %s is not in gossip, so its build is unknown", s.ID)
		case memberSchema(m) < target:
			why = fmt.Sprintf("voter %s (version %q) supports schema %d", s.ID, m.Version, memberSchema(m))
		}
		if why != "" {
			if logged["schema"] != why {
				logged["schema"] = why
				n.log.Info().Int("schema_version", target).Msg("metadata schema not raised yet: " + why)
			}
			return
		}
	}
	rec := model.ClusterInfo{SchemaVersion: target}
	if ok {
		rec = *cur
		rec.SchemaVersion = target
	} else {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			n.log.Warn().Err(err).Msg("generating a cluster ID")
			return
		}
		rec.ID, rec.Created = hex.EncodeToString(b[:]), time.Now().UTC()
	}
	op, err := meta.Put(meta.KeyCluster, rec)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := n.Apply(ctx, fsm.Command{Conds: []fsm.Cond{{Type: fsm.CondModRev, Key: meta.KeyCluster, ModRev: rev}}, Ops: []fsm.Op{op}})
	switch {
	case err != nil:
		n.log.Warn().Err(err).Msg("recording the cluster record")
	case res.Err != nil:
		n.log.Debug().Err(res.Err).Msg("cluster record changed meanwhile")
	case ok:
		delete(logged, "schema")
		n.log.Info().Str("cluster_id", rec.ID).Int("from_schema_version", cur.SchemaVersion).Int("schema_version", target).Msg("raised the cluster's metadata schema version: every voter supports it")
	default:
		delete(logged, "schema")
		n.log.Info().Str("cluster_id", rec.ID).Int("schema_version", target).Msg("recorded the cluster identity")
	}
}
