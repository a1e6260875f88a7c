package tidb

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/pingcap/tidb/pkg/kv"
	timodel "github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/tablecodec"
	"github.com/pingcap/tidb/pkg/types"
	"github.com/pingcap/tidb/pkg/util/chunk"
	"github.com/pingcap/tidb/pkg/util/rowcodec"

	"github.com/raftcdc/raftcdc/model"
)

// A row's key and value are decoded with TiDB's own codec: the key by
// tablecodec (t{id}_r{handle}), the value by rowcodec (format v2) or
// tablecodec (format v1, rows written before TiDB 4.0 or with the new
// format turned off). Columns a row does not carry come from the key (an
// integer or clustered primary key) or from the column's original default
// (rows written before ADD COLUMN). Values are then put into model.Value's
// canonical forms.

// decCol is one replicated column of a table version.
type decCol struct {
	id       int64
	ft       *types.FieldType
	typ      model.ColumnType
	pkHandle bool
	hasDef   bool
	def      model.Value
}

// rowDecoder decodes rows of one table version. It is not safe for
// concurrent use (the row codec decoder keeps buffers).
type rowDecoder struct {
	schema     *model.TableSchema
	cols       []decCol
	fts        map[int64]*types.FieldType
	v2         *rowcodec.ChunkDecoder
	chk        *chunk.Chunk // v2's one row
	missing    []bool       // v2: columns neither the row nor its key holds
	handleIDs  []int64      // clustered primary key columns (common handle)
	pkIsHandle bool
	scratch    map[int64]types.Datum
	// Images and row changes are cut from slabs: one allocation for many
	// rows instead of two per row. A slab lives while any row cut from it
	// does; rows of one table travel together, and the slab's size bounds
	// what a straggler keeps alive.
	imageSlab []model.Value
	rcSlab    []model.RowChange
	text      textSlab
}

const (
	// imageSlabBytes is the size of an image slab (at least one image):
	// a Go size class, so that little of it is rounding.
	imageSlabBytes = 8 << 10
	rcSlabRows     = 16 // 1,280 bytes, a size class too
)

// newImage is a zeroed image of the decoder's columns, with no room to
// grow into the next row's.
func (d *rowDecoder) newImage() []model.Value {
	n := len(d.cols)
	if len(d.imageSlab) < n {
		rows := max(1, imageSlabBytes/(n*int(unsafe.Sizeof(model.Value{}))))
		d.imageSlab = make([]model.Value, n*rows)
	}
	out := d.imageSlab[:n:n]
	d.imageSlab = d.imageSlab[n:]
	return out
}

func (d *rowDecoder) newRowChange() *model.RowChange {
	if len(d.rcSlab) == 0 {
		d.rcSlab = make([]model.RowChange, rcSlabRows)
	}
	rc := &d.rcSlab[0]
	d.rcSlab = d.rcSlab[1:]
	return rc
}

func newRowDecoder(info *timodel.TableInfo, schema *model.TableSchema) (*rowDecoder, error) {
	d := &rowDecoder{schema: schema, fts: map[int64]*types.FieldType{}, pkIsHandle: info.PKIsHandle, scratch: map[int64]types.Datum{}}
	var reqCols []rowcodec.ColInfo
	for _, c := range info.Columns {
		if !replicated(c) {
			continue
		}
		i := schema.ColumnIndex(c.Name.O)
		if i < 0 {
			return nil, fmt.Errorf("column %s is not in the schema", c.Name.O)
		}
		dc := decCol{id: c.ID, ft: &c.FieldType, typ: schema.Columns[i].Type,
			pkHandle: info.PKIsHandle && mysql.HasPriKeyFlag(c.GetFlag())}
		if c.OriginDefaultValue != nil {
			v, err := defaultValue(c, dc.typ)
			if err != nil {
				return nil, fmt.Errorf("column %s: original default %v: %w", c.Name.O, c.OriginDefaultValue, err)
			}
			dc.def, dc.hasDef = v, true
		}
		d.cols = append(d.cols, dc)
		d.fts[c.ID] = &c.FieldType
		reqCols = append(reqCols, rowcodec.ColInfo{ID: c.ID, IsPKHandle: dc.pkHandle, Ft: &c.FieldType})
	}
	if len(d.cols) != len(schema.Columns) {
		return nil, fmt.Errorf("table %s: %d decodable columns for %d in the schema", schema.Table, len(d.cols), len(schema.Columns))
	}
	if info.IsCommonHandle {
		if pk := info.GetPrimaryKey(); pk != nil {
			for _, ic := range pk.Columns {
				d.handleIDs = append(d.handleIDs, info.Columns[ic.Offset].ID)
			}
		}
	}
	// The v2 decoder appends straight into a one-row chunk: no datum map,
	// no string allocated per column (the text is copied once, into the
	// Value). The handle columns let it fill an integer or clustered
	// primary key from the row's key; a table with neither has its
	// _tidb_rowid there, which no replicated column is.
	handleCols := d.handleIDs
	fts := make([]*types.FieldType, len(d.cols))
	for i := range d.cols {
		fts[i] = d.cols[i].ft
		if d.cols[i].pkHandle {
			handleCols = []int64{d.cols[i].id}
		}
	}
	if len(handleCols) == 0 {
		handleCols = []int64{timodel.ExtraHandleID}
	}
	d.missing = make([]bool, len(d.cols))
	d.v2 = rowcodec.NewChunkDecoder(reqCols, handleCols, func(i int, chk *chunk.Chunk) error {
		// Not in the row, not in the key: the column was added after the
		// row was written; image() puts its original default.
		d.missing[i] = true
		chk.AppendNull(i)
		return nil
	}, time.UTC)
	d.chk = chunk.NewChunkWithCapacity(fts, 1)
	return d, nil
}

func defaultValue(c *timodel.ColumnInfo, t model.ColumnType) (model.Value, error) {
	var d types.Datum
	switch v := c.OriginDefaultValue.(type) {
	case string:
		if c.GetType() == mysql.TypeBit && len(c.OriginDefaultValueBit) > 0 {
			d = types.NewBinaryLiteralDatum(c.OriginDefaultValueBit)
		} else {
			d = types.NewStringDatum(v)
		}
	default:
		d = types.NewDatum(v)
	}
	conv, err := d.ConvertTo(types.StrictContext, &c.FieldType)
	if err != nil {
		return model.Value{}, err
	}
	return datumValue(conv, t, nil)
}

// imageV2 decodes a row value in format v2 into values aligned with the
// schema.
func (d *rowDecoder) imageV2(value []byte, handle kv.Handle) ([]model.Value, error) {
	d.chk.Reset()
	clear(d.missing)
	if err := d.v2.DecodeToChunk(value, handle, d.chk); err != nil {
		return nil, fmt.Errorf("decode row of %s: %w", d.schema.Table, err)
	}
	row := d.chk.GetRow(0)
	out := d.newImage()
	for i := range d.cols {
		c := &d.cols[i]
		switch {
		case d.missing[i] && c.hasDef:
			out[i] = c.def
		case row.IsNull(i):
			out[i] = model.Null()
		default:
			var dt types.Datum
			row.DatumWithBuffer(i, c.ft, &dt)
			// The chunk is reused: text is copied out of it.
			v, err := datumValue(dt, c.typ, &d.text)
			if err != nil {
				return nil, fmt.Errorf("table %s column %s: %w", d.schema.Table, d.schema.Columns[i].Name, err)
			}
			out[i] = v
		}
	}
	return out, nil
}

// image decodes a row value into values aligned with the schema.
func (d *rowDecoder) image(value []byte, handle kv.Handle) ([]model.Value, error) {
	if len(value) > 0 && rowcodec.IsNewFormat(value) {
		return d.imageV2(value, handle)
	}
	clear(d.scratch)
	var err error
	if len(value) > 0 {
		_, err = tablecodec.DecodeRowWithMap(value, d.fts, time.UTC, d.scratch)
	}
	if err != nil {
		return nil, fmt.Errorf("decode row of %s: %w", d.schema.Table, err)
	}
	if len(d.handleIDs) > 0 {
		missing := false
		for _, id := range d.handleIDs {
			if _, ok := d.scratch[id]; !ok {
				missing = true
			}
		}
		if missing {
			if _, err := tablecodec.DecodeHandleToDatumMap(handle, d.handleIDs, d.fts, time.UTC, d.scratch); err != nil {
				return nil, fmt.Errorf("decode clustered key of %s: %w", d.schema.Table, err)
			}
		}
	}
	out := d.newImage()
	for i := range d.cols {
		c := &d.cols[i]
		dt, ok := d.scratch[c.id]
		switch {
		case ok:
			v, err := datumValue(dt, c.typ, &d.text)
			if err != nil {
				return nil, fmt.Errorf("table %s column %s: %w", d.schema.Table, d.schema.Columns[i].Name, err)
			}
			out[i] = v
		case c.pkHandle:
			out[i] = handleValue(handle, c.typ)
		case c.hasDef:
			out[i] = c.def
		default:
			out[i] = model.Null()
		}
	}
	return out, nil
}

// keyImage is the image of a row known only by its key: the handle
// columns set, every other column missing (a delete without old value).
func (d *rowDecoder) keyImage(handle kv.Handle) ([]model.Value, error) {
	out := d.newImage()
	if len(d.handleIDs) > 0 {
		clear(d.scratch)
		if _, err := tablecodec.DecodeHandleToDatumMap(handle, d.handleIDs, d.fts, time.UTC, d.scratch); err != nil {
			return nil, fmt.Errorf("decode clustered key of %s: %w", d.schema.Table, err)
		}
	}
	for i := range d.cols {
		c := &d.cols[i]
		if c.pkHandle {
			out[i] = handleValue(handle, c.typ)
		} else if dt, ok := d.scratch[c.id]; ok && len(d.handleIDs) > 0 {
			v, err := datumValue(dt, c.typ, &d.text)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
	}
	return out, nil
}

func handleValue(h kv.Handle, t model.ColumnType) model.Value {
	if t.Unsigned {
		return model.UintValue(uint64(h.IntValue()))
	}
	return model.IntValue(h.IntValue())
}

// textSlab cuts the text of decoded values from shared blocks: one
// allocation for the strings of many rows instead of one per text column.
// Like the image slab, a block lives while any string cut from it does;
// long strings get their own allocation so that a straggler keeps little
// else alive. A nil slab allocates every string.
type textSlab struct{ buf []byte }

const (
	textSlabBytes = 4 << 10 // a size class
	textSlabMax   = 256     // longer strings are allocated alone
)

func (s *textSlab) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s == nil || len(b) > textSlabMax {
		return string(b)
	}
	if cap(s.buf)-len(s.buf) < len(b) {
		s.buf = make([]byte, 0, textSlabBytes)
	}
	start := len(s.buf)
	s.buf = append(s.buf, b...)
	// The block is only ever appended to: the bytes under this string
	// never change.
	return unsafe.String(&s.buf[start], len(b))
}

// datumValue puts a TiDB datum into model.Value's canonical form for the
// column type, cutting text from slab.
// Text and bytes are copied: a datum's bytes point into a row value or a
// reused chunk.
func datumValue(d types.Datum, t model.ColumnType, slab *textSlab) (model.Value, error) {
	if d.IsNull() {
		return model.Null(), nil
	}
	switch {
	case t.IsInteger():
		if t.Unsigned {
			if d.Kind() == types.KindInt64 {
				return model.UintValue(uint64(d.GetInt64())), nil
			}
			return model.UintValue(d.GetUint64()), nil
		}
		if d.Kind() == types.KindUint64 {
			return model.IntValue(int64(d.GetUint64())), nil
		}
		return model.IntValue(d.GetInt64()), nil
	}
	switch t.Kind {
	case model.TypeYear:
		return model.IntValue(d.GetInt64()), nil
	case model.TypeBit:
		switch d.Kind() {
		case types.KindUint64:
			return model.UintValue(d.GetUint64()), nil
		case types.KindInt64:
			return model.UintValue(uint64(d.GetInt64())), nil
		}
		u, err := d.GetBinaryLiteral().ToInt(types.StrictContext)
		if err != nil {
			return model.Value{}, err
		}
		return model.UintValue(u), nil
	case model.TypeFloat:
		if d.Kind() == types.KindFloat32 {
			return model.FloatValue(float64(d.GetFloat32())), nil
		}
		return model.FloatValue(float64(float32(d.GetFloat64()))), nil
	case model.TypeDouble:
		return model.FloatValue(d.GetFloat64()), nil
	case model.TypeDecimal:
		var r types.MyDecimal
		if err := d.GetMysqlDecimal().Round(&r, t.Scale, types.ModeHalfUp); err != nil {
			return model.Value{}, err
		}
		b := r.ToString()
		if len(b) > 0 && b[0] == '-' && len(bytes.Trim(b[1:], "0.")) == 0 {
			b = b[1:] // -0.00 is 0.00
		}
		return model.StringValue(slab.str(b)), nil
	case model.TypeChar:
		return model.StringValue(slab.str(bytes.TrimRight(d.GetBytes(), " "))), nil
	case model.TypeVarchar, model.TypeTinyText, model.TypeText, model.TypeMediumText, model.TypeLongText:
		return model.StringValue(slab.str(d.GetBytes())), nil
	case model.TypeBinary:
		b := d.GetBytes()
		if len(b) < t.Length {
			p := make([]byte, t.Length)
			copy(p, b)
			return model.BytesValue(p), nil
		}
		return model.BytesValue(append([]byte(nil), b...)), nil
	case model.TypeVarbinary, model.TypeTinyBlob, model.TypeBlob, model.TypeMediumBlob, model.TypeLongBlob:
		return model.BytesValue(append([]byte{}, d.GetBytes()...)), nil
	case model.TypeDate, model.TypeDatetime, model.TypeTimestamp:
		tm := d.GetMysqlTime()
		var buf [26]byte // the longest: 9999-12-31 23:59:59.999999
		b := buf[:0]
		b = appendPadded(b, tm.Year(), 4)
		b = append(b, '-')
		b = appendPadded(b, tm.Month(), 2)
		b = append(b, '-')
		b = appendPadded(b, tm.Day(), 2)
		if t.Kind != model.TypeDate {
			b = append(b, ' ')
			b = appendPadded(b, tm.Hour(), 2)
			b = append(b, ':')
			b = appendPadded(b, tm.Minute(), 2)
			b = append(b, ':')
			b = appendPadded(b, tm.Second(), 2)
			if t.Fsp > 0 {
				b = append(b, '.')
				keep := len(b) + t.Fsp
				b = appendPadded(b, tm.Microsecond(), 6)[:keep]
			}
		}
		return model.StringValue(slab.str(b)), nil
	case model.TypeTime:
		dur := d.GetMysqlDuration().Duration
		sign := ""
		if dur < 0 {
			sign, dur = "-", -dur
		}
		h := dur / time.Hour
		m := (dur % time.Hour) / time.Minute
		sec := (dur % time.Minute) / time.Second
		micro := int((dur % time.Second) / time.Microsecond)
		return model.StringValue(fmt.Sprintf("%s%02d:%02d:%02d", sign, h, m, sec) + model.FormatFsp(micro, t.Fsp)), nil
	case model.TypeEnum:
		if d.Kind() == types.KindMysqlEnum {
			return model.StringValue(strings.Clone(d.GetMysqlEnum().Name)), nil
		}
		return model.StringValue(string(d.GetBytes())), nil
	case model.TypeSet:
		if d.Kind() == types.KindMysqlSet {
			return model.StringValue(strings.Clone(d.GetMysqlSet().Name)), nil
		}
		return model.StringValue(string(d.GetBytes())), nil
	case model.TypeJSON:
		return model.StringValue(d.GetMysqlJSON().String()), nil
	}
	return model.Value{}, fmt.Errorf("no decoding for type %s", t)
}

// appendPadded appends v in decimal with at least width digits.
func appendPadded(b []byte, v, width int) []byte {
	var tmp [20]byte
	n := strconv.AppendInt(tmp[:0], int64(v), 10)
	for i := len(n); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, n...)
}

// decodeRow turns one committed change of a record key into a row change
// against schema (the table's version at commit ts − 1).
func (d *rowDecoder) decodeRow(r *rawRow) (*model.RowChange, error) {
	_, handle, err := tablecodec.DecodeRecordKey(r.key)
	if err != nil {
		return nil, fmt.Errorf("decode key %x of %s: %w", r.key, d.schema.Table, err)
	}
	rc := d.newRowChange()
	rc.Schema, rc.StartTs, rc.CommitTs = d.schema, r.startTs, r.commitTs
	if r.delete {
		rc.Op = model.OpDelete
		if len(r.oldValue) > 0 {
			rc.Before, err = d.image(r.oldValue, handle)
		} else {
			rc.Before, err = d.keyImage(handle)
		}
		return rc, err
	}
	rc.After, err = d.image(r.value, handle)
	if err != nil {
		return nil, err
	}
	rc.Op = model.OpInsert
	if len(r.oldValue) > 0 {
		rc.Op = model.OpUpdate
		rc.Before, err = d.image(r.oldValue, handle)
	}
	return rc, err
}
