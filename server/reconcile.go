package server

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/membership"
)

// reconcileLoop keeps the Raft configuration in line with gossip, on every
// membership event and on a periodic full pass so that a dropped event cannot
// leave the configuration wrong for long.
func (n *Node) reconcileLoop(ctx context.Context) {
	events, cancel := n.members.Subscribe()
	defer cancel()
	t := time.NewTicker(n.cfg.ReconcileInterval)
	defer t.Stop()
	deadSince := map[string]time.Time{}
	logged := map[string]string{} // what was last said per subject, to say it once
	for {
		n.ensureClusterRecord(ctx, logged)
		n.reconcile(ctx, deadSince, logged)
		select {
		case <-ctx.Done():
			return
		case <-events:
		case <-t.C:
		case <-n.reconcileKick:
		}
	}
}

// reconcile adds alive members that are missing from the configuration (as
// voters straight away: the metadata is small, a new node catches up from a
// snapshot in moments, and a staging step would add a state to get wrong),
// updates changed addresses in place, and — only when DeadServerTimeout is
// set — removes voters dead for longer than that, never more than
// (voters-1)/2 of them.
func (n *Node) reconcile(ctx context.Context, deadSince map[string]time.Time, logged map[string]string) {
	if n.raft.State() != raft.Leader {
		return
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		n.log.Warn().Err(err).Msg("reconcile: reading configuration")
		return
	}
	inConf := map[string]raft.Server{}
	voters := 0
	for _, s := range f.Configuration().Servers {
		inConf[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	members := n.members.Members()
	sort.Slice(members, func(i, j int) bool { return members[i].Meta.ID < members[j].Meta.ID })
	now := time.Now()
	for _, m := range members {
		id := m.Meta.ID
		if id == "" || m.Meta.RaftAddr == "" {
			continue
		}
		if m.Status != membership.StatusAlive {
			if _, ok := deadSince[id]; !ok {
				deadSince[id] = now
			}
			continue
		}
		delete(deadSince, id)
		s, ok := inConf[id]
		if why := n.refuseMember(m); why != "" {
			if !ok || string(s.Address) != m.Meta.RaftAddr {
				if logged["member/"+id] != why {
					logged["member/"+id] = why
					n.log.Error().Str("member_id", id).Str("member_version", m.Meta.Version).Msg("not adding member to the Raft configuration: " + why)
				}
				continue
			}
		}
		switch {
		case !ok:
			n.log.Info().Str("member_id", id).Str("raft_addr", m.Meta.RaftAddr).Msg("adding member to the Raft configuration")
		case string(s.Address) != m.Meta.RaftAddr:
			n.log.Info().Str("member_id", id).Str("old_raft_addr", string(s.Address)).Str("raft_addr", m.Meta.RaftAddr).Msg("updating member address")
		default:
			continue
		}
		if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(m.Meta.RaftAddr), 0, 10*time.Second).Error(); err != nil {
			n.log.Warn().Err(err).Str("member_id", id).Msg("adding voter failed")
		}
	}
	if n.cfg.DeadServerTimeout <= 0 {
		return
	}
	budget := (voters - 1) / 2
	for id, since := range deadSince {
		if budget <= 0 {
			return
		}
		if _, ok := inConf[id]; !ok || id == n.id || now.Sub(since) < n.cfg.DeadServerTimeout {
			continue
		}
		if err := n.RemoveNode(ctx, id); err != nil {
			n.log.Warn().Err(err).Str("member_id", id).Msg("not removing dead server")
			continue
		}
		delete(deadSince, id)
		budget--
	}
}
