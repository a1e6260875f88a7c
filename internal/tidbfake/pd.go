package tidbfake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"time"

	"github.com/pingcap/kvproto/pkg/metapb"
	"github.com/pingcap/kvproto/pkg/pdpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// pdServer is PD's gRPC service, as far as a TiCDC-like client uses it:
// members (one PD, the leader), cluster info, TSO, stores, regions and GC
// safepoints. Everything else answers UNIMPLEMENTED.
type pdServer struct {
	pdpb.UnimplementedPDServer
	c    *Cluster
	addr string
	srv  *grpc.Server
	lis  net.Listener
}

func startPD(c *Cluster, port int) (*pdServer, error) {
	lis, err := listen(c.opts.Addr, port)
	if err != nil {
		return nil, fmt.Errorf("tidbfake: PD listen: %w", err)
	}
	p := &pdServer{c: c, addr: lis.Addr().String(), lis: lis,
		srv: grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}))}
	pdpb.RegisterPDServer(p.srv, p)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(p.srv, hs)
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
}

func (p *pdServer) stop() { p.srv.Stop() }

func (p *pdServer) header() *pdpb.ResponseHeader {
	return &pdpb.ResponseHeader{ClusterId: p.c.clusterID}
}

func (p *pdServer) member() *pdpb.Member {
	url := "http://" + p.addr
	return &pdpb.Member{Name: "pd-fake", MemberId: 1, ClientUrls: []string{url}, PeerUrls: []string{url}, BinaryVersion: "8.5.0"}
}

func (p *pdServer) GetMembers(context.Context, *pdpb.GetMembersRequest) (*pdpb.GetMembersResponse, error) {
	m := p.member()
	return &pdpb.GetMembersResponse{Header: p.header(), Members: []*pdpb.Member{m}, Leader: m, EtcdLeader: m}, nil
}

func (p *pdServer) GetClusterInfo(context.Context, *pdpb.GetClusterInfoRequest) (*pdpb.GetClusterInfoResponse, error) {
	return &pdpb.GetClusterInfoResponse{Header: p.header(), ServiceModes: []pdpb.ServiceMode{pdpb.ServiceMode_PD_SVC_MODE}}, nil
}

func (p *pdServer) Tso(stream pdpb.PD_TsoServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		n := int64(req.GetCount())
		if n == 0 {
			n = 1
		}
		p.c.mu.Lock()
		phys, logical := p.c.tsoBatchLocked(n)
		p.c.mu.Unlock()
		if err := stream.Send(&pdpb.TsoResponse{Header: p.header(), Count: uint32(n), Timestamp: &pdpb.Timestamp{Physical: phys, Logical: logical}}); err != nil {
			return err
		}
	}
}

func (p *pdServer) store(st *Store) *metapb.Store {
	return &metapb.Store{Id: st.id, Address: st.addr(), State: metapb.StoreState_Up, NodeState: metapb.NodeState_Serving, Version: "8.5.0"}
}

func (p *pdServer) GetStore(_ context.Context, req *pdpb.GetStoreRequest) (*pdpb.GetStoreResponse, error) {
	for _, st := range p.c.stores {
		if st.id == req.GetStoreId() {
			return &pdpb.GetStoreResponse{Header: p.header(), Store: p.store(st), Stats: &pdpb.StoreStats{StoreId: st.id}}, nil
		}
	}
	return &pdpb.GetStoreResponse{Header: &pdpb.ResponseHeader{ClusterId: p.c.clusterID,
		Error: &pdpb.Error{Type: pdpb.ErrorType_UNKNOWN, Message: fmt.Sprintf("invalid store ID %d, not found", req.GetStoreId())}}}, nil
}

func (p *pdServer) GetAllStores(context.Context, *pdpb.GetAllStoresRequest) (*pdpb.GetAllStoresResponse, error) {
	out := &pdpb.GetAllStoresResponse{Header: p.header()}
	for _, st := range p.c.stores {
		out.Stores = append(out.Stores, p.store(st))
	}
	return out, nil
}

func regionResponse(r *region) (*metapb.Region, *metapb.Peer) {
	if r == nil {
		return nil, nil
	}
	return r.meta(), r.leaderPeer()
}

func (p *pdServer) GetRegion(_ context.Context, req *pdpb.GetRegionRequest) (*pdpb.GetRegionResponse, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	meta, leader := regionResponse(p.c.regions.locate(decodeKey(req.GetRegionKey())))
	return &pdpb.GetRegionResponse{Header: p.header(), Region: meta, Leader: leader}, nil
}

func (p *pdServer) GetPrevRegion(_ context.Context, req *pdpb.GetRegionRequest) (*pdpb.GetRegionResponse, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	r := p.c.regions.locate(decodeKey(req.GetRegionKey()))
	var prev *region
	if r != nil {
		if i := p.c.regions.index(r); i > 0 {
			prev = p.c.regions.list[i-1]
		}
	}
	meta, leader := regionResponse(prev)
	return &pdpb.GetRegionResponse{Header: p.header(), Region: meta, Leader: leader}, nil
}

func (p *pdServer) GetRegionByID(_ context.Context, req *pdpb.GetRegionByIDRequest) (*pdpb.GetRegionResponse, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	meta, leader := regionResponse(p.c.regions.byID[req.GetRegionId()])
	return &pdpb.GetRegionResponse{Header: p.header(), Region: meta, Leader: leader}, nil
}

// scanLocked lists up to limit regions from the one holding start to the
// one before end (raw keys; end empty = ∞).
func (p *pdServer) scanLocked(start, end []byte, limit int) []*pdpb.Region {
	var out []*pdpb.Region
	for _, r := range p.c.regions.list {
		if len(r.end) > 0 && bytes.Compare(r.end, start) <= 0 {
			continue
		}
		if len(end) > 0 && bytes.Compare(r.start, end) >= 0 {
			break
		}
		out = append(out, &pdpb.Region{Region: r.meta(), Leader: r.leaderPeer()})
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out
}

func (p *pdServer) ScanRegions(_ context.Context, req *pdpb.ScanRegionsRequest) (*pdpb.ScanRegionsResponse, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	regions := p.scanLocked(decodeKey(req.GetStartKey()), decodeKey(req.GetEndKey()), int(req.GetLimit()))
	out := &pdpb.ScanRegionsResponse{Header: p.header(), Regions: regions}
	for _, r := range regions {
		out.RegionMetas = append(out.RegionMetas, r.Region)
		out.Leaders = append(out.Leaders, r.Leader)
	}
	return out, nil
}

func (p *pdServer) BatchScanRegions(_ context.Context, req *pdpb.BatchScanRegionsRequest) (*pdpb.BatchScanRegionsResponse, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	out := &pdpb.BatchScanRegionsResponse{Header: p.header()}
	seen := map[uint64]bool{}
	limit := int(req.GetLimit())
	for _, kr := range req.GetRanges() {
		for _, r := range p.scanLocked(decodeKey(kr.GetStartKey()), decodeKey(kr.GetEndKey()), 0) {
			if seen[r.Region.Id] {
				continue
			}
			seen[r.Region.Id] = true
			out.Regions = append(out.Regions, r)
			if limit > 0 && len(out.Regions) >= limit {
				return out, nil
			}
		}
	}
	return out, nil
}

// GC safepoints follow PD: the GC safepoint only moves forward; a service
// safepoint below it is refused (the minimum in force is returned, which
// tells the caller its data is gone); TTL ≤ 0 removes the service; expired
// services are dropped when observed.

func (c *Cluster) expireServicesLocked(now time.Time) {
	for id, s := range c.gc.services {
		if !s.expireAt.IsZero() && now.After(s.expireAt) {
			delete(c.gc.services, id)
		}
	}
}

func (c *Cluster) minServiceLocked() (uint64, bool) {
	min, ok := uint64(math.MaxUint64), false
	for _, s := range c.gc.services {
		if s.ts < min {
			min, ok = s.ts, true
		}
	}
	return min, ok
}

func (p *pdServer) GetGCSafePoint(context.Context, *pdpb.GetGCSafePointRequest) (*pdpb.GetGCSafePointResponse, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return &pdpb.GetGCSafePointResponse{Header: p.header(), SafePoint: p.c.gc.safePoint}, nil
}

func (p *pdServer) UpdateGCSafePoint(_ context.Context, req *pdpb.UpdateGCSafePointRequest) (*pdpb.UpdateGCSafePointResponse, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if req.GetSafePoint() > p.c.gc.safePoint {
		p.c.gc.safePoint = req.GetSafePoint()
	}
	return &pdpb.UpdateGCSafePointResponse{Header: p.header(), NewSafePoint: p.c.gc.safePoint}, nil
}

func (p *pdServer) UpdateServiceGCSafePoint(_ context.Context, req *pdpb.UpdateServiceGCSafePointRequest) (*pdpb.UpdateServiceGCSafePointResponse, error) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.expireServicesLocked(now)
	id := string(req.GetServiceId())
	switch {
	case req.GetTTL() <= 0:
		delete(c.gc.services, id)
	case req.GetSafePoint() < c.gc.safePoint:
		// Refused: that history is gone.
	default:
		exp := now.Add(time.Duration(req.GetTTL()) * time.Second)
		if req.GetTTL() == math.MaxInt64 {
			exp = time.Time{}
		}
		c.gc.services[id] = serviceSafePoint{ts: req.GetSafePoint(), expireAt: exp}
	}
	min, ok := c.minServiceLocked()
	if !ok || min < c.gc.safePoint {
		min = c.gc.safePoint
	}
	c.logf("tidbfake: service safepoint %q ttl %d at %d; min in force %d", id, req.GetTTL(), req.GetSafePoint(), min)
	return &pdpb.UpdateServiceGCSafePointResponse{Header: p.header(), ServiceId: req.GetServiceId(), TTL: req.GetTTL(), MinSafePoint: min}, nil
}

// ServiceSafePoints are the service safepoints in force (expired ones
// dropped).
func (c *Cluster) ServiceSafePoints() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireServicesLocked(time.Now())
	out := map[string]uint64{}
	for id, s := range c.gc.services {
		out[id] = s.ts
	}
	return out
}

// GCSafePoint is the GC safepoint.
func (c *Cluster) GCSafePoint() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gc.safePoint
}

// RunGC moves the GC safepoint as PD's GC would: to target, held back by
// every unexpired service safepoint. It returns the new safepoint.
func (c *Cluster) RunGC(target uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireServicesLocked(time.Now())
	if min, ok := c.minServiceLocked(); ok && min < target {
		target = min
	}
	if target > c.gc.safePoint {
		c.gc.safePoint = target
	}
	return c.gc.safePoint
}

// sortedStores lists store IDs, for stable output.
func (c *Cluster) sortedStores() []uint64 {
	ids := make([]uint64, len(c.stores))
	for i, st := range c.stores {
		ids[i] = st.id
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
