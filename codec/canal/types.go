package canal

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// JavaSQLType is a java.sql.Types code, which canal-json puts in sqlType.
type JavaSQLType int32

// The codes canal-json uses (JDK 8's java.sql.Types).
const (
	JavaBit       JavaSQLType = -7
	JavaTinyInt   JavaSQLType = -6
	JavaSmallInt  JavaSQLType = 5
	JavaInteger   JavaSQLType = 4
	JavaBigInt    JavaSQLType = -5
	JavaReal      JavaSQLType = 7
	JavaDouble    JavaSQLType = 8
	JavaDecimal   JavaSQLType = 3
	JavaChar      JavaSQLType = 1
	JavaVarchar   JavaSQLType = 12
	JavaDate      JavaSQLType = 91
	JavaTime      JavaSQLType = 92
	JavaTimestamp JavaSQLType = 93
	JavaBlob      JavaSQLType = 2004
	JavaClob      JavaSQLType = 2005
)

// baseJavaType is the code of a column type before TiCDC's promotion of
// large unsigned values (see JavaType).
func baseJavaType(t model.ColumnType) JavaSQLType {
	switch t.Kind {
	case model.TypeTinyInt:
		return JavaTinyInt
	case model.TypeSmallInt:
		return JavaSmallInt
	case model.TypeMediumInt, model.TypeInt:
		return JavaInteger
	case model.TypeBigInt:
		return JavaBigInt
	case model.TypeFloat:
		return JavaReal
	case model.TypeDouble:
		return JavaDouble
	case model.TypeDecimal:
		return JavaDecimal
	case model.TypeChar:
		return JavaChar
	case model.TypeVarchar, model.TypeYear, model.TypeJSON:
		return JavaVarchar
	case model.TypeTinyText, model.TypeText, model.TypeMediumText, model.TypeLongText:
		return JavaClob
	case model.TypeBinary, model.TypeVarbinary, model.TypeTinyBlob, model.TypeBlob, model.TypeMediumBlob, model.TypeLongBlob:
		return JavaBlob
	case model.TypeDate:
		return JavaDate
	case model.TypeDatetime, model.TypeTimestamp:
		return JavaTimestamp
	case model.TypeTime:
		return JavaTime
	case model.TypeEnum:
		return JavaInteger
	case model.TypeSet, model.TypeBit:
		return JavaBit
	}
	return JavaVarchar
}

// JavaType is the sqlType code of one column value. Like canal (and TiCDC),
// an unsigned integer whose value does not fit the signed range of its
// type is promoted to the next wider type: tinyint → smallint, smallint →
// integer, int → bigint, bigint → decimal. mediumint fits in INTEGER
// either way.
func JavaType(t model.ColumnType, v model.Value) JavaSQLType {
	jt := baseJavaType(t)
	if !t.Unsigned || !t.IsInteger() || v.Kind != model.ValueUint {
		return jt
	}
	switch t.Kind {
	case model.TypeTinyInt:
		if v.Uint() > math.MaxInt8 {
			return JavaSmallInt
		}
	case model.TypeSmallInt:
		if v.Uint() > math.MaxInt16 {
			return JavaInteger
		}
	case model.TypeInt:
		if v.Uint() > math.MaxInt32 {
			return JavaBigInt
		}
	case model.TypeBigInt:
		if v.Uint() > math.MaxInt64 {
			return JavaDecimal
		}
	}
	return jt
}

// MySQLType is the mysqlType string of a column: the base type name in
// lower case, with " unsigned" for unsigned numbers ("int unsigned",
// "varbinary", "datetime"), as TiCDC writes it. With full set (canal's
// own form, TiCDC's content-compatible mode) the type's parameters are
// included ("decimal(10,4)", "enum('a','b')").
func MySQLType(t model.ColumnType, full bool) string {
	if full {
		return t.String()
	}
	s := string(t.Kind)
	if t.Unsigned && (t.IsInteger() || t.Kind == model.TypeDecimal || t.Kind == model.TypeFloat || t.Kind == model.TypeDouble) {
		s += " unsigned"
	}
	return s
}

// isBinaryMySQLType reports the mysqlType strings whose values are carried
// as ISO-8859-1 text, as TiCDC's decoder recognises them.
func isBinaryMySQLType(s string) bool {
	return strings.Contains(s, "blob") || strings.Contains(s, "binary")
}

// EventType is canal's type of a DDL event, as TiCDC maps DDL kinds to it.
func EventType(k model.DDLKind) string {
	switch k {
	case model.DDLCreateTable:
		return "CREATE"
	case model.DDLRenameTable:
		return "RENAME"
	case model.DDLAddIndex:
		return "CINDEX"
	case model.DDLDropIndex:
		return "DINDEX"
	case model.DDLAddColumn, model.DDLDropColumn, model.DDLModifyColumn, model.DDLRenameColumn:
		return "ALTER"
	case model.DDLDropTable:
		return "ERASE"
	case model.DDLTruncateTable:
		return "TRUNCATE"
	}
	// create/drop schema and everything else
	return "QUERY"
}

// enumIndex is the 1-based position of an enum value, which canal-json
// carries instead of the name (0 is MySQL's index of the invalid ” value).
func enumIndex(t model.ColumnType, name string) (uint64, error) {
	if name == "" {
		return 0, nil
	}
	for i, e := range t.Elems {
		if e == name {
			return uint64(i + 1), nil
		}
	}
	return 0, fmt.Errorf("%q is not an element of %s", name, t)
}

// setBits is the bitmask canal-json carries for a set value: bit i for the
// i-th element.
func setBits(t model.ColumnType, names string) (uint64, error) {
	if names == "" {
		return 0, nil
	}
	var bits uint64
	for _, n := range strings.Split(names, ",") {
		found := false
		for i, e := range t.Elems {
			if e == n {
				bits |= 1 << uint(i)
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("%q is not a member of %s", n, t)
		}
	}
	return bits, nil
}

// enumName reverses enumIndex.
func enumName(t model.ColumnType, idx uint64) (string, error) {
	if idx == 0 {
		return "", nil
	}
	if idx > uint64(len(t.Elems)) {
		return "", fmt.Errorf("enum index %d is past the %d elements of %s", idx, len(t.Elems), t)
	}
	return t.Elems[idx-1], nil
}

// setNames reverses setBits: member names in definition order.
func setNames(t model.ColumnType, bits uint64) (string, error) {
	if len(t.Elems) < 64 && bits>>uint(len(t.Elems)) != 0 {
		return "", fmt.Errorf("set bits %#x name members past the %d elements of %s", bits, len(t.Elems), t)
	}
	var b strings.Builder
	for i, e := range t.Elems {
		if bits&(1<<uint(i)) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e)
	}
	return b.String(), nil
}

// formatFloat renders a float the way TiCDC's canal-json does: no
// exponent, the shortest digits that round-trip at the column's precision.
func formatFloat(f float64, t model.ColumnType) string {
	if t.Kind == model.TypeFloat {
		return strconv.FormatFloat(f, 'f', -1, 32)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
