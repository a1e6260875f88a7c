package tidbfake

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pingcap/tidb/pkg/kv"
	"github.com/pingcap/tidb/pkg/meta/model"
	pmodel "github.com/pingcap/tidb/pkg/parser/model"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/tablecodec"
	"github.com/pingcap/tidb/pkg/types"
	"github.com/pingcap/tidb/pkg/util/codec"
	"github.com/pingcap/tidb/pkg/util/rowcodec"
)

// Rows are written the way TiDB writes them: the key is
// t{physical table ID}_r{handle} (an integer handle, or a clustered
// primary key encoded by TiDB's codec), the value is the row in TiDB's row
// format v2 (or v1, see SetRowFormatV1) with every column but an integer
// handle column.

// SetRowFormatV1 makes later writes use TiDB's old row format (v1), as a
// cluster upgraded from before TiDB 4.0 has; false goes back to v2.
func (c *Cluster) SetRowFormatV1(v1 bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rowV1 = v1
}

// datums converts Go values (in public column order) to the columns' types
// with TiDB's own conversion.
func datums(info *model.TableInfo, values []any) (map[string]types.Datum, error) {
	cols := publicColumns(info)
	if len(values) != len(cols) {
		return nil, fmt.Errorf("table %s has %d columns, got %d values", info.Name.O, len(cols), len(values))
	}
	out := make(map[string]types.Datum, len(cols))
	for i, col := range cols {
		d := types.NewDatum(values[i])
		if d.IsNull() {
			if mysql.HasNotNullFlag(col.GetFlag()) {
				return nil, fmt.Errorf("column %s.%s is NOT NULL", info.Name.O, col.Name.O)
			}
			out[col.Name.L] = d
			continue
		}
		v, err := d.ConvertTo(types.StrictContext, &col.FieldType)
		if err != nil {
			return nil, fmt.Errorf("column %s.%s: %w", info.Name.O, col.Name.O, err)
		}
		out[col.Name.L] = v
	}
	return out, nil
}

// handleOf is the row's handle and a string identifying the row for the
// fake's bookkeeping (the primary key, else the first unique key, else the
// whole row).
func (c *Cluster) handleOf(t *fakeTable, info *model.TableInfo, row map[string]types.Datum, alloc bool) (kv.Handle, error) {
	if info.PKIsHandle {
		for _, col := range info.Columns {
			if mysql.HasPriKeyFlag(col.GetFlag()) {
				d := row[col.Name.L]
				if d.Kind() == types.KindUint64 {
					return kv.IntHandle(int64(d.GetUint64())), nil
				}
				return kv.IntHandle(d.GetInt64()), nil
			}
		}
	}
	ident, err := identity(info, row)
	if err != nil {
		return nil, err
	}
	if info.IsCommonHandle {
		enc, err := codec.EncodeKey(time.UTC, nil, primaryDatums(info, row)...)
		if err != nil {
			return nil, err
		}
		return kv.NewCommonHandle(enc)
	}
	if id, ok := t.rowIDs[string(ident)]; ok {
		return kv.IntHandle(id), nil
	}
	if !alloc {
		return nil, fmt.Errorf("no row of %s has that key", info.Name.O)
	}
	t.nextRowID++
	t.rowIDs[string(ident)] = t.nextRowID
	return kv.IntHandle(t.nextRowID), nil
}

func keyIndex(info *model.TableInfo) *model.IndexInfo {
	for _, ix := range info.Indices {
		if ix.Primary {
			return ix
		}
	}
	for _, ix := range info.Indices {
		if ix.Unique {
			return ix
		}
	}
	return nil
}

func primaryDatums(info *model.TableInfo, row map[string]types.Datum) []types.Datum {
	ix := keyIndex(info)
	var out []types.Datum
	for _, ic := range ix.Columns {
		out = append(out, row[ic.Name.L])
	}
	return out
}

func identity(info *model.TableInfo, row map[string]types.Datum) ([]byte, error) {
	var ds []types.Datum
	if ix := keyIndex(info); ix != nil {
		ds = primaryDatums(info, row)
	} else {
		for _, col := range publicColumns(info) {
			ds = append(ds, row[col.Name.L])
		}
	}
	return codec.EncodeKey(time.UTC, nil, ds...)
}

// physicalID routes a row of a partitioned table to its partition.
func physicalID(info *model.TableInfo, row map[string]types.Datum) (int64, error) {
	p := info.Partition
	if p == nil {
		return info.ID, nil
	}
	col := model.FindColumnInfo(info.Columns, trimQuotes(p.Expr))
	if col == nil {
		return 0, fmt.Errorf("partition expression %s is not a column", p.Expr)
	}
	d := row[col.Name.L]
	v := d.GetInt64()
	switch p.Type {
	case pmodel.PartitionTypeHash:
		if v < 0 {
			v = -v
		}
		return p.Definitions[v%int64(len(p.Definitions))].ID, nil
	case pmodel.PartitionTypeRange:
		for _, def := range p.Definitions {
			if def.LessThan[0] == "MAXVALUE" {
				return def.ID, nil
			}
			bound := types.NewStringDatum(def.LessThan[0])
			b, err := bound.ConvertTo(types.StrictContext, &col.FieldType)
			if err != nil {
				return 0, err
			}
			if v < b.GetInt64() {
				return def.ID, nil
			}
		}
		return 0, fmt.Errorf("table %s has no partition for value %d", info.Name.O, v)
	}
	return 0, fmt.Errorf("partition type %s", p.Type)
}

func trimQuotes(s string) string {
	if len(s) >= 2 && s[0] == '`' && s[len(s)-1] == '`' {
		return s[1 : len(s)-1]
	}
	return s
}

// encodeRowLocked encodes a row with TiDB's codec.
func (c *Cluster) encodeRowLocked(t *fakeTable, info *model.TableInfo, row map[string]types.Datum, physID int64, handle kv.Handle) (key, value []byte, err error) {
	var ids []int64
	var vals []types.Datum
	for _, col := range publicColumns(info) {
		if info.PKIsHandle && mysql.HasPriKeyFlag(col.GetFlag()) {
			continue
		}
		d, ok := row[col.Name.L]
		if !ok {
			d.SetNull()
		}
		ids = append(ids, col.ID)
		vals = append(vals, d)
	}
	value, err = tablecodec.EncodeRow(time.UTC, vals, ids, nil, nil, nil, &rowcodec.Encoder{Enable: !c.rowV1})
	if err != nil {
		return nil, nil, err
	}
	return tablecodec.EncodeRowKeyWithHandle(physID, handle), value, nil
}

// Txn is a transaction of the fake TiDB: rows are buffered and written by
// Commit (a two-phase commit: PREWRITE then COMMIT, as the CDC observers
// see them) or left locked by Prewrite.
type Txn struct {
	c       *Cluster
	startTs uint64
	muts    []mutation
	index   map[string]int
	err     error
}

// Begin starts a transaction at a fresh start ts.
func (c *Cluster) Begin() *Txn {
	return &Txn{c: c, startTs: c.Now(), index: map[string]int{}}
}

// StartTs is the transaction's start ts.
func (t *Txn) StartTs() uint64 { return t.startTs }

// Err is the first error a write met.
func (t *Txn) Err() error { return t.err }

func (t *Txn) put(m mutation) {
	if i, ok := t.index[string(m.key)]; ok {
		t.muts[i] = m
		return
	}
	t.index[string(m.key)] = len(t.muts)
	t.muts = append(t.muts, m)
}

// exists reports whether key has a value now, counting this
// transaction's own writes.
func (t *Txn) existsLocked(key []byte) bool {
	if i, ok := t.index[string(key)]; ok {
		return !t.muts[i].del
	}
	e := t.c.mvcc.get(key)
	if e == nil {
		return false
	}
	_, ok := e.valueAt(^uint64(0))
	return ok
}

func (t *Txn) write(db, table string, values []any, op string) *Txn {
	if t.err != nil {
		return t
	}
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := c.cat.tableByName(db, table)
	if ft == nil {
		t.err = fmt.Errorf("%s %s.%s: no such table", op, db, table)
		return t
	}
	info := ft.info
	row, err := datums(info, values)
	if err != nil {
		t.err = fmt.Errorf("%s %s.%s: %w", op, db, table, err)
		return t
	}
	handle, err := c.handleOf(ft, info, row, op == "insert")
	if err != nil {
		t.err = fmt.Errorf("%s %s.%s: %w", op, db, table, err)
		return t
	}
	phys, err := physicalID(info, row)
	if err != nil {
		t.err = fmt.Errorf("%s %s.%s: %w", op, db, table, err)
		return t
	}
	key, value, err := c.encodeRowLocked(ft, info, row, phys, handle)
	if err != nil {
		t.err = fmt.Errorf("%s %s.%s: %w", op, db, table, err)
		return t
	}
	exists := t.existsLocked(key)
	switch {
	case op == "insert" && exists:
		t.err = fmt.Errorf("insert %s.%s: duplicate key %s", db, table, handle)
	case op != "insert" && !exists:
		t.err = fmt.Errorf("%s %s.%s: no row with key %s", op, db, table, handle)
	case op == "delete":
		t.put(mutation{key: key, del: true})
	default:
		t.put(mutation{key: key, value: value})
	}
	return t
}

// Insert adds a row (values in column order, converted by TiDB's rules).
func (t *Txn) Insert(db, table string, values ...any) *Txn {
	return t.write(db, table, values, "insert")
}

// Update replaces the row with the same key by values.
func (t *Txn) Update(db, table string, values ...any) *Txn {
	return t.write(db, table, values, "update")
}

// Delete removes the row with the key of values (the other columns do not
// matter, but must convert).
func (t *Txn) Delete(db, table string, values ...any) *Txn {
	return t.write(db, table, values, "delete")
}

// Commit writes the transaction and returns its commit ts.
func (t *Txn) Commit() (uint64, error) {
	if t.err != nil {
		return 0, t.err
	}
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commitLocked(t.muts, t.startTs)
}

// Pending is a transaction whose locks are held: the state of a TiDB that
// crashed between prewrite and commit, or is slow to commit.
type Pending struct {
	c       *Cluster
	startTs uint64
	keys    [][]byte
}

// Prewrite locks every row of the transaction with the given TTL and
// stops there. A lock holds back the resolved ts of its region until it
// is committed, rolled back, or resolved after its TTL.
func (t *Txn) Prewrite(ttl time.Duration) (*Pending, error) {
	if t.err != nil {
		return nil, t.err
	}
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.prewriteLocked(t.muts, t.startTs, ttl); err != nil {
		return nil, err
	}
	p := &Pending{c: c, startTs: t.startTs}
	for _, m := range t.muts {
		p.keys = append(p.keys, m.key)
	}
	return p, nil
}

// Keys are the locked keys; the first is the primary.
func (p *Pending) Keys() [][]byte { return p.keys }

// StartTs is the locked transaction's start ts.
func (p *Pending) StartTs() uint64 { return p.startTs }

// Commit commits every key still locked.
func (p *Pending) Commit() (uint64, error) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.mvcc.get(p.keys[0])
	if e == nil || e.lock == nil || e.lock.startTs != p.startTs {
		return 0, errors.New("the transaction's primary lock is gone (resolved or rolled back)")
	}
	commitTs := c.tsoLocked()
	for _, k := range p.keys {
		c.commitKeyLocked(k, p.startTs, commitTs)
	}
	return commitTs, nil
}

// CommitPrimary commits only the primary key and leaves the secondaries
// locked: a TiDB that crashed right after its commit point. Readers (and
// the CDC client's lock resolution) must commit the secondaries.
func (p *Pending) CommitPrimary() (uint64, error) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	commitTs := c.tsoLocked()
	if !c.commitKeyLocked(p.keys[0], p.startTs, commitTs) {
		return 0, errors.New("the transaction's primary lock is gone")
	}
	return commitTs, nil
}

// Rollback removes every lock.
func (p *Pending) Rollback() {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range p.keys {
		c.rollbackKeyLocked(k, p.startTs)
	}
}

// Locked reports whether any key of the transaction is still locked.
func (p *Pending) Locked() bool {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range p.keys {
		if e := c.mvcc.get(k); e != nil && e.lock != nil && e.lock.startTs == p.startTs {
			return true
		}
	}
	return false
}

// Row is one row of a table as TiDB's codec decodes it.
type Row struct {
	Key    []byte
	Values []types.Datum // in Columns order
}

// Strings renders the row's values with TiDB's datum formatting, NULL as
// "NULL": the form tests compare a downstream's rows with.
func (r Row) Strings() ([]string, error) {
	vals := make([]string, len(r.Values))
	for i, d := range r.Values {
		if d.IsNull() {
			vals[i] = "NULL"
			continue
		}
		s, err := d.ToString()
		if err != nil {
			return nil, err
		}
		vals[i] = s
	}
	return vals, nil
}

// Rows reads a table's rows at ts: its definition from the meta keys at ts
// (TiDB's meta reader), every physical table's record range at ts, each
// row decoded by TiDB's codec (an integer handle column from the key,
// columns added later from their original default). It is the expected
// downstream content once a changefeed's checkpoint reached ts.
func (c *Cluster) Rows(db, table string, ts uint64) ([]*model.ColumnInfo, []Row, error) {
	info, err := c.TableInfoAt(db, table, ts)
	if err != nil {
		return nil, nil, err
	}
	if info == nil {
		return nil, nil, nil
	}
	cols := publicColumns(info)
	fts := map[int64]*types.FieldType{}
	for _, col := range cols {
		fts[col.ID] = &col.FieldType
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Row
	for _, phys := range physicalIDs(info) {
		start, end := tableRecordRange(phys)
		var decErr error
		c.mvcc.ascend(start, end, func(e *entry) bool {
			v, ok := e.valueAt(ts)
			if !ok {
				return true
			}
			_, handle, err := tablecodec.DecodeRecordKey(e.key)
			if err != nil {
				decErr = err
				return false
			}
			m, err := tablecodec.DecodeRowToDatumMap(v, fts, time.UTC)
			if err != nil {
				decErr = fmt.Errorf("decode row %x: %w", e.key, err)
				return false
			}
			r := Row{Key: e.key, Values: make([]types.Datum, len(cols))}
			for i, col := range cols {
				d, ok := m[col.ID]
				switch {
				case ok:
				case info.PKIsHandle && mysql.HasPriKeyFlag(col.GetFlag()):
					if mysql.HasUnsignedFlag(col.GetFlag()) {
						d = types.NewUintDatum(uint64(handle.IntValue()))
					} else {
						d = types.NewIntDatum(handle.IntValue())
					}
				case col.OriginDefaultValue != nil:
					def := types.NewDatum(col.OriginDefaultValue)
					d, err = def.ConvertTo(types.StrictContext, &col.FieldType)
					if err != nil {
						decErr = err
						return false
					}
				default:
					d.SetNull()
				}
				r.Values[i] = d
			}
			out = append(out, r)
			return true
		})
		if decErr != nil {
			return nil, nil, decErr
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	return cols, out, nil
}
