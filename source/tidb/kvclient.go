package tidb

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingcap/kvproto/pkg/cdcpb"
	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"github.com/pingcap/tidb/pkg/util/codec"
	"github.com/rs/zerolog"
	tikvkv "github.com/tikv/client-go/v2/kv"
	"github.com/tikv/client-go/v2/oracle"
	"github.com/tikv/client-go/v2/tikv"
	"github.com/tikv/client-go/v2/tikvrpc"
	"github.com/tikv/client-go/v2/txnkv/txnlock"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/raftcdc/raftcdc/model"
)

// The kv client follows TiCDC's: a span (a table's record range) is split
// into regions through client-go's region cache; every region gets one
// subscription (a ChangeDataRequest) on a stream to the store that leads
// it; streams are shared per store (EventFeedV2 multiplexes every region
// of every span on one stream; with EventFeed, a region can be on a
// stream only once, so spans that share a region use more streams). See
// DESIGN.md for the state machine and the error table.

// ReconnectReason labels the region reconnect metric.
const (
	reasonNotLeader     = "not_leader"
	reasonEpochNotMatch = "epoch_not_match"
	reasonRegionGone    = "region_not_found"
	reasonServerBusy    = "server_is_busy"
	reasonCongested     = "congested"
	reasonStoreDown     = "store_unreachable"
	reasonStreamClosed  = "stream_closed"
	reasonV2Unsupported = "eventfeed_v2_unimplemented"
	reasonProtocol      = "protocol_error"
	reasonStaleCache    = "stale_region_cache"
	reasonFatal         = "fatal"
)

// ErrFatalRegion wraps the region errors that TiCDC fails the changefeed
// for: duplicate request, incompatible TiKV, cluster ID mismatch.
var ErrFatalRegion = errors.New("fatal TiKV CDC error")

// featureHeader is the gRPC metadata of EventFeedV2 (TiKV ≥ 7.x).
const (
	featureHeader             = "features"
	featureStreamMultiplexing = "stream-multiplexing"
)

type kvClientConfig struct {
	clusterID uint64
	workers   int
	// stallBound is how long an initialized region's resolved ts may stand
	// still before it is reported and its locks are resolved;
	// resolveLockEvery bounds lock resolution to once per that interval
	// per region (TiCDC: 10 s).
	stallBound       time.Duration
	resolveLockEvery time.Duration
	// backoff bounds of a region's retries.
	backoffBase, backoffMax time.Duration
	dial                    []grpc.DialOption
	version                 string
}

type kvClient struct {
	cfg     kvClientConfig
	store   *tikv.KVStore
	cache   *tikv.RegionCache
	log     zerolog.Logger
	metrics *upstreamMetrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	workers []*regionWorker
	sched   chan regionTask

	mu          sync.Mutex
	stores      map[string]*storeConn
	subs        map[uint64]*spanSub
	nextID      uint64
	regionCount map[string]int
}

func newKVClient(store *tikv.KVStore, cfg kvClientConfig, log zerolog.Logger, m *upstreamMetrics) *kvClient {
	ctx, cancel := context.WithCancel(context.Background())
	c := &kvClient{cfg: cfg, store: store, cache: store.GetRegionCache(), log: log, metrics: m, ctx: ctx, cancel: cancel,
		sched: make(chan regionTask, 4096), stores: map[string]*storeConn{}, subs: map[uint64]*spanSub{}, regionCount: map[string]int{}}
	for i := 0; i < cfg.workers; i++ {
		w := &regionWorker{c: c, in: make(chan workItem, 1024)}
		c.workers = append(c.workers, w)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); w.run(ctx) }()
	}
	for i := 0; i < 4; i++ {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.runScheduler(ctx) }()
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.watchStalls(ctx) }()
	return c
}

func (c *kvClient) close() {
	c.cancel()
	c.mu.Lock()
	stores := c.stores
	c.stores = map[string]*storeConn{}
	c.mu.Unlock()
	for _, sc := range stores {
		sc.close()
	}
	c.wg.Wait()
}

// ---- span subscriptions ----

// spanSub is one subscribed key span; its request ID names it on every
// stream.
type spanSub struct {
	id      uint64
	c       *kvClient
	start   []byte
	end     []byte
	startTs uint64
	label   string
	out     *eventQueue
	closed  atomic.Bool
	// decode, if set, decodes rows on the worker that emits them.
	decode func([]rawRow) []*model.RowChange

	mu       sync.Mutex
	heap     regionHeap
	regions  map[*regionState]struct{}
	resolved uint64
	seen     dedup
	counted  int // regions in the gauge
}

// subscribe starts a span subscription from startTs (rows with commit ts
// above it). Events go to out.
func (c *kvClient) subscribe(start, end []byte, startTs uint64, label string, out *eventQueue, decode func([]rawRow) []*model.RowChange) *spanSub {
	c.mu.Lock()
	c.nextID++
	s := &spanSub{id: c.nextID, c: c, start: start, end: end, startTs: startTs, label: label, out: out, decode: decode,
		regions: map[*regionState]struct{}{}, resolved: startTs}
	c.subs[s.id] = s
	c.mu.Unlock()
	// A placeholder holds the whole span at startTs until its regions are
	// known, so the span's resolved ts cannot run ahead of a range that
	// nobody covers yet.
	ph := &regionState{sub: s, start: start, end: end, checkpoint: startTs, resolved: startTs, placeholder: true}
	s.mu.Lock()
	s.add(ph)
	s.mu.Unlock()
	c.enqueue(regionTask{sub: s, prev: ph, locate: true, start: start, end: end, ts: startTs}, 0)
	return s
}

func (s *spanSub) add(rs *regionState) {
	s.regions[rs] = struct{}{}
	heap.Push(&s.heap, rs)
}

func (s *spanSub) removeLocked(rs *regionState) {
	if _, ok := s.regions[rs]; !ok {
		return
	}
	delete(s.regions, rs)
	heap.Remove(&s.heap, rs.heapIdx)
}

// replace swaps a failed (or placeholder) region state for its successors,
// atomically, so the span's resolved ts never counts a range as covered
// when nobody holds it.
func (s *spanSub) replace(prev *regionState, next []*regionState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	if prev != nil {
		if _, ok := s.regions[prev]; !ok {
			// Already replaced by another path (a stream failure and a
			// region error for the same subscription).
			return false
		}
		s.removeLocked(prev)
		if !prev.placeholder {
			// The successors start at prev's resolved ts and will send
			// again what prev sent above it.
			s.seen.arm()
		}
	}
	for _, rs := range next {
		// A relocation can reach a region another state of this span
		// already holds (after a merge, or through a stale cache). A
		// region can be subscribed once per request: the two become one
		// state over both ranges, from the older of their positions.
		for o := range s.regions {
			if o.placeholder || o.regionID() != rs.regionID() {
				continue
			}
			if bytes.Compare(o.start, rs.start) < 0 {
				rs.start = o.start
			}
			if len(rs.end) > 0 && (len(o.end) == 0 || bytes.Compare(o.end, rs.end) > 0) {
				rs.end = o.end
			}
			rs.checkpoint = min(rs.checkpoint, max(o.resolved, o.checkpoint))
			rs.resolved = rs.checkpoint
			s.removeLocked(o)
			s.seen.arm()
			o.dropped.Store(true)
			if st := o.stream.Load(); st != nil {
				st.deregister(o)
			}
		}
		s.add(rs)
	}
	real := 0
	for rs := range s.regions {
		if !rs.placeholder {
			real++
		}
	}
	s.c.countRegions(s.label, real-s.counted)
	s.counted = real
	return true
}

// countRegions keeps the regions gauge of a table: the sum over its spans
// (one per partition).
func (c *kvClient) countRegions(label string, delta int) {
	if delta == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.regionCount[label] + delta
	if n <= 0 {
		delete(c.regionCount, label)
		c.metrics.regions.DeleteLabelValues(label)
		return
	}
	c.regionCount[label] = n
	c.metrics.regions.WithLabelValues(label).Set(float64(n))
}

// advance records a region's resolved ts and hands out the span's new
// resolved ts when the minimum moved.
func (s *spanSub) advance(rs *regionState, ts uint64, now time.Time) {
	s.mu.Lock()
	if _, ok := s.regions[rs]; !ok || ts <= rs.resolved {
		s.mu.Unlock()
		return
	}
	rs.resolved = ts
	rs.lastAdvance = now
	heap.Fix(&s.heap, rs.heapIdx)
	min := s.heap[0].resolved
	push := min > s.resolved
	if push {
		s.resolved = min
		s.seen.prune(min)
	}
	s.mu.Unlock()
	if push {
		s.out.push(spanEvent{span: s, resolved: min})
	}
}

// fail ends the subscription with a fatal error.
func (s *spanSub) fail(err error) {
	s.out.fail(err)
}

// close deregisters every region.
func (s *spanSub) close() {
	if s.closed.Swap(true) {
		return
	}
	s.c.mu.Lock()
	delete(s.c.subs, s.id)
	s.c.mu.Unlock()
	s.mu.Lock()
	regions := make([]*regionState, 0, len(s.regions))
	for rs := range s.regions {
		regions = append(regions, rs)
	}
	s.regions = map[*regionState]struct{}{}
	s.heap = nil
	counted := s.counted
	s.counted = 0
	s.mu.Unlock()
	s.c.countRegions(s.label, -counted)
	for _, rs := range regions {
		if st := rs.stream.Load(); st != nil {
			st.deregister(rs)
		}
	}
}

// regionState is one region subscription of a span.
type regionState struct {
	sub         *spanSub
	verID       tikv.RegionVerID
	start, end  []byte
	checkpoint  uint64 // where this subscription started
	placeholder bool
	retries     int
	rpcCtx      *tikv.RPCContext
	stream      atomic.Pointer[feedStream]

	// dropped: merged into another state of the same region.
	dropped atomic.Bool

	// Owned by the region's worker.
	stale       bool
	matcher     matcher
	initialized atomic.Bool

	// Guarded by sub.mu.
	heapIdx         int
	resolved        uint64
	lastAdvance     time.Time
	lastLockResolve time.Time
	stallReported   bool
}

func (rs *regionState) regionID() uint64 { return rs.verID.GetID() }

type regionHeap []*regionState

func (h regionHeap) Len() int           { return len(h) }
func (h regionHeap) Less(i, j int) bool { return h[i].resolved < h[j].resolved }
func (h regionHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *regionHeap) Push(x any) {
	rs := x.(*regionState)
	rs.heapIdx = len(*h)
	*h = append(*h, rs)
}
func (h *regionHeap) Pop() any {
	old := *h
	rs := old[len(old)-1]
	*h = old[:len(old)-1]
	return rs
}

// ---- scheduling ----

// regionTask asks the scheduler to (re)subscribe: either a key range whose
// regions must be looked up, or one known region.
type regionTask struct {
	sub        *spanSub
	prev       *regionState
	locate     bool
	start, end []byte
	ts         uint64
	region     *regionState
}

func (c *kvClient) enqueue(t regionTask, delay time.Duration) {
	push := func() {
		select {
		case c.sched <- t:
		case <-c.ctx.Done():
		}
	}
	if delay <= 0 {
		go push()
		return
	}
	time.AfterFunc(delay, push)
}

func (c *kvClient) runScheduler(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-c.sched:
			if t.sub.closed.Load() {
				continue
			}
			if t.locate {
				c.locate(ctx, t)
			} else {
				c.connect(ctx, t.region)
			}
		}
	}
}

// locate splits a range into region subscriptions from ts. Regions come
// from PD (a scan that also refreshes the region cache): a region the
// cache holds as invalid — after RegionNotFound, say — would otherwise be
// handed out again and again.
func (c *kvClient) locate(ctx context.Context, t regionTask) {
	bo := tikv.NewBackoffer(ctx, 20000)
	var next []*regionState
	for key := t.start; ; {
		regions, err := c.cache.BatchLoadRegionsWithKeyRange(bo, key, t.end, 1024)
		if err != nil || len(regions) == 0 {
			c.log.Warn().Err(err).Str("table", t.sub.label).Msg("locating regions failed; retrying")
			c.enqueue(t, c.backoff(1))
			return
		}
		for _, r := range regions {
			start, end := t.start, t.end
			if bytes.Compare(r.StartKey(), start) > 0 {
				start = r.StartKey()
			}
			if len(r.EndKey()) > 0 && (len(end) == 0 || bytes.Compare(r.EndKey(), end) < 0) {
				end = r.EndKey()
			}
			next = append(next, &regionState{sub: t.sub, verID: r.VerID(), start: start, end: end, checkpoint: t.ts, resolved: t.ts, lastAdvance: time.Now()})
		}
		last := regions[len(regions)-1].EndKey()
		if len(last) == 0 || (len(t.end) > 0 && bytes.Compare(last, t.end) >= 0) {
			break
		}
		key = last
	}
	if !t.sub.replace(t.prev, next) {
		return
	}
	for _, rs := range next {
		c.connect(ctx, rs)
	}
}

// connect finds a region's leader and registers it on that store's stream.
func (c *kvClient) connect(ctx context.Context, rs *regionState) {
	if rs.sub.closed.Load() || rs.dropped.Load() {
		return
	}
	bo := tikv.NewBackoffer(ctx, 20000)
	rpcCtx, err := c.cache.GetTiKVRPCContext(bo, rs.verID, tikvkv.ReplicaReadLeader, 0)
	if err != nil || rpcCtx == nil {
		// The cached region is gone (split, merged, evicted): look the
		// range up again from this region's checkpoint.
		c.log.Debug().Err(err).Uint64("region", rs.regionID()).Str("table", rs.sub.label).Msg("region not in the cache; locating its range again")
		c.metrics.reconnects.WithLabelValues(reasonStaleCache).Inc()
		c.relocate(rs, c.backoff(rs.retries))
		return
	}
	rs.rpcCtx = rpcCtx
	sc := c.storeConn(rpcCtx.Addr)
	if err := sc.register(ctx, rs); err != nil {
		c.log.Warn().Err(err).Str("store", rpcCtx.Addr).Uint64("region", rs.regionID()).Str("table", rs.sub.label).Msg("cannot reach store; trying other peers")
		c.cache.OnSendFail(bo, rpcCtx, true, err)
		c.metrics.reconnects.WithLabelValues(reasonStoreDown).Inc()
		c.retry(rs, c.backoff(rs.retries))
	}
}

// retry resubscribes the same region from its own resolved ts.
func (c *kvClient) retry(rs *regionState, delay time.Duration) {
	n := &regionState{sub: rs.sub, verID: rs.verID, start: rs.start, end: rs.end, retries: rs.retries + 1, lastAdvance: time.Now()}
	rs.sub.mu.Lock()
	n.checkpoint = max(rs.resolved, rs.checkpoint)
	n.resolved = n.checkpoint
	rs.sub.mu.Unlock()
	if !rs.sub.replace(rs, []*regionState{n}) {
		return
	}
	c.enqueue(regionTask{sub: rs.sub, region: n}, delay)
}

// relocate looks the region's range up again and resubscribes every
// region now in it from this region's resolved ts.
func (c *kvClient) relocate(rs *regionState, delay time.Duration) {
	rs.sub.mu.Lock()
	ts := max(rs.resolved, rs.checkpoint)
	rs.sub.mu.Unlock()
	c.enqueue(regionTask{sub: rs.sub, prev: rs, locate: true, start: rs.start, end: rs.end, ts: ts}, delay)
}

func (c *kvClient) backoff(retries int) time.Duration {
	d := c.cfg.backoffBase
	for i := 0; i < retries && d < c.cfg.backoffMax; i++ {
		d *= 2
	}
	return min(d, c.cfg.backoffMax)
}

// ---- stores and streams ----

type storeConn struct {
	c    *kvClient
	addr string

	mu      sync.Mutex
	conn    *grpc.ClientConn
	noV2    bool
	streams []*feedStream
}

func (c *kvClient) storeConn(addr string) *storeConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := c.stores[addr]
	if sc == nil {
		sc = &storeConn{c: c, addr: addr}
		c.stores[addr] = sc
	}
	return sc
}

func (sc *storeConn) close() {
	sc.mu.Lock()
	streams := sc.streams
	sc.streams = nil
	conn := sc.conn
	sc.conn = nil
	sc.mu.Unlock()
	for _, st := range streams {
		st.cancel()
	}
	if conn != nil {
		conn.Close()
	}
}

type streamKey struct{ req, region uint64 }

// changeStream is EventFeed's and EventFeedV2's client stream.
type changeStream interface {
	Send(*cdcpb.ChangeDataRequest) error
	Recv() (*cdcpb.ChangeDataEvent, error)
}

// feedStream is one ChangeData stream to a store.
type feedStream struct {
	sc      *storeConn
	v2      bool
	client  changeStream
	cancel  context.CancelFunc
	sendMu  sync.Mutex
	mu      sync.Mutex
	regions map[streamKey]*regionState
	count   map[uint64]int // regions by ID, for EventFeed's one-per-stream rule
	dead    bool
}

// register puts a region subscription on a stream of this store and sends
// its request.
func (sc *storeConn) register(ctx context.Context, rs *regionState) error {
	// Another scheduler's relocation may merge this state into a new one
	// for the same region (spanSub.replace) while it is on its way here.
	// Under the span's lock, either that happened — the state is dropped,
	// and neither its request (the store would see the region twice under
	// one request ID: DuplicateRequest) nor its entry in the stream (it
	// would replace the merged state's, whose events then go nowhere) may
	// happen — or the request is sent before replace can deregister it.
	// Lock order: span, then store, then stream; nothing takes them the
	// other way round.
	rs.sub.mu.Lock()
	defer rs.sub.mu.Unlock()
	if rs.dropped.Load() {
		return nil
	}
	sc.mu.Lock()
	var st *feedStream
	for _, s := range sc.streams {
		s.mu.Lock()
		ok := !s.dead && (s.v2 || s.count[rs.regionID()] == 0)
		s.mu.Unlock()
		if ok {
			st = s
			break
		}
	}
	if st == nil {
		var err error
		st, err = sc.open()
		if err != nil {
			sc.mu.Unlock()
			return err
		}
		sc.streams = append(sc.streams, st)
	}
	st.mu.Lock()
	st.regions[streamKey{rs.sub.id, rs.regionID()}] = rs
	st.count[rs.regionID()]++
	st.mu.Unlock()
	rs.stream.Store(st)
	sc.mu.Unlock()

	meta := rs.rpcCtx.Meta
	req := &cdcpb.ChangeDataRequest{
		Header:       &cdcpb.Header{ClusterId: sc.c.cfg.clusterID, TicdcVersion: sc.c.cfg.version},
		RegionId:     rs.regionID(),
		RegionEpoch:  meta.GetRegionEpoch(),
		CheckpointTs: rs.checkpoint,
		StartKey:     codec.EncodeBytes(nil, rs.start),
		EndKey:       codec.EncodeBytes(nil, rs.end),
		RequestId:    rs.sub.id,
		ExtraOp:      kvrpcpb.ExtraOp_ReadOldValue,
		Request:      &cdcpb.ChangeDataRequest_Register_{Register: &cdcpb.ChangeDataRequest_Register{}},
	}
	if len(rs.end) == 0 {
		req.EndKey = nil
	}
	// A failed send breaks the stream; its receive loop then fails every
	// region on it, this one included.
	_ = st.send(req)
	return nil
}

// open starts a stream: EventFeedV2 with stream multiplexing unless the
// store answered UNIMPLEMENTED before, then EventFeed.
func (sc *storeConn) open() (*feedStream, error) {
	c := sc.c
	if sc.conn == nil {
		conn, err := grpc.NewClient(sc.addr, c.cfg.dial...)
		if err != nil {
			return nil, fmt.Errorf("dial TiKV %s: %w", sc.addr, err)
		}
		sc.conn = conn
	}
	ctx, cancel := context.WithCancel(c.ctx)
	cl := cdcpb.NewChangeDataClient(sc.conn)
	st := &feedStream{sc: sc, cancel: cancel, regions: map[streamKey]*regionState{}, count: map[uint64]int{}}
	var err error
	if sc.noV2 {
		st.client, err = cl.EventFeed(ctx)
	} else {
		st.v2 = true
		st.client, err = cl.EventFeedV2(metadata.AppendToOutgoingContext(ctx, featureHeader, featureStreamMultiplexing))
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open change data stream to TiKV %s: %w", sc.addr, err)
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); st.recvLoop() }()
	return st, nil
}

func (st *feedStream) send(req *cdcpb.ChangeDataRequest) error {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	return st.client.Send(req)
}

// remove forgets a region subscription (its error arrived).
func (st *feedStream) remove(rs *regionState) {
	st.mu.Lock()
	defer st.mu.Unlock()
	k := streamKey{rs.sub.id, rs.regionID()}
	if st.regions[k] == rs {
		delete(st.regions, k)
		st.count[rs.regionID()]--
	}
}

// deregister tells the store to stop a region subscription.
func (st *feedStream) deregister(rs *regionState) {
	st.remove(rs)
	_ = st.send(&cdcpb.ChangeDataRequest{
		Header:    &cdcpb.Header{ClusterId: st.sc.c.cfg.clusterID, TicdcVersion: st.sc.c.cfg.version},
		RegionId:  rs.regionID(),
		RequestId: rs.sub.id,
		Request:   &cdcpb.ChangeDataRequest_Deregister_{Deregister: &cdcpb.ChangeDataRequest_Deregister{}},
	})
}

func (st *feedStream) lookup(req, region uint64) *regionState {
	if req != 0 {
		return st.regions[streamKey{req, region}]
	}
	// EventFeed's batched resolved ts carries no request ID; a region is
	// on the stream once.
	for k, rs := range st.regions {
		if k.region == region {
			return rs
		}
	}
	return nil
}

func (st *feedStream) recvLoop() {
	c := st.sc.c
	var err error
	for {
		var ev *cdcpb.ChangeDataEvent
		ev, err = st.client.Recv()
		if err != nil {
			break
		}
		if r := ev.GetResolvedTs(); r != nil {
			st.mu.Lock()
			byWorker := map[*regionWorker][]*regionState{}
			for _, id := range r.GetRegions() {
				if rs := st.lookup(r.GetRequestId(), id); rs != nil {
					w := c.worker(rs)
					byWorker[w] = append(byWorker[w], rs)
				}
			}
			st.mu.Unlock()
			for w, list := range byWorker {
				w.put(workItem{resolvedTs: r.GetTs(), regions: list})
			}
		}
		for _, e := range ev.GetEvents() {
			st.mu.Lock()
			rs := st.lookup(e.GetRequestId(), e.GetRegionId())
			st.mu.Unlock()
			if rs == nil {
				continue // a region this stream no longer serves for us
			}
			c.worker(rs).put(workItem{rs: rs, event: e})
		}
	}
	// The stream is gone: every region on it resubscribes.
	st.sc.mu.Lock()
	st.mu.Lock()
	st.dead = true
	st.mu.Unlock()
	for i, s := range st.sc.streams {
		if s == st {
			st.sc.streams = append(st.sc.streams[:i], st.sc.streams[i+1:]...)
			break
		}
	}
	if status.Code(err) == codes.Unimplemented && st.v2 {
		st.sc.noV2 = true
	}
	st.sc.mu.Unlock()
	st.cancel()
	st.mu.Lock()
	regions := make([]*regionState, 0, len(st.regions))
	for _, rs := range st.regions {
		regions = append(regions, rs)
	}
	st.regions = map[streamKey]*regionState{}
	st.mu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	if len(regions) > 0 {
		c.log.Info().Err(err).Str("store", st.sc.addr).Int("regions", len(regions)).Msg("change data stream ended; resubscribing its regions")
	}
	for _, rs := range regions {
		c.worker(rs).put(workItem{rs: rs, streamErr: streamError{err: err, v2: st.v2}})
	}
}

type streamError struct {
	err error
	v2  bool
}

// ---- region workers ----

type workItem struct {
	rs         *regionState
	event      *cdcpb.Event
	streamErr  streamError
	resolvedTs uint64
	regions    []*regionState
}

// regionWorker runs the state machines of its regions: every event of a
// region is handled by one worker, in order.
type regionWorker struct {
	c  *kvClient
	in chan workItem
}

func (c *kvClient) worker(rs *regionState) *regionWorker {
	return c.workers[workerIndex(rs.regionID(), len(c.workers))]
}

// workerIndex spreads region IDs over n workers. PD gives a region and its
// peers IDs from one allocator, so a cluster's region IDs step by the
// replica count plus one (4 with three replicas); by plain modulo, 8
// workers would get regions on two of them. Multiplying by 2^64/φ mixes
// every bit of the ID into the high ones, and the high bits of that
// product times n pick the worker (Lemire's reduction, no division).
func workerIndex(regionID uint64, n int) int {
	hi, _ := bits.Mul64(regionID*0x9e3779b97f4a7c15, uint64(n))
	return int(hi)
}

func (w *regionWorker) put(it workItem) {
	select {
	case w.in <- it:
	case <-w.c.ctx.Done():
	}
}

func (w *regionWorker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-w.in:
			switch {
			case it.regions != nil:
				now := time.Now()
				for _, rs := range it.regions {
					if !rs.stale && !rs.dropped.Load() && rs.initialized.Load() {
						rs.sub.advance(rs, it.resolvedTs, now)
					}
				}
			case it.rs == nil || it.rs.stale || it.rs.dropped.Load() || it.rs.sub.closed.Load():
			case it.streamErr.err != nil || it.event == nil:
				w.streamFailed(it.rs, it.streamErr)
			default:
				w.handle(it.rs, it.event)
			}
		}
	}
}

func (w *regionWorker) handle(rs *regionState, e *cdcpb.Event) {
	switch ev := e.GetEvent().(type) {
	case *cdcpb.Event_Entries_:
		w.entries(rs, ev.Entries.GetEntries())
	case *cdcpb.Event_Error:
		w.regionError(rs, ev.Error)
	case *cdcpb.Event_ResolvedTs:
		if rs.initialized.Load() {
			rs.sub.advance(rs, ev.ResolvedTs, time.Now())
		}
	}
}

func (w *regionWorker) entries(rs *regionState, rows []*cdcpb.Event_Row) {
	c := w.c
	var out []rawRow
	scanned := 0
	for _, row := range rows {
		switch row.GetType() {
		case cdcpb.Event_INITIALIZED:
			rs.initialized.Store(true)
			rs.retries = 0
			cached, rollbacks := rs.matcher.takeCached()
			for _, rb := range rollbacks {
				rs.matcher.rollback(rb)
			}
			for _, cm := range cached {
				r, ok := rs.matcher.match(cm)
				if !ok {
					if cm.GetCommitTs() <= rs.checkpoint {
						continue
					}
					w.protocolError(rs, fmt.Errorf("COMMIT of txn %d at %d on region %d has no PREWRITE", cm.GetStartTs(), cm.GetCommitTs(), rs.regionID()))
					return
				}
				out = append(out, r)
			}
			c.log.Debug().Uint64("region", rs.regionID()).Str("table", rs.sub.label).Msg("region initialized")
		case cdcpb.Event_COMMITTED:
			scanned++
			if row.GetCommitTs() <= rs.checkpoint {
				continue
			}
			if out == nil {
				// An incremental scan sends rows by the thousand: one
				// allocation for the batch, not a doubling series.
				out = make([]rawRow, 0, len(rows))
			}
			out = append(out, rawRow{key: row.GetKey(), value: row.GetValue(), oldValue: row.GetOldValue(),
				delete: row.GetOpType() == cdcpb.Event_Row_DELETE, startTs: row.GetStartTs(), commitTs: row.GetCommitTs()})
		case cdcpb.Event_PREWRITE:
			rs.matcher.prewrite(row)
		case cdcpb.Event_COMMIT:
			if !rs.initialized.Load() {
				rs.matcher.cacheCommit(row)
				continue
			}
			rs.sub.mu.Lock()
			resolved := rs.resolved
			rs.sub.mu.Unlock()
			if row.GetCommitTs() <= resolved && resolved > rs.checkpoint {
				w.protocolError(rs, fmt.Errorf("COMMIT at %d on region %d is at or below the region's resolved ts %d", row.GetCommitTs(), rs.regionID(), resolved))
				return
			}
			r, ok := rs.matcher.match(row)
			if !ok {
				if row.GetCommitTs() <= rs.checkpoint {
					continue
				}
				w.protocolError(rs, fmt.Errorf("COMMIT of txn %d at %d on region %d has no PREWRITE", row.GetStartTs(), row.GetCommitTs(), rs.regionID()))
				return
			}
			out = append(out, r)
		case cdcpb.Event_ROLLBACK:
			if !rs.initialized.Load() {
				rs.matcher.cacheRollback(row)
				continue
			}
			rs.matcher.rollback(row)
		}
	}
	if scanned > 0 {
		c.metrics.scanRows.Add(float64(scanned))
	}
	if len(out) > 0 {
		rs.sub.emit(out)
	}
}

// emit hands rows to the consumer, less the ones this span has already
// handed out: a region resubscribed from its resolved ts sends again what
// it had sent above it.
func (s *spanSub) emit(rows []rawRow) {
	s.mu.Lock()
	out := rows[:0]
	for _, r := range rows {
		if s.seen.add(r.key, r.commitTs) {
			out = append(out, r)
		}
	}
	s.mu.Unlock()
	if len(out) == 0 {
		return
	}
	ev := spanEvent{span: s, rows: out}
	if s.decode != nil {
		ev.changes = s.decode(out)
	}
	s.out.push(ev)
}

// protocolError resubscribes a region whose events do not add up (TiCDC
// does the same for a COMMIT without its PREWRITE).
func (w *regionWorker) protocolError(rs *regionState, err error) {
	w.c.log.Warn().Err(err).Str("table", rs.sub.label).Msg("resubscribing region")
	w.drop(rs)
	w.c.metrics.reconnects.WithLabelValues(reasonProtocol).Inc()
	w.c.retry(rs, w.c.backoff(rs.retries))
}

// drop stops handling a region's events before it is resubscribed.
func (w *regionWorker) drop(rs *regionState) {
	rs.stale = true
	if st := rs.stream.Load(); st != nil {
		st.remove(rs)
	}
}

func (w *regionWorker) regionError(rs *regionState, e *cdcpb.Error) {
	c := w.c
	w.drop(rs)
	log := c.log.With().Uint64("region", rs.regionID()).Str("table", rs.sub.label).Logger()
	bo := tikv.NewBackoffer(c.ctx, 5000)
	switch {
	case e.GetNotLeader() != nil:
		c.metrics.reconnects.WithLabelValues(reasonNotLeader).Inc()
		if leader := e.GetNotLeader().GetLeader(); leader != nil && rs.rpcCtx != nil {
			c.cache.UpdateLeader(rs.verID, leader, rs.rpcCtx.AccessIdx)
			log.Debug().Uint64("leader_store", leader.GetStoreId()).Msg("not leader; retrying at the new leader")
			c.retry(rs, 0)
			return
		}
		c.cache.InvalidateCachedRegion(rs.verID)
		c.relocate(rs, c.backoff(rs.retries))
	case e.GetEpochNotMatch() != nil:
		c.metrics.reconnects.WithLabelValues(reasonEpochNotMatch).Inc()
		if rs.rpcCtx != nil {
			if _, err := c.cache.OnRegionEpochNotMatch(bo, rs.rpcCtx, e.GetEpochNotMatch().GetCurrentRegions()); err != nil {
				c.cache.InvalidateCachedRegion(rs.verID)
			}
		} else {
			c.cache.InvalidateCachedRegion(rs.verID)
		}
		log.Debug().Msg("epoch not match; reloading the range's regions")
		c.relocate(rs, 0)
	case e.GetRegionNotFound() != nil:
		c.metrics.reconnects.WithLabelValues(reasonRegionGone).Inc()
		c.cache.InvalidateCachedRegion(rs.verID)
		log.Debug().Msg("region not found; reloading the range's regions")
		c.relocate(rs, 0)
	case e.GetServerIsBusy() != nil:
		c.metrics.reconnects.WithLabelValues(reasonServerBusy).Inc()
		d := c.backoff(rs.retries)
		if hint := time.Duration(e.GetServerIsBusy().GetBackoffMs()) * time.Millisecond; hint > d {
			d = hint
		}
		log.Debug().Str("reason", e.GetServerIsBusy().GetReason()).Dur("backoff", d).Msg("server is busy; backing off")
		c.retry(rs, d)
	case e.GetCongested() != nil:
		c.metrics.reconnects.WithLabelValues(reasonCongested).Inc()
		c.retry(rs, c.backoff(rs.retries))
	case e.GetDuplicateRequest() != nil:
		w.fatal(rs, fmt.Errorf("TiKV %s reports a duplicate request for region %d (request %d): %w", addrOf(rs), e.GetDuplicateRequest().GetRegionId(), rs.sub.id, ErrFatalRegion))
	case e.GetCompatibility() != nil:
		w.fatal(rs, fmt.Errorf("TiKV %s is not compatible with this client: it requires version %s: %w", addrOf(rs), e.GetCompatibility().GetRequiredVersion(), ErrFatalRegion))
	case e.GetClusterIdMismatch() != nil:
		m := e.GetClusterIdMismatch()
		w.fatal(rs, fmt.Errorf("TiKV %s belongs to cluster %d, not %d (PD's): %w", addrOf(rs), m.GetCurrent(), m.GetRequest(), ErrFatalRegion))
	default:
		c.metrics.reconnects.WithLabelValues(reasonProtocol).Inc()
		log.Warn().Str("error", e.String()).Msg("unknown region error; reloading the range's regions")
		c.cache.InvalidateCachedRegion(rs.verID)
		c.relocate(rs, c.backoff(rs.retries))
	}
}

func addrOf(rs *regionState) string {
	if rs.rpcCtx != nil {
		return rs.rpcCtx.Addr
	}
	return "?"
}

func (w *regionWorker) fatal(rs *regionState, err error) {
	w.c.metrics.reconnects.WithLabelValues(reasonFatal).Inc()
	w.c.log.Error().Err(err).Str("table", rs.sub.label).Msg("subscription failed")
	rs.sub.fail(err)
}

func (w *regionWorker) streamFailed(rs *regionState, se streamError) {
	c := w.c
	rs.stale = true
	reason := reasonStreamClosed
	switch {
	case se.v2 && status.Code(se.err) == codes.Unimplemented:
		reason = reasonV2Unsupported
	case status.Code(se.err) == codes.Unavailable || status.Code(se.err) == codes.DeadlineExceeded:
		reason = reasonStoreDown
	}
	c.metrics.reconnects.WithLabelValues(reason).Inc()
	delay := c.backoff(rs.retries)
	if reason == reasonV2Unsupported {
		delay = 0
	} else if rs.rpcCtx != nil {
		bo := tikv.NewBackoffer(c.ctx, 5000)
		c.cache.OnSendFail(bo, rs.rpcCtx, true, se.err)
	}
	c.retry(rs, delay)
}

// ---- stalls and locks ----

// watchStalls reports initialized regions whose resolved ts stands still
// longer than the bound, and resolves their locks (at most once per
// resolveLockEvery per region): a lock left by a crashed or slow writer is
// what holds a region's resolved ts back.
func (c *kvClient) watchStalls(ctx context.Context) {
	every := min(c.cfg.stallBound/4, time.Second)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		c.mu.Lock()
		subs := make([]*spanSub, 0, len(c.subs))
		for _, s := range c.subs {
			subs = append(subs, s)
		}
		c.mu.Unlock()
		stalled := 0
		for _, s := range subs {
			var resolve []*regionState
			s.mu.Lock()
			for rs := range s.regions {
				if rs.placeholder || !rs.initialized.Load() {
					continue
				}
				if now.Sub(rs.lastAdvance) < c.cfg.stallBound {
					rs.stallReported = false
					continue
				}
				stalled++
				if !rs.stallReported {
					rs.stallReported = true
					c.log.Warn().Uint64("region", rs.regionID()).Str("table", s.label).Uint64("resolved_ts", rs.resolved).
						Dur("stalled_for", now.Sub(rs.lastAdvance)).Msg("region resolved ts stalled; resolving its locks")
				}
				if now.Sub(rs.lastLockResolve) >= c.cfg.resolveLockEvery {
					rs.lastLockResolve = now
					resolve = append(resolve, rs)
				}
			}
			s.mu.Unlock()
			for _, rs := range resolve {
				c.wg.Add(1)
				go func() { defer c.wg.Done(); c.resolveLocks(ctx, rs) }()
			}
		}
		c.metrics.stalledRegions.Set(float64(stalled))
	}
}

// resolveLocks scans a region's locks older than now and resolves them
// with client-go's lock resolver: a lock whose TTL has expired is rolled
// back, a transaction whose primary committed has its secondaries
// committed; a live lock is left alone.
func (c *kvClient) resolveLocks(ctx context.Context, rs *regionState) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	bo := tikv.NewGcResolveLockMaxBackoffer(ctx)
	ts, err := c.store.CurrentTimestamp(oracle.GlobalTxnScope)
	if err != nil {
		c.log.Warn().Err(err).Msg("resolve locks: no timestamp from PD")
		return
	}
	start := rs.start
	for {
		loc, err := c.cache.LocateKey(bo, start)
		if err != nil {
			c.log.Warn().Err(err).Msg("resolve locks: locating region")
			return
		}
		end := loc.EndKey
		if len(rs.end) > 0 && (len(end) == 0 || bytes.Compare(end, rs.end) > 0) {
			end = rs.end
		}
		req := tikvrpc.NewRequest(tikvrpc.CmdScanLock, &kvrpcpb.ScanLockRequest{MaxVersion: ts, StartKey: start, EndKey: end, Limit: 1024})
		resp, err := c.store.SendReq(bo, req, loc.Region, 10*time.Second)
		if err != nil {
			c.log.Warn().Err(err).Msg("resolve locks: scan locks")
			return
		}
		if rerr, _ := resp.GetRegionError(); rerr != nil {
			// The region changed under us; the next stall check tries again.
			return
		}
		sl, _ := resp.Resp.(*kvrpcpb.ScanLockResponse)
		if sl == nil {
			return
		}
		if e := sl.GetError(); e != nil {
			c.log.Warn().Str("error", e.String()).Msg("resolve locks: scan locks")
			return
		}
		locks := make([]*txnlock.Lock, 0, len(sl.GetLocks()))
		for _, l := range sl.GetLocks() {
			locks = append(locks, txnlock.NewLock(l))
		}
		if len(locks) > 0 {
			wait, err := c.store.GetLockResolver().ResolveLocks(bo, 0, locks)
			c.metrics.lockResolves.Inc()
			c.log.Info().Uint64("region", loc.Region.GetID()).Str("table", rs.sub.label).Int("locks", len(locks)).Int64("ms_before_expired", wait).Err(err).Msg("resolved locks of a stalled region")
		}
		if len(sl.GetLocks()) >= 1024 {
			last := sl.GetLocks()[len(sl.GetLocks())-1].GetKey()
			start = append(append([]byte(nil), last...), 0)
			continue
		}
		if len(end) == 0 || (len(rs.end) > 0 && bytes.Compare(end, rs.end) >= 0) {
			return
		}
		start = end
	}
}

// describe lists every span's region states, for test failures and
// debugging.
func (c *kvClient) describe() string {
	c.mu.Lock()
	subs := make([]*spanSub, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	var b strings.Builder
	for _, s := range subs {
		s.mu.Lock()
		fmt.Fprintf(&b, "span %d %s resolved %d:\n", s.id, s.label, s.resolved)
		for rs := range s.regions {
			st := "-"
			if x := rs.stream.Load(); x != nil {
				st = x.sc.addr
			}
			fmt.Fprintf(&b, "  region %d [%x,%x) checkpoint %d resolved %d init %v placeholder %v dropped %v stream %s retries %d\n",
				rs.regionID(), rs.start, rs.end, rs.checkpoint, rs.resolved, rs.initialized.Load(), rs.placeholder, rs.dropped.Load(), st, rs.retries)
		}
		s.mu.Unlock()
	}
	return b.String()
}
