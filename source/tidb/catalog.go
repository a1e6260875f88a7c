package tidb

import (
	"context"
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/kv"
	"github.com/pingcap/tidb/pkg/meta"
	timodel "github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/format"
	pmodel "github.com/pingcap/tidb/pkg/parser/model"
	_ "github.com/pingcap/tidb/pkg/types/parser_driver" // the parser's value expressions

	"github.com/raftcdc/raftcdc/model"
)

// catalog is TiDB's schema at one point: databases and tables as TiDB's
// meta model has them (DBInfo, TableInfo), and which logical table every
// partition belongs to.
type catalog struct {
	dbs      map[int64]*timodel.DBInfo
	tables   map[int64]*catEntry // logical table ID
	physical map[int64]int64     // physical (partition) ID → logical ID
}

type catEntry struct {
	info *timodel.TableInfo
	dbID int64
}

func newCatalog() *catalog {
	return &catalog{dbs: map[int64]*timodel.DBInfo{}, tables: map[int64]*catEntry{}, physical: map[int64]int64{}}
}

// readCatalog reads every database and table from TiDB's meta keys in a
// snapshot, with TiDB's own meta reader.
func readCatalog(ctx context.Context, snap kv.Snapshot) (*catalog, error) {
	r := meta.NewReader(snap)
	dbs, err := r.ListDatabases()
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	c := newCatalog()
	for _, db := range dbs {
		c.dbs[db.ID] = db
		tables, err := r.ListTables(ctx, db.ID)
		if err != nil {
			return nil, fmt.Errorf("list tables of %s: %w", db.Name.O, err)
		}
		for _, t := range tables {
			c.put(t, db.ID)
		}
	}
	return c, nil
}

// put adds or replaces a table (views and sequences hold no rows and are
// not tables here).
func (c *catalog) put(info *timodel.TableInfo, dbID int64) {
	if old := c.tables[info.ID]; old != nil {
		c.unpartition(old.info)
	}
	if info.IsView() || info.IsSequence() {
		delete(c.tables, info.ID)
		return
	}
	c.tables[info.ID] = &catEntry{info: info, dbID: dbID}
	for _, id := range physicalIDs(info) {
		c.physical[id] = info.ID
	}
}

func (c *catalog) drop(id int64) {
	if old := c.tables[id]; old != nil {
		c.unpartition(old.info)
		delete(c.tables, id)
	}
}

func (c *catalog) unpartition(info *timodel.TableInfo) {
	for _, id := range physicalIDs(info) {
		delete(c.physical, id)
	}
}

func (c *catalog) dbName(id int64) string {
	if db := c.dbs[id]; db != nil {
		return db.Name.O
	}
	return ""
}

func (c *catalog) name(id int64) model.TableName {
	e := c.tables[id]
	if e == nil {
		return model.TableName{ID: id}
	}
	return model.TableName{ID: id, Schema: c.dbName(e.dbID), Table: e.info.Name.O}
}

// physicalIDs are the IDs under which a table's rows are stored: its own,
// or its partitions'.
func physicalIDs(info *timodel.TableInfo) []int64 {
	if info.Partition == nil {
		return []int64{info.ID}
	}
	out := make([]int64, 0, len(info.Partition.Definitions))
	for _, d := range info.Partition.Definitions {
		out = append(out, d.ID)
	}
	return out
}

// versionChange is a table whose definition a DDL changed; info nil means
// it no longer exists.
type versionChange struct {
	id   int64
	info *timodel.TableInfo
	db   string
}

// apply applies one finished DDL job to the catalog and describes it as a
// DDL event (nil for a job that changes nothing a changefeed sees: a
// cancelled or rolled-back job).
func (c *catalog) apply(job *timodel.Job) (*model.DDLEvent, []versionChange, error) {
	if !job.IsDone() && !job.IsSynced() {
		return nil, nil, nil
	}
	bi := job.BinlogInfo
	if bi == nil {
		return nil, nil, fmt.Errorf("DDL job %d (%s) has no binlog info", job.ID, job.Type)
	}
	ev := &model.DDLEvent{CommitTs: bi.FinishedTS, StartTs: job.StartTS, Kind: model.DDLUnknownOrOther, Schema: job.SchemaName}
	var changes []versionChange
	after := func(info *timodel.TableInfo, dbID int64) error {
		s, err := tableSchema(c.dbName(dbID), info, info.ID)
		if err != nil {
			return err
		}
		ev.After = append(ev.After, s)
		return nil
	}
	touch := func(tn model.TableName) { ev.Tables = append(ev.Tables, tn) }

	switch job.Type {
	case timodel.ActionCreateSchema:
		if bi.DBInfo == nil {
			return nil, nil, fmt.Errorf("CREATE DATABASE job %d has no database info", job.ID)
		}
		c.dbs[bi.DBInfo.ID] = bi.DBInfo
		ev.Kind, ev.Schema = model.DDLCreateSchema, bi.DBInfo.Name.O
	case timodel.ActionDropSchema:
		ev.Kind, ev.Schema = model.DDLDropSchema, c.dbName(job.SchemaID)
		if ev.Schema == "" && bi.DBInfo != nil {
			ev.Schema = bi.DBInfo.Name.O
		}
		for id, e := range c.tables {
			if e.dbID == job.SchemaID {
				touch(c.name(id))
				ev.After = append(ev.After, nil)
				changes = append(changes, versionChange{id: id})
				c.drop(id)
			}
		}
		delete(c.dbs, job.SchemaID)
	case timodel.ActionCreateTable, timodel.ActionRecoverTable:
		info := bi.TableInfo
		if info == nil {
			return nil, nil, fmt.Errorf("CREATE TABLE job %d has no table info", job.ID)
		}
		c.put(info, job.SchemaID)
		if info.IsView() || info.IsSequence() {
			break
		}
		ev.Kind = model.DDLCreateTable
		touch(c.name(info.ID))
		if err := after(info, job.SchemaID); err != nil {
			return nil, nil, err
		}
		changes = append(changes, versionChange{id: info.ID, info: info, db: c.dbName(job.SchemaID)})
	case timodel.ActionDropTable:
		if c.tables[job.TableID] == nil {
			break // a view, or a table this catalog never had
		}
		ev.Kind = model.DDLDropTable
		touch(c.name(job.TableID))
		ev.After = append(ev.After, nil)
		c.drop(job.TableID)
		changes = append(changes, versionChange{id: job.TableID})
	case timodel.ActionTruncateTable:
		info := bi.TableInfo
		if info == nil {
			return nil, nil, fmt.Errorf("TRUNCATE TABLE job %d has no table info", job.ID)
		}
		ev.Kind = model.DDLTruncateTable
		touch(c.name(job.TableID))
		c.drop(job.TableID)
		c.put(info, job.SchemaID)
		if err := after(info, job.SchemaID); err != nil {
			return nil, nil, err
		}
		changes = append(changes, versionChange{id: job.TableID}, versionChange{id: info.ID, info: info, db: c.dbName(job.SchemaID)})
	case timodel.ActionRenameTable:
		info := bi.TableInfo
		if info == nil {
			return nil, nil, fmt.Errorf("RENAME TABLE job %d has no table info", job.ID)
		}
		ev.Kind = model.DDLRenameTable
		touch(c.name(info.ID))
		c.put(info, job.SchemaID)
		if err := after(info, job.SchemaID); err != nil {
			return nil, nil, err
		}
		changes = append(changes, versionChange{id: info.ID, info: info, db: c.dbName(job.SchemaID)})
	case timodel.ActionRenameTables:
		ev.Kind = model.DDLRenameTable
		for _, info := range bi.MultipleTableInfos {
			old := c.tables[info.ID]
			dbID := job.SchemaID
			if old != nil {
				dbID = old.dbID
			}
			touch(c.name(info.ID))
			c.put(info, dbID)
			if err := after(info, dbID); err != nil {
				return nil, nil, err
			}
			changes = append(changes, versionChange{id: info.ID, info: info, db: c.dbName(dbID)})
		}
	default:
		info := bi.TableInfo
		if info == nil || info.IsView() || info.IsSequence() {
			break // a job without a table (placement, resource groups, …)
		}
		old := c.tables[info.ID]
		ev.Kind = tableKind(job.Type, old, info)
		touch(c.name(info.ID))
		c.put(info, job.SchemaID)
		if err := after(info, job.SchemaID); err != nil {
			return nil, nil, err
		}
		changes = append(changes, versionChange{id: info.ID, info: info, db: c.dbName(job.SchemaID)})
	}
	q, err := qualify(job.Query, ev.Schema)
	if err != nil {
		q = job.Query
	}
	ev.Query = q
	return ev, changes, nil
}

// tableKind maps a table-altering job to the model's kind.
func tableKind(tp timodel.ActionType, old *catEntry, info *timodel.TableInfo) model.DDLKind {
	switch tp {
	case timodel.ActionAddColumn:
		return model.DDLAddColumn
	case timodel.ActionDropColumn:
		return model.DDLDropColumn
	case timodel.ActionModifyColumn:
		// TiDB runs RENAME COLUMN as a modify-column job.
		if old != nil {
			for _, oc := range old.info.Columns {
				if nc := findColumnByID(info, oc.ID); nc != nil && nc.Name.L != oc.Name.L {
					return model.DDLRenameColumn
				}
			}
		}
		return model.DDLModifyColumn
	case timodel.ActionAddIndex, timodel.ActionAddPrimaryKey:
		return model.DDLAddIndex
	case timodel.ActionDropIndex, timodel.ActionDropPrimaryKey:
		return model.DDLDropIndex
	}
	return model.DDLUnknownOrOther
}

func findColumnByID(info *timodel.TableInfo, id int64) *timodel.ColumnInfo {
	for _, c := range info.Columns {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// qualify rewrites a DDL statement so that every table it names carries
// its database (the model's Query can be executed without USE): TiDB's
// parser parses it and restores it, TiDB-only syntax inside /*T! */
// comments that MySQL and MariaDB skip.
func qualify(query, db string) (string, error) {
	if strings.TrimSpace(query) == "" {
		return "", fmt.Errorf("empty statement")
	}
	stmt, err := parser.New().ParseOneStmt(query, "", "")
	if err != nil {
		return "", err
	}
	if db != "" {
		stmt.Accept(&schemaSetter{db: pmodel.NewCIStr(db)})
	}
	var b strings.Builder
	flags := format.RestoreStringSingleQuotes | format.RestoreKeyWordUppercase | format.RestoreNameBackQuotes |
		format.RestoreSpacesAroundBinaryOperation | format.RestoreTiDBSpecialComment
	if err := stmt.Restore(format.NewRestoreCtx(flags, &b)); err != nil {
		return "", err
	}
	return b.String(), nil
}

type schemaSetter struct{ db pmodel.CIStr }

func (v *schemaSetter) Enter(n ast.Node) (ast.Node, bool) {
	if tn, ok := n.(*ast.TableName); ok && tn.Schema.O == "" {
		tn.Schema = v.db
	}
	return n, false
}

func (v *schemaSetter) Leave(n ast.Node) (ast.Node, bool) { return n, true }
