package tidbfake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pingcap/kvproto/pkg/cdcpb"
	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"github.com/pingcap/kvproto/pkg/tikvpb"
	"github.com/tikv/client-go/v2/oracle"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Store is one fake TiKV: a gRPC server with cdcpb.ChangeData and the part
// of tikvpb.Tikv that snapshot reads and lock resolution use (Get, Scan,
// BatchGet, ScanLock, CheckTxnStatus, ResolveLock, TxnHeartBeat,
// CheckSecondaryLocks — unary and through BatchCommands). It serves the
// regions whose leader it is, and answers the others with TiKV's region
// errors.
type Store struct {
	tikvpb.UnimplementedTikvServer
	cdcpb.UnimplementedChangeDataServer
	c    *Cluster
	id   uint64
	port int

	mu      sync.Mutex
	srv     *grpc.Server
	lis     net.Listener
	running bool
	conns   map[*feedConn]struct{}
	cancel  context.CancelFunc
}

func (st *Store) addr() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return net.JoinHostPort(st.c.opts.Addr, fmt.Sprint(st.port))
}

func (st *Store) start() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.running {
		return nil
	}
	var lis net.Listener
	var err error
	// A restarted store binds its old port again; give the kernel a
	// moment if it is still releasing it.
	for i := 0; i < 50; i++ {
		lis, err = listen(st.c.opts.Addr, st.port)
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("tidbfake: store %d listen: %w", st.id, err)
	}
	st.port = lis.Addr().(*net.TCPAddr).Port
	st.lis = lis
	// TiKV lets clients keep connections alive with frequent pings.
	st.srv = grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}))
	tikvpb.RegisterTikvServer(st.srv, st)
	cdcpb.RegisterChangeDataServer(st.srv, st)
	healthpb.RegisterHealthServer(st.srv, health.NewServer())
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	st.conns = map[*feedConn]struct{}{}
	st.running = true
	go func() { _ = st.srv.Serve(lis) }()
	go st.resolvedLoop(ctx)
	st.c.logf("tidbfake: store %d serving at %s", st.id, lis.Addr())
	return nil
}

func (st *Store) stop() {
	st.mu.Lock()
	if !st.running {
		st.mu.Unlock()
		return
	}
	st.running = false
	srv := st.srv
	st.cancel()
	conns := st.conns
	st.conns = nil
	st.mu.Unlock()
	srv.Stop()
	st.c.mu.Lock()
	for fc := range conns {
		fc.closeLocked()
	}
	st.c.mu.Unlock()
	st.c.logf("tidbfake: store %d stopped", st.id)
}

// StopStore stops store i (0-based) as a crash would: connections drop.
// With moveLeaders, the regions it led elect a leader on the next live
// store, as Raft would after an election timeout.
func (c *Cluster) StopStore(i int, moveLeaders bool) {
	st := c.stores[i]
	st.stop()
	if !moveLeaders {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.regions.list {
		if r.leader != st.id {
			continue
		}
		for _, p := range r.peers {
			if p.StoreId != st.id && c.stores[p.StoreId-1].isRunning() {
				_ = c.transferLeaderLocked(r.id, p.StoreId)
				break
			}
		}
	}
}

// StartStore starts a stopped store on its old address.
func (c *Cluster) StartStore(i int) error { return c.stores[i].start() }

// RestartStore stops and starts store i (leaders stay where they were, as
// after a quick restart).
func (c *Cluster) RestartStore(i int) error {
	c.stores[i].stop()
	return c.stores[i].start()
}

func (st *Store) isRunning() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.running
}

// SetEventFeedV2 turns EventFeedV2 on or off for every store (off: it
// answers UNIMPLEMENTED, as a TiKV older than 7.x).
func (c *Cluster) SetEventFeedV2(enabled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stores {
		c.noV2[st.id] = !enabled
	}
}

// FeedConns is how many CDC streams store i serves now.
func (c *Cluster) FeedConns(i int) int {
	st := c.stores[i]
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.conns)
}

// Subscriptions is how many region subscriptions the stores serve now.
func (c *Cluster) Subscriptions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.subs {
		n += len(s)
	}
	return n
}

// ---- kvrpcpb ----

func (st *Store) KvGet(_ context.Context, req *kvrpcpb.GetRequest) (*kvrpcpb.GetResponse, error) {
	return st.get(req), nil
}

func (st *Store) get(req *kvrpcpb.GetRequest) *kvrpcpb.GetResponse {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := req.GetContext()
	if _, rerr := c.regionErrorLocked(st.id, ctx.GetRegionId(), ctx.GetRegionEpoch(), req.GetKey()); rerr != nil {
		return &kvrpcpb.GetResponse{RegionError: rerr}
	}
	e := c.mvcc.get(req.GetKey())
	if e == nil {
		return &kvrpcpb.GetResponse{NotFound: true}
	}
	if e.lockBlocks(req.GetVersion()) {
		return &kvrpcpb.GetResponse{Error: &kvrpcpb.KeyError{Locked: e.lock.info(e.key)}}
	}
	v, ok := e.valueAt(req.GetVersion())
	if !ok {
		return &kvrpcpb.GetResponse{NotFound: true}
	}
	return &kvrpcpb.GetResponse{Value: v}
}

func (st *Store) KvBatchGet(_ context.Context, req *kvrpcpb.BatchGetRequest) (*kvrpcpb.BatchGetResponse, error) {
	return st.batchGet(req), nil
}

func (st *Store) batchGet(req *kvrpcpb.BatchGetRequest) *kvrpcpb.BatchGetResponse {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := req.GetContext()
	if _, rerr := c.regionErrorLocked(st.id, ctx.GetRegionId(), ctx.GetRegionEpoch(), req.GetKeys()...); rerr != nil {
		return &kvrpcpb.BatchGetResponse{RegionError: rerr}
	}
	out := &kvrpcpb.BatchGetResponse{}
	for _, k := range req.GetKeys() {
		e := c.mvcc.get(k)
		if e == nil {
			continue
		}
		if e.lockBlocks(req.GetVersion()) {
			out.Pairs = append(out.Pairs, &kvrpcpb.KvPair{Key: k, Error: &kvrpcpb.KeyError{Locked: e.lock.info(e.key)}})
			continue
		}
		if v, ok := e.valueAt(req.GetVersion()); ok {
			out.Pairs = append(out.Pairs, &kvrpcpb.KvPair{Key: k, Value: v})
		}
	}
	return out
}

func (st *Store) KvScan(_ context.Context, req *kvrpcpb.ScanRequest) (*kvrpcpb.ScanResponse, error) {
	return st.scan(req), nil
}

func (st *Store) scan(req *kvrpcpb.ScanRequest) *kvrpcpb.ScanResponse {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := req.GetContext()
	r, rerr := c.regionErrorLocked(st.id, ctx.GetRegionId(), ctx.GetRegionEpoch())
	if rerr != nil {
		return &kvrpcpb.ScanResponse{RegionError: rerr}
	}
	limit := int(req.GetLimit())
	out := &kvrpcpb.ScanResponse{}
	visit := func(e *entry) bool {
		if e.lockBlocks(req.GetVersion()) {
			out.Pairs = append(out.Pairs, &kvrpcpb.KvPair{Key: e.key, Error: &kvrpcpb.KeyError{Locked: e.lock.info(e.key)}})
		} else if v, ok := e.valueAt(req.GetVersion()); ok {
			p := &kvrpcpb.KvPair{Key: e.key}
			if !req.GetKeyOnly() {
				p.Value = v
			}
			out.Pairs = append(out.Pairs, p)
		}
		return limit <= 0 || len(out.Pairs) < limit
	}
	if req.GetReverse() {
		upper, lower := req.GetStartKey(), req.GetEndKey()
		if len(r.end) > 0 && (len(upper) == 0 || bytes.Compare(upper, r.end) > 0) {
			upper = r.end
		}
		if bytes.Compare(lower, r.start) < 0 {
			lower = r.start
		}
		c.mvcc.descend(upper, lower, visit)
		return out
	}
	start, end := req.GetStartKey(), req.GetEndKey()
	if bytes.Compare(start, r.start) < 0 {
		start = r.start
	}
	if len(r.end) > 0 && (len(end) == 0 || bytes.Compare(end, r.end) > 0) {
		end = r.end
	}
	c.mvcc.ascend(start, end, visit)
	return out
}

func (st *Store) KvScanLock(_ context.Context, req *kvrpcpb.ScanLockRequest) (*kvrpcpb.ScanLockResponse, error) {
	return st.scanLock(req), nil
}

func (st *Store) scanLock(req *kvrpcpb.ScanLockRequest) *kvrpcpb.ScanLockResponse {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := req.GetContext()
	r, rerr := c.regionErrorLocked(st.id, ctx.GetRegionId(), ctx.GetRegionEpoch())
	if rerr != nil {
		return &kvrpcpb.ScanLockResponse{RegionError: rerr}
	}
	start, end := req.GetStartKey(), req.GetEndKey()
	if bytes.Compare(start, r.start) < 0 {
		start = r.start
	}
	if len(r.end) > 0 && (len(end) == 0 || bytes.Compare(end, r.end) > 0) {
		end = r.end
	}
	out := &kvrpcpb.ScanLockResponse{}
	c.mvcc.lockedIn(start, end, func(e *entry) bool {
		if e.lock.startTs <= req.GetMaxVersion() {
			out.Locks = append(out.Locks, e.lock.info(e.key))
		}
		return req.GetLimit() == 0 || len(out.Locks) < int(req.GetLimit())
	})
	return out
}

func (st *Store) KvCheckTxnStatus(_ context.Context, req *kvrpcpb.CheckTxnStatusRequest) (*kvrpcpb.CheckTxnStatusResponse, error) {
	return st.checkTxnStatus(req), nil
}

// checkTxnStatus is TiKV's check on a transaction's primary key: a live
// lock reports its TTL, an expired one is rolled back, a finished
// transaction reports its commit ts (0 when rolled back).
func (st *Store) checkTxnStatus(req *kvrpcpb.CheckTxnStatusRequest) *kvrpcpb.CheckTxnStatusResponse {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := req.GetContext()
	if _, rerr := c.regionErrorLocked(st.id, ctx.GetRegionId(), ctx.GetRegionEpoch(), req.GetPrimaryKey()); rerr != nil {
		return &kvrpcpb.CheckTxnStatusResponse{RegionError: rerr}
	}
	e := c.mvcc.getOrCreate(req.GetPrimaryKey())
	if l := e.lock; l != nil && l.startTs == req.GetLockTs() {
		now := uint64(oracle.ExtractPhysical(req.GetCurrentTs()))
		if now >= l.bornMs+l.ttlMs {
			c.rollbackKeyLocked(e.key, l.startTs)
			c.logf("tidbfake: lock of txn %d expired; rolled back its primary", req.GetLockTs())
			return &kvrpcpb.CheckTxnStatusResponse{Action: kvrpcpb.Action_TTLExpireRollback}
		}
		return &kvrpcpb.CheckTxnStatusResponse{LockTtl: l.ttlMs, Action: kvrpcpb.Action_NoAction, LockInfo: l.info(e.key)}
	}
	if w := e.findWrite(req.GetLockTs()); w != nil {
		if w.kind == writeRollback {
			return &kvrpcpb.CheckTxnStatusResponse{}
		}
		return &kvrpcpb.CheckTxnStatusResponse{CommitVersion: w.commitTs}
	}
	if req.GetRollbackIfNotExist() {
		c.rollbackKeyLocked(e.key, req.GetLockTs())
		return &kvrpcpb.CheckTxnStatusResponse{Action: kvrpcpb.Action_LockNotExistRollback}
	}
	return &kvrpcpb.CheckTxnStatusResponse{Error: &kvrpcpb.KeyError{TxnNotFound: &kvrpcpb.TxnNotFound{StartTs: req.GetLockTs(), PrimaryKey: req.GetPrimaryKey()}}}
}

func (st *Store) KvResolveLock(_ context.Context, req *kvrpcpb.ResolveLockRequest) (*kvrpcpb.ResolveLockResponse, error) {
	return st.resolveLock(req), nil
}

// resolveLock commits (commit version > 0) or rolls back a transaction's
// locks in the region, or those of several transactions (TxnInfos).
func (st *Store) resolveLock(req *kvrpcpb.ResolveLockRequest) *kvrpcpb.ResolveLockResponse {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := req.GetContext()
	r, rerr := c.regionErrorLocked(st.id, ctx.GetRegionId(), ctx.GetRegionEpoch(), req.GetKeys()...)
	if rerr != nil {
		return &kvrpcpb.ResolveLockResponse{RegionError: rerr}
	}
	status := map[uint64]uint64{}
	if len(req.GetTxnInfos()) > 0 {
		for _, ti := range req.GetTxnInfos() {
			status[ti.GetTxn()] = ti.GetStatus()
		}
	} else {
		status[req.GetStartVersion()] = req.GetCommitVersion()
	}
	var keys [][]byte
	if len(req.GetKeys()) > 0 {
		keys = req.GetKeys()
	} else {
		c.mvcc.lockedIn(r.start, r.end, func(e *entry) bool {
			if _, ok := status[e.lock.startTs]; ok {
				keys = append(keys, e.key)
			}
			return true
		})
	}
	for _, k := range keys {
		e := c.mvcc.get(k)
		if e == nil || e.lock == nil {
			continue
		}
		commitTs, ok := status[e.lock.startTs]
		if !ok {
			continue
		}
		if commitTs > 0 {
			c.commitKeyLocked(k, e.lock.startTs, commitTs)
		} else {
			c.rollbackKeyLocked(k, e.lock.startTs)
		}
	}
	return &kvrpcpb.ResolveLockResponse{}
}

func (st *Store) KvTxnHeartBeat(_ context.Context, req *kvrpcpb.TxnHeartBeatRequest) (*kvrpcpb.TxnHeartBeatResponse, error) {
	return st.txnHeartBeat(req), nil
}

func (st *Store) txnHeartBeat(req *kvrpcpb.TxnHeartBeatRequest) *kvrpcpb.TxnHeartBeatResponse {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.mvcc.get(req.GetPrimaryLock())
	if e == nil || e.lock == nil || e.lock.startTs != req.GetStartVersion() {
		return &kvrpcpb.TxnHeartBeatResponse{Error: &kvrpcpb.KeyError{TxnNotFound: &kvrpcpb.TxnNotFound{StartTs: req.GetStartVersion()}}}
	}
	if req.GetAdviseLockTtl() > e.lock.ttlMs {
		e.lock.ttlMs = req.GetAdviseLockTtl()
	}
	return &kvrpcpb.TxnHeartBeatResponse{LockTtl: e.lock.ttlMs}
}

func (st *Store) KvCheckSecondaryLocks(_ context.Context, req *kvrpcpb.CheckSecondaryLocksRequest) (*kvrpcpb.CheckSecondaryLocksResponse, error) {
	// The fake has no async-commit transactions, so no secondary is ever
	// checked this way; answer as TiKV would for keys without such locks.
	return &kvrpcpb.CheckSecondaryLocksResponse{}, nil
}

// BatchCommands serves the batched form client-go uses by default.
func (st *Store) BatchCommands(stream tikvpb.Tikv_BatchCommandsServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		out := &tikvpb.BatchCommandsResponse{RequestIds: req.GetRequestIds()}
		for _, r := range req.GetRequests() {
			resp := &tikvpb.BatchCommandsResponse_Response{}
			switch cmd := r.GetCmd().(type) {
			case *tikvpb.BatchCommandsRequest_Request_Get:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_Get{Get: st.get(cmd.Get)}
			case *tikvpb.BatchCommandsRequest_Request_BatchGet:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_BatchGet{BatchGet: st.batchGet(cmd.BatchGet)}
			case *tikvpb.BatchCommandsRequest_Request_Scan:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_Scan{Scan: st.scan(cmd.Scan)}
			case *tikvpb.BatchCommandsRequest_Request_ScanLock:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_ScanLock{ScanLock: st.scanLock(cmd.ScanLock)}
			case *tikvpb.BatchCommandsRequest_Request_CheckTxnStatus:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_CheckTxnStatus{CheckTxnStatus: st.checkTxnStatus(cmd.CheckTxnStatus)}
			case *tikvpb.BatchCommandsRequest_Request_ResolveLock:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_ResolveLock{ResolveLock: st.resolveLock(cmd.ResolveLock)}
			case *tikvpb.BatchCommandsRequest_Request_TxnHeartBeat:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_TxnHeartBeat{TxnHeartBeat: st.txnHeartBeat(cmd.TxnHeartBeat)}
			case *tikvpb.BatchCommandsRequest_Request_CheckSecondaryLocks:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_CheckSecondaryLocks{CheckSecondaryLocks: &kvrpcpb.CheckSecondaryLocksResponse{}}
			case *tikvpb.BatchCommandsRequest_Request_Empty:
				resp.Cmd = &tikvpb.BatchCommandsResponse_Response_Empty{Empty: &tikvpb.BatchCommandsEmptyResponse{TestId: cmd.Empty.GetTestId()}}
			default:
				return status.Errorf(codes.Unimplemented, "tidbfake: batch command %T", cmd)
			}
			out.Responses = append(out.Responses, resp)
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}
