package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/membership"
	"github.com/raftcdc/raftcdc/meta"
)

func errNoLeader() *api.Error { return api.NoLeader() }

// leaderAPI is the API address of the current leader, from gossip.
func (n *Node) leaderAPI() (id, addr string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	for _, m := range n.members.Members() {
		if m.Meta.ID == string(lid) {
			return string(lid), m.Meta.APIAddr
		}
	}
	return string(lid), ""
}

// Apply proposes a command and returns its result. On a follower the command
// is forwarded to the leader's API. It waits for a leader while ctx allows.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	return n.applyEncoded(ctx, data, false)
}

func (n *Node) applyEncoded(ctx context.Context, data []byte, forwarded bool) (*fsm.Result, error) {
	// Between polls a leader change wakes the wait at once; the poll only
	// covers a leader whose API address gossip has not brought yet.
	backoff := 20 * time.Millisecond
	for {
		elected := n.leaders.next()
		if n.raft.State() == raft.Leader {
			timeout := 10 * time.Second
			if dl, ok := ctx.Deadline(); ok {
				timeout = time.Until(dl)
			}
			f := n.raft.Apply(data, timeout)
			err := f.Error()
			if err == nil {
				res, _ := f.Response().(*fsm.Result)
				if res == nil {
					return nil, fmt.Errorf("applying command: no result from the state machine")
				}
				// Committed means a majority has the entry, counting this
				// leader, whose own write may still be under way (parallel
				// leader sync): answer once it is done.
				if err := n.waitDurable(ctx, f.Index()); err != nil {
					return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("the command was applied but this leader's log did not confirm it: %v", err), RetryAfter: 1}
				}
				return res, nil
			}
			// Only "not leader" proves the entry was never appended, so only
			// then is a retry safe; anything else may still commit.
			if !errors.Is(err, raft.ErrNotLeader) {
				return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("the leader could not commit the command (it may still apply): %v", err), RetryAfter: 1}
			}
		} else if forwarded {
			return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNotLeader, Message: "this node is no longer the leader", RetryAfter: 1}
		} else if _, addr := n.leaderAPI(); addr != "" {
			return n.forwardApply(ctx, addr, data)
		}
		select {
		case <-ctx.Done():
			return nil, errNoLeader()
		case <-elected:
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 160*time.Millisecond)
	}
}

const (
	headerSecret    = "X-Raftcdc-Cluster-Secret"
	headerForwarded = "X-Raftcdc-Forwarded"
)

func (n *Node) internalRequest(ctx context.Context, method, addr, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.http.scheme+"://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set(headerForwarded, n.id)
	if n.cfg.ClusterSecret != "" {
		req.Header.Set(headerSecret, n.cfg.ClusterSecret)
	}
	return n.http.client.Do(req)
}

func (n *Node) forwardApply(ctx context.Context, addr string, data []byte) (*fsm.Result, error) {
	resp, err := n.internalRequest(ctx, http.MethodPost, addr, "/internal/v1/apply", data)
	if err != nil {
		return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("forwarding to the leader at %s: %v", addr, err), RetryAfter: 1}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(body, &e) != nil || e.Code == "" {
			e = api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("leader at %s answered %s", addr, resp.Status)}
		}
		e.Status = resp.StatusCode
		return nil, &e
	}
	var res fsm.Result
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("decoding the leader's result: %w", err)
	}
	return &res, nil
}

// ReadIndex makes the next local read linearizable: it learns the leader's
// commit index (the leader first confirms it still leads) and waits until
// this replica has applied up to it.
func (n *Node) ReadIndex(ctx context.Context) error {
	var index uint64
	if n.raft.State() == raft.Leader {
		var err error
		if index, err = n.leaderReadIndex(ctx); err != nil {
			return err
		}
	} else {
		_, addr := n.leaderAPI()
		if addr == "" {
			return errNoLeader()
		}
		resp, err := n.internalRequest(ctx, http.MethodGet, addr, "/internal/v1/read-index", nil)
		if err != nil {
			return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("asking the leader at %s for its commit index: %v", addr, err), RetryAfter: 1}
		}
		defer resp.Body.Close()
		var out struct {
			Index uint64 `json:"index"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
			return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("leader at %s answered %s to read-index", addr, resp.Status), RetryAfter: 1}
		}
		index = out.Index
	}
	return n.fsm.WaitApplied(ctx, index)
}

// leaderReadIndex is the index a linearizable read must wait for, asked of
// this node as leader. Every write acknowledged to a client was applied on
// the leader that acknowledged it, so once this leader has confirmed it still
// leads and has applied everything of earlier terms (its barrier), its
// applied index covers them all. (The commit index could point at a no-op
// entry the state machine never sees.) With the parallel leader sync the
// applied index can run ahead of this leader's synced log by the fsync in
// flight; the read waits for it, so that what a linearizable read returns
// is on the disks of a majority, like what a write acknowledges.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNotLeader, Message: fmt.Sprintf("confirming leadership: %v", err), RetryAfter: 1}
	}
	if !n.IsLeader() {
		// Freshly elected: entries of earlier terms may not be applied yet.
		if err := n.raft.Barrier(5 * time.Second).Error(); err != nil {
			return 0, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNotLeader, Message: fmt.Sprintf("new leader catching up: %v", err), RetryAfter: 1}
		}
	}
	index := n.fsm.AppliedIndex()
	if err := n.waitDurable(ctx, index); err != nil {
		return 0, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("waiting for this leader's log to sync: %v", err), RetryAfter: 1}
	}
	return index, nil
}

// Status reports this node's view.
func (n *Node) Status() api.Status {
	lid, laddr := n.leaderAPI()
	s := api.Status{
		NodeID: n.id, RaftState: n.raft.State().String(), LeaderID: lid, LeaderAPIAddr: laddr,
		Term: n.raft.CurrentTerm(), AppliedIndex: n.fsm.AppliedIndex(), CommitIndex: n.raft.CommitIndex(),
		LastIndex: n.raft.LastIndex(), Version: n.cfg.Version, APIAddr: n.cfg.AdvertiseAPIAddr,
		CorruptKeys: n.tracker.Corrupt(),
	}
	if n.raft.State() != raft.Leader {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			s.LastContact = &lc
		}
	}
	if o, err := meta.ReadOwner(n.fsm); err == nil {
		s.OwnerEpoch, s.OwnerNode = o.Epoch, o.NodeID
	}
	if c := n.cluster(); c != nil {
		s.ClusterID, s.SchemaVersion = c.ID, c.SchemaVersion
	}
	if n.stores != nil {
		s.LogStore = string(n.stores.LogStore())
	}
	return s
}

// Ready says why the node is not ready to serve, or nil: a leader must be
// known and this replica must have applied what it knows to be committed.
func (n *Node) Ready() error {
	n.mu.Lock()
	berr := n.bootstrapErr
	n.mu.Unlock()
	if berr != nil {
		return berr
	}
	if lid, _ := n.leaderAPI(); lid == "" {
		return errNoLeader()
	}
	if n.raft.State() == raft.Leader && !n.IsLeader() {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "newly elected leader is still applying earlier entries", RetryAfter: 1}
	}
	if applied, commit := n.raft.AppliedIndex(), n.raft.CommitIndex(); applied < commit {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("catching up: applied %d of %d", applied, commit), RetryAfter: 1}
	}
	return nil
}

// ClusterMembers is gossip and the Raft configuration side by side.
func (n *Node) ClusterMembers() ([]api.Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("reading the Raft configuration: %w", err)
	}
	_, lid := n.raft.LeaderWithID()
	byID := map[string]*api.Member{}
	var order []string
	get := func(id string) *api.Member {
		if v, ok := byID[id]; ok {
			return v
		}
		v := &api.Member{ID: id, GossipStatus: "absent", Suffrage: "absent"}
		byID[id] = v
		order = append(order, id)
		return v
	}
	for _, m := range n.members.Members() {
		v := get(m.Meta.ID)
		v.GossipAddr, v.RaftAddr, v.APIAddr = m.GossipAddr, m.Meta.RaftAddr, m.Meta.APIAddr
		v.GossipStatus, v.Liveness, v.Version = string(m.Status), string(m.Meta.Liveness), m.Meta.Version
	}
	for _, s := range f.Configuration().Servers {
		v := get(string(s.ID))
		v.RaftAddr = string(s.Address)
		v.Suffrage = map[raft.ServerSuffrage]string{raft.Voter: "voter", raft.Nonvoter: "nonvoter", raft.Staging: "staging"}[s.Suffrage]
	}
	out := make([]api.Member, 0, len(order))
	for _, id := range order {
		v := byID[id]
		v.Leader = id == string(lid)
		out = append(out, *v)
	}
	sortMembers(out)
	return out, nil
}

// TransferLeader hands leadership to target (any voter if empty). Only the
// leader can do it; the API forwards the request there.
//
// hashicorp/raft gives a transfer one election timeout (500 ms by
// default) to catch the target up and see it win, and one TimeoutNow RPC;
// on a loaded machine, towards a node that joined a moment ago, or over a
// connection that just broke, that is often not enough, and the target
// may still win just after raft gave up. So a failed transfer is retried
// for up to transferBudget while this node leads, and one whose target
// took over anyway counts as done. A target gossip does not see alive is
// refused at once instead of being retried for nothing.
func (n *Node) TransferLeader(ctx context.Context, target string) error {
	if n.raft.State() != raft.Leader {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNotLeader, Message: "only the leader can transfer leadership", RetryAfter: 1}
	}
	var addr raft.ServerAddress
	if target != "" {
		if target == n.id {
			return &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: fmt.Sprintf("node %s is already the leader", target)}
		}
		var ok bool
		if addr, ok = n.voterAddr(target); !ok {
			return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("node %s is not a voter of this cluster", target)}
		}
		if !n.aliveSet()[target] {
			return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: fmt.Sprintf(
				"node %s is not alive as gossip sees it; 'raftcdc ctl cluster members' shows each node's state: transfer to a live voter", target)}
		}
	}
	failed := func(err error, attempts int) error {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("leadership transfer failed: %v (attempts: %d)", err, attempts), RetryAfter: 1}
	}
	deadline := time.Now().Add(transferBudget)
	for attempt := 1; ; attempt++ {
		var f raft.Future
		if target == "" {
			f = n.raft.LeadershipTransfer()
		} else {
			f = n.raft.LeadershipTransferToServer(raft.ServerID(target), addr)
		}
		err := f.Error()
		if err == nil || n.leadershipMoved(ctx, target) {
			return nil
		}
		if n.raft.State() != raft.Leader || time.Now().After(deadline) || ctx.Err() != nil {
			return failed(err, attempt)
		}
		n.log.Info().Str("target", target).Int("attempt", attempt).Err(err).Msg("leadership transfer failed; trying again")
		select {
		case <-ctx.Done():
			return failed(err, attempt)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// transferBudget is how long TransferLeader keeps retrying failed
// transfers.
const transferBudget = 10 * time.Second

// leadershipMoved waits up to two election timeouts for another node (the
// target, if one was named) to be known as leader.
func (n *Node) leadershipMoved(ctx context.Context, target string) bool {
	until := time.Now().Add(2 * n.cfg.ElectionTimeout)
	for {
		if _, id := n.raft.LeaderWithID(); id != "" && string(id) != n.id && (target == "" || string(id) == target) {
			return true
		}
		if n.raft.State() == raft.Leader || time.Now().After(until) {
			// Still (or again) the leader: nothing moved.
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *Node) voterAddr(id string) (raft.ServerAddress, bool) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return "", false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id && s.Suffrage == raft.Voter {
			return s.Address, true
		}
	}
	return "", false
}

// RemoveNode takes a node out of the Raft configuration, refusing when the
// voters that would remain could not form a quorum among the live ones.
func (n *Node) RemoveNode(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNotLeader, Message: "only the leader can change the configuration", RetryAfter: 1}
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("reading the Raft configuration: %w", err)
	}
	conf := f.Configuration()
	alive := n.aliveSet()
	if err := checkRemoval(conf, alive, id); err != nil {
		return err
	}
	if alive[id] {
		// The leader adds alive members to the configuration (reconcile):
		// the removal would be undone within a second, without a word.
		return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: fmt.Sprintf(
			"refusing to remove %s: gossip reports it alive, and the leader adds alive members back at once; stop it (drain it first to move its tables), wait until 'raftcdc ctl cluster members' shows it dead, then remove it", id)}
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), f.Index(), 10*time.Second).Error(); err != nil {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("removing %s: %v", id, err), RetryAfter: 1}
	}
	n.log.Info().Str("removed_id", id).Msg("removed node from the Raft configuration")
	return nil
}

func (n *Node) aliveSet() map[string]bool {
	alive := map[string]bool{n.id: true}
	for _, m := range n.members.Members() {
		if m.Status == membership.StatusAlive {
			alive[m.Meta.ID] = true
		}
	}
	return alive
}

// checkRemoval is the quorum rule for removing a server.
func checkRemoval(conf raft.Configuration, alive map[string]bool, id string) error {
	found, isVoter := false, false
	voters, aliveVoters := 0, 0
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			found, isVoter = true, s.Suffrage == raft.Voter
			continue
		}
		if s.Suffrage == raft.Voter {
			voters++
			if alive[string(s.ID)] {
				aliveVoters++
			}
		}
	}
	if !found {
		return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("node %s is not in the Raft configuration", id)}
	}
	if !isVoter {
		return nil
	}
	if voters == 0 {
		return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: fmt.Sprintf("refusing to remove %s: it is the last voter", id)}
	}
	if need := voters/2 + 1; aliveVoters < need {
		return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: fmt.Sprintf("refusing to remove %s: the %d remaining voters would need %d alive for a quorum, but only %d are alive", id, voters, need, aliveVoters)}
	}
	return nil
}
