package avro

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// appendLong is Avro's zigzag varint.
func appendLong(b []byte, n int64) []byte {
	return binary.AppendUvarint(b, uint64((n<<1)^(n>>63)))
}

func appendBytes(b, v []byte) []byte {
	return append(appendLong(b, int64(len(v))), v...)
}

// appendRecord encodes the fields of a record from an image.
func appendRecord(b []byte, s *Schema, img []model.Value, ext func(name string) (model.Value, bool)) ([]byte, error) {
	for _, f := range s.Fields {
		var v model.Value
		if f.column >= 0 {
			v = img[f.column]
		} else {
			var ok bool
			if v, ok = ext(f.Name); !ok {
				return nil, fmt.Errorf("no value for field %s", f.Name)
			}
		}
		if v.IsMissing() || v.IsUnchanged() {
			if !f.Nullable {
				return nil, fmt.Errorf("field %s: value not provided and the column is NOT NULL", f.Name)
			}
			v = model.Null()
		}
		if f.Nullable {
			if v.IsNull() {
				b = appendLong(b, 0)
				continue
			}
			b = appendLong(b, 1)
		} else if v.IsNull() {
			return nil, fmt.Errorf("field %s: NULL in a NOT NULL column", f.Name)
		}
		var err error
		if b, err = appendValue(b, f, v); err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Name, err)
		}
	}
	return b, nil
}

func appendValue(b []byte, f FieldSchema, v model.Value) ([]byte, error) {
	switch f.Type {
	case "int", "long":
		switch v.Kind {
		case model.ValueInt:
			return appendLong(b, v.I), nil
		case model.ValueUint:
			if v.Uint() > math.MaxInt64 && f.Type == "long" {
				// bigint unsigned in long mode wraps, as TiCDC's does.
				return appendLong(b, int64(v.Uint())), nil
			}
			return appendLong(b, int64(v.Uint())), nil
		}
	case "float":
		if v.Kind == model.ValueFloat {
			return binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v.Float()))), nil
		}
	case "double":
		if v.Kind == model.ValueFloat {
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Float())), nil
		}
	case "string":
		switch v.Kind {
		case model.ValueString:
			return appendBytes(b, []byte(v.S)), nil
		case model.ValueUint:
			return appendBytes(b, []byte(strconv.FormatUint(v.Uint(), 10))), nil
		case model.ValueInt:
			return appendBytes(b, []byte(strconv.FormatInt(v.I, 10))), nil
		}
	case "bytes":
		switch {
		case f.Decimal && v.Kind == model.ValueString:
			u, err := unscaled(v.S, f.Scale)
			if err != nil {
				return nil, err
			}
			return appendBytes(b, twosComplement(u)), nil
		case v.Kind == model.ValueBytes:
			return appendBytes(b, v.B), nil
		case v.Kind == model.ValueUint: // bit
			n := (f.colType.Length + 7) / 8
			if n == 0 {
				n = 1
			}
			var full [8]byte
			binary.BigEndian.PutUint64(full[:], v.Uint())
			return appendBytes(b, full[8-n:]), nil
		}
	}
	return nil, fmt.Errorf("a %s value does not fit Avro type %s", v.Kind, f.Type)
}

// unscaled parses a decimal's canonical text into its unscaled integer.
func unscaled(s string, scale int) (*big.Int, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	ip, fp, _ := strings.Cut(s, ".")
	if len(fp) > scale {
		return nil, fmt.Errorf("decimal %q has more than %d fraction digits", s, scale)
	}
	fp += strings.Repeat("0", scale-len(fp))
	n, ok := new(big.Int).SetString(ip+fp, 10)
	if !ok {
		return nil, fmt.Errorf("decimal %q is not a number", s)
	}
	if neg {
		n.Neg(n)
	}
	return n, nil
}

// twosComplement is n as big-endian two's complement, the decimal logical
// type's bytes.
func twosComplement(n *big.Int) []byte {
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// -n - 1, inverted.
	m := new(big.Int).Neg(n)
	m.Sub(m, big.NewInt(1))
	b := m.Bytes()
	for i := range b {
		b[i] = ^b[i]
	}
	if len(b) == 0 || b[0]&0x80 == 0 {
		b = append([]byte{0xff}, b...)
	}
	return b
}

func fromTwosComplement(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b)*8)))
	}
	return n
}

// reader decodes Avro binary.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("avro: truncated data")

func (r *reader) long() int64 {
	if r.err != nil {
		return 0
	}
	u, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return int64(u>>1) ^ -int64(u&1)
}

func (r *reader) bytes() []byte {
	n := r.long()
	if r.err != nil {
		return nil
	}
	if n < 0 || int64(len(r.b)) < n {
		r.err = errShort
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errShort
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// decodeRecord reads a record into values aligned with the table schema
// (extension fields go to ext).
func decodeRecord(data []byte, s *Schema, ncols int) ([]model.Value, map[string]model.Value, error) {
	r := &reader{b: data}
	img := make([]model.Value, ncols)
	ext := map[string]model.Value{}
	for _, f := range s.Fields {
		var v model.Value
		null := false
		if f.Nullable {
			switch r.long() {
			case 0:
				null = true
			case 1:
			default:
				return nil, nil, fmt.Errorf("avro: field %s: bad union branch", f.Name)
			}
		}
		if null {
			v = model.Null()
		} else {
			var err error
			if v, err = readValue(r, f); err != nil {
				return nil, nil, fmt.Errorf("avro: field %s: %w", f.Name, err)
			}
		}
		if r.err != nil {
			return nil, nil, fmt.Errorf("avro: field %s: %w", f.Name, r.err)
		}
		if f.column >= 0 {
			img[f.column] = v
		} else {
			ext[f.Name] = v
		}
	}
	if len(r.b) != 0 {
		return nil, nil, fmt.Errorf("avro: %d bytes after the record", len(r.b))
	}
	return img, ext, nil
}

func readValue(r *reader, f FieldSchema) (model.Value, error) {
	t := f.colType
	switch f.Type {
	case "int", "long":
		n := r.long()
		if f.column >= 0 && t.ValueKind() == model.ValueUint {
			return model.UintValue(uint64(n)), nil
		}
		return model.IntValue(n), nil
	case "float":
		return model.FloatValue(float64(math.Float32frombits(binary.LittleEndian.Uint32(r.fixed(4))))), nil
	case "double":
		return model.FloatValue(math.Float64frombits(binary.LittleEndian.Uint64(r.fixed(8)))), nil
	case "string":
		s := string(r.bytes())
		if f.unsignedString {
			u, err := strconv.ParseUint(s, 10, 64)
			return model.UintValue(u), err
		}
		return model.StringValue(s), nil
	case "bytes":
		b := r.bytes()
		switch {
		case f.Decimal:
			n := fromTwosComplement(b)
			return model.StringValue(formatDecimal(n, f.Scale)), nil
		case t.Kind == model.TypeBit:
			var full [8]byte
			copy(full[8-len(b):], b)
			return model.UintValue(binary.BigEndian.Uint64(full[:])), nil
		}
		return model.BytesValue(append([]byte(nil), b...)), nil
	}
	return model.Value{}, fmt.Errorf("unknown type %s", f.Type)
}

func formatDecimal(n *big.Int, scale int) string {
	neg := n.Sign() < 0
	s := new(big.Int).Abs(n).String()
	if scale > 0 {
		if len(s) <= scale {
			s = strings.Repeat("0", scale-len(s)+1) + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if neg {
		s = "-" + s
	}
	return s
}
