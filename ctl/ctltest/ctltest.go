// Package ctltest serves the real API handler over a real state machine
// without Raft, for tests of the API and of ctl that need deterministic data:
// the fixtures are written with the same fenced commands the owner and the
// processors use, so the FSM's access rules hold for them too.
package ctltest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/admission"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/connector"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// Store implements api.Store over an FSM that applies commands directly.
type Store struct {
	FSM *fsm.FSM

	mu     sync.Mutex
	index  uint64
	leader bool
	// leaderID is who Status reports as leader; a transfer changes it.
	leaderID string
	term     uint64
	// Transfers and Removals record the cluster calls the API made.
	Transfers []string
	Removals  []string
	// behind holds commands the cluster has committed but this replica has
	// not applied yet; a read-index applies them, as waiting for the
	// leader's commit index does on a real follower.
	behind []fsm.Command
}

var _ api.Store = (*Store)(nil)

// NewStore opens an empty state machine that leads its one-node "cluster".
func NewStore(t testing.TB) *Store {
	t.Helper()
	f, err := fsm.Open(filepath.Join(t.TempDir(), "fsm.db"), fsm.Options{Rules: meta.Rules{}})
	if err != nil {
		t.Fatalf("opening the FSM: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &Store{FSM: f, leader: true, leaderID: "node1", term: 3}
}

// SetLeader makes the node a leader or a follower that knows no leader.
func (s *Store) SetLeader(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leader = on
}

func (s *Store) isLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader
}

// Status implements api.Store.
func (s *Store) Status() api.Status {
	s.mu.Lock()
	st := api.Status{NodeID: "node1", RaftState: "Follower", Term: s.term, Version: "test", APIAddr: "127.0.0.1:8300"}
	if s.leader {
		st.LeaderID, st.LeaderAPIAddr = s.leaderID, "127.0.0.1:8300"
		if s.leaderID == "node1" {
			st.RaftState = "Leader"
		} else {
			st.LeaderAPIAddr = "127.0.0.1:8301"
		}
	}
	s.mu.Unlock()
	st.AppliedIndex = s.FSM.AppliedIndex()
	st.CommitIndex = st.AppliedIndex
	st.LastIndex = st.AppliedIndex
	if o, err := meta.ReadOwner(s.FSM); err == nil {
		st.OwnerEpoch, st.OwnerNode = o.Epoch, o.NodeID
	}
	st.CorruptKeys = []meta.CorruptKey{}
	_ = s.FSM.View(func(r fsm.Reader, _ uint64) error {
		st.CorruptKeys = append(st.CorruptKeys, meta.Scan(r)...)
		return nil
	})
	return st
}

// ClusterMembers implements api.Store.
func (s *Store) ClusterMembers() ([]api.Member, error) {
	return []api.Member{
		{ID: "node1", GossipAddr: "127.0.0.1:8100", RaftAddr: "127.0.0.1:8200", APIAddr: "127.0.0.1:8300", GossipStatus: "alive", Suffrage: "voter", Leader: s.isLeader(), Version: "test"},
		{ID: "node2", GossipAddr: "127.0.0.1:8101", RaftAddr: "127.0.0.1:8201", APIAddr: "127.0.0.1:8301", GossipStatus: "alive", Suffrage: "voter", Version: "test"},
	}, nil
}

// Ready implements api.Store.
func (s *Store) Ready() error {
	if !s.isLeader() {
		return api.NoLeader()
	}
	return nil
}

// IsLeader implements api.Store.
func (s *Store) IsLeader() bool { return s.isLeader() }

// LeaderAPIAddr implements api.Store.
func (s *Store) LeaderAPIAddr() string {
	if s.isLeader() {
		return "127.0.0.1:8300"
	}
	return ""
}

// Apply implements api.Store: the command applies at the next index, as it
// would once committed. Without a leader it fails the way a node does.
func (s *Store) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if !s.isLeader() {
		return nil, api.NoLeader()
	}
	return s.apply(cmd)
}

func (s *Store) apply(cmd fsm.Command) (*fsm.Result, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	res, _ := s.FSM.Apply(&raft.Log{Type: raft.LogCommand, Index: s.index, Data: data}).(*fsm.Result)
	return res, nil
}

// ReadIndex implements api.Store: it applies what the replica lags.
func (s *Store) ReadIndex(ctx context.Context) error {
	if !s.isLeader() {
		return api.NoLeader()
	}
	s.mu.Lock()
	behind := s.behind
	s.behind = nil
	s.mu.Unlock()
	for _, cmd := range behind {
		if _, err := s.apply(cmd); err != nil {
			return err
		}
	}
	return nil
}

// PutInfoBehind commits a changefeed's definition elsewhere in the cluster:
// this replica reads the old one until a read-index catches it up.
func (s *Store) PutInfoBehind(info model.ChangefeedInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behind = append(s.behind, fsm.Command{Ops: []fsm.Op{put(meta.ChangefeedInfoKey(info.ID), info)}})
}

// View implements api.Store.
func (s *Store) View(fn func(r fsm.Reader, appliedIndex uint64) error) error { return s.FSM.View(fn) }

// TransferLeader implements api.Store.
func (s *Store) TransferLeader(ctx context.Context, target string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Transfers = append(s.Transfers, target)
	// The API answers after the transfer; the new leader is what a status
	// read then shows.
	s.leaderID, s.term = target, s.term+1
	if target == "" {
		s.leaderID = "node2"
	}
	return nil
}

// RemoveNode implements api.Store.
func (s *Store) RemoveNode(ctx context.Context, id string) error {
	if id != "node2" {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "node %s is not in the Raft configuration", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Removals = append(s.Removals, id)
	return nil
}

// Forward implements api.Store: this node is the only one, so a request
// that needs another leader has nowhere to go.
func (s *Store) Forward(w http.ResponseWriter, r *http.Request) { api.WriteError(w, api.NoLeader()) }

// Metrics implements api.Store.
func (s *Store) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("# no metrics in tests\n"))
	})
}

// CDC implements api.CDC with a real connector pool.
type CDC struct {
	Pool *connector.Pool
	// Budget is every node's table budget (0: the default).
	Budget int
	mu     sync.Mutex
	live   map[string]string
}

// NewCDC returns a CDC whose liveness map is live.
func NewCDC(t testing.TB, live map[string]string) *CDC {
	c := &CDC{Pool: connector.NewPool(), live: live}
	t.Cleanup(func() { _ = c.Pool.Close() })
	return c
}

// Upstream implements api.CDC.
func (c *CDC) Upstream(ctx context.Context, uri string) (source.Upstream, error) {
	return c.Pool.Source(ctx, uri)
}

// UpstreamFor implements api.CDC.
func (c *CDC) UpstreamFor(ctx context.Context, changefeedID, uri string) (source.Upstream, error) {
	return c.Pool.SourceFor(ctx, changefeedID, uri)
}

// ValidateSinkURI implements api.CDC with the pool's checks.
func (c *CDC) ValidateSinkURI(uri string) error { return c.Pool.ValidateSinkURI(uri) }

// TableBudget implements api.CDC.
func (c *CDC) TableBudget() int {
	if c.Budget > 0 {
		return c.Budget
	}
	return admission.DefaultTableBudget
}

// CaptureLiveness implements api.CDC.
func (c *CDC) CaptureLiveness() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.live))
	for k, v := range c.live {
		out[k] = v
	}
	return out
}

// Server is the API over a Store, served by httptest.
type Server struct {
	Store   *Store
	CDC     *CDC
	Handler *api.Handler
	HTTP    *httptest.Server
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.HTTP.Listener.Addr().String() }

// NewServer serves api.New + EnableCDC + EnableOpenAPI over a fresh store.
// configure, if not nil, runs before the server starts (RequireToken, say).
func NewServer(t testing.TB, configure func(h *api.Handler)) *Server {
	t.Helper()
	st := NewStore(t)
	cdc := NewCDC(t, map[string]string{"node1": "alive", "node2": "alive", "node3": "dead"})
	h := api.New(st)
	h.EnableCDC(cdc)
	h.EnableOpenAPI()
	if configure != nil {
		configure(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Server{Store: st, CDC: cdc, Handler: h, HTTP: srv}
}

// Fixture writers. Each fails the test if the FSM refuses the command.

func (s *Store) must(t testing.TB, cmd fsm.Command) *fsm.Result {
	t.Helper()
	res, err := s.apply(cmd)
	if err != nil {
		t.Fatalf("applying a fixture: %v", err)
	}
	if res.Err != nil {
		t.Fatalf("the FSM refused a fixture: %v", res.Err)
	}
	return res
}

func put(key string, v any) fsm.Op {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // fixtures are plain data
	}
	return fsm.Op{Type: fsm.OpPut, Key: key, Value: b}
}

// ClaimOwner makes node the owner and returns the epoch.
func (s *Store) ClaimOwner(t testing.TB, node string, at time.Time) uint64 {
	t.Helper()
	return s.must(t, fsm.Command{Kind: fsm.KindClaimOwner, NodeID: node, UnixMilli: at.UnixMilli()}).Index
}

// RegisterCapture registers a capture with incarnation 1.
func (s *Store) RegisterCapture(t testing.TB, info model.CaptureInfo) {
	t.Helper()
	if info.Incarnation == 0 {
		info.Incarnation = 1
	}
	s.must(t, fsm.Command{Kind: fsm.KindRegisterCapture, Ops: []fsm.Op{put(meta.CaptureKey(info.ID), info)}})
}

// PutInfo writes a changefeed's definition as the API would.
func (s *Store) PutInfo(t testing.TB, info model.ChangefeedInfo) {
	t.Helper()
	s.must(t, fsm.Command{Ops: []fsm.Op{put(meta.ChangefeedInfoKey(info.ID), info)}})
}

// GetInfo reads a changefeed's definition; ok is false when absent.
func (s *Store) GetInfo(t testing.TB, id string) (model.ChangefeedInfo, uint64, bool) {
	t.Helper()
	kv, ok, err := s.FSM.Get(meta.ChangefeedInfoKey(id))
	if err != nil {
		t.Fatalf("reading changefeed %s: %v", id, err)
	}
	var info model.ChangefeedInfo
	if ok {
		if err := json.Unmarshal(kv.Value, &info); err != nil {
			t.Fatalf("decoding changefeed %s: %v", id, err)
		}
	}
	return info, kv.ModRev, ok
}

// PutStatus writes a changefeed's status as the owner of epoch would.
func (s *Store) PutStatus(t testing.TB, epoch uint64, id string, st model.ChangefeedStatus) {
	t.Helper()
	s.must(t, fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(meta.ChangefeedStatusKey(id), st)}})
}

// PutTask writes a capture's task as the owner of epoch would.
func (s *Store) PutTask(t testing.TB, epoch uint64, cf, capture string, ts model.TaskStatus) {
	t.Helper()
	s.must(t, fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(meta.TaskStatusKey(cf, capture), ts)}})
}

// PutPosition writes a processor's position and workload as that capture
// (incarnation 1) would.
func (s *Store) PutPosition(t testing.TB, cf, capture string, p model.TaskPosition, wl model.TaskWorkload) {
	t.Helper()
	ops := []fsm.Op{put(meta.TaskPositionKey(cf, capture), p)}
	if wl != nil {
		ops = append(ops, put(meta.TaskWorkloadKey(cf, capture), wl))
	}
	s.must(t, fsm.Command{Capture: &fsm.CaptureFence{ID: capture, Incarnation: 1}, Ops: ops})
}

// Dump is every metadata key with its revision, to show that a refused
// request changed nothing.
func (s *Store) Dump(t testing.TB) string {
	t.Helper()
	kvs, err := s.FSM.List("/")
	if err != nil {
		t.Fatalf("listing the FSM: %v", err)
	}
	b, _ := json.Marshal(kvs)
	return string(b)
}

// PutRaw stores value under key as it is, as a bug or another build could
// have written it; with a non-zero epoch it writes as that owner.
func (s *Store) PutRaw(t testing.TB, epoch uint64, key, value string) {
	t.Helper()
	s.must(t, fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{{Type: fsm.OpPut, Key: key, Value: json.RawMessage(value)}}})
}

// PutRawPosition stores value as capture's position (incarnation 1) as it is.
func (s *Store) PutRawPosition(t testing.TB, cf, capture, value string) {
	t.Helper()
	s.must(t, fsm.Command{Capture: &fsm.CaptureFence{ID: capture, Incarnation: 1}, Ops: []fsm.Op{{Type: fsm.OpPut, Key: meta.TaskPositionKey(cf, capture), Value: json.RawMessage(value)}}})
}
