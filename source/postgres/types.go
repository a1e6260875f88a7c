package postgres

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// Built-in type OIDs (pg_type.dat); everything else is looked up in the
// catalog (enums, arrays, domains).
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

// pgType is what the mapping needs to know about a type beyond its OID:
// enum labels, the element type of an array, the base type of a domain.
type pgType struct {
	OID  uint32
	Name string
	// Labels are an enum's labels in sort order.
	Labels []string
	// Elem is an array's element type (nil if not an array).
	Elem *pgType
	// Base is a domain's base type (nil if not a domain), with BaseTypmod.
	Base       *pgType
	BaseTypmod int32
}

// valueKind says how a column's text is turned into a model.Value.
type valueKind uint8

const (
	convInt valueKind = iota
	convBool
	convFloat32
	convFloat64
	convDecimal
	convText
	convBpchar
	convBytea
	convDate
	convTime
	convDatetime
	convTimestamptz
	convArray
)

// column is one column as the stream and the copy decode it.
type colCodec struct {
	kind  valueKind
	fsp   int
	elem  *pgType // convArray: element type, for JSON numbers and booleans
	typ   model.ColumnType
	label string // type name, for errors
}

const utf8mb4 = "utf8mb4"

// mapType maps a PostgreSQL type with its typmod to the model's type and
// the conversion of its text form. The table is documented in DESIGN.md.
func mapType(t *pgType, typmod int32) colCodec {
	if t.Base != nil { // a domain behaves as its base type
		tm := typmod
		if tm < 0 {
			tm = t.BaseTypmod
		}
		c := mapType(t.Base, tm)
		c.label = t.Name
		return c
	}
	c := colCodec{label: t.Name}
	text := func() colCodec {
		c.kind = convText
		c.typ = model.ColumnType{Kind: model.TypeLongText, Charset: utf8mb4}
		return c
	}
	if t.Elem != nil {
		c.kind = convArray
		c.elem = t.Elem
		c.typ = model.ColumnType{Kind: model.TypeJSON}
		return c
	}
	if len(t.Labels) > 0 {
		c.kind = convText
		c.typ = model.ColumnType{Kind: model.TypeEnum, Elems: append([]string(nil), t.Labels...), Charset: utf8mb4}
		return c
	}
	switch t.OID {
	case oidBool:
		c.kind = convBool
		c.typ = model.ColumnType{Kind: model.TypeTinyInt}
	case oidInt2:
		c.kind = convInt
		c.typ = model.ColumnType{Kind: model.TypeSmallInt}
	case oidInt4:
		c.kind = convInt
		c.typ = model.ColumnType{Kind: model.TypeInt}
	case oidInt8:
		c.kind = convInt
		c.typ = model.ColumnType{Kind: model.TypeBigInt}
	case oidOID:
		c.kind = convInt
		c.typ = model.ColumnType{Kind: model.TypeInt, Unsigned: true}
	case oidFloat4:
		c.kind = convFloat32
		c.typ = model.ColumnType{Kind: model.TypeFloat}
	case oidFloat8:
		c.kind = convFloat64
		c.typ = model.ColumnType{Kind: model.TypeDouble}
	case oidNumeric:
		if typmod < 4 {
			return text() // unconstrained numeric: any scale, NaN, ±Infinity
		}
		p := int((typmod - 4) >> 16 & 0xffff)
		s := int((((typmod - 4) & 0x7ff) ^ 1024) - 1024)
		if p < 1 || p > 65 || s < 0 || s > 30 || s > p {
			return text()
		}
		c.kind = convDecimal
		c.typ = model.ColumnType{Kind: model.TypeDecimal, Length: p, Scale: s}
	case oidVarchar:
		n := int(typmod - 4)
		if typmod < 0 || n > 16383 { // 16383 utf8mb4 characters fill MySQL's 65535-byte row limit
			return text()
		}
		c.kind = convText
		c.typ = model.ColumnType{Kind: model.TypeVarchar, Length: n, Charset: utf8mb4}
	case oidBpchar:
		n := int(typmod - 4)
		if typmod < 0 {
			n = 1
		}
		c.kind = convBpchar
		if n <= 255 {
			c.typ = model.ColumnType{Kind: model.TypeChar, Length: n, Charset: utf8mb4}
		} else if n <= 16383 {
			c.typ = model.ColumnType{Kind: model.TypeVarchar, Length: n, Charset: utf8mb4}
		} else {
			c.typ = model.ColumnType{Kind: model.TypeLongText, Charset: utf8mb4}
		}
	case oidChar:
		c.kind = convText
		c.typ = model.ColumnType{Kind: model.TypeChar, Length: 1, Charset: utf8mb4}
	case oidName:
		c.kind = convText
		c.typ = model.ColumnType{Kind: model.TypeVarchar, Length: 64, Charset: utf8mb4}
	case oidText:
		return text()
	case oidBytea:
		c.kind = convBytea
		c.typ = model.ColumnType{Kind: model.TypeLongBlob}
	case oidDate:
		c.kind = convDate
		c.typ = model.ColumnType{Kind: model.TypeDate}
	case oidTime, oidTimestamp, oidTimestamptz:
		fsp := 6
		if typmod >= 0 && typmod < 6 {
			fsp = int(typmod)
		}
		c.fsp = fsp
		switch t.OID {
		case oidTime:
			c.kind = convTime
			c.typ = model.ColumnType{Kind: model.TypeTime, Fsp: fsp}
		case oidTimestamp:
			c.kind = convDatetime
			c.typ = model.ColumnType{Kind: model.TypeDatetime, Fsp: fsp}
		default:
			c.kind = convTimestamptz
			c.typ = model.ColumnType{Kind: model.TypeTimestamp, Fsp: fsp}
		}
	case oidInterval:
		// ISO 8601 durations (IntervalStyle=iso_8601 on our sessions).
		c.kind = convText
		c.typ = model.ColumnType{Kind: model.TypeVarchar, Length: 255, Charset: utf8mb4}
	case oidUUID:
		c.kind = convText
		c.typ = model.ColumnType{Kind: model.TypeChar, Length: 36, Charset: utf8mb4}
	case oidJSON, oidJSONB:
		c.kind = convText
		c.typ = model.ColumnType{Kind: model.TypeJSON}
	default:
		return text() // money, inet, xml, geometric, ranges, ...: PostgreSQL's text
	}
	return c
}

// decode turns a column's text form (as pgoutput and a text-format query
// produce it, under our session settings) into the model's canonical value.
func (c *colCodec) decode(b []byte) (model.Value, error) {
	switch c.kind {
	case convInt:
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return model.Value{}, c.bad(b)
		}
		if c.typ.Unsigned {
			return model.UintValue(uint64(n)), nil
		}
		return model.IntValue(n), nil
	case convBool:
		switch string(b) {
		case "t":
			return model.IntValue(1), nil
		case "f":
			return model.IntValue(0), nil
		}
		return model.Value{}, c.bad(b)
	case convFloat32, convFloat64:
		bits := 64
		if c.kind == convFloat32 {
			bits = 32
		}
		f, err := strconv.ParseFloat(string(b), bits)
		if err != nil {
			return model.Value{}, c.bad(b)
		}
		return model.FloatValue(f), nil
	case convDecimal:
		s := string(b)
		if s == "NaN" || strings.HasSuffix(s, "Infinity") {
			return model.Value{}, fmt.Errorf("%s value %s has no decimal(%d,%d) form", c.label, s, c.typ.Length, c.typ.Scale)
		}
		return model.StringValue(s), nil
	case convText:
		return model.StringValue(string(b)), nil
	case convBpchar:
		return model.StringValue(strings.TrimRight(string(b), " ")), nil
	case convBytea:
		if len(b) < 2 || b[0] != '\\' || b[1] != 'x' {
			return model.Value{}, c.bad(b)
		}
		out := make([]byte, hex.DecodedLen(len(b)-2))
		if _, err := hex.Decode(out, b[2:]); err != nil {
			return model.Value{}, c.bad(b)
		}
		return model.BytesValue(out), nil
	case convDate:
		if len(b) != 10 || b[4] != '-' || b[7] != '-' {
			return model.Value{}, c.outOfRange(b)
		}
		return model.StringValue(string(b)), nil
	case convTime:
		s, ok := fixFraction(string(b), 8, c.fsp)
		if !ok {
			return model.Value{}, c.bad(b)
		}
		return model.StringValue(s), nil
	case convDatetime:
		s, ok := fixFraction(string(b), 19, c.fsp)
		if !ok {
			return model.Value{}, c.outOfRange(b)
		}
		return model.StringValue(s), nil
	case convTimestamptz:
		s, ok := strings.CutSuffix(string(b), "+00")
		if !ok {
			return model.Value{}, c.outOfRange(b)
		}
		s, ok = fixFraction(s, 19, c.fsp)
		if !ok {
			return model.Value{}, c.outOfRange(b)
		}
		return model.StringValue(s), nil
	case convArray:
		j, err := arrayToJSON(string(b), c.elem)
		if err != nil {
			return model.Value{}, fmt.Errorf("%s value %q: %w", c.label, truncate(b), err)
		}
		return model.StringValue(j), nil
	}
	return model.Value{}, fmt.Errorf("column type %s: no conversion", c.label)
}

func (c *colCodec) bad(b []byte) error {
	return fmt.Errorf("%s value %q is not in the expected text form", c.label, truncate(b))
}

func (c *colCodec) outOfRange(b []byte) error {
	return fmt.Errorf("%s value %q is outside the range of %s (years 0001-9999, no BC, no infinity)", c.label, truncate(b), c.typ)
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// fixFraction checks that s is width characters of whole seconds and an
// optional ".digits" part, and rewrites the fraction with exactly fsp
// digits (PostgreSQL trims trailing zeros; the canonical form does not).
func fixFraction(s string, width, fsp int) (string, bool) {
	if len(s) < width {
		return "", false
	}
	whole, frac := s[:width], ""
	if len(s) > width {
		if s[width] != '.' {
			return "", false
		}
		frac = s[width+1:]
		for i := 0; i < len(frac); i++ {
			if frac[i] < '0' || frac[i] > '9' {
				return "", false
			}
		}
	}
	if fsp == 0 {
		return whole, frac == "" || strings.Trim(frac, "0") == ""
	}
	if len(frac) > fsp {
		return "", false
	}
	return whole + "." + frac + strings.Repeat("0", fsp-len(frac)), true
}

// arrayToJSON converts PostgreSQL's array text ({1,2,NULL}, {"a b",c},
// nested {{1,2},{3,4}}, [0:1]={x,y}) to a JSON array: numbers and booleans
// of numeric and boolean element types as JSON numbers and booleans,
// everything else as strings, NULL as null.
func arrayToJSON(s string, elem *pgType) (string, error) {
	if strings.HasPrefix(s, "[") { // explicit bounds: drop them
		i := strings.Index(s, "=")
		if i < 0 {
			return "", fmt.Errorf("array bounds without '='")
		}
		s = s[i+1:]
	}
	var b strings.Builder
	p := arrayParser{s: s, elem: elem, out: &b}
	if err := p.array(); err != nil {
		return "", err
	}
	if p.i != len(s) {
		return "", fmt.Errorf("trailing text after the array")
	}
	return b.String(), nil
}

type arrayParser struct {
	s    string
	i    int
	elem *pgType
	out  *strings.Builder
}

func (p *arrayParser) array() error {
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return fmt.Errorf("expected '{' at %d", p.i)
	}
	p.i++
	p.out.WriteByte('[')
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		p.out.WriteByte(']')
		return nil
	}
	for n := 0; ; n++ {
		if n > 0 {
			p.out.WriteByte(',')
		}
		if p.i >= len(p.s) {
			return fmt.Errorf("unterminated array")
		}
		switch p.s[p.i] {
		case '{':
			if err := p.array(); err != nil {
				return err
			}
		case '"':
			v, err := p.quoted()
			if err != nil {
				return err
			}
			p.scalar(v, true)
		default:
			j := p.i
			for j < len(p.s) && p.s[j] != ',' && p.s[j] != '}' {
				j++
			}
			v := strings.TrimSpace(p.s[p.i:j])
			p.i = j
			if strings.EqualFold(v, "NULL") {
				p.out.WriteString("null")
			} else {
				p.scalar(v, false)
			}
		}
		if p.i >= len(p.s) {
			return fmt.Errorf("unterminated array")
		}
		if p.s[p.i] == '}' {
			p.i++
			p.out.WriteByte(']')
			return nil
		}
		if p.s[p.i] != ',' {
			return fmt.Errorf("expected ',' or '}' at %d", p.i)
		}
		p.i++
	}
}

func (p *arrayParser) quoted() (string, error) {
	var b strings.Builder
	p.i++ // opening quote
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case '\\':
			if p.i+1 >= len(p.s) {
				return "", fmt.Errorf("dangling backslash")
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case '"':
			p.i++
			return b.String(), nil
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return "", fmt.Errorf("unterminated quoted element")
}

func (p *arrayParser) scalar(v string, quoted bool) {
	if !quoted && p.elem != nil {
		switch p.elem.OID {
		case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric:
			if _, err := strconv.ParseFloat(v, 64); err == nil && !strings.ContainsAny(v, "InfinityNaN") {
				p.out.WriteString(v)
				return
			}
		case oidBool:
			if v == "t" || v == "f" {
				p.out.WriteString(map[string]string{"t": "true", "f": "false"}[v])
				return
			}
		}
	}
	j, _ := json.Marshal(v)
	p.out.Write(j)
}
