package postgres

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// PGType is the PostgreSQL type a column of the change model's (MySQL's)
// type system is created with, spelled as format_type() prints it, so that
// the DDL translation can compare it with the catalog. The mapping, and
// why (see also DESIGN.md):
//
//	tinyint, tinyint unsigned, smallint, year → smallint
//	smallint unsigned, mediumint (both), int → integer
//	int unsigned, bigint → bigint
//	bigint unsigned     → numeric(20,0)   (no unsigned 64-bit type)
//	decimal(p,s)        → numeric(p,s)
//	float, double       → real, double precision
//	char(n), varchar(n) → character varying(n)  (MySQL returns CHAR without
//	                      its pad spaces: the model's value is that; char(0) → text)
//	*text, enum, set    → text   (enum/set as their canonical names)
//	binary, varbinary, *blob → bytea
//	date                → date
//	datetime(fsp)       → timestamp(fsp) without time zone
//	timestamp(fsp)      → timestamp(fsp) with time zone (values are UTC)
//	time(fsp)           → interval(fsp)  (MySQL's TIME spans ±838 hours)
//	bit(n)              → bit(n)
//	json                → json   (jsonb would refuse \u0000 and reorder keys)
func PGType(t model.ColumnType) string {
	switch t.Kind {
	case model.TypeTinyInt, model.TypeYear:
		return "smallint"
	case model.TypeSmallInt:
		if t.Unsigned {
			return "integer"
		}
		return "smallint"
	case model.TypeMediumInt:
		return "integer"
	case model.TypeInt:
		if t.Unsigned {
			return "bigint"
		}
		return "integer"
	case model.TypeBigInt:
		if t.Unsigned {
			return "numeric(20,0)"
		}
		return "bigint"
	case model.TypeDecimal:
		p := t.Length
		if p == 0 {
			p = 10
		}
		return fmt.Sprintf("numeric(%d,%d)", p, t.Scale)
	case model.TypeFloat:
		return "real"
	case model.TypeDouble:
		return "double precision"
	case model.TypeChar, model.TypeVarchar:
		if t.Length <= 0 {
			return "text"
		}
		return fmt.Sprintf("character varying(%d)", t.Length)
	case model.TypeTinyText, model.TypeText, model.TypeMediumText, model.TypeLongText, model.TypeEnum, model.TypeSet:
		return "text"
	case model.TypeBinary, model.TypeVarbinary, model.TypeTinyBlob, model.TypeBlob, model.TypeMediumBlob, model.TypeLongBlob:
		return "bytea"
	case model.TypeDate:
		return "date"
	case model.TypeDatetime:
		return fmt.Sprintf("timestamp(%d) without time zone", t.Fsp)
	case model.TypeTimestamp:
		return fmt.Sprintf("timestamp(%d) with time zone", t.Fsp)
	case model.TypeTime:
		return fmt.Sprintf("interval(%d)", t.Fsp)
	case model.TypeBit:
		n := t.Length
		if n <= 0 {
			n = 1
		}
		return fmt.Sprintf("bit(%d)", n)
	case model.TypeJSON:
		return "json"
	}
	return "text"
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteString is a standard-conforming string literal (the session sets
// standard_conforming_strings=on): only ' is doubled.
func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func qname(t model.TableName) string { return quoteIdent(t.Schema) + "." + quoteIdent(t.Table) }

// bitText renders a bit(n) value as n binary digits.
func bitText(u uint64, n int) string {
	if n <= 0 {
		n = 1
	}
	s := strconv.FormatUint(u, 2)
	if len(s) < n {
		s = strings.Repeat("0", n-len(s)) + s
	}
	return s
}

// textValue is a value in PostgreSQL's text input form for its column, as
// a literal takes it and as COPY's text format takes it (before escaping).
// ok is false for NULL.
func textValue(c model.Column, v model.Value) (s string, null bool, err error) {
	switch v.Kind {
	case model.ValueNull:
		return "", true, nil
	case model.ValueInt:
		return strconv.FormatInt(v.I, 10), false, nil
	case model.ValueUint:
		if c.Type.Kind == model.TypeBit {
			return bitText(v.Uint(), c.Type.Length), false, nil
		}
		return strconv.FormatUint(v.Uint(), 10), false, nil
	case model.ValueFloat:
		switch {
		case math.IsNaN(v.Float()):
			return "NaN", false, nil
		case math.IsInf(v.Float(), 1):
			return "Infinity", false, nil
		case math.IsInf(v.Float(), -1):
			return "-Infinity", false, nil
		}
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), false, nil
	case model.ValueBytes:
		return `\x` + hex.EncodeToString(v.B), false, nil
	case model.ValueString:
		if strings.IndexByte(v.S, 0) >= 0 {
			return "", false, fmt.Errorf("PostgreSQL text cannot hold a zero byte")
		}
		switch c.Type.Kind {
		case model.TypeDecimal:
			if !isDecimal(v.S) {
				return "", false, fmt.Errorf("%q is not a decimal number", v.S)
			}
		case model.TypeTimestamp:
			return v.S + "+00", false, nil
		}
		return v.S, false, nil
	}
	return "", false, fmt.Errorf("cannot write a %s value", v.Kind)
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

// literal is a value as an SQL literal.
func literal(c model.Column, v model.Value) (string, error) {
	s, null, err := textValue(c, v)
	if err != nil {
		return "", err
	}
	if null {
		return "NULL", nil
	}
	switch v.Kind {
	case model.ValueInt:
		return s, nil
	case model.ValueUint:
		if c.Type.Kind == model.TypeBit {
			return "B'" + s + "'", nil
		}
		return s, nil
	}
	if c.Type.Kind == model.TypeDecimal {
		return s, nil
	}
	return quoteString(s), nil
}

// decodeText turns a value in PostgreSQL's text output (DateStyle ISO,
// IntervalStyle postgres, TimeZone UTC, bytea_output hex) back into the
// model's canonical form for the column's type.
func decodeText(t model.ColumnType, s *string) (model.Value, error) {
	if s == nil {
		return model.Null(), nil
	}
	v := *s
	switch {
	case t.Kind == model.TypeBit:
		u, err := strconv.ParseUint(v, 2, 64)
		return model.UintValue(u), err
	case t.IsInteger() && t.Unsigned:
		u, err := strconv.ParseUint(v, 10, 64)
		return model.UintValue(u), err
	case t.IsInteger() || t.Kind == model.TypeYear:
		i, err := strconv.ParseInt(v, 10, 64)
		return model.IntValue(i), err
	case t.Kind == model.TypeFloat:
		f, err := strconv.ParseFloat(v, 32)
		return model.FloatValue(f), err
	case t.Kind == model.TypeDouble:
		f, err := strconv.ParseFloat(v, 64)
		return model.FloatValue(f), err
	case t.IsBinary():
		b, err := hex.DecodeString(strings.TrimPrefix(v, `\x`))
		return model.BytesValue(b), err
	case t.Kind == model.TypeDatetime:
		return model.StringValue(padFsp(v, t.Fsp)), nil
	case t.Kind == model.TypeTimestamp:
		v = strings.TrimSuffix(v, "+00")
		return model.StringValue(padFsp(v, t.Fsp)), nil
	case t.Kind == model.TypeTime:
		return model.StringValue(padFsp(v, t.Fsp)), nil
	}
	return model.StringValue(v), nil
}

// padFsp gives a time text exactly fsp fraction digits: PostgreSQL drops
// trailing zeros.
func padFsp(s string, fsp int) string {
	base, frac, _ := strings.Cut(s, ".")
	if fsp <= 0 {
		return base
	}
	if len(frac) > fsp {
		frac = frac[:fsp]
	}
	return base + "." + frac + strings.Repeat("0", fsp-len(frac))
}
