package tidb

import (
	"fmt"
	"strings"

	timodel "github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/parser/charset"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/types"

	"github.com/raftcdc/raftcdc/model"
)

// TiDB is MySQL-compatible, so its types map onto model.ColumnType one to
// one:
//
//	tinyint … bigint [unsigned]  → the integer kinds (Unsigned)
//	decimal(p,s)                → decimal, Length p, Scale s
//	float, double               → float, double
//	char, varchar (non-binary)  → char, varchar, Length, Charset, Collation
//	binary, varbinary           → binary, varbinary (charset binary)
//	tinytext … longtext         → the text kinds; the blob kinds when binary
//	date, datetime(fsp), timestamp(fsp), time(fsp), year
//	enum, set                   → enum, set with Elems
//	bit(n)                      → bit, Length n
//	json                        → json
//
// TiDB's vector and geometry types have no MySQL equivalent here and make
// the table unsupported (an error naming the column).

// columnType maps one TiDB column type.
func columnType(ft *types.FieldType) (model.ColumnType, error) {
	flag := ft.GetFlag()
	t := model.ColumnType{Unsigned: mysql.HasUnsignedFlag(flag)}
	binary := ft.GetCharset() == charset.CharsetBin
	text := func(kind, blob model.TypeKind) {
		if binary {
			t.Kind = blob
			return
		}
		t.Kind = kind
		t.Charset, t.Collation = ft.GetCharset(), ft.GetCollate()
	}
	switch ft.GetType() {
	case mysql.TypeTiny:
		t.Kind = model.TypeTinyInt
	case mysql.TypeShort:
		t.Kind = model.TypeSmallInt
	case mysql.TypeInt24:
		t.Kind = model.TypeMediumInt
	case mysql.TypeLong:
		t.Kind = model.TypeInt
	case mysql.TypeLonglong:
		t.Kind = model.TypeBigInt
	case mysql.TypeNewDecimal:
		t.Kind, t.Length, t.Scale = model.TypeDecimal, ft.GetFlen(), ft.GetDecimal()
		if t.Length <= 0 {
			t.Length = 10
		}
		if t.Scale < 0 {
			t.Scale = 0
		}
	case mysql.TypeFloat:
		t.Kind = model.TypeFloat
	case mysql.TypeDouble:
		t.Kind = model.TypeDouble
	case mysql.TypeString:
		text(model.TypeChar, model.TypeBinary)
		t.Length = max(ft.GetFlen(), 0)
	case mysql.TypeVarchar, mysql.TypeVarString:
		text(model.TypeVarchar, model.TypeVarbinary)
		t.Length = max(ft.GetFlen(), 1)
	case mysql.TypeTinyBlob:
		text(model.TypeTinyText, model.TypeTinyBlob)
	case mysql.TypeBlob:
		text(model.TypeText, model.TypeBlob)
	case mysql.TypeMediumBlob:
		text(model.TypeMediumText, model.TypeMediumBlob)
	case mysql.TypeLongBlob:
		text(model.TypeLongText, model.TypeLongBlob)
	case mysql.TypeDate:
		t.Kind = model.TypeDate
	case mysql.TypeDatetime:
		t.Kind, t.Fsp = model.TypeDatetime, max(ft.GetDecimal(), 0)
	case mysql.TypeTimestamp:
		t.Kind, t.Fsp = model.TypeTimestamp, max(ft.GetDecimal(), 0)
	case mysql.TypeDuration:
		t.Kind, t.Fsp = model.TypeTime, max(ft.GetDecimal(), 0)
	case mysql.TypeYear:
		t.Kind = model.TypeYear
	case mysql.TypeEnum:
		t.Kind, t.Elems = model.TypeEnum, append([]string(nil), ft.GetElems()...)
		t.Charset, t.Collation = ft.GetCharset(), ft.GetCollate()
	case mysql.TypeSet:
		t.Kind, t.Elems = model.TypeSet, append([]string(nil), ft.GetElems()...)
		t.Charset, t.Collation = ft.GetCharset(), ft.GetCollate()
	case mysql.TypeBit:
		t.Kind, t.Length = model.TypeBit, ft.GetFlen()
		if t.Length <= 0 {
			t.Length = 1
		}
	case mysql.TypeJSON:
		t.Kind = model.TypeJSON
	default:
		return t, fmt.Errorf("type %s has no MySQL equivalent", ft.String())
	}
	if !t.IsInteger() && t.Kind != model.TypeDecimal && t.Kind != model.TypeFloat && t.Kind != model.TypeDouble {
		t.Unsigned = false
	}
	return t, nil
}

// replicated reports whether a column is in the rows raftcdc emits:
// public, not hidden, and stored (a virtual generated column is computed
// by the downstream from its definition, as TiCDC leaves it out).
func replicated(c *timodel.ColumnInfo) bool {
	return c.State == timodel.StatePublic && !c.Hidden && !c.IsVirtualGenerated()
}

// tableSchema builds the model schema of one TiDB table version. Version
// is the table's UpdateTS: the start ts of the DDL that last changed it,
// the same on every capture.
func tableSchema(dbName string, info *timodel.TableInfo, logicalID int64) (*model.TableSchema, error) {
	s := &model.TableSchema{
		Table:   model.TableName{ID: logicalID, Schema: dbName, Table: info.Name.O},
		Version: info.UpdateTS,
	}
	for _, c := range info.Columns {
		if !replicated(c) {
			continue
		}
		ct, err := columnType(&c.FieldType)
		if err != nil {
			return nil, fmt.Errorf("table %s.%s column %s: %w", dbName, info.Name.O, c.Name.O, err)
		}
		s.Columns = append(s.Columns, model.Column{Name: c.Name.O, Type: ct, Nullable: !mysql.HasNotNullFlag(c.GetFlag())})
	}
	if info.PKIsHandle {
		if pk := info.GetPkColInfo(); pk != nil {
			s.Indexes = append(s.Indexes, model.Index{Name: "PRIMARY", Columns: []string{pk.Name.O}, Primary: true, Unique: true})
		}
	}
	for _, ix := range info.Indices {
		if ix.State != timodel.StatePublic {
			continue
		}
		mi := model.Index{Name: ix.Name.O, Primary: ix.Primary, Unique: ix.Unique || ix.Primary}
		ok := true
		for _, ic := range ix.Columns {
			if s.ColumnIndex(ic.Name.O) < 0 {
				// An index over an expression or a hidden column: not one a
				// sink can key on.
				ok = false
				break
			}
			mi.Columns = append(mi.Columns, ic.Name.O)
		}
		if ok {
			s.Indexes = append(s.Indexes, mi)
		}
	}
	return s, nil
}

// systemSchema reports TiDB's own databases, which changefeeds never list.
func systemSchema(name string) bool {
	switch strings.ToLower(name) {
	case "mysql", "information_schema", "performance_schema", "metrics_schema", "sys", "lightning_task_info", "tidb_cdc", "workload_schema":
		return true
	}
	return false
}
