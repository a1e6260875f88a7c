package datagen

import (
	"fmt"
	"math/bits"
	"slices"
	"unsafe"

	"github.com/raftcdc/raftcdc/model"
)

// ---- keys and their histories ----

// keyAt is the key of event e of a table incarnation and which of that
// key's events it is: events visit the keys round-robin through a fixed
// permutation, so key x's n-th event is event n*keys + pos(x).
func (h *History) keyAt(e uint64) (x, n uint64) {
	k := h.cfg.Keys
	return mulMod(h.keyMul, e%k, k, h.keyAdd), e / k
}

// pos is the inverse of keyAt's permutation.
func (h *History) pos(x uint64) uint64 {
	k := h.cfg.Keys
	return mulMod(h.keyMulInv, (x+k-h.keyAdd)%k, k, 0)
}

// mulMod is (a*b + c) mod m for a, b, c < m.
func mulMod(a, b, m, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	lo, carry := bits.Add64(lo, c, 0)
	hi += carry
	_, r := bits.Div64(hi, lo, m)
	return r
}

// lifecycle is how a key's history repeats: insert, updates, delete, and
// insert again. A key that is never deleted has length 0: insert, then
// updates forever. With a zero delete weight no key is deleted; otherwise
// a quarter of the keys never are and the others cycle, with between 0
// and 2*update/delete updates per life.
func (h *History) lifecycle(x uint64) (length uint64) {
	if h.updSpan == 0 {
		return 0
	}
	hx := mix64(h.seedHash ^ x*0xd1342543de82ef95)
	if hx%4 == 0 {
		return 0
	}
	return 2 + (hx>>8)%h.updSpan
}

// op is the operation of key x's n-th event and the generation at which
// its current life started (its insert).
func (h *History) op(x, n uint64) (model.Op, uint64) {
	l := h.lifecycle(x)
	if l == 0 {
		if n == 0 {
			return model.OpInsert, 0
		}
		return model.OpUpdate, 0
	}
	p := n % l
	switch p {
	case 0:
		return model.OpInsert, n
	case l - 1:
		return model.OpDelete, n - p
	}
	return model.OpUpdate, n - p
}

// lastChange is the generation, at or before n, at which a value column
// last changed within a life that started at start: an insert sets every
// column, and each update sets the columns of one parity of name hash
// (alternating), so that an update changes about half the columns and the
// last change is always n or n-1.
func lastChange(sp *colSpec, n, start uint64) uint64 {
	if n == start || (n-start)&1 == sp.nameHash&1 {
		return n
	}
	return n - 1
}

// eventTs is the commit ts of event e of an incarnation.
func (h *History) eventTs(inc incarnation, e uint64) model.Ts {
	return h.SlotTs(inc.group, inc.first+e/inc.rows)
}

// eventsUpTo is the number of events of an incarnation with commit ts <= ts.
func (h *History) eventsUpTo(inc incarnation, ts model.Ts) uint64 {
	k := min(h.slotAfter(inc.group, ts), inc.finish)
	if k <= inc.first {
		return 0
	}
	return (k - inc.first) * inc.rows
}

// image is key x's row after its n-th event, in schema version tv.
func (h *History) image(inc incarnation, tv *tableVersion, x, n uint64) []model.Value {
	img, _ := h.imageFrom(inc, tv, x, n, nil)
	return img
}

// imageFrom is image, reusing prev — the image after event n-1 of the same
// life — for the columns event n did not write, which halves the work of
// an update. size is what model.RowChange.ApproxSize counts for the image.
func (h *History) imageFrom(inc incarnation, tv *tableVersion, x, n uint64, prev []model.Value) (img []model.Value, size int) {
	img = make([]model.Value, len(tv.specs))
	size = len(img) * int(unsafe.Sizeof(model.Value{}))
	a := arenaPool.Get().(*arena)
	a.reset()
	defer arenaPool.Put(a)
	_, start := h.op(x, n)
	p := h.pos(x)
	keyHash := mix64(mix64(h.seedHash^uint64(inc.id)*0x9e3779b97f4a7c15) ^ x)
	for i := range tv.specs {
		sp := &tv.specs[i]
		switch sp.role {
		case roleID:
			img[i] = model.IntValue(int64(x))
		case roleRegion:
			s0 := len(a.s)
			a.s = append(a.s, regionOf(x)...)
			img[i] = a.str(i, s0)
		case roleSeq:
			img[i] = model.UintValue(n*h.cfg.Keys + p)
		case rolePayload:
			s0 := len(a.s)
			a.s = h.appendPayloadV2(a.s, mix64(keyHash^n*0x8cb92ba72f3d8dd7))
			img[i] = a.str(i, s0)
		default:
			m := lastChange(sp, n, start)
			if prev != nil && m < n {
				img[i] = prev[i]
				size += len(prev[i].S) + len(prev[i].B)
				continue
			}
			if sp.addedIn > 0 && h.eventTs(inc, m*h.cfg.Keys+p) < tv.addedTs {
				img[i] = model.Null() // written before the column existed
				continue
			}
			img[i] = genValue(&sp.col, mix64(mix64(keyHash^sp.nameHash)^m*0xbf58476d1ce4e5b9), a, i)
			// Constants (edge values) are not in the arena; an arena
			// value's text is empty until finish.
			size += len(img[i].S) + len(img[i].B)
		}
	}
	// The arena's text and bytes are the other values', exactly.
	size += len(a.s) + len(a.b)
	a.finish(img)
	return img, size
}

func regionOf(x uint64) string {
	r := x % 97
	return string([]byte{'r', byte('0' + r/10), byte('0' + r%10)})
}

func (h *History) appendPayloadV2(dst []byte, seed uint64) []byte {
	return appendPayload(dst, h.cfg.RowSize, seed)
}

// rowChange builds event e of an incarnation in schema version tv.
func (h *History) rowChange(inc incarnation, tv *tableVersion, e uint64, startTs, commitTs model.Ts) *model.RowChange {
	x, n := h.keyAt(e)
	op, _ := h.op(x, n)
	r := &model.RowChange{Schema: tv.schema, StartTs: startTs, CommitTs: commitTs, Op: op}
	size := int(unsafe.Sizeof(*r))
	if op != model.OpInsert {
		var b int
		r.Before, b = h.imageFrom(inc, tv, x, n-1, nil)
		size += b
	}
	if op != model.OpDelete {
		var b int
		r.After, b = h.imageFrom(inc, tv, x, n, r.Before)
		size += b
	}
	r.SizeHint = int32(size)
	return r
}

// ---- transactions ----

// TxnCount is the number of transactions of a table with commit ts in
// (after, upto].
func (h *History) TxnCount(id model.TableID, after, upto model.Ts) uint64 {
	inc, ok := h.incarnationOf(id)
	if !ok || upto <= after {
		return 0
	}
	lo := max(inc.first, h.slotAfter(inc.group, after))
	hi := min(inc.finish, h.slotAfter(inc.group, upto))
	if hi <= lo {
		return 0
	}
	return hi - lo
}

// Txns calls fn, in commit-ts order, for every transaction of a table with
// commit ts in (after, upto], holding only that table's rows, until fn
// returns false. A table ID that never exists has none.
func (h *History) Txns(id model.TableID, after, upto model.Ts, fn func(*model.Txn) bool) {
	inc, ok := h.incarnationOf(id)
	if !ok || upto <= after {
		return
	}
	c := h.cursor(inc, after)
	for {
		txn, ok := c.next(upto)
		if !ok || !fn(txn) {
			return
		}
	}
}

// txnCursor walks one incarnation's transactions in order, keeping the
// schema version of the last one so that a version is looked up only when
// a DDL may have changed it.
type txnCursor struct {
	h    *History
	inc  incarnation
	k    uint64 // next transaction slot
	tv   *tableVersion
	tvTo model.Ts // tv is valid for commit ts below this
}

func (h *History) cursor(inc incarnation, after model.Ts) *txnCursor {
	return &txnCursor{h: h, inc: inc, k: max(inc.first, h.slotAfter(inc.group, after))}
}

// nextTs is the commit ts of the cursor's next transaction, or MaxUint64
// when the incarnation has no more.
func (c *txnCursor) nextTs() model.Ts {
	if c.k >= c.inc.finish {
		return ^model.Ts(0)
	}
	return c.h.SlotTs(c.inc.group, c.k)
}

// next returns the next transaction if it commits at or before upto.
func (c *txnCursor) next(upto model.Ts) (*model.Txn, bool) {
	ts := c.nextTs()
	if ts > upto {
		return nil, false
	}
	h := c.h
	if c.tv == nil || ts >= c.tvTo {
		c.tv = h.versionAt(c.inc, ts)
		// The version holds until the slot's next DDL.
		c.tvTo = h.slotDDLTs(c.inc.slot, h.slotDDLCount(c.inc.slot, ts))
	}
	txn := &model.Txn{CommitTs: ts, StartTs: h.txnStartTs(c.inc.group, c.k, ts)}
	txn.Rows = make([]*model.RowChange, c.inc.rows)
	e := (c.k - c.inc.first) * c.inc.rows
	for i := range txn.Rows {
		txn.Rows[i] = h.rowChange(c.inc, c.tv, e+uint64(i), txn.StartTs, ts)
	}
	c.k++
	return txn, true
}

// ---- state at a ts, for the verifier ----

// KeyState is one key's row at a ts.
type KeyState struct {
	Key uint64
	// Exists is false when the key was never inserted or was deleted.
	Exists bool
	// Row is the row's image in Schema (nil when !Exists).
	Row []model.Value
	// LastTs is the commit ts of the key's last event at or before the
	// ts (0 if none), which tells a verifier whether a changefeed that
	// started at some ts saw it.
	LastTs model.Ts
}

// KeyStateAt is key x of a table at ts, in the schema in force at ts, in
// O(1). The table must exist at ts.
func (h *History) KeyStateAt(id model.TableID, x uint64, ts model.Ts) (KeyState, *model.TableSchema, error) {
	inc, err := h.tableAt(id, ts)
	if err != nil {
		return KeyState{}, nil, err
	}
	if x >= h.cfg.Keys {
		return KeyState{}, nil, fmt.Errorf("datagen table %d has keys 0..%d, not %d", id, h.cfg.Keys-1, x)
	}
	tv := h.versionAt(inc, ts)
	return h.keyState(inc, tv, h.eventsUpTo(inc, ts), x), tv.schema, nil
}

func (h *History) keyState(inc incarnation, tv *tableVersion, events, x uint64) KeyState {
	st := KeyState{Key: x}
	p := h.pos(x)
	if events <= p {
		return st
	}
	n := (events - 1 - p) / h.cfg.Keys
	st.LastTs = h.eventTs(inc, n*h.cfg.Keys+p)
	if op, _ := h.op(x, n); op == model.OpDelete {
		return st
	}
	st.Exists = true
	st.Row = h.image(inc, tv, x, n)
	return st
}

// StateAt calls fn for every key of a table at ts (existing or not), in
// key order, until fn returns false; schema is the version in force at ts.
func (h *History) StateAt(id model.TableID, ts model.Ts, fn func(schema *model.TableSchema, st KeyState) bool) error {
	inc, err := h.tableAt(id, ts)
	if err != nil {
		return err
	}
	tv := h.versionAt(inc, ts)
	events := h.eventsUpTo(inc, ts)
	for x := range h.cfg.Keys {
		if !fn(tv.schema, h.keyState(inc, tv, events, x)) {
			return nil
		}
	}
	return nil
}

// KeyOf is the key number of a row of a datagen v2 table: its id column.
func KeyOf(s *model.TableSchema, img []model.Value) (uint64, bool) {
	i := s.ColumnIndex(colID)
	if i < 0 || i >= len(img) || img[i].Kind != model.ValueInt || img[i].I < 0 {
		return 0, false
	}
	return uint64(img[i].I), true
}

// keyColumns are the columns that identify a row (for tests).
func keyColumns(s *model.TableSchema) []string {
	return slices.Clone(s.PrimaryKey().Columns)
}
