package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unsafe"
)

// ValueKind says what a Value holds.
type ValueKind uint8

const (
	// ValueMissing is the zero Value: the upstream did not provide this
	// column (a before image that carries only the key, for example). It is
	// not NULL. Sinks leave such a column out.
	ValueMissing ValueKind = iota
	// ValueNull is SQL NULL.
	ValueNull
	// ValueInt holds I: signed integers and year.
	ValueInt
	// ValueUint holds an unsigned integer (Uint): unsigned integer types
	// and bit(n).
	ValueUint
	// ValueFloat holds a float64 (Float): float (a float32 widened
	// exactly) and double.
	ValueFloat
	// ValueString holds S in the canonical text form of its column type; see
	// Value.
	ValueString
	// ValueBytes holds B: binary, varbinary and the blob types.
	ValueBytes
	// ValueUnchanged: the upstream did not send the value because it did not
	// change (PostgreSQL's unchanged TOAST columns). It appears only in an
	// update's after image. SQL sinks leave the column out of the UPDATE;
	// sinks that publish images say "unchanged".
	ValueUnchanged
)

var valueKindNames = [...]string{"missing", "null", "int", "uint", "float", "string", "bytes", "unchanged"}

func (k ValueKind) String() string {
	if int(k) < len(valueKindNames) {
		return valueKindNames[k]
	}
	return fmt.Sprintf("ValueKind(%d)", k)
}

// Value is one column's value in a row image. It is a small tagged union
// rather than an interface so that a row does not allocate per column.
//
// Canonical forms of ValueString, by column type:
//   - decimal(p,s): plain decimal text with exactly s fraction digits, no
//     exponent, no leading '+', no leading zeros ("-0.500", "12", "0.000");
//   - char, varchar, text types: the UTF-8 text (char without the trailing
//     pad spaces, as MySQL returns it);
//   - date: "YYYY-MM-DD";
//   - datetime(fsp), timestamp(fsp): "YYYY-MM-DD HH:MM:SS" followed by
//     exactly fsp fraction digits; timestamps are in UTC;
//   - time(fsp): "[-]HH:MM:SS" (hours up to 838) with exactly fsp digits;
//   - enum: the element's name; set: the member names in definition order,
//     joined by ',' ("" for the empty set);
//   - json: the JSON text; compare JSON values semantically (JSONEqual),
//     since servers normalise key order and spacing differently.
//
// binary(n) values are padded with zero bytes to n, as MySQL stores them.
//
// Signed, unsigned and float values share one word (I holds an int, the
// bits of a uint or of a float64, by Kind; Uint and Float read the last
// two): every column of every image held in memory is a Value, and three
// words where one is used made each 72 bytes instead of 56.
type Value struct {
	Kind ValueKind
	I    int64
	S    string
	B    []byte
}

// Constructors, so that call sites read as what they mean.
func Null() Value                 { return Value{Kind: ValueNull} }
func Unchanged() Value            { return Value{Kind: ValueUnchanged} }
func IntValue(v int64) Value      { return Value{Kind: ValueInt, I: v} }
func UintValue(v uint64) Value    { return Value{Kind: ValueUint, I: int64(v)} }
func FloatValue(v float64) Value  { return Value{Kind: ValueFloat, I: int64(math.Float64bits(v))} }
func StringValue(v string) Value  { return Value{Kind: ValueString, S: v} }
func BytesValue(v []byte) Value   { return Value{Kind: ValueBytes, B: v} }
func (v Value) IsNull() bool      { return v.Kind == ValueNull }
func (v Value) IsMissing() bool   { return v.Kind == ValueMissing }
func (v Value) IsUnchanged() bool { return v.Kind == ValueUnchanged }
func (v Value) HasData() bool     { return v.Kind >= ValueInt && v.Kind <= ValueBytes }
func (v Value) approxSize() int   { return int(unsafe.Sizeof(v)) + len(v.S) + len(v.B) }
func (v Value) GoString() string  { return "model.Value{" + v.Kind.String() + ":" + v.Text() + "}" }
func (v Value) String() string    { return v.Text() }

// Uint is a ValueUint's value.
func (v Value) Uint() uint64 { return uint64(v.I) }

// Float is a ValueFloat's value.
func (v Value) Float() float64 { return math.Float64frombits(uint64(v.I)) }

func (v Value) Equal(o Value) bool {
	if v.Kind != o.Kind || v.S != o.S || !bytes.Equal(v.B, o.B) {
		return false
	}
	if v.Kind == ValueFloat {
		return floatEq(v.Float(), o.Float()) // -0 equals 0, NaN equals NaN
	}
	return v.I == o.I
}

func floatEq(a, b float64) bool {
	return a == b || (math.IsNaN(a) && math.IsNaN(b))
}

// Text renders the value as text: numbers in Go's shortest exact form
// (floats as strconv 'g' with the smallest precision that round-trips),
// bytes as they are, NULL as "NULL", missing as "", unchanged as
// "<unchanged>". Encoders that put values into strings (canal-json, csv)
// use it, so every textual output agrees.
func (v Value) Text() string {
	switch v.Kind {
	case ValueNull:
		return "NULL"
	case ValueInt:
		return strconv.FormatInt(v.I, 10)
	case ValueUint:
		return strconv.FormatUint(v.Uint(), 10)
	case ValueFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case ValueString:
		return v.S
	case ValueBytes:
		return string(v.B)
	case ValueUnchanged:
		return "<unchanged>"
	}
	return ""
}

// FloatText renders a float column's value with the precision of its type:
// float (32-bit) with the shortest form that round-trips a float32.
func FloatText(f float64, t ColumnType) string {
	if t.Kind == TypeFloat {
		return strconv.FormatFloat(f, 'g', -1, 32)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// JSONEqual compares two JSON texts as values: object key order and
// whitespace do not matter; numbers compare by their decimal text after
// parsing (so 1.0 and 1 differ only if the servers kept them apart).
func JSONEqual(a, b string) bool {
	if a == b {
		return true
	}
	var va, vb any
	da := json.NewDecoder(bytes.NewReader([]byte(a)))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader([]byte(b)))
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return false
	}
	return jsonValueEqual(va, vb)
}

func jsonValueEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonValueEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonValueEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, ex := x.Float64()
		fy, ey := y.Float64()
		return ex == nil && ey == nil && fx == fy
	default:
		return a == b
	}
}

// ValueEqual compares two values of one column type as the downstream
// would: JSON semantically, everything else exactly.
func ValueEqual(t ColumnType, a, b Value) bool {
	if t.Kind == TypeJSON && a.Kind == ValueString && b.Kind == ValueString {
		return JSONEqual(a.S, b.S)
	}
	if t.Kind == TypeFloat && a.Kind == ValueFloat && b.Kind == ValueFloat {
		return float32(a.Float()) == float32(b.Float()) || floatEq(a.Float(), b.Float())
	}
	return a.Equal(b)
}
