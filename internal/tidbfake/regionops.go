package tidbfake

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/pingcap/kvproto/pkg/cdcpb"
	"github.com/pingcap/kvproto/pkg/errorpb"
	"github.com/pingcap/kvproto/pkg/metapb"
	"github.com/pingcap/tidb/pkg/kv"
	"github.com/pingcap/tidb/pkg/tablecodec"
)

// Region changes reach CDC subscribers the way TiKV reports them: a split
// or merge ends the subscriptions of the changed regions with
// EpochNotMatch (the merged-away region with RegionNotFound), a leader
// transfer ends them on the old leader with NotLeader naming the new one.

// RegionError is a kind of region error the fake can return.
type RegionError string

// The region errors of cdcpb.Error.
const (
	ErrNotLeader         RegionError = "not_leader"
	ErrEpochNotMatch     RegionError = "epoch_not_match"
	ErrRegionNotFound    RegionError = "region_not_found"
	ErrServerIsBusy      RegionError = "server_is_busy"
	ErrCongested         RegionError = "congested"
	ErrDuplicateRequest  RegionError = "duplicate_request"
	ErrCompatibility     RegionError = "compatibility"
	ErrClusterIDMismatch RegionError = "cluster_id_mismatch"
)

// AllRegionErrors lists every kind, for tests that go through them.
var AllRegionErrors = []RegionError{ErrNotLeader, ErrEpochNotMatch, ErrRegionNotFound, ErrServerIsBusy, ErrCongested,
	ErrDuplicateRequest, ErrCompatibility, ErrClusterIDMismatch}

// fault makes the next registrations of a region (0 = any) fail.
type fault struct {
	region uint64
	kind   RegionError
	left   int
}

// RegionInfo describes a region for tests.
type RegionInfo struct {
	ID         uint64
	Start, End []byte // raw keys; End nil = +∞
	Leader     uint64 // store ID
	Version    uint64
}

// Regions lists every region in key order.
func (c *Cluster) Regions() []RegionInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]RegionInfo, len(c.regions.list))
	for i, r := range c.regions.list {
		out[i] = RegionInfo{ID: r.id, Start: r.start, End: r.end, Leader: r.leader, Version: r.version}
	}
	return out
}

// TableRegions lists the regions that hold rows of a table (every
// partition).
func (c *Cluster) TableRegions(db, table string) ([]RegionInfo, error) {
	c.mu.Lock()
	t := c.cat.tableByName(db, table)
	c.mu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("table %s.%s does not exist", db, table)
	}
	var out []RegionInfo
	for _, id := range physicalIDs(t.info) {
		start, end := tableRecordRange(id)
		c.mu.Lock()
		for _, r := range c.regions.overlapping(start, end) {
			out = append(out, RegionInfo{ID: r.id, Start: r.start, End: r.end, Leader: r.leader, Version: r.version})
		}
		c.mu.Unlock()
	}
	return out, nil
}

// RecordKey is the key of a row of a physical table with an integer handle.
func RecordKey(tableID, handle int64) []byte {
	return tablecodec.EncodeRowKeyWithHandle(tableID, kv.IntHandle(handle))
}

// Split splits the region holding key at key and returns the new
// region's ID (0 when key already starts a region).
func (c *Cluster) Split(key []byte) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.splitLocked(key)
}

// SplitTable splits a table's record range (its first partition when it
// is partitioned) into n regions at evenly spaced integer handles in
// [lo, hi).
func (c *Cluster) SplitTable(db, table string, lo, hi int64, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.cat.tableByName(db, table)
	if t == nil {
		return fmt.Errorf("table %s.%s does not exist", db, table)
	}
	for _, id := range physicalIDs(t.info) {
		for i := 1; i < n; i++ {
			c.splitLocked(RecordKey(id, lo+(hi-lo)*int64(i)/int64(n)))
		}
	}
	return nil
}

func (c *Cluster) splitLocked(key []byte) uint64 {
	r := c.regions.locate(key)
	if r == nil || bytes.Equal(r.start, key) {
		return 0
	}
	nr := &region{id: c.allocIDLocked(), start: append([]byte(nil), key...), end: r.end, confVer: r.confVer, version: r.version + 1, leader: r.leader}
	for _, p := range r.peers {
		nr.peers = append(nr.peers, &metapb.Peer{Id: c.allocIDLocked(), StoreId: p.StoreId})
	}
	r.end = nr.start
	r.version++
	c.regions.insertAfter(c.regions.index(r), nr)
	c.dropSubsLocked(r.id, &cdcpb.Error{EpochNotMatch: &errorpb.EpochNotMatch{CurrentRegions: []*metapb.Region{r.meta(), nr.meta()}}})
	c.logf("tidbfake: split region %d at %x: new region %d", r.id, key, nr.id)
	return nr.id
}

// Merge merges region right into its left neighbour left, as PD's merge
// does: left grows, right disappears.
func (c *Cluster) Merge(left, right uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, r := c.regions.byID[left], c.regions.byID[right]
	if l == nil || r == nil {
		return fmt.Errorf("merge %d and %d: no such region", left, right)
	}
	if !bytes.Equal(l.end, r.start) || len(l.end) == 0 {
		return fmt.Errorf("merge %d and %d: not adjacent", left, right)
	}
	l.end = r.end
	l.version = max(l.version, r.version) + 1
	c.regions.remove(r)
	c.dropSubsLocked(l.id, &cdcpb.Error{EpochNotMatch: &errorpb.EpochNotMatch{CurrentRegions: []*metapb.Region{l.meta()}}})
	c.dropSubsLocked(r.id, &cdcpb.Error{RegionNotFound: &errorpb.RegionNotFound{RegionId: r.id}})
	c.logf("tidbfake: merged region %d into %d", right, left)
	return nil
}

// TransferLeader moves a region's leader to a store (1-based ID).
func (c *Cluster) TransferLeader(regionID, storeID uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transferLeaderLocked(regionID, storeID)
}

func (c *Cluster) transferLeaderLocked(regionID, storeID uint64) error {
	r := c.regions.byID[regionID]
	if r == nil {
		return fmt.Errorf("transfer leader of region %d: no such region", regionID)
	}
	if r.peerOn(storeID) == nil {
		return fmt.Errorf("transfer leader of region %d: no peer on store %d", regionID, storeID)
	}
	if r.leader == storeID {
		return nil
	}
	r.leader = storeID
	c.dropSubsLocked(r.id, &cdcpb.Error{NotLeader: &errorpb.NotLeader{RegionId: r.id, Leader: r.leaderPeer()}})
	c.logf("tidbfake: region %d leader now on store %d", regionID, storeID)
	return nil
}

// SendRegionError ends every CDC subscription of a region with the error,
// as TiKV would when that happens to the region. It returns how many
// subscriptions it ended.
func (c *Cluster) SendRegionError(regionID uint64, kind RegionError) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.regions.byID[regionID]
	if r == nil {
		return 0
	}
	n := len(c.subs[regionID])
	c.dropSubsLocked(regionID, c.cdcErrorLocked(r, kind))
	return n
}

// FailRegistrations makes the next count EventFeed registrations of a
// region (0: of any region) fail with the error.
func (c *Cluster) FailRegistrations(regionID uint64, kind RegionError, count int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = append(c.faults, &fault{region: regionID, kind: kind, left: count})
}

// ClearFaults drops every injected registration failure not yet hit.
func (c *Cluster) ClearFaults() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = nil
}

// PendingFaults is how many injected registration failures are left.
func (c *Cluster) PendingFaults() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range c.faults {
		n += f.left
	}
	return n
}

func (c *Cluster) takeFaultLocked(regionID uint64) (RegionError, bool) {
	for i, f := range c.faults {
		if f.left > 0 && (f.region == 0 || f.region == regionID) {
			f.left--
			if f.left == 0 {
				c.faults = append(c.faults[:i], c.faults[i+1:]...)
			}
			return f.kind, true
		}
	}
	return "", false
}

// cdcErrorLocked builds the error TiKV would send for kind.
func (c *Cluster) cdcErrorLocked(r *region, kind RegionError) *cdcpb.Error {
	switch kind {
	case ErrNotLeader:
		return &cdcpb.Error{NotLeader: &errorpb.NotLeader{RegionId: r.id, Leader: r.leaderPeer()}}
	case ErrEpochNotMatch:
		return &cdcpb.Error{EpochNotMatch: &errorpb.EpochNotMatch{CurrentRegions: []*metapb.Region{r.meta()}}}
	case ErrRegionNotFound:
		return &cdcpb.Error{RegionNotFound: &errorpb.RegionNotFound{RegionId: r.id}}
	case ErrServerIsBusy:
		return &cdcpb.Error{ServerIsBusy: &errorpb.ServerIsBusy{Reason: "fake: scheduler is busy", BackoffMs: 20}}
	case ErrCongested:
		return &cdcpb.Error{Congested: &cdcpb.Congested{RegionId: r.id}}
	case ErrDuplicateRequest:
		return &cdcpb.Error{DuplicateRequest: &cdcpb.DuplicateRequest{RegionId: r.id}}
	case ErrCompatibility:
		return &cdcpb.Error{Compatibility: &cdcpb.Compatibility{RequiredVersion: "99.0.0"}}
	case ErrClusterIDMismatch:
		return &cdcpb.Error{ClusterIdMismatch: &cdcpb.ClusterIDMismatch{Current: c.clusterID, Request: c.clusterID + 1}}
	}
	return &cdcpb.Error{RegionNotFound: &errorpb.RegionNotFound{RegionId: r.id}}
}

// dropSubsLocked ends every CDC subscription of a region with err.
func (c *Cluster) dropSubsLocked(regionID uint64, err *cdcpb.Error) {
	subs := c.subs[regionID]
	if len(subs) == 0 {
		return
	}
	list := make([]*cdcSub, 0, len(subs))
	for s := range subs {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].reqID < list[j].reqID })
	for _, s := range list {
		s.fail(err)
	}
	delete(c.subs, regionID)
}

// regionErrorLocked checks a kvrpc request's context against this store,
// as TiKV does before serving it.
func (c *Cluster) regionErrorLocked(storeID uint64, regionID uint64, epoch *metapb.RegionEpoch, keys ...[]byte) (*region, *errorpb.Error) {
	r := c.regions.byID[regionID]
	if r == nil {
		return nil, &errorpb.Error{Message: "region not found", RegionNotFound: &errorpb.RegionNotFound{RegionId: regionID}}
	}
	if r.leader != storeID {
		return nil, &errorpb.Error{Message: "not leader", NotLeader: &errorpb.NotLeader{RegionId: regionID, Leader: r.leaderPeer()}}
	}
	if epoch == nil || epoch.Version != r.version || epoch.ConfVer != r.confVer {
		return nil, &errorpb.Error{Message: "epoch not match", EpochNotMatch: &errorpb.EpochNotMatch{CurrentRegions: c.neighboursLocked(r)}}
	}
	for _, k := range keys {
		if len(k) > 0 && !r.contains(k) {
			return nil, &errorpb.Error{Message: "key not in region", KeyNotInRegion: &errorpb.KeyNotInRegion{Key: k, RegionId: r.id, StartKey: r.start, EndKey: r.end}}
		}
	}
	return r, nil
}

func (c *Cluster) neighboursLocked(r *region) []*metapb.Region {
	i := c.regions.index(r)
	out := []*metapb.Region{r.meta()}
	if i > 0 {
		out = append(out, c.regions.list[i-1].meta())
	}
	if i+1 < len(c.regions.list) {
		out = append(out, c.regions.list[i+1].meta())
	}
	return out
}
