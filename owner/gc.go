package owner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// GCKeyFor is the /gc/ key of an upstream: a short stable hash of its
// identity, since identities may contain characters that do not belong in
// a key.
func GCKeyFor(upstreamID string) string {
	sum := sha256.Sum256([]byte(upstreamID))
	return meta.GCKey(hex.EncodeToString(sum[:8]))
}

// GCFailure says since when pushing an upstream's service safepoint has
// failed without a success in between, and with what error.
type GCFailure struct {
	Since time.Time
	Err   string
}

// gcTTL is a changefeed's gc-ttl: its own, or the owner's default.
func (t *ticker) gcTTL(info *model.ChangefeedInfo) time.Duration {
	if info.Config.GCTTL != "" {
		return info.Config.GCTTLDuration()
	}
	return t.cfg.GCTTL
}

// upstreamOf is the identity of a changefeed's upstream, if the worker has
// learnt it.
func (t *ticker) upstreamOf(info *model.ChangefeedInfo) (string, bool) {
	id, ok := t.in.UpstreamIDs[info.SourceURI]
	return id, ok && id != ""
}

// gc keeps, per upstream identity, this cluster's service safepoint at the
// minimum checkpoint of the changefeeds of that upstream that still need
// its history, and clears it once none does. Keying by identity rather
// than by source URI means two spellings of one upstream share one
// safepoint, instead of overwriting each other's and clearing it when
// either changefeed goes away.
func (t *ticker) gc() {
	type upstream struct {
		safepoint model.Ts
		ttl       time.Duration
		uri       string // the first URI in order reaches it
	}
	need := map[string]*upstream{}
	unknown := false
	for _, id := range t.s.FeedIDs() {
		f := t.s.Changefeeds[id]
		if f.Info == nil || f.Skipped() || !holdsGC(f.Info) || t.releasedGC[id] {
			continue
		}
		uid, ok := t.upstreamOf(f.Info)
		if !ok {
			// Not known yet (the worker is asking the upstream): nothing of
			// this upstream may be cleared meanwhile.
			unknown = true
			continue
		}
		ckpt, ttl := feedCheckpoint(f), t.gcTTL(f.Info)
		u := need[uid]
		if u == nil {
			need[uid] = &upstream{safepoint: ckpt, ttl: ttl, uri: f.Info.SourceURI}
			continue
		}
		u.safepoint = min(u.safepoint, ckpt)
		u.ttl = max(u.ttl, ttl)
		if f.Info.SourceURI < u.uri {
			u.uri = f.Info.SourceURI
		}
	}
	serviceID := t.cfg.ServiceID()
	ids := make([]string, 0, len(need))
	for uid := range need {
		ids = append(ids, uid)
	}
	sort.Strings(ids)
	for _, uid := range ids {
		u := need[uid]
		a := GCAction{UpstreamID: uid, SourceURI: u.uri, ServiceID: serviceID, Safepoint: u.safepoint, TTL: u.ttl}
		key := GCKeyFor(uid)
		rec := t.s.GC[key]
		if rec == nil || rec.Record.Safepoint != a.Safepoint || rec.Record.UpstreamID != uid || rec.Record.SourceURI != u.uri || rec.Record.ServiceID != serviceID {
			var rev uint64
			if rec != nil {
				rev = rec.Rev
			}
			op, err := meta.Put(key, model.GCSafepoint{ServiceID: serviceID, UpstreamID: uid, SourceURI: u.uri, Safepoint: a.Safepoint, Updated: t.in.Now})
			if err != nil {
				t.event(LogEvent{Kind: EventErrorRecorded, Message: fmt.Sprintf("GC record for upstream %s: %v", uid, err)})
				continue
			}
			a.Record = &fsm.Command{Kind: fsm.KindTxn, OwnerEpoch: t.s.OwnerEpoch,
				Conds: []fsm.Cond{{Type: fsm.CondModRev, Key: key, ModRev: rev}}, Ops: []fsm.Op{op}}
		}
		t.out.GC = append(t.out.GC, a)
	}
	if unknown {
		return
	}
	for _, key := range sortedKeys(t.s.GC) {
		rec := t.s.GC[key]
		uri := rec.Record.SourceURI
		if uri == "" {
			continue // undecodable: reported by meta's Tracker, overwritten if its upstream is used again
		}
		uid := rec.Record.UpstreamID
		if uid == "" {
			// Written before safepoints were kept per upstream.
			uid = t.in.UpstreamIDs[uri]
		}
		if uid != "" && GCKeyFor(uid) == key {
			if _, needed := need[uid]; needed {
				continue
			}
		}
		del := &fsm.Command{
			Kind: fsm.KindTxn, OwnerEpoch: t.s.OwnerEpoch,
			Conds: []fsm.Cond{{Type: fsm.CondModRev, Key: key, ModRev: rec.Rev}},
			Ops:   []fsm.Op{{Type: fsm.OpDelete, Key: key}},
		}
		if _, stillNeeded := need[uid]; uid != "" && stillNeeded {
			// An old record of an upstream that is protected under its new
			// key: clearing the service safepoint would clear that too.
			t.out.GC = append(t.out.GC, GCAction{UpstreamID: uid, SourceURI: uri, RecordOnly: true, Record: del})
			continue
		}
		serviceID := rec.Record.ServiceID
		if serviceID == "" {
			serviceID = t.cfg.ServiceID()
		}
		t.out.GC = append(t.out.GC, GCAction{UpstreamID: uid, SourceURI: uri, ServiceID: serviceID, Record: del})
	}
}

// gcExpired checks the two ways a changefeed's hold on its upstream's GC
// ends: it has not been running for longer than its gc-ttl (measured by the
// age of its checkpoint, as TiCDC does), or pushing the upstream's
// safepoint has failed for longer than that. Either fails the changefeed.
func (t *ticker) gcExpired(p *plan) bool {
	info := p.info
	ttl := t.gcTTL(info)
	if uid, ok := t.upstreamOf(info); ok {
		if fail, failing := t.in.GCFailures[uid]; failing && t.in.Now.Sub(fail.Since) > ttl {
			t.stopWithError(p, &model.RunningError{Addr: t.in.NodeID, Code: CodeGCUpdateFailed,
				Message: fmt.Sprintf("the service GC safepoint of upstream %s could not be updated for %v, longer than the changefeed's gc-ttl %v, so its data may already be collected: %s",
					uid, t.in.Now.Sub(fail.Since).Round(time.Second), ttl, fail.Err),
				Time: t.in.Now})
			return true
		}
	}
	if isNormal(info.State) {
		return false
	}
	ckpt := feedCheckpoint(p.f)
	if age := t.in.Now.Sub(model.TsTime(ckpt)); age > ttl {
		t.stopWithError(p, &model.RunningError{Addr: t.in.NodeID, Code: CodeSnapshotLost,
			Message: fmt.Sprintf("checkpoint %d (%s) is %v old, older than the changefeed's gc-ttl %v: a changefeed that is not running holds its upstream's GC only that long, so the data it needs may already be collected; recreate it, or resume it with a newer overwrite-checkpoint-ts",
				ckpt, model.TsTime(ckpt).UTC().Format(time.RFC3339), age.Round(time.Second), ttl),
			Time: t.in.Now})
		return true
	}
	return false
}
