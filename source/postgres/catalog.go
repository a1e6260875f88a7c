package postgres

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
)

// sessionParams make every text form we decode the same on every server
// whatever its configuration: ISO dates, UTC timestamps, ISO 8601
// intervals, hex bytea, shortest exact floats.
var sessionParams = map[string]string{
	"DateStyle":          "ISO, YMD",
	"TimeZone":           "UTC",
	"IntervalStyle":      "iso_8601",
	"bytea_output":       "hex",
	"extra_float_digits": "1",
	"client_encoding":    "UTF8",
}

// connect opens a regular connection with our session settings.
func connect(ctx context.Context, cfg *Config, replication bool) (*pgconn.PgConn, error) {
	pc, err := pgconn.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", cfg.Redacted(), redactErr(err, cfg))
	}
	for k, v := range sessionParams {
		pc.RuntimeParams[k] = v
	}
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = "raftcdc"
	}
	if replication {
		pc.RuntimeParams["replication"] = "database"
	}
	c, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres %s: %w", cfg.Redacted(), redactErr(err, cfg))
	}
	return c, nil
}

// connectPgx opens a pgx connection with our session settings.
func connectPgx(ctx context.Context, cfg *Config) (*pgx.Conn, error) {
	pc, err := pgx.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", cfg.Redacted(), redactErr(err, cfg))
	}
	for k, v := range sessionParams {
		pc.RuntimeParams[k] = v
	}
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = "raftcdc"
	}
	c, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres %s: %w", cfg.Redacted(), redactErr(err, cfg))
	}
	return c, nil
}

// redactErr hides the URI's secrets in a driver error (a parse error may
// quote the connection string).
func redactErr(err error, cfg *Config) error {
	return redact.Error(err, cfg.ConnString)
}

// relCol is one column as a relation message or the catalog describes it.
type relCol struct {
	Name    string
	TypeOID uint32
	Typmod  int32
	Key     bool
}

// tableInfo is what the catalog says about a table beyond its columns.
type tableInfo struct {
	Name     model.TableName
	NotNull  map[string]bool
	PKName   string
	PK       []string
	Uniques  []model.Index
	Identity byte // relreplident: d, n, f, i
}

// catalog resolves types and table details through a regular connection.
// It is used by one goroutine at a time.
type catalog struct {
	conn  *pgx.Conn
	types map[uint32]*pgType
}

func newCatalog(conn *pgx.Conn) *catalog {
	return &catalog{conn: conn, types: map[uint32]*pgType{}}
}

// typ resolves a type OID: enums get their labels, arrays their element,
// domains their base. Results are cached; an enum is reloaded by forget.
func (c *catalog) typ(ctx context.Context, oid uint32) (*pgType, error) {
	if t, ok := c.types[oid]; ok {
		return t, nil
	}
	var (
		name       string
		typtype    string
		elem, base uint32
		baseTypmod int32
		category   string
	)
	err := c.conn.QueryRow(ctx, `SELECT format_type(oid, NULL), typtype::text, typelem::int8, typbasetype::int8, typtypmod, typcategory::text FROM pg_type WHERE oid = $1`, int64(oid)).
		Scan(&name, &typtype, &elem, &base, &baseTypmod, &category)
	if err != nil {
		return nil, fmt.Errorf("look up type %d: %w", oid, err)
	}
	t := &pgType{OID: oid, Name: name}
	switch {
	case typtype == "e":
		rows, err := c.conn.Query(ctx, `SELECT enumlabel FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder`, int64(oid))
		if err != nil {
			return nil, fmt.Errorf("look up labels of enum %s: %w", name, err)
		}
		labels, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("look up labels of enum %s: %w", name, err)
		}
		t.Labels = labels
	case typtype == "d":
		b, err := c.typ(ctx, base)
		if err != nil {
			return nil, err
		}
		t.Base, t.BaseTypmod = b, baseTypmod
	case category == "A" && elem != 0:
		e, err := c.typ(ctx, elem)
		if err != nil {
			return nil, err
		}
		t.Elem = e
	}
	c.types[oid] = t
	return t, nil
}

// forgetEnums drops cached enums, so that new labels are seen.
func (c *catalog) forgetEnums() {
	for k, t := range c.types {
		if len(t.Labels) > 0 || (t.Elem != nil && len(t.Elem.Labels) > 0) {
			delete(c.types, k)
		}
	}
}

// table reads a table's name, keys, NOT NULL columns and replica identity.
func (c *catalog) table(ctx context.Context, relid uint32) (*tableInfo, error) {
	ti := &tableInfo{NotNull: map[string]bool{}}
	var ident string
	err := c.conn.QueryRow(ctx, `SELECT n.nspname, c.relname, c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, int64(relid)).
		Scan(&ti.Name.Schema, &ti.Name.Table, &ident)
	if err != nil {
		if err == pgx.ErrNoRows {
			return nil, fmt.Errorf("table with OID %d no longer exists", relid)
		}
		return nil, fmt.Errorf("look up table %d: %w", relid, err)
	}
	ti.Name.ID = int64(relid)
	if ident != "" {
		ti.Identity = ident[0]
	}
	rows, err := c.conn.Query(ctx, `SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attnotnull`, int64(relid))
	if err != nil {
		return nil, fmt.Errorf("look up columns of %s: %w", ti.Name, err)
	}
	nn, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up columns of %s: %w", ti.Name, err)
	}
	for _, n := range nn {
		ti.NotNull[n] = true
	}
	rows, err = c.conn.Query(ctx, `
SELECT i.indisprimary, ic.relname,
       array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisunique) AND i.indexprs IS NULL AND i.indpred IS NULL AND i.indisvalid
ORDER BY NOT i.indisprimary, ic.relname`, int64(relid))
	if err != nil {
		return nil, fmt.Errorf("look up keys of %s: %w", ti.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var primary bool
		var name string
		var cols []string
		if err := rows.Scan(&primary, &name, &cols); err != nil {
			return nil, fmt.Errorf("look up keys of %s: %w", ti.Name, err)
		}
		if primary {
			ti.PKName, ti.PK = name, cols
		} else {
			ti.Uniques = append(ti.Uniques, model.Index{Name: name, Columns: cols, Unique: true})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up keys of %s: %w", ti.Name, err)
	}
	return ti, nil
}

// columns reads a table's published columns (not dropped, not generated)
// in order, as a relation message lists them.
func (c *catalog) columns(ctx context.Context, relid uint32) ([]relCol, error) {
	rows, err := c.conn.Query(ctx, `SELECT attname, atttypid::int8, atttypmod FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, int64(relid))
	if err != nil {
		return nil, fmt.Errorf("look up columns of table %d: %w", relid, err)
	}
	defer rows.Close()
	var out []relCol
	for rows.Next() {
		var rc relCol
		var oid int64
		if err := rows.Scan(&rc.Name, &oid, &rc.Typmod); err != nil {
			return nil, fmt.Errorf("look up columns of table %d: %w", relid, err)
		}
		rc.TypeOID = uint32(oid)
		out = append(out, rc)
	}
	return out, rows.Err()
}

// tableSchema is a schema version with the codecs of its columns.
type tableSchema struct {
	schema *model.TableSchema
	codecs []colCodec
	sig    string
}

// build makes a schema version from a relation's columns and the catalog.
// Key columns come from the primary key (or, failing one, the replica
// identity columns the relation message flags), so that REPLICA IDENTITY
// FULL does not turn every column into the key.
func (c *catalog) build(ctx context.Context, relid uint32, cols []relCol, version model.Ts) (*tableSchema, error) {
	ti, err := c.table(ctx, relid)
	if err != nil {
		return nil, err
	}
	ts := &tableSchema{schema: &model.TableSchema{Table: ti.Name, Version: version}, sig: signature(cols)}
	have := map[string]bool{}
	var identCols []string
	for _, rc := range cols {
		t, err := c.typ(ctx, rc.TypeOID)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", ti.Name, rc.Name, err)
		}
		codec := mapType(t, rc.Typmod)
		ts.codecs = append(ts.codecs, codec)
		ts.schema.Columns = append(ts.schema.Columns, model.Column{Name: rc.Name, Type: codec.typ, Nullable: !ti.NotNull[rc.Name]})
		have[rc.Name] = true
		if rc.Key {
			identCols = append(identCols, rc.Name)
		}
	}
	complete := func(names []string) bool {
		for _, n := range names {
			if !have[n] {
				return false
			}
		}
		return len(names) > 0
	}
	switch {
	case complete(ti.PK):
		ts.schema.Indexes = append(ts.schema.Indexes, model.Index{Name: "PRIMARY", Columns: ti.PK, Primary: true})
	case ti.Identity != 'f' && complete(identCols):
		ts.schema.Indexes = append(ts.schema.Indexes, model.Index{Name: "replica_identity", Columns: identCols, Unique: true})
	}
	for _, u := range ti.Uniques {
		if complete(u.Columns) {
			ts.schema.Indexes = append(ts.schema.Indexes, u)
		}
	}
	if err := ts.schema.Validate(); err != nil {
		return nil, err
	}
	return ts, nil
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func quoteTable(t model.TableName) string {
	return quoteIdent(t.Schema) + "." + quoteIdent(t.Table)
}

// listTables lists the ordinary and partitioned tables of the database
// outside the system schemas, with their OIDs, sorted by name.
func listTables(ctx context.Context, conn *pgx.Conn) ([]model.TableName, error) {
	rows, err := conn.Query(ctx, `
SELECT c.oid::int8, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY n.nspname, c.relname`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var out []model.TableName
	for rows.Next() {
		var t model.TableName
		if err := rows.Scan(&t.ID, &t.Schema, &t.Table); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, rows.Err()
}
