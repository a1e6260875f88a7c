package tidbfake

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/meta"
	"github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/charset"
	"github.com/pingcap/tidb/pkg/parser/format"
	pmodel "github.com/pingcap/tidb/pkg/parser/model"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/parser/opcode"
	ptypes "github.com/pingcap/tidb/pkg/parser/types"
	"github.com/pingcap/tidb/pkg/types"
	_ "github.com/pingcap/tidb/pkg/types/parser_driver" // the parser's value expressions
)

// HistoryTableID is the table ID of mysql.tidb_ddl_history, where TiDB
// records every finished DDL job (pkg/ddl's HistoryTableID; that package is
// far too large to import for one constant).
const HistoryTableID = meta.MaxInt48 - 3

// historyTableSQL is mysql.tidb_ddl_history's definition.
const historyTableSQL = "CREATE TABLE mysql.tidb_ddl_history (job_id BIGINT NOT NULL, job_meta LONGBLOB, db_name CHAR(64), table_name CHAR(64), schema_ids TEXT(65535), table_ids TEXT(65535), create_time DATETIME, PRIMARY KEY (job_id))"

// fakeTable is a table of the fake TiDB: its meta as TiDB stores it, and
// what the fake needs to write rows (the next _tidb_rowid and, for tables
// whose handle is a row ID, the row ID of every primary key).
type fakeTable struct {
	info      *model.TableInfo
	dbID      int64
	nextRowID int64
	rowIDs    map[string]int64
}

// catalog is the fake's schema state: the latest version of every
// database and table. Old versions live in the MVCC store's meta keys.
type catalog struct {
	nextID  int64
	dbs     map[int64]*model.DBInfo
	tables  map[int64]*fakeTable
	version int64
}

func newCatalog() *catalog {
	return &catalog{nextID: 100, dbs: map[int64]*model.DBInfo{}, tables: map[int64]*fakeTable{}}
}

func (c *catalog) allocID() int64 {
	c.nextID++
	return c.nextID
}

func (c *catalog) dbByName(name string) *model.DBInfo {
	for _, d := range c.dbs {
		if d.Name.L == strings.ToLower(name) {
			return d
		}
	}
	return nil
}

func (c *catalog) tableByName(db, table string) *fakeTable {
	d := c.dbByName(db)
	if d == nil {
		return nil
	}
	for _, t := range c.tables {
		if t.dbID == d.ID && t.info.Name.L == strings.ToLower(table) {
			return t
		}
	}
	return nil
}

// resolve finds a statement's table, defaulting its schema to defDB.
func (c *catalog) resolve(tn *ast.TableName, defDB string) (*model.DBInfo, *fakeTable, error) {
	db := tn.Schema.O
	if db == "" {
		db = defDB
	}
	d := c.dbByName(db)
	if d == nil {
		return nil, nil, fmt.Errorf("unknown database %q", db)
	}
	t := c.tableByName(db, tn.Name.O)
	if t == nil {
		return d, nil, fmt.Errorf("table %s.%s does not exist", db, tn.Name.O)
	}
	return d, t, nil
}

// parseOne parses one statement with TiDB's parser.
func parseOne(sql string) (ast.StmtNode, error) {
	stmt, err := parser.New().ParseOneStmt(sql, "", "")
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", sql, err)
	}
	return stmt, nil
}

func restoreExpr(e ast.ExprNode) (string, error) {
	var b strings.Builder
	if err := e.Restore(format.NewRestoreCtx(format.DefaultRestoreFlags, &b)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// literal evaluates a constant expression (a literal, possibly negated).
func literal(e ast.ExprNode) (types.Datum, error) {
	switch x := e.(type) {
	case ast.ValueExpr:
		return types.NewDatum(x.GetValue()), nil
	case *ast.UnaryOperationExpr:
		if x.Op == opcode.Minus {
			d, err := literal(x.V)
			if err != nil {
				return d, err
			}
			switch d.Kind() {
			case types.KindInt64:
				return types.NewIntDatum(-d.GetInt64()), nil
			case types.KindUint64:
				return types.NewIntDatum(-int64(d.GetUint64())), nil
			case types.KindFloat64:
				return types.NewFloat64Datum(-d.GetFloat64()), nil
			case types.KindMysqlDecimal:
				var out types.MyDecimal
				if err := types.DecimalSub(types.NewDecFromInt(0), d.GetMysqlDecimal(), &out); err != nil {
					return d, err
				}
				return types.NewDecimalDatum(&out), nil
			}
		}
	}
	s, _ := restoreExpr(e)
	return types.Datum{}, fmt.Errorf("the fake TiDB takes only literal defaults, not %s", s)
}

// fieldType completes a column type the way TiDB's DDL does: default
// lengths, charsets and collations, binary flags.
func fieldType(def *types.FieldType) *types.FieldType {
	ft := def.Clone()
	tp := ft.GetType()
	if ft.GetFlen() == types.UnspecifiedLength {
		flen, dec := mysql.GetDefaultFieldLengthAndDecimal(tp)
		ft.SetFlen(flen)
		if ft.GetDecimal() == types.UnspecifiedLength {
			ft.SetDecimal(dec)
		}
	}
	switch tp {
	case mysql.TypeDatetime, mysql.TypeTimestamp, mysql.TypeDuration, mysql.TypeNewDecimal:
		if ft.GetDecimal() == types.UnspecifiedLength {
			ft.SetDecimal(0)
		}
	case mysql.TypeBit:
		if ft.GetFlen() <= 0 {
			ft.SetFlen(1)
		}
	}
	switch {
	case tp == mysql.TypeJSON:
		ft.SetCharset(charset.CharsetBin)
		ft.SetCollate(charset.CollationBin)
		ft.AddFlag(mysql.BinaryFlag)
	case ptypes.HasCharset(ft):
		if ft.GetCharset() == "" {
			ft.SetCharset(charset.CharsetUTF8MB4)
		}
		if ft.GetCollate() == "" {
			if ft.GetCharset() == charset.CharsetBin {
				ft.SetCollate(charset.CollationBin)
			} else {
				ft.SetCollate(charset.CollationUTF8MB4)
			}
		}
		if ft.GetCharset() == charset.CharsetBin {
			ft.AddFlag(mysql.BinaryFlag)
		}
	default:
		ft.SetCharset(charset.CharsetBin)
		ft.SetCollate(charset.CollationBin)
		ft.AddFlag(mysql.BinaryFlag)
	}
	return ft
}

// buildColumn turns a column definition into TiDB's ColumnInfo. Keys named
// in the column's own options are returned as constraints.
func buildColumn(def *ast.ColumnDef, id int64, offset int) (*model.ColumnInfo, []*ast.Constraint, error) {
	col := &model.ColumnInfo{
		ID:        id,
		Name:      def.Name.Name,
		Offset:    offset,
		FieldType: *fieldType(def.Tp),
		State:     model.StatePublic,
		Version:   model.CurrLatestColumnInfoVersion,
	}
	var cons []*ast.Constraint
	keyOf := func(tp ast.ConstraintType) *ast.Constraint {
		return &ast.Constraint{Tp: tp, Keys: []*ast.IndexPartSpecification{{Column: &ast.ColumnName{Name: def.Name.Name}}}}
	}
	for _, o := range def.Options {
		switch o.Tp {
		case ast.ColumnOptionNotNull:
			col.AddFlag(mysql.NotNullFlag)
		case ast.ColumnOptionNull:
			col.DelFlag(mysql.NotNullFlag)
		case ast.ColumnOptionPrimaryKey:
			col.AddFlag(mysql.NotNullFlag)
			c := keyOf(ast.ConstraintPrimaryKey)
			c.Option = &ast.IndexOption{PrimaryKeyTp: o.PrimaryKeyTp}
			cons = append(cons, c)
		case ast.ColumnOptionUniqKey:
			cons = append(cons, keyOf(ast.ConstraintUniqKey))
		case ast.ColumnOptionAutoIncrement:
			col.AddFlag(mysql.AutoIncrementFlag)
		case ast.ColumnOptionComment:
			if v, err := literal(o.Expr); err == nil {
				col.Comment, _ = v.ToString()
			}
		case ast.ColumnOptionDefaultValue:
			d, err := literal(o.Expr)
			if err != nil {
				return nil, nil, fmt.Errorf("column %s: %w", def.Name.Name.O, err)
			}
			if d.IsNull() {
				col.DefaultValue, col.OriginDefaultValue = nil, nil
				continue
			}
			v, err := d.ConvertTo(types.StrictContext, &col.FieldType)
			if err != nil {
				return nil, nil, fmt.Errorf("column %s default: %w", def.Name.Name.O, err)
			}
			s, err := v.ToString()
			if err != nil {
				return nil, nil, err
			}
			col.DefaultValue, col.OriginDefaultValue = s, s
			if col.GetType() == mysql.TypeBit {
				col.DefaultValueBit = []byte(s)
			}
		case ast.ColumnOptionGenerated:
			return nil, nil, fmt.Errorf("column %s: the fake TiDB has no generated columns", def.Name.Name.O)
		}
	}
	return col, cons, nil
}

// applyConstraint adds a key to a table being built or altered.
func applyConstraint(t *model.TableInfo, c *ast.Constraint) error {
	var cols []*model.ColumnInfo
	for _, k := range c.Keys {
		if k.Column == nil {
			return fmt.Errorf("table %s: the fake TiDB takes only column keys", t.Name.O)
		}
		col := model.FindColumnInfo(t.Columns, k.Column.Name.L)
		if col == nil {
			return fmt.Errorf("table %s: key names unknown column %s", t.Name.O, k.Column.Name.O)
		}
		cols = append(cols, col)
	}
	primary := c.Tp == ast.ConstraintPrimaryKey
	unique := primary || c.Tp == ast.ConstraintUniq || c.Tp == ast.ConstraintUniqKey || c.Tp == ast.ConstraintUniqIndex
	clustered := pmodel.PrimaryKeyTypeDefault
	if c.Option != nil {
		clustered = c.Option.PrimaryKeyTp
	}
	if primary {
		for _, col := range cols {
			col.AddFlag(mysql.PriKeyFlag | mysql.NotNullFlag)
		}
		// TiDB's default (tidb_enable_clustered_index = INT_ONLY): a
		// single integer primary key is the row handle; any other primary
		// key is clustered only when it says so.
		if len(cols) == 1 && mysql.IsIntegerType(cols[0].GetType()) && clustered != pmodel.PrimaryKeyTypeNonClustered {
			t.PKIsHandle = true
			return nil
		}
		if clustered == pmodel.PrimaryKeyTypeClustered {
			t.IsCommonHandle = true
			t.CommonHandleVersion = 1
		}
	} else if unique && len(cols) == 1 {
		cols[0].AddFlag(mysql.UniqueKeyFlag)
	} else if len(cols) > 0 {
		cols[0].AddFlag(mysql.MultipleKeyFlag)
	}
	name := c.Name
	switch {
	case primary:
		name = mysql.PrimaryKeyName
	case name == "":
		name = cols[0].Name.O
		for i := 2; findIndex(t, name) != nil; i++ {
			name = cols[0].Name.O + "_" + strconv.Itoa(i)
		}
	}
	t.MaxIndexID++
	ix := &model.IndexInfo{ID: t.MaxIndexID, Name: pmodel.NewCIStr(name), Table: t.Name, State: model.StatePublic,
		Tp: pmodel.IndexTypeBtree, Unique: unique, Primary: primary}
	for i, col := range cols {
		length := types.UnspecifiedLength
		if c.Keys[i].Length > 0 {
			length = c.Keys[i].Length
		}
		ix.Columns = append(ix.Columns, &model.IndexColumn{Name: col.Name, Offset: col.Offset, Length: length})
	}
	t.Indices = append(t.Indices, ix)
	return nil
}

func findIndex(t *model.TableInfo, name string) *model.IndexInfo {
	for _, ix := range t.Indices {
		if ix.Name.L == strings.ToLower(name) {
			return ix
		}
	}
	return nil
}

// buildTable turns CREATE TABLE into TiDB's TableInfo.
func (c *catalog) buildTable(s *ast.CreateTableStmt, id int64) (*model.TableInfo, error) {
	t := &model.TableInfo{
		ID:      id,
		Name:    s.Table.Name,
		Charset: charset.CharsetUTF8MB4,
		Collate: charset.CollationUTF8MB4,
		State:   model.StatePublic,
		Version: model.CurrLatestTableInfoVersion,
	}
	var cons []*ast.Constraint
	for i, def := range s.Cols {
		col, cc, err := buildColumn(def, int64(i+1), i)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", s.Table.Name.O, err)
		}
		if model.FindColumnInfo(t.Columns, col.Name.L) != nil {
			return nil, fmt.Errorf("table %s: duplicate column %s", s.Table.Name.O, col.Name.O)
		}
		t.Columns = append(t.Columns, col)
		cons = append(cons, cc...)
	}
	t.MaxColumnID = int64(len(t.Columns))
	cons = append(cons, s.Constraints...)
	for _, con := range cons {
		switch con.Tp {
		case ast.ConstraintPrimaryKey, ast.ConstraintKey, ast.ConstraintIndex, ast.ConstraintUniq, ast.ConstraintUniqKey, ast.ConstraintUniqIndex:
			if err := applyConstraint(t, con); err != nil {
				return nil, err
			}
		}
	}
	if s.Partition != nil {
		p, err := c.buildPartitions(s.Partition)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", s.Table.Name.O, err)
		}
		t.Partition = p
	}
	return t, nil
}

// buildPartitions supports HASH(col) and RANGE(col) over an integer
// column: enough to show that partitions map to the logical table.
func (c *catalog) buildPartitions(p *ast.PartitionOptions) (*model.PartitionInfo, error) {
	expr, err := restoreExpr(p.Expr)
	if err != nil {
		return nil, err
	}
	if _, ok := p.Expr.(*ast.ColumnNameExpr); !ok {
		return nil, fmt.Errorf("the fake TiDB partitions by a column, not %s", expr)
	}
	info := &model.PartitionInfo{Type: p.Tp, Expr: expr, Enable: true}
	switch p.Tp {
	case pmodel.PartitionTypeHash:
		n := p.Num
		if n == 0 {
			n = uint64(len(p.Definitions))
		}
		if n == 0 {
			n = 1
		}
		info.Num = n
		for i := uint64(0); i < n; i++ {
			info.Definitions = append(info.Definitions, model.PartitionDefinition{ID: c.allocID(), Name: pmodel.NewCIStr("p" + strconv.FormatUint(i, 10))})
		}
	case pmodel.PartitionTypeRange:
		defs, err := c.rangeDefinitions(p.Definitions)
		if err != nil {
			return nil, err
		}
		info.Definitions = defs
		info.Num = uint64(len(defs))
	default:
		return nil, fmt.Errorf("the fake TiDB has HASH and RANGE partitions, not %s", p.Tp)
	}
	return info, nil
}

func (c *catalog) rangeDefinitions(defs []*ast.PartitionDefinition) ([]model.PartitionDefinition, error) {
	var out []model.PartitionDefinition
	for _, d := range defs {
		lt, ok := d.Clause.(*ast.PartitionDefinitionClauseLessThan)
		if !ok || len(lt.Exprs) != 1 {
			return nil, fmt.Errorf("partition %s: the fake TiDB takes VALUES LESS THAN (one value)", d.Name.O)
		}
		bound := "MAXVALUE"
		if _, max := lt.Exprs[0].(*ast.MaxValueExpr); !max {
			v, err := literal(lt.Exprs[0])
			if err != nil {
				return nil, err
			}
			bound, _ = v.ToString()
		}
		out = append(out, model.PartitionDefinition{ID: c.allocID(), Name: d.Name, LessThan: []string{bound}})
	}
	return out, nil
}

// physicalIDs are the IDs under which a table's rows are stored.
func physicalIDs(t *model.TableInfo) []int64 {
	if t.Partition == nil {
		return []int64{t.ID}
	}
	out := make([]int64, len(t.Partition.Definitions))
	for i, d := range t.Partition.Definitions {
		out[i] = d.ID
	}
	return out
}

// cloneTable deep-copies a TableInfo (TiDB's Clone shares nothing mutable
// that the fake changes).
func cloneTable(t *model.TableInfo) *model.TableInfo { return t.Clone() }

// publicColumns are the columns a row has, in order.
func publicColumns(t *model.TableInfo) []*model.ColumnInfo {
	var out []*model.ColumnInfo
	for _, c := range t.Columns {
		if c.State == model.StatePublic && !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

func renumber(t *model.TableInfo) {
	for i, c := range t.Columns {
		c.Offset = i
	}
	for _, ix := range t.Indices {
		for _, ic := range ix.Columns {
			if col := model.FindColumnInfo(t.Columns, ic.Name.L); col != nil {
				ic.Offset = col.Offset
			}
		}
	}
}
