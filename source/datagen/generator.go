package datagen

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// epochUnixMilli (2020-01-01T00:00:00Z) is the default wall time at which
// every table's event 0 (give or take the table's offset) happens (the
// epoch parameter moves it). It is fixed rather than "process start" so that
// separate processes agree on the stream without sharing any state.
const epochUnixMilli = 1577836800000

// ticksPerSecond is the number of TSO units in one second: milliseconds
// shifted past the 18 logical bits. Placing events on this fine grid lets
// several events share a millisecond, distinguished by the logical part.
const ticksPerSecond = 1000 << 18

// Column names of generated rows.
const (
	ColID      = "id"
	ColSeq     = "seq"
	ColPayload = "payload"
)

// payloadAlphabet holds 64 characters that need no escaping in JSON, so that
// a payload's encoded form is predictable.
const payloadAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// Generator is the pure function behind datagen: the k-th event of a table
// and its commit ts depend only on the configuration, the table and k. It is
// safe for concurrent use.
type Generator struct {
	cfg Config
	// Event k of table t commits at bases[t-1] + floor(k*stepP/stepQ): a
	// linear map, so ts -> k is a division.
	stepP, stepQ uint64
	bases        []model.Ts
	names        []model.TableName
	seedHash     uint64
}

// NewGenerator validates cfg and precomputes per-table state.
func NewGenerator(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := uint64(ticksPerSecond) * cfg.RateDen
	q := cfg.RateNum
	if g := gcd(p, q); g > 1 {
		p, q = p/g, q/g
	}
	g := &Generator{
		cfg:      cfg,
		stepP:    p,
		stepQ:    q,
		bases:    make([]model.Ts, cfg.Tables),
		names:    make([]model.TableName, cfg.Tables),
		seedHash: mix64(cfg.Seed ^ 0x9e3779b97f4a7c15),
	}
	epoch := model.TsFromTime(time.UnixMilli(cfg.EpochMs))
	// Spread tables within one event interval so that tables do not all
	// commit at the same instants, as they would not in a real database.
	spread := max(p/q, 1)
	for i := range cfg.Tables {
		id := model.TableID(i + 1)
		g.bases[i] = epoch + mix64(g.seedHash^uint64(id)*0xd6e8feb86659fd93)%spread
		g.names[i] = model.TableName{ID: id, Schema: cfg.Schema, Table: fmt.Sprintf("t%04d", id)}
	}
	return g, nil
}

// Config is the generator's configuration.
func (g *Generator) Config() Config { return g.cfg }

// Tables lists every table, IDs 1..N in order. The slice is a copy.
func (g *Generator) Tables() []model.TableName {
	return append([]model.TableName(nil), g.names...)
}

// Table returns the table with the given ID.
func (g *Generator) Table(id model.TableID) (model.TableName, bool) {
	if id < 1 || id > model.TableID(len(g.names)) {
		return model.TableName{}, false
	}
	return g.names[id-1], true
}

// CommitTs is the commit ts of event k of a table. It is strictly increasing
// in k. An unknown table or a k past the representable range yields
// math.MaxUint64.
func (g *Generator) CommitTs(table model.TableID, k uint64) model.Ts {
	if table < 1 || table > model.TableID(len(g.bases)) {
		return math.MaxUint64
	}
	off, ok := mulDiv(k, g.stepP, g.stepQ)
	base := g.bases[table-1]
	if !ok || off > math.MaxUint64-base {
		return math.MaxUint64
	}
	return base + off
}

// FirstAfter is the index of the first event of a table with commit ts > ts,
// computed in O(1) by inverting CommitTs.
func (g *Generator) FirstAfter(table model.TableID, ts model.Ts) uint64 {
	if table < 1 || table > model.TableID(len(g.bases)) {
		return math.MaxUint64
	}
	base := g.bases[table-1]
	if ts < base {
		return 0
	}
	// Smallest k with floor(k*P/Q) >= d+1, i.e. k >= (d+1)*Q/P.
	d := ts - base
	if d == math.MaxUint64 {
		return math.MaxUint64
	}
	k, ok := mulDivCeil(d+1, g.stepQ, g.stepP)
	if !ok {
		return math.MaxUint64
	}
	return k
}

// Count is the number of events of a table with afterTs < commit ts <= uptoTs.
func (g *Generator) Count(table model.TableID, afterTs, uptoTs model.Ts) uint64 {
	if uptoTs <= afterTs {
		return 0
	}
	return g.FirstAfter(table, uptoTs) - g.FirstAfter(table, afterTs)
}

// IndexOf returns k such that event k of the table commits exactly at ts.
func (g *Generator) IndexOf(table model.TableID, ts model.Ts) (uint64, bool) {
	if ts == 0 {
		return 0, false
	}
	k := g.FirstAfter(table, ts-1)
	if k == math.MaxUint64 || g.CommitTs(table, k) != ts {
		return 0, false
	}
	return k, true
}

// parts derives the random choices of event k: its key, its op and the seed
// of its payload.
func (g *Generator) parts(table model.TableID, k uint64) (keyIdx uint64, op model.Op, payloadSeed uint64) {
	h := mix64(mix64(g.seedHash^uint64(table)) ^ k)
	return mix64(h+0x632be59bd9b4e019) % g.cfg.Keys, g.op(mix64(h + 0x8cb92ba72f3d8dd7)), mix64(h + 0x3c6ef372fe94f82a)
}

// KeyIndex is the key of event k of a table as a number in [0, keys).
func (g *Generator) KeyIndex(table model.TableID, k uint64) uint64 {
	keyIdx, _, _ := g.parts(table, k)
	return keyIdx
}

// Event builds event k of a table. The table must exist.
func (g *Generator) Event(table model.TableID, k uint64) model.LegacyRow {
	keyIdx, op, seed := g.parts(table, k)
	cols := make(map[string]any, 3)
	cols[ColID] = int64(keyIdx)
	cols[ColSeq] = k
	// A deleted row carries only its identity, like the old value TiCDC
	// sends for a delete.
	if op != model.OpDelete {
		cols[ColPayload] = string(g.appendPayload(make([]byte, 0, g.cfg.RowSize), seed))
	}
	return model.LegacyRow{
		Table:    g.names[table-1],
		Key:      strconv.FormatUint(keyIdx, 10),
		Op:       op,
		CommitTs: g.CommitTs(table, k),
		Columns:  cols,
	}
}

// AppendJSON appends exactly what encoding/json produces for Event(table, k)
// (without a newline), without building the row. The verifier compares sink
// lines against it byte for byte, which is much cheaper than decoding them.
// The table must exist.
func (g *Generator) AppendJSON(dst []byte, table model.TableID, k uint64) []byte {
	keyIdx, op, seed := g.parts(table, k)
	name := g.names[table-1]
	// Schema and table names and payloads are drawn from characters JSON
	// never escapes, so they are copied as they are.
	dst = append(dst, `{"table":{"id":`...)
	dst = strconv.AppendInt(dst, name.ID, 10)
	dst = append(dst, `,"schema":"`...)
	dst = append(dst, name.Schema...)
	dst = append(dst, `","table":"`...)
	dst = append(dst, name.Table...)
	dst = append(dst, `"},"key":"`...)
	dst = strconv.AppendUint(dst, keyIdx, 10)
	dst = append(dst, `","op":"`...)
	dst = append(dst, op...)
	dst = append(dst, `","commit_ts":`...)
	dst = strconv.AppendUint(dst, g.CommitTs(table, k), 10)
	// encoding/json sorts map keys: id, payload, seq.
	dst = append(dst, `,"columns":{"id":`...)
	dst = strconv.AppendUint(dst, keyIdx, 10)
	if op != model.OpDelete {
		dst = append(dst, `,"payload":"`...)
		dst = g.appendPayload(dst, seed)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, k, 10)
	return append(dst, "}}"...)
}

// EventAt builds the event of a table that commits exactly at ts, if any.
func (g *Generator) EventAt(table model.TableID, ts model.Ts) (model.LegacyRow, bool) {
	if _, ok := g.Table(table); !ok {
		return model.LegacyRow{}, false
	}
	k, ok := g.IndexOf(table, ts)
	if !ok {
		return model.LegacyRow{}, false
	}
	return g.Event(table, k), true
}

// Events calls fn, in commit ts order, for every event of a table with
// afterTs < commit ts <= uptoTs, until fn returns false. An unknown table has
// no events.
func (g *Generator) Events(table model.TableID, afterTs, uptoTs model.Ts, fn func(model.LegacyRow) bool) {
	if _, ok := g.Table(table); !ok || uptoTs <= afterTs {
		return
	}
	for k := g.FirstAfter(table, afterTs); g.CommitTs(table, k) <= uptoTs; k++ {
		if !fn(g.Event(table, k)) {
			return
		}
	}
}

func (g *Generator) op(h uint64) model.Op {
	m := g.cfg.Mix
	r := h % (m[0] + m[1] + m[2])
	switch {
	case r < m[0]:
		return model.OpInsert
	case r < m[0]+m[1]:
		return model.OpUpdate
	default:
		return model.OpDelete
	}
}

func (g *Generator) appendPayload(dst []byte, h uint64) []byte {
	return appendPayload(dst, g.cfg.RowSize, h)
}

// appendPayload appends n characters of payloadAlphabet drawn from h.
func appendPayload(dst []byte, n int, h uint64) []byte {
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	buf := dst[start:]
	for i := 0; i < len(buf); {
		h = mix64(h + 0x9e3779b97f4a7c15)
		for j := 0; j < 10 && i < len(buf); j, i = j+1, i+1 {
			buf[i] = payloadAlphabet[h&63]
			h >>= 6
		}
	}
	return dst
}

// mix64 is the splitmix64 finaliser: a cheap bijection with good avalanche,
// enough to make keys and ops look random while staying reproducible.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// mulDiv is floor(a*b/c) with a 128-bit intermediate; ok is false when the
// result does not fit in 64 bits.
func mulDiv(a, b, c uint64) (uint64, bool) {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, c)
	return q, true
}

// mulDivCeil is ceil(a*b/c) with a 128-bit intermediate.
func mulDivCeil(a, b, c uint64) (uint64, bool) {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return 0, false
	}
	q, r := bits.Div64(hi, lo, c)
	if r != 0 {
		if q == math.MaxUint64 {
			return 0, false
		}
		q++
	}
	return q, true
}
