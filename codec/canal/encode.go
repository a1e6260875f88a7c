// Package canal encodes and decodes canal-json messages exactly as TiCDC
// writes them, so that consumers built for TiCDC (Flink's canal-json
// format, canal adapters, TiCDC's own storage consumer) read raftcdc's
// output unchanged. Every sink that speaks canal-json (storage, Kafka) uses
// this one encoder.
//
// One message is one row change, one DDL or one watermark:
//
//	{"id":0,"database":"db","table":"t","pkNames":["id"],"isDdl":false,
//	 "type":"UPDATE","es":1639633141221,"ts":1639633142960,"sql":"",
//	 "sqlType":{"id":4,...},"mysqlType":{"id":"int",...},
//	 "data":[{"id":"2",...}],"old":[{"id":"2",...}],
//	 "_tidb":{"commitTs":429918007904436226}}
//
// Values are strings (or null): numbers in decimal, floats without an
// exponent, binary values as ISO-8859-1 text, enum values as their 1-based
// index and set values as their bitmask, everything else in the canonical
// text form of model.Value. "es" is the commit time in milliseconds, "ts"
// the time the message was built. "_tidb" is present only with the TiDB
// extension, which also enables watermark messages.
package canal

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/raftcdc/raftcdc/internal/jsonenc"
	"github.com/raftcdc/raftcdc/model"
)

// Options select TiCDC's canal-json variants; the zero value is TiCDC's
// default (no TiDB extension, full old image).
type Options struct {
	// EnableTiDBExtension adds "_tidb" (commitTs) to row and DDL messages
	// and makes EncodeCheckpoint produce TIDB_WATERMARK messages
	// (TiCDC's enable-tidb-extension).
	EnableTiDBExtension bool
	// OnlyOutputUpdatedColumns keeps only the changed columns in an
	// update's "old" (TiCDC's only-output-updated-columns).
	OnlyOutputUpdatedColumns bool
	// ContentCompatible writes canal's own form: mysqlType with the type's
	// parameters, and "old" with only the changed columns (TiCDC's
	// content-compatible).
	ContentCompatible bool
	// Now is the clock for the "ts" field; time.Now if nil. Tests set it to
	// make output byte-for-byte reproducible.
	Now func() time.Time
}

// WatermarkType is the "type" of a watermark message.
const WatermarkType = "TIDB_WATERMARK"

// Encoder turns changes into canal-json messages. It holds no state
// between calls and is safe for concurrent use.
type Encoder struct {
	opts Options
}

// NewEncoder returns an encoder with the given options.
func NewEncoder(opts Options) *Encoder {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Encoder{opts: opts}
}

// Options are the encoder's options.
func (e *Encoder) Options() Options { return e.opts }

// esMillis is the physical part of a TSO in milliseconds, canal's "es".
func esMillis(ts model.Ts) int64 { return int64(ts >> 18) }

// EncodeRow encodes one row change as a message.
func (e *Encoder) EncodeRow(r *model.RowChange) ([]byte, error) {
	return e.AppendRow(nil, r)
}

// AppendRow appends one row change's message to dst (without a
// terminator). On error dst is returned unchanged in length.
func (e *Encoder) AppendRow(dst []byte, r *model.RowChange) ([]byte, error) {
	start := len(dst)
	out, err := e.appendRow(dst, r)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

// LargeMessage describes a row sent in place of one too large for a
// message (TiCDC's large-message-handle-option): the images keep only the
// handle-key columns, and "_tidb" says so ("onlyHandleKey") and, with a
// claim check, where the full message was stored ("claimCheckLocation").
// Consumers need the marker whether or not the TiDB extension is on, so
// "_tidb" is written for such a row either way.
type LargeMessage struct {
	OnlyHandleKey      bool
	ClaimCheckLocation string
}

// AppendLargeRow appends a large row's stand-in message to dst: the row
// with only its handle-key columns, marked as lm says.
func (e *Encoder) AppendLargeRow(dst []byte, r *model.RowChange, lm LargeMessage) ([]byte, error) {
	if r == nil || r.Schema == nil {
		return dst, errors.New("canal-json: encode row: row has no schema")
	}
	lm.OnlyHandleKey = true
	keyOnly := *r
	keep := make([]bool, len(r.Schema.Columns))
	for _, i := range r.Schema.KeyColumns(r.Schema.HandleKey()) {
		if i >= 0 {
			keep[i] = true
		}
	}
	strip := func(img []model.Value) []model.Value {
		if img == nil {
			return nil
		}
		out := make([]model.Value, len(img))
		for i, v := range img {
			if i < len(keep) && keep[i] {
				out[i] = v
			}
		}
		return out
	}
	keyOnly.Before, keyOnly.After = strip(r.Before), strip(r.After)
	start := len(dst)
	out, err := e.appendRowWith(dst, &keyOnly, &lm)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

func (e *Encoder) appendRow(dst []byte, r *model.RowChange) ([]byte, error) {
	return e.appendRowWith(dst, r, nil)
}

func (e *Encoder) appendRowWith(dst []byte, r *model.RowChange, lm *LargeMessage) ([]byte, error) {
	if r == nil || r.Schema == nil {
		return dst, errors.New("canal-json: encode row: row has no schema")
	}
	s := r.Schema
	var typ string
	var data, old []model.Value
	switch r.Op {
	case model.OpInsert:
		typ, data = "INSERT", r.After
	case model.OpUpdate:
		typ, data, old = "UPDATE", r.After, r.Before
	case model.OpDelete:
		typ, data = "DELETE", r.Before
	default:
		return dst, fmt.Errorf("canal-json: encode row of %s at %d: unknown op %q", s.Table, r.CommitTs, r.Op)
	}
	if len(data) != len(s.Columns) || old != nil && len(old) != len(s.Columns) {
		return dst, fmt.Errorf("canal-json: encode row of %s at %d: image does not match the %d columns of schema version %d", s.Table, r.CommitTs, len(s.Columns), s.Version)
	}

	dst = append(dst, `{"id":0,"database":`...)
	dst = jsonenc.AppendStringHTML(dst, s.Table.Schema)
	dst = append(dst, `,"table":`...)
	dst = jsonenc.AppendStringHTML(dst, s.Table.Table)
	dst = append(dst, `,"pkNames":`...)
	dst = appendPKNames(dst, s)
	dst = append(dst, `,"isDdl":false,"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","es":`...)
	dst = strconv.AppendInt(dst, esMillis(r.CommitTs), 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, e.opts.Now().UnixMilli(), 10)
	dst = append(dst, `,"sql":"","sqlType":{`...)
	for i, c := range s.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonenc.AppendStringHTML(dst, c.Name)
		dst = append(dst, ':')
		v := data[i]
		if v.IsUnchanged() && old != nil {
			v = old[i]
		}
		dst = strconv.AppendInt(dst, int64(JavaType(c.Type, v)), 10)
	}
	dst = append(dst, `},"mysqlType":{`...)
	for i, c := range s.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonenc.AppendStringHTML(dst, c.Name)
		dst = append(dst, ':')
		dst = jsonenc.AppendStringHTML(dst, MySQLType(c.Type, e.opts.ContentCompatible))
	}
	dst = append(dst, `},"data":`...)
	var err error
	if dst, err = e.appendImage(dst, s, data, old, nil); err != nil {
		return dst, fmt.Errorf("canal-json: encode row of %s at %d: %w", s.Table, r.CommitTs, err)
	}
	dst = append(dst, `,"old":`...)
	if old == nil {
		dst = append(dst, "null"...)
	} else {
		var onlyChanged []model.Value
		if e.opts.OnlyOutputUpdatedColumns || e.opts.ContentCompatible {
			onlyChanged = data
		}
		if dst, err = e.appendImage(dst, s, old, nil, onlyChanged); err != nil {
			return dst, fmt.Errorf("canal-json: encode row of %s at %d: old image: %w", s.Table, r.CommitTs, err)
		}
	}
	if e.opts.EnableTiDBExtension || lm != nil {
		dst = append(dst, `,"_tidb":{"commitTs":`...)
		dst = strconv.AppendUint(dst, r.CommitTs, 10)
		if lm != nil && lm.OnlyHandleKey {
			dst = append(dst, `,"onlyHandleKey":true`...)
		}
		if lm != nil && lm.ClaimCheckLocation != "" {
			dst = append(dst, `,"claimCheckLocation":`...)
			dst = jsonenc.AppendStringHTML(dst, lm.ClaimCheckLocation)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}'), nil
}

// appendPKNames writes the primary key's columns in column order, as TiCDC
// lists them, or null for a table without a primary key.
func appendPKNames(dst []byte, s *model.TableSchema) []byte {
	pk := s.PrimaryKey()
	if pk == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	n := 0
	for _, c := range s.Columns {
		for _, k := range pk.Columns {
			if k == c.Name {
				if n > 0 {
					dst = append(dst, ',')
				}
				dst = jsonenc.AppendStringHTML(dst, c.Name)
				n++
				break
			}
		}
	}
	return append(dst, ']')
}

// appendImage writes one image as canal's one-element array of column maps.
// A column whose value was not provided is left out; an unchanged (TOAST)
// value is taken from fill (the before image) when it has one and left out
// otherwise. With skipEqual set, columns equal to skipEqual's are left out
// (canal's "old" holds only what changed).
func (e *Encoder) appendImage(dst []byte, s *model.TableSchema, img, fill, skipEqual []model.Value) ([]byte, error) {
	dst = append(dst, "[{"...)
	n := 0
	for i, c := range s.Columns {
		v := img[i]
		if v.IsUnchanged() && fill != nil {
			v = fill[i]
		}
		if v.IsMissing() || v.IsUnchanged() {
			continue
		}
		if skipEqual != nil {
			w := skipEqual[i]
			if w.IsUnchanged() || model.ValueEqual(c.Type, v, w) {
				continue
			}
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = jsonenc.AppendStringHTML(dst, c.Name)
		dst = append(dst, ':')
		var err error
		if dst, err = appendValue(dst, c, v); err != nil {
			return dst, err
		}
	}
	return append(dst, "}]"...), nil
}

// appendValue writes one value as a JSON string (or null).
func appendValue(dst []byte, c model.Column, v model.Value) ([]byte, error) {
	if v.IsNull() {
		return append(dst, "null"...), nil
	}
	if want := c.Type.ValueKind(); v.Kind != want {
		return dst, fmt.Errorf("column %s holds a %s value, type %s needs %s", c.Name, v.Kind, c.Type, want)
	}
	switch v.Kind {
	case model.ValueInt:
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, v.I, 10)
		return append(dst, '"'), nil
	case model.ValueUint:
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, v.Uint(), 10)
		return append(dst, '"'), nil
	case model.ValueFloat:
		dst = append(dst, '"')
		dst = append(dst, formatFloat(v.Float(), c.Type)...)
		return append(dst, '"'), nil
	case model.ValueBytes:
		return appendLatin1(dst, v.B), nil
	}
	switch c.Type.Kind {
	case model.TypeEnum:
		idx, err := enumIndex(c.Type, v.S)
		if err != nil {
			return dst, fmt.Errorf("column %s: %w", c.Name, err)
		}
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, idx, 10)
		return append(dst, '"'), nil
	case model.TypeSet:
		bits, err := setBits(c.Type, v.S)
		if err != nil {
			return dst, fmt.Errorf("column %s: %w", c.Name, err)
		}
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, bits, 10)
		return append(dst, '"'), nil
	}
	return jsonenc.AppendStringHTML(dst, v.S), nil
}

// EncodeDDL encodes one DDL event as a message. Its "table" is the table
// the DDL leaves behind (a rename's new name), or "" for a schema-level
// DDL.
func (e *Encoder) EncodeDDL(d *model.DDLEvent) ([]byte, error) {
	return e.AppendDDL(nil, d)
}

// AppendDDL appends one DDL event's message to dst.
func (e *Encoder) AppendDDL(dst []byte, d *model.DDLEvent) ([]byte, error) {
	if d == nil {
		return dst, errors.New("canal-json: encode DDL: nil event")
	}
	if d.Query == "" {
		return dst, fmt.Errorf("canal-json: encode DDL %s at %d: no statement", d.Kind, d.CommitTs)
	}
	table := ""
	switch {
	case len(d.After) > 0 && d.After[0] != nil:
		table = d.After[0].Table.Table
	case len(d.Tables) > 0:
		table = d.Tables[0].Table
	}
	dst = append(dst, `{"id":0,"database":`...)
	dst = jsonenc.AppendStringHTML(dst, d.Schema)
	dst = append(dst, `,"table":`...)
	dst = jsonenc.AppendStringHTML(dst, table)
	dst = append(dst, `,"pkNames":null,"isDdl":true,"type":"`...)
	dst = append(dst, EventType(d.Kind)...)
	dst = append(dst, `","es":`...)
	dst = strconv.AppendInt(dst, esMillis(d.CommitTs), 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, e.opts.Now().UnixMilli(), 10)
	dst = append(dst, `,"sql":`...)
	dst = jsonenc.AppendStringHTML(dst, d.Query)
	dst = append(dst, `,"sqlType":null,"mysqlType":null,"data":null,"old":null`...)
	if e.opts.EnableTiDBExtension {
		dst = append(dst, `,"_tidb":{"commitTs":`...)
		dst = strconv.AppendUint(dst, d.CommitTs, 10)
		dst = append(dst, '}')
	}
	return append(dst, '}'), nil
}

// EncodeCheckpoint encodes a TIDB_WATERMARK message: every change with a
// commit ts below ts has been sent. Without the TiDB extension canal-json
// has no such message and the result is nil.
func (e *Encoder) EncodeCheckpoint(ts model.Ts) []byte {
	return e.AppendCheckpoint(nil, ts)
}

// AppendCheckpoint appends a watermark message to dst; dst is returned as
// it is without the TiDB extension.
func (e *Encoder) AppendCheckpoint(dst []byte, ts model.Ts) []byte {
	if !e.opts.EnableTiDBExtension {
		return dst
	}
	dst = append(dst, `{"id":0,"database":"","table":"","pkNames":null,"isDdl":false,"type":"`+WatermarkType+`","es":`...)
	dst = strconv.AppendInt(dst, esMillis(ts), 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, e.opts.Now().UnixMilli(), 10)
	dst = append(dst, `,"sql":"","sqlType":null,"mysqlType":null,"data":null,"old":null,"_tidb":{"watermarkTs":`...)
	dst = strconv.AppendUint(dst, ts, 10)
	return append(dst, "}}"...)
}
