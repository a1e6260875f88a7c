package postgres

import (
	"github.com/raftcdc/raftcdc/model"
)

// diffDDL turns a change of a table's column list into DDL events in
// MySQL dialect: one per dropped, added or retyped column, in that order.
// Logical decoding carries no DDL; the relation message that follows an
// ALTER TABLE is how the stream learns of it, so the events take the ts of
// the first transaction that shows the new columns and apply before its
// rows. Renames look like a drop and an add (the relation message cannot
// tell them apart); the column's data then arrives with the next changes.
func diffDDL(after *model.TableSchema, oldCols, newCols []relCol, ts model.Ts) []*model.DDLEvent {
	t := after.Table
	qt := model.QuoteIdent(t.Schema) + "." + model.QuoteIdent(t.Table)
	newByName := map[string]relCol{}
	for _, c := range newCols {
		newByName[c.Name] = c
	}
	oldByName := map[string]relCol{}
	for _, c := range oldCols {
		oldByName[c.Name] = c
	}
	var out []*model.DDLEvent
	ev := func(kind model.DDLKind, q string) {
		out = append(out, &model.DDLEvent{CommitTs: ts, StartTs: ts, Kind: kind, Query: q, Schema: t.Schema,
			Tables: []model.TableName{t}, After: []*model.TableSchema{after}})
	}
	colDef := func(name string) string {
		i := after.ColumnIndex(name)
		if i < 0 {
			return model.QuoteIdent(name)
		}
		c := after.Columns[i]
		s := model.QuoteIdent(c.Name) + " " + c.Type.SQL()
		if !c.Nullable {
			s += " NOT NULL"
		}
		return s
	}
	for _, c := range oldCols {
		if _, ok := newByName[c.Name]; !ok {
			ev(model.DDLDropColumn, "ALTER TABLE "+qt+" DROP COLUMN "+model.QuoteIdent(c.Name))
		}
	}
	for _, c := range newCols {
		o, ok := oldByName[c.Name]
		switch {
		case !ok:
			ev(model.DDLAddColumn, "ALTER TABLE "+qt+" ADD COLUMN "+colDef(c.Name))
		case o.TypeOID != c.TypeOID || o.Typmod != c.Typmod:
			ev(model.DDLModifyColumn, "ALTER TABLE "+qt+" MODIFY COLUMN "+colDef(c.Name))
		}
	}
	return out
}
