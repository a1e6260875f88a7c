package tidbfake

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pingcap/kvproto/pkg/cdcpb"
	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TiKV's CDC service, as the fake serves it:
//
//   - A registration names a region, its epoch, a key range and a
//     checkpoint ts. It is checked like TiKV checks it (cluster ID, region,
//     leader, epoch, duplicates) and fails with a region error event.
//   - A registered subscription captures the region's locks and the MVCC
//     sequence number at that instant, under the store's lock, so that
//     the incremental scan (versions committed after the checkpoint, up to
//     that instant, as COMMITTED rows with their old values, then the
//     captured locks as PREWRITEs, then INITIALIZED) and the live stream
//     (PREWRITE, COMMIT, ROLLBACK from that instant on) neither overlap nor
//     leave a gap. Live rows interleave with the scan on the wire, as they
//     do from a real TiKV.
//   - Resolved ts are sent only for initialized subscriptions, batched per
//     stream (EventFeed: one message, request ID 0; EventFeedV2 with
//     stream multiplexing: one per request ID), bounded by the oldest lock
//     in the subscription's range.

// FeatureStreamMultiplexing is the gRPC metadata feature of EventFeedV2.
const FeatureStreamMultiplexing = "stream-multiplexing"

// scanBatchKeys is how many keys the incremental scan reads per step, and
// maxQueued how many events may wait for the wire before it pauses.
const (
	scanBatchKeys = 512
	maxQueued     = 8192
)

type feedStream interface {
	Send(*cdcpb.ChangeDataEvent) error
	Recv() (*cdcpb.ChangeDataRequest, error)
	Context() context.Context
}

func (st *Store) EventFeed(stream cdcpb.ChangeData_EventFeedServer) error {
	return st.serveFeed(stream, false)
}

func (st *Store) EventFeedV2(stream cdcpb.ChangeData_EventFeedV2Server) error {
	st.c.mu.Lock()
	off := st.c.noV2[st.id]
	st.c.mu.Unlock()
	if off {
		return status.Error(codes.Unimplemented, "tidbfake: EventFeedV2 is turned off")
	}
	multiplex := false
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok {
		for _, f := range md.Get("features") {
			for _, x := range strings.Split(f, ",") {
				multiplex = multiplex || strings.TrimSpace(x) == FeatureStreamMultiplexing
			}
		}
	}
	return st.serveFeed(stream, multiplex)
}

type subKey struct{ req, region uint64 }

type feedItem struct {
	ev       *cdcpb.Event
	resolved *cdcpb.ResolvedTs
}

// feedConn is one ChangeData stream.
type feedConn struct {
	st        *Store
	c         *Cluster
	multiplex bool
	stream    feedStream

	qmu    sync.Mutex
	qcond  *sync.Cond
	queue  []feedItem
	closed bool

	subs map[subKey]*cdcSub // guarded by the cluster lock
}

func (st *Store) serveFeed(stream feedStream, multiplex bool) error {
	fc := &feedConn{st: st, c: st.c, multiplex: multiplex, stream: stream, subs: map[subKey]*cdcSub{}}
	fc.qcond = sync.NewCond(&fc.qmu)
	st.mu.Lock()
	if !st.running {
		st.mu.Unlock()
		return status.Error(codes.Unavailable, "tidbfake: store is stopped")
	}
	st.conns[fc] = struct{}{}
	st.mu.Unlock()
	sendErr := make(chan error, 1)
	go func() { sendErr <- fc.sendLoop() }()
	recvErr := fc.recvLoop()
	st.mu.Lock()
	delete(st.conns, fc)
	st.mu.Unlock()
	st.c.mu.Lock()
	fc.closeLocked()
	st.c.mu.Unlock()
	if err := <-sendErr; err != nil && recvErr == nil {
		return err
	}
	if recvErr == io.EOF {
		return nil
	}
	return recvErr
}

// closeLocked ends the stream's subscriptions (cluster lock held).
func (fc *feedConn) closeLocked() {
	for k, s := range fc.subs {
		s.stopped = true
		if m := fc.c.subs[k.region]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(fc.c.subs, k.region)
			}
		}
	}
	fc.subs = map[subKey]*cdcSub{}
	fc.qmu.Lock()
	fc.closed = true
	fc.qcond.Broadcast()
	fc.qmu.Unlock()
}

func (fc *feedConn) enqueue(it feedItem) {
	fc.qmu.Lock()
	if !fc.closed {
		fc.queue = append(fc.queue, it)
		fc.qcond.Broadcast()
	}
	fc.qmu.Unlock()
}

// waitSpace blocks an incremental scan while the stream is backed up.
func (fc *feedConn) waitSpace() bool {
	fc.qmu.Lock()
	defer fc.qmu.Unlock()
	for len(fc.queue) > maxQueued && !fc.closed {
		fc.qcond.Wait()
	}
	return !fc.closed
}

func (fc *feedConn) sendLoop() error {
	for {
		fc.qmu.Lock()
		for len(fc.queue) == 0 && !fc.closed {
			fc.qcond.Wait()
		}
		if fc.closed {
			fc.qmu.Unlock()
			return nil
		}
		items := fc.queue
		fc.queue = nil
		fc.qcond.Broadcast()
		fc.qmu.Unlock()
		var batch []*cdcpb.Event
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := fc.stream.Send(&cdcpb.ChangeDataEvent{Events: batch})
			batch = nil
			return err
		}
		for _, it := range items {
			if it.resolved != nil {
				if err := flush(); err != nil {
					return err
				}
				if err := fc.stream.Send(&cdcpb.ChangeDataEvent{ResolvedTs: it.resolved}); err != nil {
					return err
				}
				continue
			}
			batch = append(batch, it.ev)
			if len(batch) >= 128 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
}

func (fc *feedConn) recvLoop() error {
	for {
		req, err := fc.stream.Recv()
		if err != nil {
			return err
		}
		switch req.GetRequest().(type) {
		case *cdcpb.ChangeDataRequest_Deregister_:
			fc.deregister(req.GetRequestId(), req.GetRegionId())
		case *cdcpb.ChangeDataRequest_NotifyTxnStatus_:
			// Nothing to push: the fake's locks carry no min commit ts.
		default:
			fc.register(req)
		}
	}
}

func (fc *feedConn) deregister(reqID, regionID uint64) {
	c := fc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, s := range fc.subs {
		if k.req == reqID && (regionID == 0 || k.region == regionID) {
			s.stopped = true
			delete(fc.subs, k)
			if m := c.subs[k.region]; m != nil {
				delete(m, s)
			}
		}
	}
}

func (fc *feedConn) errorEvent(req *cdcpb.ChangeDataRequest, e *cdcpb.Error) {
	fc.enqueue(feedItem{ev: &cdcpb.Event{RegionId: req.GetRegionId(), RequestId: req.GetRequestId(), Event: &cdcpb.Event_Error{Error: e}}})
}

func (fc *feedConn) register(req *cdcpb.ChangeDataRequest) {
	c := fc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.regions.byID[req.GetRegionId()]
	if kind, ok := c.takeFaultLocked(req.GetRegionId()); ok {
		if r == nil {
			r = &region{id: req.GetRegionId()}
		}
		c.logf("tidbfake: store %d fails registration of region %d with %s", fc.st.id, req.GetRegionId(), kind)
		fc.errorEvent(req, c.cdcErrorLocked(r, kind))
		return
	}
	if id := req.GetHeader().GetClusterId(); id != 0 && id != c.clusterID {
		fc.errorEvent(req, &cdcpb.Error{ClusterIdMismatch: &cdcpb.ClusterIDMismatch{Current: c.clusterID, Request: id}})
		return
	}
	if _, rerr := c.regionErrorLocked(fc.st.id, req.GetRegionId(), req.GetRegionEpoch()); rerr != nil {
		e := &cdcpb.Error{NotLeader: rerr.NotLeader, RegionNotFound: rerr.RegionNotFound, EpochNotMatch: rerr.EpochNotMatch}
		fc.errorEvent(req, e)
		return
	}
	key := subKey{req: req.GetRequestId(), region: r.id}
	dup := fc.subs[key] != nil
	if !fc.multiplex {
		for k := range fc.subs {
			dup = dup || k.region == r.id
		}
	}
	if dup {
		fc.errorEvent(req, &cdcpb.Error{DuplicateRequest: &cdcpb.DuplicateRequest{RegionId: r.id}})
		return
	}
	start, end := r.start, r.end
	if k := decodeKey(req.GetStartKey()); bytes.Compare(k, start) > 0 {
		start = k
	}
	if k := decodeKey(req.GetEndKey()); len(k) > 0 && (len(end) == 0 || bytes.Compare(k, end) < 0) {
		end = k
	}
	s := &cdcSub{conn: fc, reqID: req.GetRequestId(), regionID: r.id, start: start, end: end,
		checkpoint: req.GetCheckpointTs(), regSeq: c.mvcc.seq, oldValue: req.GetExtraOp() == kvrpcpb.ExtraOp_ReadOldValue}
	var locks []*cdcpb.Event_Row
	c.mvcc.lockedIn(start, end, func(e *entry) bool {
		l := e.lock
		row := &cdcpb.Event_Row{StartTs: l.startTs, Type: cdcpb.Event_PREWRITE, OpType: opType(l.op == kvrpcpb.Op_Del), Key: e.key, Value: l.value}
		if s.oldValue {
			row.OldValue = l.oldValue
		}
		locks = append(locks, row)
		return true
	})
	fc.subs[key] = s
	if c.subs[r.id] == nil {
		c.subs[r.id] = map[*cdcSub]struct{}{}
	}
	c.subs[r.id][s] = struct{}{}
	go s.scan(locks)
}

// cdcSub is one region subscription on one stream.
type cdcSub struct {
	conn            *feedConn
	reqID, regionID uint64
	start, end      []byte
	checkpoint      uint64
	regSeq          uint64
	oldValue        bool
	initialized     bool   // cluster lock
	stopped         bool   // cluster lock
	resolved        uint64 // cluster lock
}

func (s *cdcSub) covers(key []byte) bool {
	return bytes.Compare(key, s.start) >= 0 && (len(s.end) == 0 || bytes.Compare(key, s.end) < 0)
}

func (s *cdcSub) event(rows []*cdcpb.Event_Row) *cdcpb.Event {
	return &cdcpb.Event{RegionId: s.regionID, RequestId: s.reqID, Event: &cdcpb.Event_Entries_{Entries: &cdcpb.Event_Entries{Entries: rows}}}
}

// live sends a change as it happens (cluster lock held).
func (s *cdcSub) live(row *cdcpb.Event_Row) {
	if s.stopped {
		return
	}
	if !s.oldValue && len(row.OldValue) > 0 {
		c := *row
		c.OldValue = nil
		row = &c
	}
	if !s.initialized {
		s.conn.c.liveBeforeInit++
	}
	s.conn.enqueue(feedItem{ev: s.event([]*cdcpb.Event_Row{row})})
}

// fail ends the subscription with a region error (cluster lock held; the
// caller removes it from the cluster's index).
func (s *cdcSub) fail(e *cdcpb.Error) {
	if s.stopped {
		return
	}
	s.stopped = true
	delete(s.conn.subs, subKey{req: s.reqID, region: s.regionID})
	s.conn.enqueue(feedItem{ev: &cdcpb.Event{RegionId: s.regionID, RequestId: s.reqID, Event: &cdcpb.Event_Error{Error: e}}})
}

// scan is the incremental scan.
func (s *cdcSub) scan(locks []*cdcpb.Event_Row) {
	c := s.conn.c
	cursor := s.start
	for {
		if !s.conn.waitSpace() {
			return
		}
		if d := c.scanDelay(); d > 0 {
			time.Sleep(d)
		}
		c.mu.Lock()
		if s.stopped {
			c.mu.Unlock()
			return
		}
		var rows []*cdcpb.Event_Row
		var next []byte
		n := 0
		c.mvcc.ascend(cursor, s.end, func(e *entry) bool {
			if n >= scanBatchKeys {
				next = e.key
				return false
			}
			n++
			var prev []byte
			for i := range e.versions {
				v := &e.versions[i]
				if v.seq > s.regSeq {
					break
				}
				if v.kind == writeRollback {
					continue
				}
				if v.commitTs > s.checkpoint {
					row := &cdcpb.Event_Row{StartTs: v.startTs, CommitTs: v.commitTs, Type: cdcpb.Event_COMMITTED,
						OpType: opType(v.kind == writeDelete), Key: e.key}
					if v.kind == writePut {
						row.Value = v.value
					}
					if s.oldValue {
						row.OldValue = prev
					}
					rows = append(rows, row)
				}
				if v.kind == writePut {
					prev = v.value
				} else {
					prev = nil
				}
			}
			return true
		})
		for len(rows) > 0 {
			n := min(len(rows), 256)
			s.conn.enqueue(feedItem{ev: s.event(rows[:n])})
			c.scannedRows += int64(n)
			rows = rows[n:]
		}
		if next == nil {
			if len(locks) > 0 {
				s.conn.enqueue(feedItem{ev: s.event(locks)})
			}
			s.conn.enqueue(feedItem{ev: s.event([]*cdcpb.Event_Row{{Type: cdcpb.Event_INITIALIZED}})})
			s.initialized = true
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		cursor = next
	}
}

// SetScanDelay slows every incremental scan step down by d (0: no delay),
// so that tests can make live changes arrive before INITIALIZED.
func (c *Cluster) SetScanDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scanPause = d
}

func (c *Cluster) scanDelay() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scanPause
}

// ScanStats are how many rows incremental scans have sent, and how many
// live changes reached a subscription before its scan finished.
func (c *Cluster) ScanStats() (scanned, liveBeforeInitialized int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scannedRows, c.liveBeforeInit
}

// resolvedLoop sends every stream's resolved ts.
func (st *Store) resolvedLoop(ctx context.Context) {
	c := st.c
	for waitCtx(ctx, c.opts.ResolvedTsInterval) {
		st.mu.Lock()
		conns := make([]*feedConn, 0, len(st.conns))
		for fc := range st.conns {
			conns = append(conns, fc)
		}
		st.mu.Unlock()
		c.mu.Lock()
		ts := c.tsoLocked()
		for _, fc := range conns {
			fc.sendResolvedLocked(ts)
		}
		c.mu.Unlock()
	}
}

func (fc *feedConn) sendResolvedLocked(ts uint64) {
	c := fc.c
	type group struct{ req, ts uint64 }
	groups := map[group][]uint64{}
	for k, s := range fc.subs {
		if !s.initialized || s.stopped {
			continue
		}
		r := ts
		if ml := c.mvcc.minLockTs(s.start, s.end); ml != 0 && ml < r {
			r = ml
		}
		if r <= s.resolved {
			continue
		}
		s.resolved = r
		g := group{ts: r}
		if fc.multiplex {
			g.req = k.req
		}
		groups[g] = append(groups[g], k.region)
	}
	keys := make([]group, 0, len(groups))
	for g := range groups {
		keys = append(keys, g)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].req != keys[j].req {
			return keys[i].req < keys[j].req
		}
		return keys[i].ts < keys[j].ts
	})
	for _, g := range keys {
		regions := groups[g]
		sort.Slice(regions, func(i, j int) bool { return regions[i] < regions[j] })
		fc.enqueue(feedItem{resolved: &cdcpb.ResolvedTs{Regions: regions, Ts: g.ts, RequestId: g.req}})
	}
}
