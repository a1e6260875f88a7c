package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/model"
)

// DDL for PostgreSQL is derived from the DDL event's schemas, not from its
// MySQL statement: the event says what the table looks like afterwards,
// the catalog says what it looks like now, and the difference is applied
// in one transaction. A replay finds no difference (already applied); a
// statement whose effect cannot be derived safely fails, naming it.

// ErrUntranslatable marks a DDL the sink cannot express in PostgreSQL.
var ErrUntranslatable = errors.New("cannot be translated to PostgreSQL")

// indexName is the PostgreSQL name of a table's index: index names are per
// schema there and per table in MySQL, so the table's name prefixes it,
// shortened with a hash to PostgreSQL's 63 bytes.
func indexName(table string, ix *model.Index) string {
	n := table + "_" + ix.Name
	if ix.Primary {
		n = table + "_pkey"
	}
	if len(n) <= 63 {
		return n
	}
	h := fnv.New32a()
	h.Write([]byte(n))
	suffix := "_" + strconv.FormatUint(uint64(h.Sum32()), 16)
	cut := 63 - len(suffix)
	for cut > 0 && !utf8Start(n[cut]) {
		cut--
	}
	return n[:cut] + suffix
}

func utf8Start(b byte) bool { return b&0xc0 != 0x80 }

func columnDef(c model.Column, inKey bool) string {
	s := quoteIdent(c.Name) + " " + PGType(c.Type)
	if !c.Nullable || inKey {
		s += " NOT NULL"
	}
	return s
}

func keyColumns(ix *model.Index) string {
	cols := make([]string, len(ix.Columns))
	for i, c := range ix.Columns {
		cols[i] = quoteIdent(c)
	}
	return "(" + strings.Join(cols, ",") + ")"
}

func indexSQL(s *model.TableSchema, ix *model.Index) string {
	name := indexName(s.Table.Table, ix)
	switch {
	case ix.Primary:
		return "ALTER TABLE " + qname(s.Table) + " ADD CONSTRAINT " + quoteIdent(name) + " PRIMARY KEY " + keyColumns(ix)
	case ix.Unique:
		return "CREATE UNIQUE INDEX IF NOT EXISTS " + quoteIdent(name) + " ON " + qname(s.Table) + " " + keyColumns(ix)
	}
	return "CREATE INDEX IF NOT EXISTS " + quoteIdent(name) + " ON " + qname(s.Table) + " " + keyColumns(ix)
}

// createTableSQL creates a table (and its schema) from the upstream schema.
func createTableSQL(s *model.TableSchema, ifNotExists bool) []string {
	inPK := map[string]bool{}
	if pk := s.PrimaryKey(); pk != nil {
		for _, c := range pk.Columns {
			inPK[c] = true
		}
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	if ifNotExists {
		b.WriteString("IF NOT EXISTS ")
	}
	b.WriteString(qname(s.Table) + " (")
	for i, c := range s.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(columnDef(c, inPK[c.Name]))
	}
	if pk := s.PrimaryKey(); pk != nil {
		b.WriteString(", CONSTRAINT " + quoteIdent(indexName(s.Table.Table, pk)) + " PRIMARY KEY " + keyColumns(pk))
	}
	b.WriteString(")")
	out := []string{"CREATE SCHEMA IF NOT EXISTS " + quoteIdent(s.Table.Schema), b.String()}
	for i := range s.Indexes {
		if !s.Indexes[i].Primary {
			out = append(out, indexSQL(s, &s.Indexes[i]))
		}
	}
	return out
}

// catalogColumn and catalogIndex are a table as the catalog has it.
type catalogColumn struct {
	name    string
	typ     string
	notNull bool
}

type catalogIndex struct {
	name       string
	primary    bool
	unique     bool
	constraint string // the constraint it backs, if any
	columns    []string
}

type catalogTable struct {
	columns []catalogColumn
	indexes []catalogIndex
}

func readCatalog(ctx context.Context, tx pgx.Tx, t model.TableName) (*catalogTable, error) {
	var oid uint32
	err := tx.QueryRow(ctx, `SELECT k.oid FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
		WHERE n.nspname = $1 AND k.relname = $2 AND k.relkind IN ('r','p')`, t.Schema, t.Table).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := &catalogTable{}
	rows, err := tx.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, oid)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var c catalogColumn
		if err := rows.Scan(&c.name, &c.typ, &c.notNull); err != nil {
			rows.Close()
			return nil, err
		}
		out.columns = append(out.columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = tx.Query(ctx, `SELECT ic.relname, i.indisprimary, i.indisunique,
		coalesce((SELECT conname FROM pg_constraint WHERE conindid = i.indexrelid AND conrelid = i.indrelid LIMIT 1), ''),
		ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = $1 ORDER BY ic.relname`, oid)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var ix catalogIndex
		if err := rows.Scan(&ix.name, &ix.primary, &ix.unique, &ix.constraint, &ix.columns); err != nil {
			rows.Close()
			return nil, err
		}
		out.indexes = append(out.indexes, ix)
	}
	rows.Close()
	return out, rows.Err()
}

// implicitDefault is MySQL's implicit default for a NOT NULL column added to
// a table with rows, where PostgreSQL can express it ("" where it cannot:
// the column is then added without NOT NULL).
func implicitDefault(c model.Column) string {
	t := c.Type
	switch {
	case t.IsInteger(), t.Kind == model.TypeYear, t.Kind == model.TypeFloat, t.Kind == model.TypeDouble, t.Kind == model.TypeDecimal:
		return "0"
	case t.IsText(), t.Kind == model.TypeSet:
		return "''"
	case t.Kind == model.TypeEnum && len(t.Elems) > 0:
		return quoteString(t.Elems[0])
	case t.IsBinary():
		return "''::bytea"
	case t.Kind == model.TypeBit:
		return "B'" + bitText(0, t.Length) + "'"
	case t.Kind == model.TypeTime:
		return "'00:00:00'"
	case t.Kind == model.TypeJSON:
		return "'null'"
	}
	return ""
}

// alterTable derives the statements that turn the catalog's table into
// want. kind decides whether a column that disappears while another
// appears at its position is a rename (rename_column, modify_column) or is
// ambiguous (anything else: the DDL then fails, naming the statement).
func alterTable(cur *catalogTable, want *model.TableSchema, kind model.DDLKind, query string) ([]string, error) {
	q := qname(want.Table)
	var out []string
	curPos := map[string]int{}
	for i, c := range cur.columns {
		curPos[c.name] = i
	}
	wantPos := map[string]int{}
	for i, c := range want.Columns {
		wantPos[c.Name] = i
	}
	var dropped, added []string
	for _, c := range cur.columns {
		if _, ok := wantPos[c.name]; !ok {
			dropped = append(dropped, c.name)
		}
	}
	for _, c := range want.Columns {
		if _, ok := curPos[c.Name]; !ok {
			added = append(added, c.Name)
		}
	}
	renamed := map[string]string{} // new name → old name
	if len(dropped) > 0 && len(added) > 0 {
		if kind != model.DDLRenameColumn && kind != model.DDLModifyColumn {
			return nil, fmt.Errorf("%q %w: it drops %s and adds %s, and a rename cannot be told from a replacement", query, ErrUntranslatable, strings.Join(dropped, ", "), strings.Join(added, ", "))
		}
		var stillDropped []string
		for _, d := range dropped {
			p := curPos[d]
			if p < len(want.Columns) {
				if n := want.Columns[p].Name; contains(added, n) {
					renamed[n] = d
					continue
				}
			}
			stillDropped = append(stillDropped, d)
		}
		var stillAdded []string
		for _, a := range added {
			if _, ok := renamed[a]; !ok {
				stillAdded = append(stillAdded, a)
			}
		}
		if len(stillDropped) > 0 && len(stillAdded) > 0 {
			return nil, fmt.Errorf("%q %w: columns %s and %s do not pair up as renames", query, ErrUntranslatable, strings.Join(stillDropped, ", "), strings.Join(stillAdded, ", "))
		}
		dropped, added = stillDropped, stillAdded
	}
	// Indexes that are going away first: a dropped column may be in one.
	wantIx := map[string]*model.Index{}
	for i := range want.Indexes {
		wantIx[indexName(want.Table.Table, &want.Indexes[i])] = &want.Indexes[i]
	}
	curIx := map[string]catalogIndex{}
	for _, ix := range cur.indexes {
		curIx[ix.name] = ix
		w, ok := wantIx[ix.name]
		if ok && w.Primary == ix.primary && (w.Unique || w.Primary) == ix.unique && sameColumns(w.Columns, ix.columns, renamed) {
			continue
		}
		if ix.constraint != "" {
			out = append(out, "ALTER TABLE "+q+" DROP CONSTRAINT "+quoteIdent(ix.constraint))
		} else {
			out = append(out, "DROP INDEX "+quoteIdent(want.Table.Schema)+"."+quoteIdent(ix.name))
		}
		delete(curIx, ix.name)
	}
	for n, old := range renamed {
		out = append(out, "ALTER TABLE "+q+" RENAME COLUMN "+quoteIdent(old)+" TO "+quoteIdent(n))
	}
	for _, d := range dropped {
		out = append(out, "ALTER TABLE "+q+" DROP COLUMN "+quoteIdent(d))
	}
	inPK := map[string]bool{}
	if pk := want.PrimaryKey(); pk != nil {
		for _, c := range pk.Columns {
			inPK[c] = true
		}
	}
	for _, a := range added {
		c := want.Columns[wantPos[a]]
		def := "ALTER TABLE " + q + " ADD COLUMN " + quoteIdent(c.Name) + " " + PGType(c.Type)
		if !c.Nullable || inPK[c.Name] {
			if d := implicitDefault(c); d != "" {
				out = append(out, def+" NOT NULL DEFAULT "+d,
					"ALTER TABLE "+q+" ALTER COLUMN "+quoteIdent(c.Name)+" DROP DEFAULT")
				continue
			}
		}
		out = append(out, def)
	}
	for _, cc := range cur.columns {
		name := cc.name
		for n, old := range renamed {
			if old == cc.name {
				name = n
			}
		}
		p, ok := wantPos[name]
		if !ok {
			continue
		}
		c := want.Columns[p]
		if t := PGType(c.Type); t != cc.typ {
			out = append(out, "ALTER TABLE "+q+" ALTER COLUMN "+quoteIdent(name)+" TYPE "+t+" USING "+quoteIdent(name)+"::"+t)
		}
		notNull := !c.Nullable || inPK[c.Name]
		switch {
		case notNull && !cc.notNull:
			out = append(out, "ALTER TABLE "+q+" ALTER COLUMN "+quoteIdent(name)+" SET NOT NULL")
		case !notNull && cc.notNull:
			out = append(out, "ALTER TABLE "+q+" ALTER COLUMN "+quoteIdent(name)+" DROP NOT NULL")
		}
	}
	for i := range want.Indexes {
		ix := &want.Indexes[i]
		if _, ok := curIx[indexName(want.Table.Table, ix)]; !ok {
			out = append(out, indexSQL(want, ix))
		}
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func sameColumns(want, cur []string, renamed map[string]string) bool {
	if len(want) != len(cur) {
		return false
	}
	for i := range want {
		w := want[i]
		if old, ok := renamed[w]; ok {
			w = old
		}
		if w != cur[i] && want[i] != cur[i] {
			return false
		}
	}
	return true
}

// ExecDDL translates and applies one DDL in one transaction; a replay
// finds nothing to do.
func (b *backend) ExecDDL(ctx context.Context, ddl *model.DDLEvent) (bool, error) {
	c, err := b.connect(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close(context.Background())
	tx, err := c.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.Background())
	stmts, err := b.translate(ctx, tx, ddl)
	if err != nil {
		return false, err
	}
	if len(stmts) == 0 {
		return false, nil
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return false, fmt.Errorf("translated as %q: %w", s, err)
		}
	}
	return true, tx.Commit(ctx)
}

func (b *backend) translate(ctx context.Context, tx pgx.Tx, ddl *model.DDLEvent) ([]string, error) {
	schemaExists := func(name string) (bool, error) {
		var ok bool
		err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&ok)
		return ok, err
	}
	switch ddl.Kind {
	case model.DDLCreateSchema:
		ok, err := schemaExists(ddl.Schema)
		if err != nil || ok {
			return nil, err
		}
		return []string{"CREATE SCHEMA " + quoteIdent(ddl.Schema)}, nil
	case model.DDLDropSchema:
		ok, err := schemaExists(ddl.Schema)
		if err != nil || !ok {
			return nil, err
		}
		// DROP DATABASE drops its tables too.
		return []string{"DROP SCHEMA " + quoteIdent(ddl.Schema) + " CASCADE"}, nil
	}
	if len(ddl.Tables) == 0 {
		return nil, fmt.Errorf("%q %w: it names no table", ddl.Query, ErrUntranslatable)
	}
	var out []string
	for i, t := range ddl.Tables {
		var after *model.TableSchema
		if i < len(ddl.After) {
			after = ddl.After[i]
		}
		stmts, err := b.translateTable(ctx, tx, ddl, t, after)
		if err != nil {
			return nil, err
		}
		out = append(out, stmts...)
	}
	return out, nil
}

func (b *backend) translateTable(ctx context.Context, tx pgx.Tx, ddl *model.DDLEvent, t model.TableName, after *model.TableSchema) ([]string, error) {
	cur, err := readCatalog(ctx, tx, t)
	if err != nil {
		return nil, err
	}
	switch ddl.Kind {
	case model.DDLDropTable:
		if cur == nil {
			return nil, nil
		}
		return []string{"DROP TABLE " + qname(t)}, nil
	case model.DDLTruncateTable:
		if cur == nil {
			return nil, fmt.Errorf("truncate: table %s does not exist downstream", qname(t))
		}
		return []string{"TRUNCATE " + qname(t)}, nil
	case model.DDLRenameTable:
		if after == nil {
			return nil, fmt.Errorf("%q %w: the event has no schema after the rename", ddl.Query, ErrUntranslatable)
		}
		to := after.Table
		if cur == nil {
			done, err := readCatalog(ctx, tx, to)
			if err != nil {
				return nil, err
			}
			if done != nil {
				return nil, nil // renamed already
			}
			return nil, fmt.Errorf("rename: table %s does not exist downstream", qname(t))
		}
		var out []string
		if to.Schema != t.Schema {
			out = append(out, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(to.Schema),
				"ALTER TABLE "+qname(t)+" SET SCHEMA "+quoteIdent(to.Schema))
		}
		if to.Table != t.Table {
			out = append(out, "ALTER TABLE "+quoteIdent(to.Schema)+"."+quoteIdent(t.Table)+" RENAME TO "+quoteIdent(to.Table))
			// Our index names carry the table's name.
			for _, ix := range cur.indexes {
				if strings.HasPrefix(ix.name, t.Table+"_") {
					n := to.Table + strings.TrimPrefix(ix.name, t.Table)
					if len(n) <= 63 {
						out = append(out, "ALTER INDEX "+quoteIdent(to.Schema)+"."+quoteIdent(ix.name)+" RENAME TO "+quoteIdent(n))
					}
				}
			}
		}
		return out, nil
	}
	if after == nil {
		return nil, fmt.Errorf("%q %w: the event carries no schema of %s after it", ddl.Query, ErrUntranslatable, t)
	}
	if cur == nil {
		if ddl.Kind == model.DDLCreateTable || b.cfg.CreateTables {
			return createTableSQL(after, false), nil
		}
		return nil, fmt.Errorf("table %s does not exist downstream (create-tables=false)", qname(t))
	}
	return alterTable(cur, after, ddl.Kind, ddl.Query)
}
