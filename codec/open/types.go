package open

import "github.com/raftcdc/raftcdc/model"

// MySQL's column type codes.
const (
	mysqlTinyInt    = 1
	mysqlSmallInt   = 2
	mysqlInt        = 3
	mysqlFloat      = 4
	mysqlDouble     = 5
	mysqlTimestamp  = 7
	mysqlBigInt     = 8
	mysqlMediumInt  = 9
	mysqlDate       = 10
	mysqlTime       = 11
	mysqlDatetime   = 12
	mysqlYear       = 13
	mysqlVarchar    = 15
	mysqlBit        = 16
	mysqlJSON       = 245
	mysqlDecimal    = 246
	mysqlEnum       = 247
	mysqlSet        = 248
	mysqlTinyBlob   = 249
	mysqlMediumBlob = 250
	mysqlLongBlob   = 251
	mysqlBlob       = 252
	mysqlVarString  = 253
	mysqlString     = 254
)

// TypeCode is MySQL's type code of a column type, as the open protocol and
// canal-json's mysqlType carry it: text and blob kinds share codes and are
// told apart by the binary flag.
func TypeCode(t model.ColumnType) byte {
	switch t.Kind {
	case model.TypeTinyInt:
		return mysqlTinyInt
	case model.TypeSmallInt:
		return mysqlSmallInt
	case model.TypeMediumInt:
		return mysqlMediumInt
	case model.TypeInt:
		return mysqlInt
	case model.TypeBigInt:
		return mysqlBigInt
	case model.TypeDecimal:
		return mysqlDecimal
	case model.TypeFloat:
		return mysqlFloat
	case model.TypeDouble:
		return mysqlDouble
	case model.TypeChar, model.TypeBinary:
		return mysqlString
	case model.TypeVarchar, model.TypeVarbinary:
		return mysqlVarchar
	case model.TypeTinyText, model.TypeTinyBlob:
		return mysqlTinyBlob
	case model.TypeText, model.TypeBlob:
		return mysqlBlob
	case model.TypeMediumText, model.TypeMediumBlob:
		return mysqlMediumBlob
	case model.TypeLongText, model.TypeLongBlob:
		return mysqlLongBlob
	case model.TypeDate:
		return mysqlDate
	case model.TypeDatetime:
		return mysqlDatetime
	case model.TypeTimestamp:
		return mysqlTimestamp
	case model.TypeTime:
		return mysqlTime
	case model.TypeYear:
		return mysqlYear
	case model.TypeEnum:
		return mysqlEnum
	case model.TypeSet:
		return mysqlSet
	case model.TypeBit:
		return mysqlBit
	case model.TypeJSON:
		return mysqlJSON
	}
	return mysqlVarString
}

func isIntCode(c byte) bool {
	switch c {
	case mysqlTinyInt, mysqlSmallInt, mysqlMediumInt, mysqlInt, mysqlBigInt:
		return true
	}
	return false
}

// DDLActionCode is TiDB's DDL action type code for a DDL kind (0 when TiDB
// has none for it).
func DDLActionCode(k model.DDLKind) int {
	switch k {
	case model.DDLCreateSchema:
		return 1
	case model.DDLDropSchema:
		return 2
	case model.DDLCreateTable:
		return 3
	case model.DDLDropTable:
		return 4
	case model.DDLAddColumn:
		return 5
	case model.DDLDropColumn:
		return 6
	case model.DDLAddIndex:
		return 7
	case model.DDLDropIndex:
		return 8
	case model.DDLTruncateTable:
		return 11
	case model.DDLModifyColumn, model.DDLRenameColumn:
		return 12
	case model.DDLRenameTable:
		return 14
	}
	return 0
}
