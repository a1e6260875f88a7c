package model

import (
	"fmt"
	"strconv"
	"strings"
)

// TypeKind is a column type in MySQL's type system, the one TiCDC carries
// end to end. Upstreams that are not MySQL-compatible map their types into
// it; each source package documents its mapping.
type TypeKind string

const (
	TypeTinyInt   TypeKind = "tinyint"
	TypeSmallInt  TypeKind = "smallint"
	TypeMediumInt TypeKind = "mediumint"
	TypeInt       TypeKind = "int"
	TypeBigInt    TypeKind = "bigint"
	// TypeDecimal uses Length as precision and Scale as scale.
	TypeDecimal TypeKind = "decimal"
	TypeFloat   TypeKind = "float"
	TypeDouble  TypeKind = "double"
	// TypeChar and TypeVarchar use Length (in characters) and Charset.
	TypeChar    TypeKind = "char"
	TypeVarchar TypeKind = "varchar"
	// The text types have a charset; the blob types do not.
	TypeTinyText   TypeKind = "tinytext"
	TypeText       TypeKind = "text"
	TypeMediumText TypeKind = "mediumtext"
	TypeLongText   TypeKind = "longtext"
	TypeTinyBlob   TypeKind = "tinyblob"
	TypeBlob       TypeKind = "blob"
	TypeMediumBlob TypeKind = "mediumblob"
	TypeLongBlob   TypeKind = "longblob"
	// TypeBinary and TypeVarbinary use Length in bytes.
	TypeBinary    TypeKind = "binary"
	TypeVarbinary TypeKind = "varbinary"
	TypeDate      TypeKind = "date"
	// TypeDatetime, TypeTimestamp and TypeTime use Fsp (0–6).
	TypeDatetime  TypeKind = "datetime"
	TypeTimestamp TypeKind = "timestamp"
	TypeTime      TypeKind = "time"
	TypeYear      TypeKind = "year"
	// TypeEnum and TypeSet use Elems.
	TypeEnum TypeKind = "enum"
	TypeSet  TypeKind = "set"
	// TypeBit uses Length as its width in bits (1–64).
	TypeBit  TypeKind = "bit"
	TypeJSON TypeKind = "json"
)

// AllTypeKinds lists every kind, in a stable order, for tests and docs.
var AllTypeKinds = []TypeKind{
	TypeTinyInt, TypeSmallInt, TypeMediumInt, TypeInt, TypeBigInt,
	TypeDecimal, TypeFloat, TypeDouble,
	TypeChar, TypeVarchar, TypeTinyText, TypeText, TypeMediumText, TypeLongText,
	TypeTinyBlob, TypeBlob, TypeMediumBlob, TypeLongBlob, TypeBinary, TypeVarbinary,
	TypeDate, TypeDatetime, TypeTimestamp, TypeTime, TypeYear,
	TypeEnum, TypeSet, TypeBit, TypeJSON,
}

// ColumnType is a column's full type.
type ColumnType struct {
	Kind     TypeKind `json:"kind"`
	Unsigned bool     `json:"unsigned,omitempty"`
	// Length is the precision of a decimal, the length of a char, varchar,
	// binary or varbinary, and the width of a bit. Zero means the type has
	// none (or MySQL's default).
	Length int `json:"length,omitempty"`
	// Scale is a decimal's scale.
	Scale int `json:"scale,omitempty"`
	// Fsp is the fractional seconds precision of datetime, timestamp and time.
	Fsp       int      `json:"fsp,omitempty"`
	Charset   string   `json:"charset,omitempty"`
	Collation string   `json:"collation,omitempty"`
	Elems     []string `json:"elems,omitempty"`
}

// IsInteger reports the integer kinds (not year or bit).
func (t ColumnType) IsInteger() bool {
	switch t.Kind {
	case TypeTinyInt, TypeSmallInt, TypeMediumInt, TypeInt, TypeBigInt:
		return true
	}
	return false
}

// IsText reports the kinds whose values are character strings in a charset.
func (t ColumnType) IsText() bool {
	switch t.Kind {
	case TypeChar, TypeVarchar, TypeTinyText, TypeText, TypeMediumText, TypeLongText:
		return true
	}
	return false
}

// IsBinary reports the kinds whose values are byte strings.
func (t ColumnType) IsBinary() bool {
	switch t.Kind {
	case TypeBinary, TypeVarbinary, TypeTinyBlob, TypeBlob, TypeMediumBlob, TypeLongBlob:
		return true
	}
	return false
}

// IsTime reports date, datetime, timestamp and time.
func (t ColumnType) IsTime() bool {
	switch t.Kind {
	case TypeDate, TypeDatetime, TypeTimestamp, TypeTime:
		return true
	}
	return false
}

// ValueKind is the kind of Value that a column of this type holds when it
// is not NULL; see Value for the canonical forms.
func (t ColumnType) ValueKind() ValueKind {
	switch {
	case t.IsInteger():
		if t.Unsigned {
			return ValueUint
		}
		return ValueInt
	case t.Kind == TypeYear:
		return ValueInt
	case t.Kind == TypeBit:
		return ValueUint
	case t.Kind == TypeFloat || t.Kind == TypeDouble:
		return ValueFloat
	case t.IsBinary():
		return ValueBytes
	default:
		return ValueString
	}
}

// String renders the type as MySQL writes it in a column definition:
// "bigint unsigned", "decimal(65,30)", "datetime(6)", "enum('a','b')",
// "varchar(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" is written
// without the charset; see SQL for the full definition.
func (t ColumnType) String() string {
	var b strings.Builder
	b.WriteString(string(t.Kind))
	switch t.Kind {
	case TypeDecimal:
		p, s := t.Length, t.Scale
		if p == 0 {
			p = 10
		}
		fmt.Fprintf(&b, "(%d,%d)", p, s)
	case TypeChar, TypeVarchar, TypeBinary, TypeVarbinary, TypeBit:
		if t.Length > 0 {
			fmt.Fprintf(&b, "(%d)", t.Length)
		}
	case TypeDatetime, TypeTimestamp, TypeTime:
		if t.Fsp > 0 {
			fmt.Fprintf(&b, "(%d)", t.Fsp)
		}
	case TypeEnum, TypeSet:
		b.WriteByte('(')
		for i, e := range t.Elems {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(QuoteString(e))
		}
		b.WriteByte(')')
	}
	if t.Unsigned && (t.IsInteger() || t.Kind == TypeDecimal || t.Kind == TypeFloat || t.Kind == TypeDouble) {
		b.WriteString(" unsigned")
	}
	return b.String()
}

// SQL is the type as it goes into a MySQL column definition, with the
// character set and collation of text types.
func (t ColumnType) SQL() string {
	s := t.String()
	if t.IsText() || t.Kind == TypeEnum || t.Kind == TypeSet {
		if t.Charset != "" {
			s += " CHARACTER SET " + t.Charset
		}
		if t.Collation != "" {
			s += " COLLATE " + t.Collation
		}
	}
	return s
}

// Validate checks that the type's parameters are in MySQL's ranges.
func (t ColumnType) Validate() error {
	switch t.Kind {
	case TypeDecimal:
		if t.Length < 1 || t.Length > 65 || t.Scale < 0 || t.Scale > 30 || t.Scale > t.Length {
			return fmt.Errorf("decimal(%d,%d): precision must be 1–65 and scale 0–30, at most the precision", t.Length, t.Scale)
		}
	case TypeChar:
		if t.Length < 0 || t.Length > 255 {
			return fmt.Errorf("char(%d): length must be 0–255", t.Length)
		}
	case TypeBinary:
		if t.Length < 0 || t.Length > 255 {
			return fmt.Errorf("binary(%d): length must be 0–255", t.Length)
		}
	case TypeVarchar, TypeVarbinary:
		if t.Length < 1 || t.Length > 65535 {
			return fmt.Errorf("%s(%d): length must be 1–65535", t.Kind, t.Length)
		}
	case TypeBit:
		if t.Length < 1 || t.Length > 64 {
			return fmt.Errorf("bit(%d): width must be 1–64", t.Length)
		}
	case TypeDatetime, TypeTimestamp, TypeTime:
		if t.Fsp < 0 || t.Fsp > 6 {
			return fmt.Errorf("%s(%d): fractional seconds precision must be 0–6", t.Kind, t.Fsp)
		}
	case TypeEnum, TypeSet:
		if len(t.Elems) == 0 {
			return fmt.Errorf("%s: needs at least one element", t.Kind)
		}
		if t.Kind == TypeSet && len(t.Elems) > 64 {
			return fmt.Errorf("set: at most 64 elements, have %d", len(t.Elems))
		}
	default:
		known := false
		for _, k := range AllTypeKinds {
			if k == t.Kind {
				known = true
				break
			}
		}
		if !known {
			return fmt.Errorf("unknown column type %q", t.Kind)
		}
	}
	return nil
}

// QuoteString quotes s as a MySQL string literal.
func QuoteString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	WriteQuoted(&b, s)
	return b.String()
}

// StringWriter is what WriteQuoted writes to: a strings.Builder or a
// bytes.Buffer.
type StringWriter interface {
	WriteString(s string) (int, error)
	WriteByte(c byte) error
}

// WriteQuoted writes s to b as a MySQL string literal: QuoteString without
// the intermediate string, for renderers that write a statement's every
// value (copying the runs between escapes, not byte by byte).
func WriteQuoted(b StringWriter, s string) {
	b.WriteByte('\'')
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '\'':
			esc = "''"
		case '\\':
			esc = `\\`
		case 0:
			esc = `\0`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case 0x1a:
			esc = `\Z`
		default:
			continue
		}
		b.WriteString(s[start:i])
		b.WriteString(esc)
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('\'')
}

// QuoteIdent quotes a MySQL identifier with backticks.
func QuoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// IntRange is the range of an integer kind; for unsigned kinds min is 0 and
// max is given by umax.
func IntRange(k TypeKind) (min int64, max int64, umax uint64) {
	var bits uint
	switch k {
	case TypeTinyInt:
		bits = 8
	case TypeSmallInt:
		bits = 16
	case TypeMediumInt:
		bits = 24
	case TypeInt:
		bits = 32
	case TypeBigInt:
		return -1 << 63, 1<<63 - 1, ^uint64(0)
	default:
		return 0, 0, 0
	}
	return -(1 << (bits - 1)), 1<<(bits-1) - 1, 1<<bits - 1
}

// FormatFsp is a helper for the canonical time forms: it renders the
// fractional part (microseconds) with exactly fsp digits, or nothing for 0.
func FormatFsp(micros int, fsp int) string {
	if fsp <= 0 {
		return ""
	}
	s := strconv.Itoa(1000000 + micros)[1:]
	return "." + s[:fsp]
}
