package tidbfake

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/kv"
	"github.com/pingcap/tidb/pkg/meta"
	"github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/charset"
	pmodel "github.com/pingcap/tidb/pkg/parser/model"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/tablecodec"
	"github.com/pingcap/tidb/pkg/types"
)

// DDL as TiDB runs it, in one transaction: the meta keys are changed by
// TiDB's meta.Mutator, the finished job (TiDB's model.Job, state synced,
// FinishedTS = the transaction's start ts) is written as a row of
// mysql.tidb_ddl_history encoded by TiDB's row codec and to the meta
// history, and the schema version is bumped. A new table's key range gets
// its own region, as TiDB's split-table does.

// ddlPlan is what one statement does: its job and the catalog change to
// make once the transaction has committed.
type ddlPlan struct {
	job    *model.Job
	apply  func()
	splits []int64 // table IDs whose ranges get their own regions
}

// ExecDDL runs one DDL statement. defaultDB is the database of unqualified
// names (USE). It returns the finished job; a statement that changes
// nothing (IF NOT EXISTS on an existing object) returns nil.
func (c *Cluster) ExecDDL(defaultDB, sql string) (*model.Job, error) {
	stmt, err := parseOne(sql)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	startTs := c.tsoLocked()
	tx := newMetaTxn(c.mvcc, startTs)
	m := meta.NewMutator(tx)
	plan, err := c.planDDL(stmt, defaultDB, m, startTs)
	if err != nil || plan == nil {
		return nil, err
	}
	job := plan.job
	job.ID = c.cat.allocID()
	job.Query = sql
	job.State = model.JobStateSynced
	job.SchemaState = model.StatePublic
	job.StartTS = startTs
	job.Version = model.JobVersion1
	ver, err := m.GenSchemaVersion()
	if err != nil {
		return nil, fmt.Errorf("DDL %q: bump schema version: %w", sql, err)
	}
	if job.BinlogInfo == nil {
		job.BinlogInfo = &model.HistoryInfo{}
	}
	job.BinlogInfo.SchemaVersion = ver
	job.BinlogInfo.FinishedTS = startTs
	if err := c.writeHistoryLocked(tx, m, job); err != nil {
		return nil, fmt.Errorf("DDL %q: %w", sql, err)
	}
	if _, err := c.commitLocked(tx.mutations(), startTs); err != nil {
		return nil, fmt.Errorf("DDL %q: %w", sql, err)
	}
	plan.apply()
	c.cat.version = ver
	for _, id := range plan.splits {
		start, _ := tableRecordRange(id)
		c.splitLocked(tablecodec.GenTablePrefix(id))
		c.splitLocked(start)
		next := tablecodec.GenTablePrefix(id + 1)
		c.splitLocked(next)
	}
	c.logf("tidbfake: DDL %s (job %d, type %s) finished at %d", sql, job.ID, job.Type, startTs)
	return job, nil
}

// writeHistoryLocked records a finished job where TiDB does.
func (c *Cluster) writeHistoryLocked(tx *metaTxn, m *meta.Mutator, job *model.Job) error {
	b, err := job.Encode(false)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	hist := c.cat.tables[HistoryTableID]
	if hist != nil {
		row := map[string]types.Datum{
			"job_id":     types.NewIntDatum(job.ID),
			"job_meta":   types.NewBytesDatum(b),
			"db_name":    types.NewStringDatum(job.SchemaName),
			"table_name": types.NewStringDatum(job.TableName),
			"schema_ids": types.NewStringDatum(strconv.FormatInt(job.SchemaID, 10)),
			"table_ids":  types.NewStringDatum(strconv.FormatInt(job.TableID, 10)),
			"create_time": types.NewTimeDatum(types.NewTime(types.FromGoTime(model.TSConvert2Time(job.StartTS).UTC()),
				mysql.TypeDatetime, 0)),
		}
		key, value, err := c.encodeRowLocked(hist, hist.info, row, HistoryTableID, kv.IntHandle(job.ID))
		if err != nil {
			return fmt.Errorf("encode history row: %w", err)
		}
		if err := tx.Set(key, value); err != nil {
			return err
		}
	}
	return m.AddHistoryDDLJob(job, false)
}

// createSystemTable adds a table of the mysql database with a fixed ID.
func (c *Cluster) createSystemTable(sql string, id int64) error {
	stmt, err := parseOne(sql)
	if err != nil {
		return err
	}
	ct := stmt.(*ast.CreateTableStmt)
	c.mu.Lock()
	defer c.mu.Unlock()
	db := c.cat.dbByName("mysql")
	info, err := c.cat.buildTable(ct, id)
	if err != nil {
		return err
	}
	startTs := c.tsoLocked()
	info.UpdateTS = startTs
	tx := newMetaTxn(c.mvcc, startTs)
	if err := meta.NewMutator(tx).CreateTableOrView(db.ID, info); err != nil {
		return err
	}
	if _, err := c.commitLocked(tx.mutations(), startTs); err != nil {
		return err
	}
	c.cat.tables[id] = &fakeTable{info: info, dbID: db.ID, rowIDs: map[string]int64{}}
	start, _ := tableRecordRange(id)
	c.splitLocked(start)
	c.splitLocked(tablecodec.GenTablePrefix(id + 1))
	return nil
}

func (c *Cluster) planDDL(stmt ast.StmtNode, defDB string, m *meta.Mutator, ts uint64) (*ddlPlan, error) {
	cat := c.cat
	switch s := stmt.(type) {
	case *ast.CreateDatabaseStmt:
		if d := cat.dbByName(s.Name.O); d != nil {
			if s.IfNotExists {
				return nil, nil
			}
			return nil, fmt.Errorf("database %s exists", s.Name.O)
		}
		db := &model.DBInfo{ID: cat.allocID(), Name: s.Name, Charset: charset.CharsetUTF8MB4, Collate: charset.CollationUTF8MB4, State: model.StatePublic}
		if err := m.CreateDatabase(db); err != nil {
			return nil, err
		}
		return &ddlPlan{
			job:   &model.Job{Type: model.ActionCreateSchema, SchemaID: db.ID, SchemaName: db.Name.O, BinlogInfo: &model.HistoryInfo{DBInfo: db}},
			apply: func() { cat.dbs[db.ID] = db },
		}, nil

	case *ast.DropDatabaseStmt:
		db := cat.dbByName(s.Name.O)
		if db == nil {
			if s.IfExists {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown database %s", s.Name.O)
		}
		for id, t := range cat.tables {
			if t.dbID == db.ID {
				if err := m.DropTableOrView(db.ID, id); err != nil {
					return nil, err
				}
			}
		}
		if err := m.DropDatabase(db.ID); err != nil {
			return nil, err
		}
		gone := *db
		gone.State = model.StateNone
		return &ddlPlan{
			job: &model.Job{Type: model.ActionDropSchema, SchemaID: db.ID, SchemaName: db.Name.O, BinlogInfo: &model.HistoryInfo{DBInfo: &gone}},
			apply: func() {
				for id, t := range cat.tables {
					if t.dbID == db.ID {
						delete(cat.tables, id)
					}
				}
				delete(cat.dbs, db.ID)
			},
		}, nil

	case *ast.CreateTableStmt:
		dbName := s.Table.Schema.O
		if dbName == "" {
			dbName = defDB
		}
		db := cat.dbByName(dbName)
		if db == nil {
			return nil, fmt.Errorf("unknown database %q", dbName)
		}
		if cat.tableByName(dbName, s.Table.Name.O) != nil {
			if s.IfNotExists {
				return nil, nil
			}
			return nil, fmt.Errorf("table %s.%s exists", dbName, s.Table.Name.O)
		}
		info, err := cat.buildTable(s, cat.allocID())
		if err != nil {
			return nil, err
		}
		info.UpdateTS = ts
		if err := m.CreateTableOrView(db.ID, info); err != nil {
			return nil, err
		}
		return &ddlPlan{
			job:    tableJob(model.ActionCreateTable, db, info.ID, info),
			apply:  func() { cat.tables[info.ID] = &fakeTable{info: info, dbID: db.ID, rowIDs: map[string]int64{}} },
			splits: physicalIDs(info),
		}, nil

	case *ast.DropTableStmt:
		if len(s.Tables) != 1 || s.IsView {
			return nil, fmt.Errorf("the fake TiDB drops one table per statement")
		}
		db, t, err := cat.resolve(s.Tables[0], defDB)
		if err != nil {
			if s.IfExists && t == nil && db != nil {
				return nil, nil
			}
			return nil, err
		}
		if err := m.DropTableOrView(db.ID, t.info.ID); err != nil {
			return nil, err
		}
		return &ddlPlan{
			job:   tableJob(model.ActionDropTable, db, t.info.ID, t.info),
			apply: func() { delete(cat.tables, t.info.ID) },
		}, nil

	case *ast.TruncateTableStmt:
		db, t, err := cat.resolve(s.Table, defDB)
		if err != nil {
			return nil, err
		}
		info := cloneTable(t.info)
		info.ID = cat.allocID()
		if info.Partition != nil {
			for i := range info.Partition.Definitions {
				info.Partition.Definitions[i].ID = cat.allocID()
			}
		}
		info.UpdateTS = ts
		if err := m.DropTableOrView(db.ID, t.info.ID); err != nil {
			return nil, err
		}
		if err := m.CreateTableOrView(db.ID, info); err != nil {
			return nil, err
		}
		old := t.info.ID
		return &ddlPlan{
			job: tableJob(model.ActionTruncateTable, db, old, info),
			apply: func() {
				delete(cat.tables, old)
				cat.tables[info.ID] = &fakeTable{info: info, dbID: db.ID, rowIDs: map[string]int64{}}
			},
			splits: physicalIDs(info),
		}, nil

	case *ast.RenameTableStmt:
		if len(s.TableToTables) != 1 {
			return nil, fmt.Errorf("the fake TiDB renames one table per statement")
		}
		return c.planRename(s.TableToTables[0].OldTable, s.TableToTables[0].NewTable, defDB, m, ts)

	case *ast.AlterTableStmt:
		if len(s.Specs) != 1 {
			return nil, fmt.Errorf("the fake TiDB takes one change per ALTER TABLE")
		}
		return c.planAlter(s.Table, s.Specs[0], defDB, m, ts)

	case *ast.CreateIndexStmt:
		tp := ast.ConstraintIndex
		if s.KeyType == ast.IndexKeyTypeUnique {
			tp = ast.ConstraintUniq
		}
		return c.planAlter(s.Table, &ast.AlterTableSpec{Tp: ast.AlterTableAddConstraint,
			Constraint: &ast.Constraint{Tp: tp, Name: s.IndexName, Keys: s.IndexPartSpecifications}}, defDB, m, ts)

	case *ast.DropIndexStmt:
		return c.planAlter(s.Table, &ast.AlterTableSpec{Tp: ast.AlterTableDropIndex, Name: s.IndexName}, defDB, m, ts)
	}
	return nil, fmt.Errorf("the fake TiDB does not run %T", stmt)
}

func tableJob(tp model.ActionType, db *model.DBInfo, tableID int64, info *model.TableInfo) *model.Job {
	return &model.Job{Type: tp, SchemaID: db.ID, SchemaName: db.Name.O, TableID: tableID, TableName: info.Name.O,
		BinlogInfo: &model.HistoryInfo{TableInfo: info}}
}

func (c *Cluster) planRename(from, to *ast.TableName, defDB string, m *meta.Mutator, ts uint64) (*ddlPlan, error) {
	cat := c.cat
	oldDB, t, err := cat.resolve(from, defDB)
	if err != nil {
		return nil, err
	}
	newDBName := to.Schema.O
	if newDBName == "" {
		newDBName = oldDB.Name.O
	}
	newDB := cat.dbByName(newDBName)
	if newDB == nil {
		return nil, fmt.Errorf("unknown database %q", newDBName)
	}
	if cat.tableByName(newDBName, to.Name.O) != nil {
		return nil, fmt.Errorf("table %s.%s exists", newDBName, to.Name.O)
	}
	info := cloneTable(t.info)
	info.Name = to.Name
	info.UpdateTS = ts
	for _, ix := range info.Indices {
		ix.Table = to.Name
	}
	if err := m.DropTableOrView(oldDB.ID, t.info.ID); err != nil {
		return nil, err
	}
	if err := m.CreateTableOrView(newDB.ID, info); err != nil {
		return nil, err
	}
	return &ddlPlan{
		job:   tableJob(model.ActionRenameTable, newDB, info.ID, info),
		apply: func() { t.info, t.dbID = info, newDB.ID },
	}, nil
}

func (c *Cluster) planAlter(tn *ast.TableName, spec *ast.AlterTableSpec, defDB string, m *meta.Mutator, ts uint64) (*ddlPlan, error) {
	cat := c.cat
	db, t, err := cat.resolve(tn, defDB)
	if err != nil {
		return nil, err
	}
	if spec.Tp == ast.AlterTableRenameTable {
		return c.planRename(tn, spec.NewTable, defDB, m, ts)
	}
	info := cloneTable(t.info)
	info.UpdateTS = ts
	var action model.ActionType
	var splits []int64
	switch spec.Tp {
	case ast.AlterTableAddColumns:
		if len(spec.NewColumns) != 1 {
			return nil, fmt.Errorf("the fake TiDB adds one column per statement")
		}
		info.MaxColumnID++
		col, cons, err := buildColumn(spec.NewColumns[0], info.MaxColumnID, len(info.Columns))
		if err != nil {
			return nil, err
		}
		if model.FindColumnInfo(info.Columns, col.Name.L) != nil {
			return nil, fmt.Errorf("duplicate column %s", col.Name.O)
		}
		pos := len(info.Columns)
		if p := spec.Position; p != nil {
			switch p.Tp {
			case ast.ColumnPositionFirst:
				pos = 0
			case ast.ColumnPositionAfter:
				after := model.FindColumnInfo(info.Columns, p.RelativeColumn.Name.L)
				if after == nil {
					return nil, fmt.Errorf("unknown column %s", p.RelativeColumn.Name.O)
				}
				pos = after.Offset + 1
			}
		}
		info.Columns = append(info.Columns[:pos], append([]*model.ColumnInfo{col}, info.Columns[pos:]...)...)
		renumber(info)
		for _, con := range cons {
			if err := applyConstraint(info, con); err != nil {
				return nil, err
			}
		}
		action = model.ActionAddColumn
	case ast.AlterTableDropColumn:
		col := model.FindColumnInfo(info.Columns, spec.OldColumnName.Name.L)
		if col == nil {
			return nil, fmt.Errorf("unknown column %s", spec.OldColumnName.Name.O)
		}
		if mysql.HasPriKeyFlag(col.GetFlag()) {
			return nil, fmt.Errorf("the fake TiDB does not drop primary key column %s", col.Name.O)
		}
		info.Columns = append(info.Columns[:col.Offset], info.Columns[col.Offset+1:]...)
		var keep []*model.IndexInfo
		for _, ix := range info.Indices {
			uses := false
			for _, ic := range ix.Columns {
				uses = uses || ic.Name.L == col.Name.L
			}
			if !uses {
				keep = append(keep, ix)
			}
		}
		info.Indices = keep
		renumber(info)
		action = model.ActionDropColumn
	case ast.AlterTableModifyColumn, ast.AlterTableChangeColumn, ast.AlterTableRenameColumn:
		oldName := spec.OldColumnName
		var def *ast.ColumnDef
		if spec.Tp == ast.AlterTableRenameColumn {
			col := model.FindColumnInfo(info.Columns, oldName.Name.L)
			if col == nil {
				return nil, fmt.Errorf("unknown column %s", oldName.Name.O)
			}
			col.Name = spec.NewColumnName.Name
		} else {
			def = spec.NewColumns[0]
			if oldName == nil {
				oldName = def.Name
			}
			col := model.FindColumnInfo(info.Columns, oldName.Name.L)
			if col == nil {
				return nil, fmt.Errorf("unknown column %s", oldName.Name.O)
			}
			nc, _, err := buildColumn(def, col.ID, col.Offset)
			if err != nil {
				return nil, err
			}
			// Keys stay as they were (TiDB keeps the key flags).
			nc.AddFlag(col.GetFlag() & (mysql.PriKeyFlag | mysql.UniqueKeyFlag | mysql.MultipleKeyFlag))
			if mysql.HasPriKeyFlag(col.GetFlag()) {
				nc.AddFlag(mysql.NotNullFlag)
			}
			nc.OriginDefaultValue = col.OriginDefaultValue
			info.Columns[col.Offset] = nc
			for _, ix := range info.Indices {
				for _, ic := range ix.Columns {
					if ic.Name.L == col.Name.L {
						ic.Name = nc.Name
					}
				}
			}
		}
		if spec.Tp == ast.AlterTableRenameColumn {
			for _, ix := range info.Indices {
				for _, ic := range ix.Columns {
					if ic.Name.L == oldName.Name.L {
						ic.Name = spec.NewColumnName.Name
					}
				}
			}
		}
		action = model.ActionModifyColumn
	case ast.AlterTableAddConstraint:
		if err := applyConstraint(info, spec.Constraint); err != nil {
			return nil, err
		}
		action = model.ActionAddIndex
		if spec.Constraint.Tp == ast.ConstraintPrimaryKey {
			if info.PKIsHandle && !t.info.PKIsHandle {
				return nil, fmt.Errorf("the fake TiDB cannot make an existing column the row handle")
			}
			action = model.ActionAddPrimaryKey
		}
	case ast.AlterTableDropIndex, ast.AlterTableDropPrimaryKey:
		name := spec.Name
		action = model.ActionDropIndex
		if spec.Tp == ast.AlterTableDropPrimaryKey {
			name = mysql.PrimaryKeyName
			action = model.ActionDropPrimaryKey
		}
		ix := findIndex(info, name)
		if ix == nil || ix.Primary && info.IsCommonHandle {
			return nil, fmt.Errorf("cannot drop index %s of %s", name, info.Name.O)
		}
		var keep []*model.IndexInfo
		for _, x := range info.Indices {
			if x != ix {
				keep = append(keep, x)
			}
		}
		info.Indices = keep
	case ast.AlterTableAddPartitions:
		if info.Partition == nil || info.Partition.Type != pmodel.PartitionTypeRange {
			return nil, fmt.Errorf("the fake TiDB adds partitions to RANGE tables only")
		}
		defs, err := cat.rangeDefinitions(spec.PartDefinitions)
		if err != nil {
			return nil, err
		}
		info.Partition.Definitions = append(info.Partition.Definitions, defs...)
		info.Partition.Num = uint64(len(info.Partition.Definitions))
		for _, d := range defs {
			splits = append(splits, d.ID)
		}
		action = model.ActionAddTablePartition
	case ast.AlterTableDropPartition, ast.AlterTableTruncatePartition:
		if info.Partition == nil {
			return nil, fmt.Errorf("table %s is not partitioned", info.Name.O)
		}
		for _, name := range spec.PartitionNames {
			found := false
			for i, d := range info.Partition.Definitions {
				if d.Name.L != name.L {
					continue
				}
				found = true
				if spec.Tp == ast.AlterTableDropPartition {
					info.Partition.Definitions = append(info.Partition.Definitions[:i], info.Partition.Definitions[i+1:]...)
				} else {
					info.Partition.Definitions[i].ID = cat.allocID()
					splits = append(splits, info.Partition.Definitions[i].ID)
				}
				break
			}
			if !found {
				return nil, fmt.Errorf("unknown partition %s", name.O)
			}
		}
		info.Partition.Num = uint64(len(info.Partition.Definitions))
		action = model.ActionDropTablePartition
		if spec.Tp == ast.AlterTableTruncatePartition {
			action = model.ActionTruncateTablePartition
		}
	default:
		return nil, fmt.Errorf("the fake TiDB does not run this ALTER TABLE (%d)", spec.Tp)
	}
	if err := m.UpdateTable(db.ID, info); err != nil {
		return nil, err
	}
	return &ddlPlan{
		job:    tableJob(action, db, info.ID, info),
		apply:  func() { t.info = info },
		splits: splits,
	}, nil
}

// TableInfo is the latest definition of a table, as TiDB's meta holds it.
func (c *Cluster) TableInfo(db, table string) (*model.TableInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.cat.tableByName(db, table)
	if t == nil {
		return nil, fmt.Errorf("table %s.%s does not exist", db, table)
	}
	return t.info, nil
}

// TableNames lists the tables of a database now, sorted.
func (c *Cluster) TableNames(db string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.cat.dbByName(db)
	if d == nil {
		return nil
	}
	var out []string
	for _, t := range c.cat.tables {
		if t.dbID == d.ID {
			out = append(out, t.info.Name.O)
		}
	}
	sort.Strings(out)
	return out
}

// TableInfoAt reads a table's definition at ts from the fake's meta keys
// with TiDB's meta reader (nil when it does not exist then).
func (c *Cluster) TableInfoAt(db, table string, ts uint64) (*model.TableInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := meta.NewReader(&mvccSnapshot{m: c.mvcc, ts: ts})
	dbs, err := r.ListDatabases()
	if err != nil {
		return nil, err
	}
	for _, d := range dbs {
		if d.Name.L != strings.ToLower(db) {
			continue
		}
		tables, err := r.ListTables(context.Background(), d.ID)
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			if t.Name.L == strings.ToLower(table) {
				return t, nil
			}
		}
	}
	return nil, nil
}

// Exec runs several DDL statements in order.
func (c *Cluster) Exec(defaultDB string, stmts ...string) error {
	for _, s := range stmts {
		if _, err := c.ExecDDL(defaultDB, s); err != nil {
			return err
		}
	}
	return nil
}
