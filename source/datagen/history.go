package datagen

import (
	"fmt"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// History is datagen's version 2 stream: a consistent, typed database
// history (schemas, DDL, multi-table transactions, per-key row histories)
// that is a pure function of the configuration. Every question it answers
// — which tables exist at ts, a table's schema at ts, the transactions of a
// table in a ts range, the state of a key at ts, the DDL events in a range
// — costs O(1) per answer (O(tables) for the table list), with no state
// carried from one question to the next. See DESIGN.md.
//
// It is safe for concurrent use.
type History struct {
	cfg      Config
	n        uint64 // table slots
	seedHash uint64
	epochTs  model.Ts

	// Transaction slot k of group g commits at
	// (groupBase[g] + floor(k*stepP/stepQ)) &^ 1: always even, so that it
	// never equals a DDL's commit ts (always odd).
	stepP, stepQ uint64
	groupBase    []model.Ts

	// DDL position p commits at ddlBase + p*ddlInterval (odd), see the
	// DDL schedule below; ddlInterval 0 means no DDL.
	ddlInterval uint64
	ddlBase     model.Ts

	// Keys are visited round-robin through the bijection
	// x = (keyMul*i + keyAdd) mod keys.
	keyMul, keyAdd, keyMulInv uint64
	// updSpan bounds the updates of one key lifecycle (see op).
	updSpan uint64

	schemasMu sync.Mutex
	schemas   map[schemaKey]*tableVersion
	// base is every table's base columns, without and with the composite
	// key, built once: building them for every table opened (a hash per
	// column name) was a fifth of a node's CPU while it opened 33,000
	// tables (issue 16). Never modified; columnsOf copies.
	base [2][]colSpec
}

// tableVersion is one schema version of one table ID with what rows of it
// need: the column specs aligned with the schema's columns.
type tableVersion struct {
	schema *model.TableSchema
	specs  []colSpec
	// addedTs is the commit ts of the ADD COLUMN that added the version's
	// added column, if it has one: rows last written before it hold NULL
	// there, as a column added without a default does.
	addedTs model.Ts
}

type schemaKey struct {
	id      model.TableID
	version uint64
}

// maxCachedSchemas bounds the schema cache; past it the cache starts over
// (schemas are cheap to rebuild, and only a few are in use at a time).
const maxCachedSchemas = 1 << 14

// DDL kinds in the order each table slot cycles through them.
const (
	phaseAddColumn = iota
	phaseDropColumn
	phaseTruncate
	phaseRename
	phaseDrop
	phaseCreate
	ddlCycle
)

// ParseHistory is the history a datagen URI describes.
func ParseHistory(uri string) (*History, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return NewHistory(cfg)
}

// NewHistory validates cfg and precomputes the per-group timing.
func NewHistory(cfg Config) (*History, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &History{
		cfg:      cfg,
		n:        uint64(cfg.Tables),
		seedHash: mix64(cfg.Seed ^ 0x5851f42d4c957f2d),
		epochTs:  model.TsFromTime(time.UnixMilli(cfg.EpochMs)),
		schemas:  make(map[schemaKey]*tableVersion),
		base:     [2][]colSpec{baseColumns(false), baseColumns(true)},
	}
	// Slots per second per group: rate*txnTables/txnRows, so that every
	// table gets rate rows per second on average.
	p := uint64(ticksPerSecond) * cfg.RateDen * uint64(cfg.TxnRows)
	q := cfg.RateNum * uint64(cfg.TxnTables)
	if g := gcd(p, q); g > 1 {
		p, q = p/g, q/g
	}
	h.stepP, h.stepQ = p, q
	groups := (cfg.Tables + cfg.TxnTables - 1) / cfg.TxnTables
	h.groupBase = make([]model.Ts, groups)
	spread := max(p/q, 1)
	for g := range groups {
		h.groupBase[g] = h.epochTs + mix64(h.seedHash^uint64(g+1)*0xd6e8feb86659fd93)%spread
	}
	if cfg.DDLEvery > 0 {
		h.ddlInterval = uint64(cfg.DDLEvery/time.Millisecond) << 18
		h.ddlBase = h.epochTs + h.ddlInterval + 1
	}
	keys := cfg.Keys
	h.keyMul = 1
	if keys > 2 {
		// An odd multiplier near keys/φ, walked until it is coprime with
		// keys, spreads consecutive events over the key space.
		a := (uint64(float64(keys)*0.6180339887498949) + mix64(h.seedHash)%keys) % keys
		for a < 2 || gcd(a, keys) != 1 {
			a = (a + 1) % keys
		}
		h.keyMul = a
	}
	h.keyAdd = mix64(h.seedHash+1) % keys
	h.keyMulInv = modInverse(h.keyMul, keys)
	if cfg.Mix[2] > 0 {
		h.updSpan = 2*((cfg.Mix[1]+cfg.Mix[2]-1)/cfg.Mix[2]) + 1
	}
	return h, nil
}

// Config is the history's configuration.
func (h *History) Config() Config { return h.cfg }

// EpochTs is the ts at which the history begins.
func (h *History) EpochTs() model.Ts { return h.epochTs }

// ---- transaction slots ----

func (h *History) group(slot uint64) int { return int(slot / uint64(h.cfg.TxnTables)) }

// groupSize is the number of table slots in group g (the last may be short).
func (h *History) groupSize(g int) uint64 {
	m := uint64(h.cfg.TxnTables)
	return min(m, h.n-uint64(g)*m)
}

// rowsPerSlot is how many rows table slot s writes in each transaction of
// its group: txn-rows spread over the group's tables, the remainder to the
// first ones.
func (h *History) rowsPerSlot(s uint64) uint64 {
	g := h.group(s)
	size := h.groupSize(g)
	r := uint64(h.cfg.TxnRows)
	pos := s % uint64(h.cfg.TxnTables)
	n := r / size
	if pos < r%size {
		n++
	}
	return n
}

// SlotTs is the commit ts of transaction slot k of group g, strictly
// increasing in k and always even. Past the representable range it is
// math.MaxUint64.
func (h *History) SlotTs(g int, k uint64) model.Ts {
	off, ok := mulDiv(k, h.stepP, h.stepQ)
	base := h.groupBase[g]
	if !ok || off > math.MaxUint64-base-1 {
		return math.MaxUint64
	}
	return (base + off) &^ 1
}

// slotAfter is the first slot of group g committing after ts.
func (h *History) slotAfter(g int, ts model.Ts) uint64 {
	// (v &^ 1) > ts  ⟺  v > ts|1, with v = base + floor(k*P/Q).
	t := ts | 1
	base := h.groupBase[g]
	if t < base {
		return 0
	}
	d := t - base
	if d == math.MaxUint64 {
		return math.MaxUint64
	}
	k, ok := mulDivCeil(d+1, h.stepQ, h.stepP)
	if !ok {
		return math.MaxUint64
	}
	return k
}

// txnStartTs is the start ts of slot k of group g: a little before its
// commit ts, distinct per transaction.
func (h *History) txnStartTs(g int, k uint64, commit model.Ts) model.Ts {
	back := 1 + mix64(h.seedHash^uint64(g)<<40^k)%(1<<16)
	if back >= commit {
		return commit - 1
	}
	return commit - back
}

// ---- DDL schedule ----
//
// DDL positions p = 0, 1, 2, … commit at ddlBase + p*ddlInterval and go to
// the table slots round-robin (slot p mod n, the slot's round p div n). A
// slot's rounds cycle through ADD COLUMN, DROP COLUMN, TRUNCATE, RENAME and
// DROP TABLE; the CREATE TABLE that brings a dropped slot back is an extra
// event half an interval after its DROP. Were the CREATE a round of its
// own, every slot would sit dropped through the same round, and the whole
// upstream would have (nearly) no tables for n intervals in every six
// rounds: a changefeed created then finds nothing to replicate. This way at
// most one table is missing at a time, for half an interval.
//
// Event numbers i count the events in commit-ts order: rounds of five
// positions per slot carry 6n events (the drop round two per position).

const ddlRounds = ddlCycle - 1 // round-robin rounds per cycle; CREATE rides on DROP

// halfInterval is the CREATE's delay after its DROP: even, so both stay odd.
func (h *History) halfInterval() uint64 { return h.ddlInterval / 2 }

// posTs is the commit ts of DDL position p, or math.MaxUint64 past range.
func (h *History) posTs(p uint64) model.Ts {
	hi, prod := mulU64(p, h.ddlInterval)
	if hi != 0 || prod > math.MaxUint64-h.ddlBase-h.halfInterval() {
		return math.MaxUint64
	}
	return h.ddlBase + prod
}

// isDropPos reports whether position p is a DROP TABLE (followed by a CREATE).
func (h *History) isDropPos(p uint64) bool { return (p/h.n)%ddlRounds == ddlRounds-1 }

// createsBefore is the number of CREATE events of positions < p.
func (h *History) createsBefore(p uint64) uint64 {
	super := ddlRounds * h.n
	return (p/super)*h.n + (p%super - min(p%super, (ddlRounds-1)*h.n))
}

// ddlEvent decodes event number i: its slot, the slot's DDL number j (in
// cycles of ddlCycle kinds) and its commit ts.
func (h *History) ddlEvent(i uint64) (s, j uint64, ts model.Ts) {
	perSuper := ddlCycle * h.n
	super, rem := i/perSuper, i%perSuper
	var p uint64
	create := false
	if rem < (ddlRounds-1)*h.n {
		p = super*ddlRounds*h.n + rem
	} else {
		k := rem - (ddlRounds-1)*h.n
		p = super*ddlRounds*h.n + (ddlRounds-1)*h.n + k/2
		create = k%2 == 1
	}
	s, r := p%h.n, p/h.n
	j = ddlCycle*(r/ddlRounds) + r%ddlRounds
	ts = h.posTs(p)
	if create {
		j++
		if ts != math.MaxUint64 {
			ts += h.halfInterval()
		}
	}
	return s, j, ts
}

// ddlTs is the commit ts of DDL event number i (odd).
func (h *History) ddlTs(i uint64) model.Ts {
	_, _, ts := h.ddlEvent(i)
	return ts
}

// ddlCount is the number of DDL events with commit ts <= ts.
func (h *History) ddlCount(ts model.Ts) uint64 {
	if h.ddlInterval == 0 || ts < h.ddlBase {
		return 0
	}
	d := ts - h.ddlBase
	p := d / h.ddlInterval // the last position at or before ts
	n := p + 1 + h.createsBefore(p)
	if h.isDropPos(p) && d%h.ddlInterval >= h.halfInterval() {
		n++
	}
	return n
}

// slotDDLTs is the commit ts of the j-th DDL of table slot s.
func (h *History) slotDDLTs(s, j uint64) model.Ts {
	if h.ddlInterval == 0 {
		return math.MaxUint64
	}
	c, q := j/ddlCycle, j%ddlCycle
	if c > math.MaxUint64/ddlRounds-1 {
		return math.MaxUint64
	}
	r := c*ddlRounds + min(q, ddlRounds-1)
	hi, lo := mulU64(r, h.n)
	if hi != 0 || lo > math.MaxUint64-s {
		return math.MaxUint64
	}
	ts := h.posTs(lo + s)
	if q == phaseCreate && ts != math.MaxUint64 {
		ts += h.halfInterval()
	}
	return ts
}

// slotDDLCount is the number of DDLs of table slot s with commit ts <= ts.
func (h *History) slotDDLCount(s uint64, ts model.Ts) uint64 {
	if h.ddlInterval == 0 || ts < h.ddlBase {
		return 0
	}
	d := ts - h.ddlBase
	positions := d/h.ddlInterval + 1
	if positions <= s {
		return 0
	}
	rounds := (positions-1-s)/h.n + 1 // the slot's positions at or before ts
	c, q := rounds/ddlRounds, rounds%ddlRounds
	if q != 0 {
		return c*ddlCycle + q
	}
	// The last was a DROP: its CREATE follows half an interval later.
	dropTs := h.posTs((rounds-1)*h.n + s)
	if ts >= dropTs+h.halfInterval() {
		return c * ddlCycle
	}
	return c*ddlCycle - 1
}

// ---- table incarnations ----

// incarnation is one table ID's life: a slot's table between a create (or
// the epoch) or truncate and the next truncate or drop.
type incarnation struct {
	id     model.TableID
	slot   uint64
	gen    uint64 // 2c: created in cycle c; 2c+1: truncated in cycle c
	group  int
	rows   uint64   // rows per transaction slot
	begin  model.Ts // commit ts of the DDL that made it; 0 for the first
	end    model.Ts // commit ts of the DDL that ends it; MaxUint64 if none
	first  uint64   // first transaction slot after begin
	finish uint64   // first transaction slot after end (exclusive bound)
}

func (h *History) tableID(slot, gen uint64) (model.TableID, bool) {
	hi, lo := mulU64(gen, h.n)
	if hi != 0 || lo > math.MaxInt64-slot-1 {
		return 0, false
	}
	return model.TableID(1 + slot + lo), true
}

// incarnationOf decodes a table ID. ok is false for IDs that never exist.
func (h *History) incarnationOf(id model.TableID) (incarnation, bool) {
	if id < 1 {
		return incarnation{}, false
	}
	slot := uint64(id-1) % h.n
	gen := uint64(id-1) / h.n
	if gen > 0 && h.ddlInterval == 0 {
		return incarnation{}, false
	}
	inc := incarnation{id: id, slot: slot, gen: gen, group: h.group(slot), rows: h.rowsPerSlot(slot), end: math.MaxUint64}
	c := gen / 2
	if gen%2 == 0 {
		if c > 0 {
			inc.begin = h.slotDDLTs(slot, ddlCycle*c-1)
		}
		inc.end = h.slotDDLTs(slot, ddlCycle*c+phaseTruncate)
	} else {
		inc.begin = h.slotDDLTs(slot, ddlCycle*c+phaseTruncate)
		inc.end = h.slotDDLTs(slot, ddlCycle*c+phaseDrop)
	}
	if inc.begin == math.MaxUint64 {
		return incarnation{}, false
	}
	inc.first = h.slotAfter(inc.group, inc.begin)
	inc.finish = h.slotAfter(inc.group, inc.end)
	return inc, true
}

// aliveAt reports whether the incarnation exists at ts: it was created at or
// before ts and not yet ended. Tables of the first generation exist before
// the epoch too (empty).
func (inc incarnation) aliveAt(ts model.Ts) bool {
	return inc.begin <= ts && ts < inc.end
}

// incarnationAt is the incarnation of table slot s at ts, if the slot has a
// table then.
func (h *History) incarnationAt(s uint64, ts model.Ts) (incarnation, bool) {
	j := h.slotDDLCount(s, ts)
	c, phase := j/ddlCycle, j%ddlCycle
	var gen uint64
	switch phase {
	case phaseDrop + 1: // dropped, not yet re-created
		return incarnation{}, false
	case phaseTruncate + 1, phaseRename + 1:
		gen = 2*c + 1
	default:
		gen = 2 * c
	}
	id, ok := h.tableID(s, gen)
	if !ok {
		return incarnation{}, false
	}
	return h.incarnationOf(id)
}

// name is the incarnation's table name at ts: the slot's base name, or its
// cycle's renamed name once the rename DDL has committed.
func (h *History) name(inc incarnation, ts model.Ts) model.TableName {
	t := fmt.Sprintf("t%04d", inc.slot+1)
	if inc.gen%2 == 1 && ts >= h.slotDDLTs(inc.slot, ddlCycle*(inc.gen/2)+phaseRename) {
		t = fmt.Sprintf("t%04d_r%d", inc.slot+1, inc.gen/2)
	}
	return model.TableName{ID: inc.id, Schema: h.cfg.Schema, Table: t}
}

// TablesAt lists the tables that exist at ts, in slot order.
func (h *History) TablesAt(ts model.Ts) []model.TableName {
	out := make([]model.TableName, 0, h.n)
	for s := range h.n {
		if inc, ok := h.incarnationAt(s, ts); ok {
			out = append(out, h.name(inc, ts))
		}
	}
	return out
}

// errNoTable is wrapped by lookups of a table ID that does not exist at
// the requested ts.
var errNoTable = fmt.Errorf("no such table")

// tableAt returns the incarnation of a table ID, checking that it exists at
// ts.
func (h *History) tableAt(id model.TableID, ts model.Ts) (incarnation, error) {
	inc, ok := h.incarnationOf(id)
	if !ok {
		return incarnation{}, fmt.Errorf("datagen table ID %d: %w (IDs 1..%d, and more once DDL creates tables)", id, errNoTable, h.n)
	}
	if !inc.aliveAt(ts) {
		return incarnation{}, fmt.Errorf("datagen table ID %d does not exist at ts %d (it lives from %d to %d): %w", id, ts, inc.begin, inc.end, errNoTable)
	}
	return inc, nil
}

// SchemaAt is the schema of table ID at ts.
func (h *History) SchemaAt(id model.TableID, ts model.Ts) (*model.TableSchema, error) {
	inc, err := h.tableAt(id, ts)
	if err != nil {
		return nil, err
	}
	return h.versionAt(inc, ts).schema, nil
}

// Name is a table's name at ts (it changes with a rename).
func (h *History) Name(id model.TableID, ts model.Ts) (model.TableName, error) {
	inc, err := h.tableAt(id, ts)
	if err != nil {
		return model.TableName{}, err
	}
	return h.name(inc, ts), nil
}

// knownNames are every name an incarnation has during its life.
func (h *History) knownNames(inc incarnation) []string {
	names := []string{fmt.Sprintf("t%04d", inc.slot+1)}
	if inc.gen%2 == 1 {
		names = append(names, fmt.Sprintf("t%04d_r%d", inc.slot+1, inc.gen/2))
	}
	return names
}

// schemaPhase is how far through its cycle's DDLs the incarnation's schema
// is at ts: the slot's DDL count in the cycle, clamped to the incarnation.
func (h *History) schemaPhase(inc incarnation, ts model.Ts) uint64 {
	j := h.slotDDLCount(inc.slot, ts)
	c := inc.gen / 2
	if j < ddlCycle*c {
		return 0
	}
	return min(j-ddlCycle*c, phaseDrop)
}

// versionOf is the schema version at a phase: the commit ts of the last
// DDL that changed the table, or the epoch for a table never touched.
func (h *History) versionOf(inc incarnation, phase uint64) uint64 {
	if phase == 0 {
		if inc.begin == 0 {
			return h.epochTs
		}
		return inc.begin
	}
	return h.slotDDLTs(inc.slot, ddlCycle*(inc.gen/2)+phase-1)
}

// versionAt is the incarnation's schema version in force at ts.
func (h *History) versionAt(inc incarnation, ts model.Ts) *tableVersion {
	phase := h.schemaPhase(inc, ts)
	if inc.gen%2 == 1 {
		phase = max(phase, phaseTruncate+1)
	}
	ver := h.versionOf(inc, phase)
	key := schemaKey{id: inc.id, version: ver}
	h.schemasMu.Lock()
	tv, ok := h.schemas[key]
	h.schemasMu.Unlock()
	if ok {
		return tv
	}
	tv = h.buildVersion(inc, phase, ver, ts)
	h.schemasMu.Lock()
	if len(h.schemas) >= maxCachedSchemas {
		clear(h.schemas)
	}
	if old, ok := h.schemas[key]; ok {
		tv = old // one pointer per version
	} else {
		h.schemas[key] = tv
	}
	h.schemasMu.Unlock()
	return tv
}

func (h *History) buildVersion(inc incarnation, phase, version uint64, ts model.Ts) *tableVersion {
	c := inc.gen / 2
	tv := &tableVersion{specs: h.columnsOf(inc.slot, c, phase)}
	if phase > phaseAddColumn {
		tv.addedTs = h.slotDDLTs(inc.slot, ddlCycle*c+phaseAddColumn)
	}
	s := &model.TableSchema{Table: h.name(inc, ts), Version: version}
	s.Columns = make([]model.Column, len(tv.specs))
	for i, sp := range tv.specs {
		s.Columns[i] = sp.col
	}
	if compositeKey(inc.slot) {
		s.Indexes = []model.Index{{Name: "PRIMARY", Columns: []string{colRegion, colID}, Primary: true}}
	} else {
		s.Indexes = []model.Index{{Name: "PRIMARY", Columns: []string{colID}, Primary: true}}
	}
	tv.schema = s
	return tv
}

// ---- DDL events ----

// DDLCount is the number of DDL events with commit ts in (after, upto].
func (h *History) DDLCount(after, upto model.Ts) uint64 {
	if upto <= after {
		return 0
	}
	return h.ddlCount(upto) - h.ddlCount(after)
}

// DDLs calls fn for every DDL event with commit ts in (after, upto], in
// order, until fn returns false.
func (h *History) DDLs(after, upto model.Ts, fn func(*model.DDLEvent) bool) {
	if upto <= after {
		return
	}
	for i := h.ddlCount(after); i < h.ddlCount(upto); i++ {
		if !fn(h.DDL(i)) {
			return
		}
	}
}

// DDL builds DDL event number i.
func (h *History) DDL(i uint64) *model.DDLEvent {
	s, j, ts := h.ddlEvent(i)
	c, phase := j/ddlCycle, j%ddlCycle
	// The table before the DDL (at ts-1) and after it (at ts).
	before, hadTable := h.incarnationAt(s, ts-1)
	after, hasTable := h.incarnationAt(s, ts)
	db := model.QuoteIdent(h.cfg.Schema)
	ev := &model.DDLEvent{CommitTs: ts, StartTs: ts - 2, Schema: h.cfg.Schema}
	var oldName model.TableName
	if hadTable {
		oldName = h.name(before, ts-1)
	}
	qualified := func(n model.TableName) string { return db + "." + model.QuoteIdent(n.Table) }
	switch phase {
	case phaseAddColumn:
		added := h.addedColumn(s, c)
		ev.Kind = model.DDLAddColumn
		ev.Query = fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", qualified(oldName), model.QuoteIdent(added.col.Name), added.col.Type.SQL())
	case phaseDropColumn:
		ev.Kind = model.DDLDropColumn
		ev.Query = fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", qualified(oldName), model.QuoteIdent(h.droppedColumn(s, c)))
	case phaseTruncate:
		ev.Kind = model.DDLTruncateTable
		ev.Query = "TRUNCATE TABLE " + qualified(oldName)
	case phaseRename:
		ev.Kind = model.DDLRenameTable
		ev.Query = fmt.Sprintf("RENAME TABLE %s TO %s", qualified(oldName), qualified(h.name(after, ts)))
	case phaseDrop:
		ev.Kind = model.DDLDropTable
		ev.Query = "DROP TABLE " + qualified(oldName)
	case phaseCreate:
		ev.Kind = model.DDLCreateTable
		ev.Query = h.versionAt(after, ts).schema.CreateTableSQL(false)
	}
	switch {
	case hadTable:
		ev.Tables = []model.TableName{oldName}
	case hasTable:
		ev.Tables = []model.TableName{h.name(after, ts)}
	}
	if hasTable {
		ev.After = []*model.TableSchema{h.versionAt(after, ts).schema}
	} else {
		ev.After = []*model.TableSchema{nil}
	}
	return ev
}

// DDLIndexAt returns the number of the DDL committing exactly at ts.
func (h *History) DDLIndexAt(ts model.Ts) (uint64, bool) {
	if h.ddlInterval == 0 || ts < h.ddlBase {
		return 0, false
	}
	d := ts - h.ddlBase
	p, off := d/h.ddlInterval, d%h.ddlInterval
	switch {
	case off == 0:
		return p + h.createsBefore(p), true
	case off == h.halfInterval() && h.isDropPos(p):
		return p + h.createsBefore(p) + 1, true
	}
	return 0, false
}

// ---- helpers ----

func mulU64(a, b uint64) (hi, lo uint64) { return bits.Mul64(a, b) }

// modInverse is a⁻¹ mod m for a coprime with m (m >= 1).
func modInverse(a, m uint64) uint64 {
	if m == 1 {
		return 0
	}
	// Extended Euclid on signed 128-bit-safe values: m < 2^41 here, so
	// int64 arithmetic cannot overflow.
	t, newT := int64(0), int64(1)
	r, newR := int64(m), int64(a%m)
	for newR != 0 {
		q := r / newR
		t, newT = newT, t-q*newT
		r, newR = newR, r-q*newR
	}
	if t < 0 {
		t += int64(m)
	}
	return uint64(t)
}
