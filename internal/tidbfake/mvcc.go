package tidbfake

import (
	"bytes"

	"github.com/google/btree"
	"github.com/pingcap/kvproto/pkg/kvrpcpb"
)

// The MVCC store keeps TiKV's percolator model in memory: every key has its
// committed versions (ascending commit ts) and at most one lock. Keys and
// values are raw TiDB bytes (t{id}_r{handle} → row codec value, m… → meta
// structure), exactly what TiDB would have written.

type writeKind uint8

const (
	writePut writeKind = iota + 1
	writeDelete
	writeRollback
)

type version struct {
	startTs, commitTs uint64
	kind              writeKind
	value             []byte
	// seq orders every committed version across the store, so that an
	// incremental scan can see exactly the versions that existed when its
	// subscription was registered.
	seq uint64
}

type lock struct {
	primary []byte
	startTs uint64
	op      kvrpcpb.Op // Put, Del or Lock
	value   []byte
	ttlMs   uint64
	// bornMs is the lock's physical birth time (the start ts' physical
	// part), for TTL expiry as TiKV computes it.
	bornMs    uint64
	txnSize   uint64
	oldValue  []byte
	hasOld    bool
	oldExists bool
}

type entry struct {
	key      []byte
	versions []version // ascending commit ts
	lock     *lock
}

func entryLess(a, b *entry) bool { return bytes.Compare(a.key, b.key) < 0 }

type mvcc struct {
	tree *btree.BTreeG[*entry]
	// locked indexes the entries that hold a lock, so that the resolved ts
	// of a region (bounded by its oldest lock) costs no scan.
	locked *btree.BTreeG[*entry]
	seq    uint64
}

func newMVCC() *mvcc {
	return &mvcc{tree: btree.NewG[*entry](32, entryLess), locked: btree.NewG[*entry](8, entryLess)}
}

func (m *mvcc) setLock(e *entry, l *lock) {
	e.lock = l
	m.locked.ReplaceOrInsert(e)
}

func (m *mvcc) clearLock(e *entry) {
	e.lock = nil
	m.locked.Delete(e)
}

// minLockTs is the smallest start ts of a lock in [start, end) (end empty
// = unbounded), or 0 when there is none.
func (m *mvcc) minLockTs(start, end []byte) uint64 {
	var min uint64
	m.locked.AscendGreaterOrEqual(&entry{key: start}, func(e *entry) bool {
		if len(end) > 0 && bytes.Compare(e.key, end) >= 0 {
			return false
		}
		if min == 0 || e.lock.startTs < min {
			min = e.lock.startTs
		}
		return true
	})
	return min
}

// lockedIn visits the locked entries of [start, end).
func (m *mvcc) lockedIn(start, end []byte, fn func(*entry) bool) {
	m.locked.AscendGreaterOrEqual(&entry{key: start}, func(e *entry) bool {
		if len(end) > 0 && bytes.Compare(e.key, end) >= 0 {
			return false
		}
		return fn(e)
	})
}

func (m *mvcc) get(key []byte) *entry {
	e, _ := m.tree.Get(&entry{key: key})
	return e
}

func (m *mvcc) getOrCreate(key []byte) *entry {
	if e := m.get(key); e != nil {
		return e
	}
	e := &entry{key: append([]byte(nil), key...)}
	m.tree.ReplaceOrInsert(e)
	return e
}

// latest is the newest put or delete visible at ts (rollbacks skipped).
func (e *entry) latest(ts uint64) *version {
	for i := len(e.versions) - 1; i >= 0; i-- {
		v := &e.versions[i]
		if v.commitTs > ts || v.kind == writeRollback {
			continue
		}
		return v
	}
	return nil
}

// valueAt is the key's value at ts; ok is false when it does not exist.
func (e *entry) valueAt(ts uint64) (value []byte, ok bool) {
	v := e.latest(ts)
	if v == nil || v.kind != writePut {
		return nil, false
	}
	return v.value, true
}

// findWrite is the write of the transaction that started at startTs.
func (e *entry) findWrite(startTs uint64) *version {
	for i := len(e.versions) - 1; i >= 0; i-- {
		if e.versions[i].startTs == startTs {
			return &e.versions[i]
		}
	}
	return nil
}

// lockBlocks reports whether a read at ts must wait for the key's lock.
func (e *entry) lockBlocks(ts uint64) bool {
	return e.lock != nil && e.lock.startTs <= ts && e.lock.op != kvrpcpb.Op_Lock
}

func (l *lock) info(key []byte) *kvrpcpb.LockInfo {
	return &kvrpcpb.LockInfo{PrimaryLock: l.primary, LockVersion: l.startTs, Key: key, LockTtl: l.ttlMs, TxnSize: l.txnSize, LockType: l.op}
}

// ascend visits keys in [start, end) (end nil = unbounded) in order.
func (m *mvcc) ascend(start, end []byte, fn func(*entry) bool) {
	m.tree.AscendGreaterOrEqual(&entry{key: start}, func(e *entry) bool {
		if len(end) > 0 && bytes.Compare(e.key, end) >= 0 {
			return false
		}
		return fn(e)
	})
}

// descend visits keys in [lower, upper) from the top (upper nil = unbounded).
func (m *mvcc) descend(upper, lower []byte, fn func(*entry) bool) {
	visit := func(e *entry) bool {
		if len(lower) > 0 && bytes.Compare(e.key, lower) < 0 {
			return false
		}
		return fn(e)
	}
	if len(upper) == 0 {
		m.tree.Descend(visit)
		return
	}
	m.tree.DescendLessOrEqual(&entry{key: upper}, func(e *entry) bool {
		if bytes.Equal(e.key, upper) {
			return true
		}
		return visit(e)
	})
}

func (m *mvcc) nextSeq() uint64 {
	m.seq++
	return m.seq
}
