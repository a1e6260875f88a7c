package tidbfake

import (
	"bytes"
	"sort"

	"github.com/pingcap/kvproto/pkg/metapb"
	"github.com/pingcap/tidb/pkg/util/codec"
)

// region is one key range with a Raft group: one peer per store, one of
// them the leader. Keys are raw; on the wire (PD, region metas in TiKV
// errors, CDC request ranges) they are memcomparable-encoded, as a real
// TiKV under TiDB keeps them.
type region struct {
	id         uint64
	start, end []byte // end empty = +∞
	confVer    uint64
	version    uint64
	peers      []*metapb.Peer // one per store, peer.StoreId
	leader     uint64         // store ID
}

func (r *region) contains(key []byte) bool {
	return bytes.Compare(key, r.start) >= 0 && (len(r.end) == 0 || bytes.Compare(key, r.end) < 0)
}

func (r *region) epoch() *metapb.RegionEpoch {
	return &metapb.RegionEpoch{ConfVer: r.confVer, Version: r.version}
}

func encodeKey(raw []byte) []byte {
	if len(raw) == 0 {
		return []byte{}
	}
	return codec.EncodeBytes(nil, raw)
}

// decodeKey is encodeKey's inverse; a key that is not encoded (a client
// that sends raw keys) is returned as it is.
func decodeKey(enc []byte) []byte {
	if len(enc) == 0 {
		return nil
	}
	_, raw, err := codec.DecodeBytes(enc, nil)
	if err != nil {
		return enc
	}
	return raw
}

// meta is the region as PD and TiKV describe it.
func (r *region) meta() *metapb.Region {
	peers := make([]*metapb.Peer, len(r.peers))
	for i, p := range r.peers {
		c := *p
		peers[i] = &c
	}
	return &metapb.Region{Id: r.id, StartKey: encodeKey(r.start), EndKey: encodeKey(r.end), RegionEpoch: r.epoch(), Peers: peers}
}

func (r *region) leaderPeer() *metapb.Peer {
	for _, p := range r.peers {
		if p.StoreId == r.leader {
			c := *p
			return &c
		}
	}
	return nil
}

func (r *region) peerOn(store uint64) *metapb.Peer {
	for _, p := range r.peers {
		if p.StoreId == store {
			return p
		}
	}
	return nil
}

// regionTable keeps the regions sorted by start key; together they cover
// the whole key space without overlap.
type regionTable struct {
	list []*region
	byID map[uint64]*region
}

func (t *regionTable) locate(key []byte) *region {
	i := sort.Search(len(t.list), func(i int) bool { return bytes.Compare(t.list[i].start, key) > 0 }) - 1
	if i < 0 {
		return nil
	}
	return t.list[i]
}

func (t *regionTable) index(r *region) int {
	for i, x := range t.list {
		if x == r {
			return i
		}
	}
	return -1
}

// overlapping lists the regions that intersect [start, end) (end empty = ∞).
func (t *regionTable) overlapping(start, end []byte) []*region {
	var out []*region
	for _, r := range t.list {
		if len(end) > 0 && bytes.Compare(r.start, end) >= 0 {
			break
		}
		if len(r.end) > 0 && bytes.Compare(r.end, start) <= 0 {
			continue
		}
		out = append(out, r)
	}
	return out
}

func (t *regionTable) insertAfter(at int, r *region) {
	t.list = append(t.list, nil)
	copy(t.list[at+2:], t.list[at+1:])
	t.list[at+1] = r
	t.byID[r.id] = r
}

func (t *regionTable) remove(r *region) {
	i := t.index(r)
	if i < 0 {
		return
	}
	t.list = append(t.list[:i], t.list[i+1:]...)
	delete(t.byID, r.id)
}
