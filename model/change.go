package model

import (
	"encoding/binary"
	"fmt"
	"hash"
	"unsafe"
)

// RowChange is one committed change of one row: the unit every source
// produces and every sink consumes.
type RowChange struct {
	// Schema is the table schema version the images are encoded against;
	// it also names the table (Schema.Table). Shared and immutable.
	Schema *TableSchema
	// StartTs identifies the upstream transaction; CommitTs orders it.
	StartTs  Ts
	CommitTs Ts
	Op       Op
	// Before and After are aligned with Schema.Columns. An insert has no
	// Before, a delete no After; an update has an After and, where the
	// upstream gives one, a Before (possibly only its key columns, the rest
	// ValueMissing).
	Before []Value
	After  []Value
	// SizeHint, when above zero, is ApproxSize as the source counted it
	// while building the images, so that sizing the row for the memory
	// quota need not walk every value again (4.7 % of a catch-up's CPU).
	// Whoever changes the images of a row that has one sets it to 0. An
	// int32 so that Snapshot fits beside it and the struct stays 96 bytes
	// (a size class): one row is far below 2 GiB (a spilled frame of many
	// rows is limited to 1 GiB).
	SizeHint int32
	// Snapshot marks an insert that a source read from a table's existing
	// rows (an initial snapshot, or the copy of a table added later)
	// rather than from a change committed upstream. Debezium calls these
	// reads (op "r"); other protocols write them as inserts. Incremental
	// changes, including TiKV's incremental scan, never set it.
	Snapshot bool
}

// HashContent writes what the change says — its op and both images, each
// value with its kind — into h, length-prefixed so that no two changes
// write the same bytes. Two deliveries of one change hash alike whatever
// protocol carried them; its commit ts and table are not included (callers
// that need them have them).
func (r *RowChange) HashContent(h hash.Hash) {
	var n [8]byte
	num := func(v uint64) {
		binary.BigEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	bytes := func(b []byte) {
		num(uint64(len(b)))
		h.Write(b)
	}
	bytes([]byte(r.Op))
	for _, img := range [][]Value{r.Before, r.After} {
		num(uint64(len(img)))
		for _, v := range img {
			h.Write([]byte{byte(v.Kind)})
			num(uint64(v.I))
			bytes([]byte(v.S))
			bytes(v.B)
		}
	}
}

// Table is the row's table.
func (r *RowChange) Table() TableName { return r.Schema.Table }

// SchemaVersion is the version of the schema the row is encoded against.
func (r *RowChange) SchemaVersion() uint64 { return r.Schema.Version }

// Image is the after image, or the before image of a delete: the values that
// identify the row's key now.
func (r *RowChange) Image() []Value {
	if r.Op == OpDelete {
		return r.Before
	}
	return r.After
}

// KeyChanged reports whether an update changes the handle key, which SQL
// sinks must apply as delete + insert.
func (r *RowChange) KeyChanged() bool {
	if r.Op != OpUpdate || r.Before == nil {
		return false
	}
	for _, i := range r.Schema.KeyColumns(r.Schema.HandleKey()) {
		b, a := r.Before[i], r.After[i]
		if b.IsMissing() || a.IsUnchanged() {
			continue
		}
		if !ValueEqual(r.Schema.Columns[i].Type, b, a) {
			return true
		}
	}
	return false
}

// ApproxSize is the memory a row holds, for the memory quota: the row, its
// image slices and every value's struct and data. It is an estimate; what
// matters is that it follows the real size closely enough for a quota to
// bound memory.
func (r *RowChange) ApproxSize() int {
	if r.SizeHint > 0 {
		return int(r.SizeHint)
	}
	n := int(unsafe.Sizeof(*r))
	for _, v := range r.Before {
		n += v.approxSize()
	}
	for _, v := range r.After {
		n += v.approxSize()
	}
	return n
}

// Validate checks that the images fit the schema; sources call it in tests
// and sinks may call it on input they did not produce.
func (r *RowChange) Validate() error {
	if r.Schema == nil {
		return fmt.Errorf("row at commit ts %d has no schema", r.CommitTs)
	}
	n := len(r.Schema.Columns)
	check := func(what string, img []Value) error {
		if img == nil {
			return nil
		}
		if len(img) != n {
			return fmt.Errorf("table %s row at %d: %s image has %d values, the schema version %d has %d columns", r.Schema.Table, r.CommitTs, what, len(img), r.Schema.Version, n)
		}
		for i, v := range img {
			c := r.Schema.Columns[i]
			switch {
			case v.Kind == ValueNull && !c.Nullable:
				return fmt.Errorf("table %s row at %d: %s column %s is NULL but NOT NULL", r.Schema.Table, r.CommitTs, what, c.Name)
			case v.HasData() && v.Kind != c.Type.ValueKind():
				return fmt.Errorf("table %s row at %d: %s column %s holds %s, type %s needs %s", r.Schema.Table, r.CommitTs, what, c.Name, v.Kind, c.Type, c.Type.ValueKind())
			}
		}
		return nil
	}
	if r.Snapshot && r.Op != OpInsert {
		return fmt.Errorf("table %s row at %d: a snapshot read must be an insert, not %q", r.Schema.Table, r.CommitTs, r.Op)
	}
	switch r.Op {
	case OpInsert:
		if r.After == nil || r.Before != nil {
			return fmt.Errorf("table %s insert at %d needs an after image only", r.Schema.Table, r.CommitTs)
		}
	case OpUpdate:
		if r.After == nil {
			return fmt.Errorf("table %s update at %d has no after image", r.Schema.Table, r.CommitTs)
		}
	case OpDelete:
		if r.Before == nil || r.After != nil {
			return fmt.Errorf("table %s delete at %d needs a before image only", r.Schema.Table, r.CommitTs)
		}
	default:
		return fmt.Errorf("table %s row at %d: unknown op %q", r.Schema.Table, r.CommitTs, r.Op)
	}
	if err := check("before", r.Before); err != nil {
		return err
	}
	return check("after", r.After)
}

// TxnKey identifies an upstream transaction: rows of one transaction share
// it from source to sink.
type TxnKey struct {
	CommitTs Ts
	StartTs  Ts
}

// Less orders transactions by commit ts, then start ts.
func (k TxnKey) Less(o TxnKey) bool {
	if k.CommitTs != o.CommitTs {
		return k.CommitTs < o.CommitTs
	}
	return k.StartTs < o.StartTs
}

// Txn is the rows of one upstream transaction. A source's transaction may
// span tables; a table sink receives only the rows of its own table, in the
// order the upstream wrote them.
type Txn struct {
	StartTs  Ts
	CommitTs Ts
	Rows     []*RowChange
}

// Key is the transaction's identity.
func (t *Txn) Key() TxnKey { return TxnKey{CommitTs: t.CommitTs, StartTs: t.StartTs} }

// ApproxSize sums the rows' sizes.
func (t *Txn) ApproxSize() int {
	n := 64
	for _, r := range t.Rows {
		n += r.ApproxSize()
	}
	return n
}
