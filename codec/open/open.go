// Package open encodes changes in TiCDC's open protocol: a JSON key and a
// JSON value per event, several events framed into one Kafka message.
//
// Framing (one Kafka message): the key is an 8-byte big-endian protocol
// version (1) followed by each event's key as an 8-byte big-endian length
// and the bytes; the value is each event's value, length-prefixed the same
// way, in the same order. A consumer splits both and pairs them up.
//
// Event key: {"ts":commitTs,"scm":schema,"tbl":table,"t":type} with type 1
// for a row, 2 for a DDL and 3 for a resolved ts; "ohk":true marks a row
// that carries only its handle-key columns (a large message), and "ccl"
// names where the full value was put (claim check).
//
// Row value: {"u":{col:{"t":code,"h":true,"f":flags,"v":value}}} for an
// insert or update's new image, "p" for an update's old image, "d" for a
// delete's. "t" is MySQL's column type code and "f" TiCDC's column flags.
// Values: integers, unsigned integers and bits as JSON numbers; floats as
// numbers; byte-string columns (binary flag set) as base64; everything else
// as its canonical text (model.Value). NULL is JSON null.
//
// DDL value: {"q":statement,"t":TiDB's DDL action code}. Resolved value: empty.
package open

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/raftcdc/raftcdc/internal/jsonenc"
	"github.com/raftcdc/raftcdc/model"
)

// Version is the framing version the key of every message starts with.
const Version = 1

// Event types, in the key's "t".
const (
	TypeRow      = 1
	TypeDDL      = 2
	TypeResolved = 3
)

// Column flags, in a column's "f", as TiCDC defines them.
const (
	FlagBinary     = 1 << 0
	FlagHandleKey  = 1 << 1
	FlagGenerated  = 1 << 2
	FlagPrimaryKey = 1 << 3
	FlagUniqueKey  = 1 << 4
	FlagMultiKey   = 1 << 5
	FlagNullable   = 1 << 6
	FlagUnsigned   = 1 << 7
)

// Key is an event's key.
type Key struct {
	Ts            uint64 `json:"ts"`
	Schema        string `json:"scm,omitempty"`
	Table         string `json:"tbl,omitempty"`
	Type          int    `json:"t"`
	OnlyHandleKey bool   `json:"ohk,omitempty"`
	ClaimCheck    string `json:"ccl,omitempty"`
}

// Column is one column in a row value.
type Column struct {
	Type   byte            `json:"t"`
	Handle bool            `json:"h,omitempty"`
	Flag   uint64          `json:"f"`
	Value  json.RawMessage `json:"v"`
}

// RowValue is a row event's value.
type RowValue struct {
	Update map[string]Column `json:"u,omitempty"`
	Prev   map[string]Column `json:"p,omitempty"`
	Delete map[string]Column `json:"d,omitempty"`
}

// DDLValue is a DDL event's value.
type DDLValue struct {
	Query string `json:"q"`
	Type  int    `json:"t"`
}

// RowOptions are the large-message variants of a row.
type RowOptions struct {
	// OnlyHandleKey keeps only the handle-key columns in the images.
	OnlyHandleKey bool
	// ClaimCheck is where the full value was stored.
	ClaimCheck string
}

// EncodeRow encodes one row change as an event key and value. Both are
// appended by hand (in column order): encoding/json on maps of raw values
// cost several times the rest of the sink.
func EncodeRow(r *model.RowChange, opt RowOptions) (key, value []byte, err error) {
	s := r.Schema
	return AppendRow(make([]byte, 0, 64+len(s.Table.Schema)+len(s.Table.Table)+len(opt.ClaimCheck)), make([]byte, 0, 256), r, opt)
}

// AppendRow appends one row change's event key to keyDst and its value to
// valueDst, so that a caller can encode into buffers it reuses.
func AppendRow(keyDst, valueDst []byte, r *model.RowChange, opt RowOptions) (key, value []byte, err error) {
	s := r.Schema
	only := opt.OnlyHandleKey || opt.ClaimCheck != ""
	key = append(keyDst, `{"ts":`...)
	key = strconv.AppendUint(key, r.CommitTs, 10)
	key = append(key, `,"scm":`...)
	key = jsonenc.AppendString(key, s.Table.Schema)
	key = append(key, `,"tbl":`...)
	key = jsonenc.AppendString(key, s.Table.Table)
	key = append(key, `,"t":1`...)
	if only {
		key = append(key, `,"ohk":true`...)
	}
	if opt.ClaimCheck != "" {
		key = append(key, `,"ccl":`...)
		key = jsonenc.AppendString(key, opt.ClaimCheck)
	}
	key = append(key, '}')

	flags := columnFlags(s)
	image := func(dst []byte, img []model.Value) ([]byte, error) {
		dst = append(dst, '{')
		n := 0
		for i, v := range img {
			if v.IsMissing() || v.IsUnchanged() || (only && flags[i]&FlagHandleKey == 0) {
				continue
			}
			c := s.Columns[i]
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = jsonenc.AppendString(dst, c.Name)
			dst = append(dst, `:{"t":`...)
			dst = strconv.AppendUint(dst, uint64(TypeCode(c.Type)), 10)
			if flags[i]&FlagHandleKey != 0 {
				dst = append(dst, `,"h":true`...)
			}
			dst = append(dst, `,"f":`...)
			dst = strconv.AppendUint(dst, flags[i], 10)
			dst = append(dst, `,"v":`...)
			var err error
			if dst, err = appendValue(dst, v); err != nil {
				return nil, fmt.Errorf("table %s column %s: %w", s.Table, c.Name, err)
			}
			dst = append(dst, '}')
		}
		return append(dst, '}'), nil
	}
	value = valueDst
	switch r.Op {
	case model.OpInsert:
		value = append(value, `{"u":`...)
		value, err = image(value, r.After)
	case model.OpUpdate:
		value = append(value, `{"u":`...)
		if value, err = image(value, r.After); err == nil && r.Before != nil {
			value = append(value, `,"p":`...)
			value, err = image(value, r.Before)
		}
	case model.OpDelete:
		value = append(value, `{"d":`...)
		value, err = image(value, r.Before)
	default:
		err = fmt.Errorf("table %s: unknown op %q", s.Table, r.Op)
	}
	if err != nil {
		return nil, nil, err
	}
	return key, append(value, '}'), nil
}

// EncodeDDL encodes a DDL event.
func EncodeDDL(d *model.DDLEvent) (key, value []byte, err error) {
	k := Key{Ts: d.CommitTs, Schema: d.Schema, Type: TypeDDL}
	if len(d.Tables) > 0 {
		k.Schema, k.Table = d.Tables[0].Schema, d.Tables[0].Table
	}
	if key, err = json.Marshal(k); err != nil {
		return nil, nil, err
	}
	value, err = json.Marshal(DDLValue{Query: d.Query, Type: DDLActionCode(d.Kind)})
	return key, value, err
}

// EncodeResolved encodes a resolved-ts event.
func EncodeResolved(ts model.Ts) (key, value []byte) {
	key, _ = json.Marshal(Key{Ts: ts, Type: TypeResolved})
	return key, nil
}

// Frame joins events into one message's key and value.
func Frame(keys, values [][]byte) (key, value []byte) {
	n := 8
	m := 0
	for i := range keys {
		n += 8 + len(keys[i])
		m += 8 + len(values[i])
	}
	return AppendFrame(make([]byte, 0, n), make([]byte, 0, m), keys, values)
}

// AppendFrame is Frame appending the message's key to keyDst and its
// value to valueDst.
func AppendFrame(keyDst, valueDst []byte, keys, values [][]byte) (key, value []byte) {
	key = binary.BigEndian.AppendUint64(keyDst, Version)
	value = valueDst
	var l [8]byte
	for i := range keys {
		binary.BigEndian.PutUint64(l[:], uint64(len(keys[i])))
		key = append(append(key, l[:]...), keys[i]...)
		binary.BigEndian.PutUint64(l[:], uint64(len(values[i])))
		value = append(append(value, l[:]...), values[i]...)
	}
	return key, value
}

// FrameOverhead is what framing adds to a message holding n events.
func FrameOverhead(n int) int { return 8 + 16*n }

// Event is one decoded event.
type Event struct {
	Key      Key
	Row      *RowValue
	DDL      *DDLValue
	RawValue []byte
}

// Decode splits a message into its events.
func Decode(key, value []byte) ([]Event, error) {
	if len(key) < 8 {
		return nil, fmt.Errorf("open protocol: key of %d bytes has no version header", len(key))
	}
	if v := binary.BigEndian.Uint64(key); v != Version {
		return nil, fmt.Errorf("open protocol: version %d, want %d", v, Version)
	}
	next := func(b []byte, what string) ([]byte, []byte, error) {
		if len(b) < 8 {
			return nil, nil, fmt.Errorf("open protocol: truncated %s length", what)
		}
		n := binary.BigEndian.Uint64(b)
		if uint64(len(b)-8) < n {
			return nil, nil, fmt.Errorf("open protocol: %s of %d bytes, %d left", what, n, len(b)-8)
		}
		return b[8 : 8+n], b[8+n:], nil
	}
	var out []Event
	kb, vb := key[8:], value
	for len(kb) > 0 {
		var k, v []byte
		var err error
		if k, kb, err = next(kb, "key"); err != nil {
			return nil, err
		}
		if v, vb, err = next(vb, "value"); err != nil {
			return nil, err
		}
		var e Event
		if err := json.Unmarshal(k, &e.Key); err != nil {
			return nil, fmt.Errorf("open protocol: event key: %w", err)
		}
		e.RawValue = v
		switch e.Key.Type {
		case TypeRow:
			e.Row = new(RowValue)
			if err := json.Unmarshal(v, e.Row); err != nil {
				return nil, fmt.Errorf("open protocol: row value: %w", err)
			}
		case TypeDDL:
			e.DDL = new(DDLValue)
			if err := json.Unmarshal(v, e.DDL); err != nil {
				return nil, fmt.Errorf("open protocol: DDL value: %w", err)
			}
		case TypeResolved:
		default:
			return nil, fmt.Errorf("open protocol: unknown event type %d", e.Key.Type)
		}
		out = append(out, e)
	}
	if len(vb) != 0 {
		return nil, fmt.Errorf("open protocol: %d value bytes left after the last key", len(vb))
	}
	return out, nil
}

// DecodeValue turns a column back into a model.Value, using its type code
// and flags.
func DecodeValue(c Column) (model.Value, error) {
	if bytes.Equal(c.Value, []byte("null")) || len(c.Value) == 0 {
		return model.Null(), nil
	}
	switch {
	case c.Flag&FlagBinary != 0 && c.Type != mysqlBit:
		var s string
		if err := json.Unmarshal(c.Value, &s); err != nil {
			return model.Value{}, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return model.Value{}, err
		}
		return model.BytesValue(b), nil
	case c.Type == mysqlBit || (isIntCode(c.Type) && c.Flag&FlagUnsigned != 0):
		u, err := strconv.ParseUint(string(c.Value), 10, 64)
		return model.UintValue(u), err
	case isIntCode(c.Type) || c.Type == mysqlYear:
		i, err := strconv.ParseInt(string(c.Value), 10, 64)
		return model.IntValue(i), err
	case c.Type == mysqlFloat || c.Type == mysqlDouble:
		f, err := strconv.ParseFloat(string(c.Value), 64)
		return model.FloatValue(f), err
	default:
		var s string
		err := json.Unmarshal(c.Value, &s)
		return model.StringValue(s), err
	}
}

func appendValue(dst []byte, v model.Value) ([]byte, error) {
	switch v.Kind {
	case model.ValueNull:
		return append(dst, "null"...), nil
	case model.ValueInt:
		return strconv.AppendInt(dst, v.I, 10), nil
	case model.ValueUint:
		return strconv.AppendUint(dst, v.Uint(), 10), nil
	case model.ValueFloat:
		if math.IsNaN(v.Float()) || math.IsInf(v.Float(), 0) {
			return nil, fmt.Errorf("float %v has no JSON form", v.Float())
		}
		return strconv.AppendFloat(dst, v.Float(), 'g', -1, 64), nil
	case model.ValueBytes:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v.B)
		return append(dst, '"'), nil
	case model.ValueString:
		return jsonenc.AppendString(dst, v.S), nil
	}
	return nil, fmt.Errorf("value of kind %s cannot be encoded", v.Kind)
}

func columnFlags(s *model.TableSchema) []uint64 {
	flags := make([]uint64, len(s.Columns))
	for i, c := range s.Columns {
		if c.Type.IsBinary() {
			flags[i] |= FlagBinary
		}
		if c.Nullable {
			flags[i] |= FlagNullable
		}
		if c.Type.Unsigned {
			flags[i] |= FlagUnsigned
		}
	}
	for _, i := range s.KeyColumns(s.HandleKey()) {
		flags[i] |= FlagHandleKey
	}
	for _, ix := range s.Indexes {
		for _, i := range s.KeyColumns(&ix) {
			switch {
			case ix.Primary:
				flags[i] |= FlagPrimaryKey
			case ix.Unique:
				flags[i] |= FlagUniqueKey
			default:
				flags[i] |= FlagMultiKey
			}
		}
	}
	return flags
}
