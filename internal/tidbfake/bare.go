package tidbfake

import (
	"context"
	"fmt"
	"sync"

	"github.com/pingcap/kvproto/pkg/cdcpb"
	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// BareFeed is the least a client of TiKV's change data protocol can do:
// one EventFeedV2 stream per store, every region registered once, rows
// counted, INITIALIZED and resolved ts noted — no matching, no decoding,
// no ordering. Benchmarks run it beside the real source against the same
// fake to measure the source's own cost as a ratio.
type BareFeed struct {
	c       *Cluster
	cancel  context.CancelFunc
	conns   []*grpc.ClientConn
	streams map[string]cdcpb.ChangeData_EventFeedV2Client
	wg      sync.WaitGroup

	mu          sync.Mutex
	rows        int64
	initialized map[uint64]bool
	resolved    map[uint64]uint64
	regions     int
	err         error
	changed     chan struct{}
}

// NewBareFeed registers every region overlapping the tables' record
// ranges from startTs.
func (c *Cluster) NewBareFeed(db string, tables []string, startTs uint64) (*BareFeed, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &BareFeed{c: c, cancel: cancel, streams: map[string]cdcpb.ChangeData_EventFeedV2Client{},
		initialized: map[uint64]bool{}, resolved: map[uint64]uint64{}, changed: make(chan struct{})}
	type reg struct {
		req  *cdcpb.ChangeDataRequest
		addr string
	}
	var regs []reg
	for _, name := range tables {
		c.mu.Lock()
		t := c.cat.tableByName(db, name)
		if t == nil {
			c.mu.Unlock()
			cancel()
			return nil, fmt.Errorf("table %s.%s does not exist", db, name)
		}
		for _, pid := range physicalIDs(t.info) {
			start, end := tableRecordRange(pid)
			for _, r := range c.regions.overlapping(start, end) {
				s, e := start, end
				if string(r.start) > string(s) {
					s = r.start
				}
				if len(r.end) > 0 && string(r.end) < string(e) {
					e = r.end
				}
				regs = append(regs, reg{addr: c.stores[r.leader-1].addr(), req: &cdcpb.ChangeDataRequest{
					Header: &cdcpb.Header{ClusterId: c.clusterID}, RegionId: r.id, RegionEpoch: r.epoch(), CheckpointTs: startTs,
					StartKey: encodeKey(s), EndKey: encodeKey(e), RequestId: uint64(pid), ExtraOp: kvrpcpb.ExtraOp_ReadOldValue,
					Request: &cdcpb.ChangeDataRequest_Register_{Register: &cdcpb.ChangeDataRequest_Register{}}}})
			}
		}
		c.mu.Unlock()
	}
	f.regions = len(regs)
	for _, r := range regs {
		st := f.streams[r.addr]
		if st == nil {
			conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
			if err != nil {
				f.Close()
				return nil, err
			}
			f.conns = append(f.conns, conn)
			st, err = cdcpb.NewChangeDataClient(conn).EventFeedV2(metadata.AppendToOutgoingContext(ctx, "features", FeatureStreamMultiplexing))
			if err != nil {
				f.Close()
				return nil, err
			}
			f.streams[r.addr] = st
			f.wg.Add(1)
			go f.recv(st)
		}
		if err := st.Send(r.req); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func (f *BareFeed) recv(st cdcpb.ChangeData_EventFeedV2Client) {
	defer f.wg.Done()
	for {
		ev, err := st.Recv()
		f.mu.Lock()
		if err != nil {
			if f.err == nil {
				f.err = err
			}
			f.signalLocked()
			f.mu.Unlock()
			return
		}
		for _, e := range ev.GetEvents() {
			if e.GetError() != nil && f.err == nil {
				f.err = fmt.Errorf("region %d: %s", e.GetRegionId(), e.GetError())
			}
			for _, r := range e.GetEntries().GetEntries() {
				switch r.GetType() {
				case cdcpb.Event_COMMITTED, cdcpb.Event_COMMIT:
					f.rows++
				case cdcpb.Event_INITIALIZED:
					f.initialized[e.GetRegionId()] = true
				}
			}
		}
		if r := ev.GetResolvedTs(); r != nil {
			for _, id := range r.GetRegions() {
				if r.GetTs() > f.resolved[id] {
					f.resolved[id] = r.GetTs()
				}
			}
		}
		f.signalLocked()
		f.mu.Unlock()
	}
}

func (f *BareFeed) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// State is what the feed has seen: rows, initialized regions, the minimum
// resolved ts over every region (0 until each has one), and a channel
// closed at the next change.
func (f *BareFeed) State() (rows int64, initialized int, minResolved uint64, changed <-chan struct{}, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.resolved) == f.regions {
		minResolved = ^uint64(0)
		for _, ts := range f.resolved {
			minResolved = min(minResolved, ts)
		}
	}
	return f.rows, len(f.initialized), minResolved, f.changed, f.err
}

// Regions is how many regions the feed registered.
func (f *BareFeed) Regions() int { return f.regions }

// Close ends the streams.
func (f *BareFeed) Close() {
	f.cancel()
	for _, c := range f.conns {
		c.Close()
	}
	f.wg.Wait()
}
