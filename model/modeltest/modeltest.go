// Package modeltest holds fixtures for the change model that encoder,
// sink and verifier tests share: a table that uses every column type, and
// rows of edge values and NULLs for it. It is imported by tests only.
package modeltest

import (
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// AllTypesSchema is a table with one column of every type kind (several
// for the kinds whose parameters matter), a composite primary key and a
// unique key. Every column but the key columns is nullable.
func AllTypesSchema(schema, table string, id model.TableID, version uint64) *model.TableSchema {
	col := func(name string, t model.ColumnType) model.Column {
		return model.Column{Name: name, Type: t, Nullable: true}
	}
	s := &model.TableSchema{
		Table:   model.TableName{ID: id, Schema: schema, Table: table},
		Version: version,
		Columns: []model.Column{
			{Name: "k1", Type: model.ColumnType{Kind: model.TypeBigInt, Unsigned: true}},
			{Name: "k2", Type: model.ColumnType{Kind: model.TypeVarchar, Length: 32, Charset: "utf8mb4", Collation: "utf8mb4_bin"}},
			col("c_tinyint", model.ColumnType{Kind: model.TypeTinyInt}),
			col("c_tinyint_u", model.ColumnType{Kind: model.TypeTinyInt, Unsigned: true}),
			col("c_smallint", model.ColumnType{Kind: model.TypeSmallInt}),
			col("c_smallint_u", model.ColumnType{Kind: model.TypeSmallInt, Unsigned: true}),
			col("c_mediumint", model.ColumnType{Kind: model.TypeMediumInt}),
			col("c_int", model.ColumnType{Kind: model.TypeInt}),
			col("c_int_u", model.ColumnType{Kind: model.TypeInt, Unsigned: true}),
			col("c_bigint", model.ColumnType{Kind: model.TypeBigInt}),
			col("c_bigint_u", model.ColumnType{Kind: model.TypeBigInt, Unsigned: true}),
			col("c_decimal", model.ColumnType{Kind: model.TypeDecimal, Length: 10, Scale: 3}),
			col("c_decimal_max", model.ColumnType{Kind: model.TypeDecimal, Length: 65, Scale: 30}),
			col("c_float", model.ColumnType{Kind: model.TypeFloat}),
			col("c_double", model.ColumnType{Kind: model.TypeDouble}),
			col("c_char", model.ColumnType{Kind: model.TypeChar, Length: 10, Charset: "utf8mb4"}),
			col("c_varchar", model.ColumnType{Kind: model.TypeVarchar, Length: 255, Charset: "utf8mb4"}),
			col("c_tinytext", model.ColumnType{Kind: model.TypeTinyText, Charset: "utf8mb4"}),
			col("c_text", model.ColumnType{Kind: model.TypeText, Charset: "utf8mb4"}),
			col("c_mediumtext", model.ColumnType{Kind: model.TypeMediumText, Charset: "utf8mb4"}),
			col("c_longtext", model.ColumnType{Kind: model.TypeLongText, Charset: "utf8mb4"}),
			col("c_tinyblob", model.ColumnType{Kind: model.TypeTinyBlob}),
			col("c_blob", model.ColumnType{Kind: model.TypeBlob}),
			col("c_mediumblob", model.ColumnType{Kind: model.TypeMediumBlob}),
			col("c_longblob", model.ColumnType{Kind: model.TypeLongBlob}),
			col("c_binary", model.ColumnType{Kind: model.TypeBinary, Length: 8}),
			col("c_varbinary", model.ColumnType{Kind: model.TypeVarbinary, Length: 64}),
			col("c_date", model.ColumnType{Kind: model.TypeDate}),
			col("c_datetime", model.ColumnType{Kind: model.TypeDatetime, Fsp: 6}),
			col("c_timestamp", model.ColumnType{Kind: model.TypeTimestamp, Fsp: 3}),
			col("c_time", model.ColumnType{Kind: model.TypeTime, Fsp: 2}),
			col("c_year", model.ColumnType{Kind: model.TypeYear}),
			col("c_enum", model.ColumnType{Kind: model.TypeEnum, Elems: []string{"a", "b", "it's", "ü"}}),
			col("c_set", model.ColumnType{Kind: model.TypeSet, Elems: []string{"x", "y", "z"}}),
			col("c_bit1", model.ColumnType{Kind: model.TypeBit, Length: 1}),
			col("c_bit64", model.ColumnType{Kind: model.TypeBit, Length: 64}),
			col("c_json", model.ColumnType{Kind: model.TypeJSON}),
		},
		Indexes: []model.Index{
			{Name: "PRIMARY", Columns: []string{"k2", "k1"}, Primary: true},
			{Name: "uk_int", Columns: []string{"c_int"}, Unique: true},
		},
	}
	return s
}

// EdgeImages are after images for AllTypesSchema: the extremes of every
// type, multi-byte text, binary with zero bytes and bytes above 0x7f, a
// large JSON document, and a row of NULLs.
func EdgeImages() [][]model.Value {
	i, u, f := model.IntValue, model.UintValue, model.FloatValue
	s, b := model.StringValue, model.BytesValue
	bigJSON := `{"list":[` + strings.Repeat(`{"k":"v\u00fc","n":-1.5e-7,"t":true,"z":null},`, 200) + `0],"s":"<&>\"\\"}`
	allBytes := make([]byte, 256)
	for n := range allBytes {
		allBytes[n] = byte(n)
	}
	max := [][]model.Value{{
		u(^uint64(0)), s("键-κλειδί"),
		i(127), u(255), i(32767), u(65535), i(8388607), i(2147483647), u(4294967295), i(9223372036854775807), u(18446744073709551615),
		s("9999999.999"), s("99999999999999999999999999999999999.999999999999999999999999999999"),
		f(float64(float32(3.4028235e38))), f(1.7976931348623157e308),
		s("日本語テキスト"), s("héllo 😀 <&> \"q\" \\ tab\there\nnewline\r"), s("tiny"), s(strings.Repeat("text ", 100)), s("medium ü"), s(strings.Repeat("long ✓", 2000)),
		b([]byte{0}), b(allBytes), b([]byte("mid\x00blob\xff")), b(make([]byte, 70000)),
		b([]byte{'a', 0, 'b', 0xff, 0, 0, 0, 0}), b([]byte{5, 7, 10, 15, 36, 50, 43, 99, 120, 60, 38, 255, 254, 45, 55, 70}),
		s("9999-12-31"), s("9999-12-31 23:59:59.999999"), s("2038-01-19 03:14:07.999"), s("838:59:59.00"), i(2155),
		s("ü"), s("x,y,z"), u(1), u(^uint64(0)),
		s(bigJSON),
	}, {
		u(0), s(""),
		i(-128), u(0), i(-32768), u(0), i(-8388608), i(-2147483648), u(0), i(-9223372036854775808), u(0),
		s("-0.500"), s("-99999999999999999999999999999999999.999999999999999999999999999999"),
		f(float64(float32(-1.5e-45))), f(-4.9e-324),
		s(""), s(""), s(""), s(""), s(""), s(""),
		b([]byte{}), b([]byte{}), b([]byte{}), b([]byte{}),
		b(make([]byte, 8)), b([]byte{}),
		s("1000-01-01"), s("1000-01-01 00:00:00.000000"), s("1970-01-01 00:00:01.000"), s("-838:59:59.00"), i(1901),
		s(""), s(""), u(0), u(0),
		s(`[]`),
	}, {
		u(42), s("a'b`c"),
		model.Null(), model.Null(), model.Null(), model.Null(), model.Null(), model.Null(), model.Null(), model.Null(), model.Null(),
		model.Null(), model.Null(), model.Null(), model.Null(),
		model.Null(), model.Null(), model.Null(), model.Null(), model.Null(), model.Null(),
		model.Null(), model.Null(), model.Null(), model.Null(), model.Null(), model.Null(),
		model.Null(), model.Null(), model.Null(), model.Null(), model.Null(),
		model.Null(), model.Null(), model.Null(), model.Null(),
		model.Null(),
	}, {
		u(7), s("mid"),
		i(0), u(127), i(1), u(32768), i(-1), i(0), u(2147483648), i(1), u(9223372036854775808),
		s("0.000"), s("0.000000000000000000000000000001"),
		f(0.5), f(0.1),
		s("a  b"), s("NULL"), s(`\N`), s(`"`), s(","), s("'"),
		b([]byte(`\N`)), b([]byte("NULL")), b([]byte(",")), b([]byte("\"")),
		b([]byte("\\N\x00\x00\x00\x00\x00\x00")), b([]byte("\r\n")),
		s("2024-02-29"), s("2024-02-29 12:00:00.000001"), s("2024-02-29 12:00:00.500"), s("00:00:00.01"), i(2000),
		s("it's"), s("y"), u(0), u(1 << 63),
		s(`{"a":"\u2028","b":"\u0000"}`),
	}}
	return max
}
