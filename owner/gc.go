package owner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// GCKeyFor is the /gc/ key of a source URI: a short stable hash, since URIs
// contain characters (and sometimes credentials) that do not belong in a key.
func GCKeyFor(sourceURI string) string {
	sum := sha256.Sum256([]byte(sourceURI))
	return meta.GCKey(hex.EncodeToString(sum[:8]))
}

// gc keeps, per upstream, this cluster's service safepoint at the minimum
// checkpoint of the changefeeds that still need its history, and clears it
// once none does.
func (t *ticker) gc() {
	need := map[string]model.Ts{}
	for _, id := range t.s.FeedIDs() {
		f := t.s.Changefeeds[id]
		if f.Info == nil || f.InfoCorrupt || !holdsGC(f.Info.State) || t.releasedGC[id] {
			continue
		}
		ckpt := feedCheckpoint(f)
		if old, ok := need[f.Info.SourceURI]; !ok || ckpt < old {
			need[f.Info.SourceURI] = ckpt
		}
	}
	serviceID := t.cfg.ServiceID()
	for _, uri := range sortedKeys(need) {
		a := GCAction{SourceURI: uri, ServiceID: serviceID, Safepoint: need[uri], TTL: t.cfg.GCTTL}
		key := GCKeyFor(uri)
		rec := t.s.GC[key]
		if rec == nil || rec.Record.Safepoint != a.Safepoint || rec.Record.SourceURI != uri || rec.Record.ServiceID != serviceID {
			var rev uint64
			if rec != nil {
				rev = rec.Rev
			}
			op, err := meta.Put(key, model.GCSafepoint{ServiceID: serviceID, SourceURI: uri, Safepoint: a.Safepoint, Updated: t.in.Now})
			if err != nil {
				t.event(LogEvent{Kind: EventErrorRecorded, Message: fmt.Sprintf("GC record for %s: %v", uri, err)})
				continue
			}
			a.Record = &fsm.Command{Kind: fsm.KindTxn, OwnerEpoch: t.s.OwnerEpoch,
				Conds: []fsm.Cond{{Type: fsm.CondModRev, Key: key, ModRev: rev}}, Ops: []fsm.Op{op}}
		}
		t.out.GC = append(t.out.GC, a)
	}
	for _, key := range sortedKeys(t.s.GC) {
		rec := t.s.GC[key]
		uri := rec.Record.SourceURI
		if uri == "" {
			continue // undecodable: reported as a problem, overwritten if its URI is used again
		}
		if _, needed := need[uri]; needed {
			continue
		}
		serviceID := rec.Record.ServiceID
		if serviceID == "" {
			serviceID = t.cfg.ServiceID()
		}
		t.out.GC = append(t.out.GC, GCAction{SourceURI: uri, ServiceID: serviceID, Record: &fsm.Command{
			Kind: fsm.KindTxn, OwnerEpoch: t.s.OwnerEpoch,
			Conds: []fsm.Cond{{Type: fsm.CondModRev, Key: key, ModRev: rec.Rev}},
			Ops:   []fsm.Op{{Type: fsm.OpDelete, Key: key}},
		}})
	}
}
