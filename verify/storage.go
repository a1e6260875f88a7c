package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/codec/csv"
	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/storage"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// storageReader replays a storage sink directory up to the checkpoint:
// per key, the change with the highest commit ts at or below the
// checkpoint decides the row (a delete removes it). That is robust to the
// replays a failover causes (old changes written again later) because
// every change carries its commit ts.
type storageReader struct {
	cfg  storage.Config
	st   storage.Store
	hist *datagen.History
	flt  *filter.Filter
	p    StateParams
	meta model.Ts
	cp   model.Ts
	csv  *csv.Decoder
}

func openStorage(ctx context.Context, p StateParams, hist *datagen.History, flt *filter.Filter) (*storageReader, error) {
	cfg, err := storage.ParseURI(p.Downstream)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	switch {
	case cfg.Protocol == storage.ProtocolCanalJSON && !cfg.Canal.EnableTiDBExtension:
		return nil, fmt.Errorf("verify: canal-json files carry commit ts only with the TiDB extension; the changefeed's sink URI needs enable-tidb-extension=true to be verified at a checkpoint")
	case cfg.Protocol == storage.ProtocolCSV && !cfg.CSV.IncludeCommitTs:
		return nil, fmt.Errorf("verify: csv files carry commit ts only with include-commit-ts=true, which the changefeed's sink URI needs to be verified at a checkpoint")
	}
	r := &storageReader{cfg: cfg, st: storage.OpenDir(cfg.Root), hist: hist, flt: flt, p: p}
	if r.csv, err = csv.NewDecoder(cfg.CSV); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if _, err := r.st.List(ctx, ""); err != nil {
		return nil, fmt.Errorf("verify: read the storage sink directory %s: %w", cfg.Root, err)
	}
	meta, err := storage.ReadMetadata(ctx, r.st)
	switch {
	case err == nil:
		r.meta = meta.CheckpointTs
	case errors.Is(err, fs.ErrNotExist):
		if p.CheckpointTs == 0 {
			return nil, fmt.Errorf("verify: %s has no metadata file, so give the checkpoint ts", cfg.Root)
		}
	default:
		return nil, fmt.Errorf("verify: %w", err)
	}
	return r, nil
}

func (r *storageReader) checkpoint() model.Ts     { return r.meta }
func (r *storageReader) setCheckpoint(t model.Ts) { r.cp = t }
func (r *storageReader) close() error             { return nil }

// keyEvent is the latest change of one key seen so far.
type keyEvent struct {
	ts     model.Ts
	img    []model.Value      // nil after a delete
	schema *model.TableSchema // the version img is aligned with
}

// dirTable is the upstream table and schema a data directory's version
// belongs to.
type dirTable struct {
	id     model.TableID
	schema *model.TableSchema
	err    string // why it has none
}

func (r *storageReader) load(ctx context.Context, want []upstreamTable, rep *StateReport) (map[model.TableID]*downTable, error) {
	cp := r.cp
	files, err := storage.ListDataFiles(ctx, r.st, r.cfg.Extension())
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defs, err := storage.ReadSchemaFiles(ctx, r.st)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}

	// Which upstream table and schema each (table name, version) is.
	dirs := map[storage.DataDir]dirTable{}
	lookup := func(d storage.DataDir) dirTable {
		d.Date = ""
		if dt, ok := dirs[d]; ok {
			return dt
		}
		dt := dirTable{err: fmt.Sprintf("no upstream table %s.%s has schema version %d", d.Schema, d.Table, d.Version)}
		if d.Schema == r.hist.Config().Schema {
			for _, tn := range r.hist.TablesAt(d.Version) {
				if tn.Table == d.Table {
					if s, err := r.hist.SchemaAt(tn.ID, d.Version); err == nil && s.Version == d.Version {
						dt = dirTable{id: tn.ID, schema: s}
					}
				}
			}
		}
		dirs[d] = dt
		return dt
	}

	state := map[model.TableID]map[uint64]*keyEvent{}
	ddlMsgs := map[model.Ts]int{}
	badDirs := map[string]bool{}
	order := map[string]*ddlOrder{}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		data, err := r.st.Get(ctx, f.Path)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		rows, ddls, err := r.decodeFile(f, data, lookup)
		if err != nil {
			// A file that does not decode is the downstream's fault: report
			// it and go on.
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: %v", f.Path, err))
			continue
		}
		for _, d := range ddls {
			ddlMsgs[d.ts]++
		}
		checkDDLOrder(f, rows, ddls, order, rep)
		if len(rows) == 0 {
			continue
		}
		dt := lookup(f.Dir)
		if dt.schema == nil {
			if dir := f.Dir.Path(); !badDirs[dir] {
				badDirs[dir] = true
				rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: %s", dir, dt.err))
			}
			continue
		}
		ks := state[dt.id]
		if ks == nil {
			ks = map[uint64]*keyEvent{}
			state[dt.id] = ks
		}
		lastInFile := map[uint64]model.Ts{}
		for _, row := range rows {
			rep.Events++
			if row.CommitTs > cp {
				rep.AfterCheckpoint++
				continue
			}
			img := row.Image()
			key, ok := datagen.KeyOf(row.Schema, img)
			if !ok {
				rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: a row without a datagen key", f.Path))
				continue
			}
			if last, ok := lastInFile[key]; ok && row.CommitTs < last {
				rep.OutOfOrder++
			}
			lastInFile[key] = row.CommitTs
			cur := ks[key]
			switch {
			case cur != nil && row.CommitTs <= cur.ts:
				// Written before: a replay after a failover.
				rep.Duplicates++
			case row.Op == model.OpDelete:
				ks[key] = &keyEvent{ts: row.CommitTs}
			default:
				ks[key] = &keyEvent{ts: row.CommitTs, img: row.After, schema: row.Schema}
			}
		}
	}

	r.checkDDLs(defs, ddlMsgs, rep)

	out := map[model.TableID]*downTable{}
	wantIDs := map[model.TableID]upstreamTable{}
	for _, ut := range want {
		wantIDs[ut.name.ID] = ut
		r.checkSchema(ut, defs, rep)
	}
	for id, ks := range state {
		ut, ok := wantIDs[id]
		if !ok {
			// Rows of a table that does not exist at the checkpoint: fine if
			// it was dropped or truncated up to it (its rows are history),
			// extra otherwise.
			if r.endedBy(id, cp) {
				continue
			}
			for k, e := range ks {
				if e.img != nil {
					name, _ := r.hist.Name(id, e.ts)
					rep.addExtra(RowKey{Table: name, Key: k})
				}
			}
			continue
		}
		dt := &downTable{name: ut.name, rows: map[uint64][]model.Value{}}
		for k, e := range ks {
			if e.img == nil {
				continue
			}
			dt.rows[k] = alignImage(e.img, e.schema, ut.schema)
		}
		out[id] = dt
	}
	return out, nil
}

// endedBy reports whether a table ID no longer exists at ts (dropped or
// truncated up to it): its rows are then history, not state.
func (r *storageReader) endedBy(id model.TableID, ts model.Ts) bool {
	_, err := r.hist.SchemaAt(id, ts)
	return err != nil
}

// alignImage moves an image of one schema version into another by column
// name: columns dropped since are dropped, columns added since are
// ValueMissing unless the downstream would hold NULL for them (added after
// the row was written: the downstream's ADD COLUMN gave them NULL).
func alignImage(img []model.Value, from, to *model.TableSchema) []model.Value {
	if from == nil || from == to || from.Version == to.Version {
		return img
	}
	out := make([]model.Value, len(to.Columns))
	for i, c := range to.Columns {
		if j := from.ColumnIndex(c.Name); j >= 0 {
			out[i] = img[j]
		} else {
			out[i] = model.Null()
		}
	}
	return out
}

// fileDDL is a DDL message of a data file: its commit ts, and how many row
// messages came before it in the file.
type fileDDL struct {
	ts    model.Ts
	after int
}

// ddlOrder is what one table's files (by name, in the order a consumer
// reads them) have shown so far: the newest DDL message and where it was.
type ddlOrder struct {
	ts   model.Ts
	path string
}

// checkDDLOrder follows a table's DDL messages and rows through its files
// in the order a consumer reads them (storage.ListDataFiles: by version
// directory, date, file index, then line): the DDL messages must come in
// commit-ts order, and no row after a DDL message may be of a schema
// version older than that DDL's (the DDL's commit ts is the version it
// starts). A matching DDL at its commit ts (checkDDLs) does not show this:
// a DDL message put in the directory of the version before it would be
// found, yet a consumer applying the files in order would read the rows
// that follow it against the wrong schema. Replays are not violations: a
// DDL message written again has the same commit ts, and rows written
// again land in their own version's directory, which sorts before the
// next DDL's.
func checkDDLOrder(f storage.DataFile, rows []*model.RowChange, ddls []fileDDL, order map[string]*ddlOrder, rep *StateReport) {
	if len(ddls) == 0 && len(rows) == 0 {
		return
	}
	table := f.Dir.Schema + "." + f.Dir.Table
	o := order[table]
	if o == nil {
		o = &ddlOrder{}
		order[table] = o
	}
	next := 0
	rowsUpTo := func(n int) {
		for ; next < n && next < len(rows); next++ {
			if row := rows[next]; o.ts != 0 && row.Schema.Version < o.ts {
				rep.addDDLOrder(fmt.Sprintf("%s: %s: a row at commit ts %d of schema version %d comes after the DDL at %d (%s)", table, f.Path, row.CommitTs, row.Schema.Version, o.ts, o.path))
			}
		}
	}
	for _, d := range ddls {
		rowsUpTo(d.after)
		switch {
		case d.ts < o.ts:
			rep.addDDLOrder(fmt.Sprintf("%s: %s: the DDL at %d comes after the DDL at %d (%s)", table, f.Path, d.ts, o.ts, o.path))
		case d.ts > o.ts:
			o.ts, o.path = d.ts, f.Path
		}
	}
	rowsUpTo(len(rows))
}

// decodeFile decodes one data file into row changes (typed against the
// upstream schema of the file's version) and the DDL messages in it.
func (r *storageReader) decodeFile(f storage.DataFile, data []byte, lookup func(storage.DataDir) dirTable) ([]*model.RowChange, []fileDDL, error) {
	term := []byte(r.cfg.Terminator())
	if len(data) > 0 && !bytes.HasSuffix(data, term) {
		return nil, nil, fmt.Errorf("does not end with the terminator: the file is incomplete")
	}
	if r.cfg.Protocol == storage.ProtocolCSV {
		recs, err := r.csv.Decode(data)
		if err != nil {
			return nil, nil, err
		}
		if len(recs) == 0 {
			return nil, nil, nil
		}
		dt := lookup(f.Dir)
		if dt.schema == nil {
			return nil, nil, errors.New(dt.err)
		}
		rows, err := r.csv.Rows(recs, dt.schema)
		return rows, nil, err
	}
	var rows []*model.RowChange
	var ddls []fileDDL
	for _, line := range bytes.Split(bytes.TrimSuffix(data, term), term) {
		m, err := canal.Decode(line)
		if err != nil {
			return nil, nil, err
		}
		switch m.Kind() {
		case canal.KindDDL:
			ddls = append(ddls, fileDDL{ts: m.CommitTs(), after: len(rows)})
		case canal.KindRow:
			dt := lookup(f.Dir)
			if dt.schema == nil {
				return nil, nil, errors.New(dt.err)
			}
			if m.CommitTs() == 0 {
				return nil, nil, fmt.Errorf("a row message without _tidb.commitTs")
			}
			if d := m.SchemaDiff(dt.schema); len(d) > 0 {
				return nil, nil, fmt.Errorf("commit ts %d: the message's types differ from the schema: %s", m.CommitTs(), strings.Join(d, "; "))
			}
			row, err := m.Row(dt.schema)
			if err != nil {
				return nil, nil, err
			}
			rows = append(rows, row)
		}
	}
	return rows, ddls, nil
}

// checkDDLs compares the DDLs in (start, checkpoint] with the schema files
// that carry a statement and, for canal-json, the DDL messages.
func (r *storageReader) checkDDLs(defs []storage.TableDefinition, msgs map[model.Ts]int, rep *StateReport) {
	start, cp := r.p.StartTs, r.cp
	found := map[model.Ts][]storage.TableDefinition{}
	for _, d := range defs {
		if d.Query != "" && d.TableVersion > start && d.TableVersion <= cp {
			found[d.TableVersion] = append(found[d.TableVersion], d)
		}
	}
	expected := map[model.Ts]bool{}
	r.hist.DDLs(start, cp, func(ddl *model.DDLEvent) bool {
		if len(ddl.Tables) > 0 && !r.flt.Match(ddl.Tables[0]) {
			return true
		}
		expected[ddl.CommitTs] = true
		rep.DDLs++
		ok := false
		for _, d := range found[ddl.CommitTs] {
			if d.Query == ddl.Query {
				ok = true
			}
		}
		if r.cfg.Protocol == storage.ProtocolCanalJSON && msgs[ddl.CommitTs] == 0 {
			ok = false
		}
		if ok {
			rep.DDLsFound++
		} else {
			rep.DDLsMissing++
			rep.addDDL(fmt.Sprintf("missing: %s", ddl))
		}
		if n := msgs[ddl.CommitTs]; n > 1 {
			rep.DDLDuplicates += n - 1
		}
		return true
	})
	for ts, ds := range found {
		if !expected[ts] {
			for _, d := range ds {
				rep.DDLsExtra++
				rep.addDDL(fmt.Sprintf("extra at %d: %s", ts, d.Query))
			}
		}
	}
}

// checkSchema compares the schema file of the table version in force at
// the checkpoint with the upstream schema.
func (r *storageReader) checkSchema(ut upstreamTable, defs []storage.TableDefinition, rep *StateReport) {
	var got *storage.TableDefinition
	for i := range defs {
		d := &defs[i]
		if d.Schema == ut.name.Schema && d.Table == ut.name.Table && d.TableVersion == ut.schema.Version {
			got = d
		}
	}
	if got == nil {
		// A table version that started before the changefeed and never
		// changed gets a schema file only when first written; a table with
		// no changes after the start may have none.
		if ut.schema.Version > r.p.StartTs {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: no schema file for version %d", ut.name, ut.schema.Version))
		}
		return
	}
	want := storage.TableDefinitionOf(ut.schema, "", "")
	if len(got.Columns) != len(want.Columns) || got.TotalColumns != len(got.Columns) {
		rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s version %d: %d columns downstream, %d upstream", ut.name, ut.schema.Version, len(got.Columns), len(want.Columns)))
		return
	}
	for i := range want.Columns {
		if got.Columns[i] != want.Columns[i] {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s version %d column %d: downstream %+v, upstream %+v", ut.name, ut.schema.Version, i+1, got.Columns[i], want.Columns[i]))
		}
	}
}
