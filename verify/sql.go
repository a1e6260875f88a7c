package verify

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// sqlReader reads a SQL database's tables as the downstream state. Tables
// are looked up by the upstream's database and table names: in MySQL the
// database of that name (or the one the URI's path names), in PostgreSQL
// the schema of that name in the URI's database.
type sqlReader struct {
	kind string // "mysql" or "postgres"
	db   *sql.DB
	pg   *pgx.Conn
	// database overrides the upstream database name (MySQL URI path).
	database string
}

func openSQL(ctx context.Context, p StateParams, u *url.URL) (*sqlReader, error) {
	shown := redact.URI(p.Downstream)
	switch u.Scheme {
	case "mysql":
		cfg := mysql.NewConfig()
		cfg.Net = "tcp"
		cfg.Addr = u.Host
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			cfg.Addr = net.JoinHostPort(u.Host, "3306")
		}
		if u.User != nil {
			cfg.User = u.User.Username()
			cfg.Passwd, _ = u.User.Password()
		}
		// UTC, so that TIMESTAMP values read back in their canonical form;
		// prepared statements (the binary protocol), so that FLOAT values
		// arrive as the four bytes the server holds, not a rounded text.
		cfg.Params = map[string]string{"time_zone": "'+00:00'"}
		cfg.Timeout = 10 * time.Second
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			return nil, fmt.Errorf("verify: open %s: %w", shown, err)
		}
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("verify: connect to %s: %w", shown, redact.Error(err, p.Downstream))
		}
		return &sqlReader{kind: "mysql", db: db, database: strings.Trim(u.Path, "/")}, nil
	default:
		// Only libpq's connection parameters go to the driver; a sink's own
		// parameters would be sent to the server as settings and refused.
		q := url.Values{}
		for k, v := range u.Query() {
			switch k {
			case "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "connect_timeout", "application_name", "target_session_attrs":
				q[k] = v
			}
		}
		cu := *u
		cu.RawQuery = q.Encode()
		conn, err := pgx.Connect(ctx, cu.String())
		if err != nil {
			return nil, fmt.Errorf("verify: connect to %s: %w", shown, redact.Error(err, p.Downstream))
		}
		if _, err := conn.Exec(ctx, "SET TIME ZONE 'UTC'"); err != nil {
			conn.Close(ctx)
			return nil, fmt.Errorf("verify: %s: set the time zone: %w", shown, err)
		}
		return &sqlReader{kind: "postgres", pg: conn}, nil
	}
}

func (r *sqlReader) close() error {
	if r.db != nil {
		return r.db.Close()
	}
	return r.pg.Close(context.Background())
}

// sqlColumn is a column as the downstream describes it.
type sqlColumn struct {
	name     string
	typ      string
	nullable bool
	pk       bool
}

func (r *sqlReader) dbName(upstream string) string {
	if r.database != "" {
		return r.database
	}
	return upstream
}

// describe lists a table's columns in order; none if the table is absent.
func (r *sqlReader) describe(ctx context.Context, db, table string) ([]sqlColumn, error) {
	var cols []sqlColumn
	if r.kind == "mysql" {
		rows, err := r.db.QueryContext(ctx, `SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY FROM information_schema.COLUMNS
			WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, db, table)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var c sqlColumn
			var nullable, key string
			if err := rows.Scan(&c.name, &c.typ, &nullable, &key); err != nil {
				return nil, err
			}
			c.nullable, c.pk = nullable == "YES", key == "PRI"
			cols = append(cols, c)
		}
		return cols, rows.Err()
	}
	rows, err := r.pg.Query(ctx, `SELECT c.column_name, c.data_type, c.is_nullable,
			EXISTS (SELECT 1 FROM information_schema.table_constraints tc
				JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name
				WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = c.table_schema AND tc.table_name = c.table_name AND k.column_name = c.column_name)
		FROM information_schema.columns c WHERE c.table_schema = $1 AND c.table_name = $2 ORDER BY c.ordinal_position`, db, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c sqlColumn
		var nullable string
		if err := rows.Scan(&c.name, &c.typ, &nullable, &c.pk); err != nil {
			return nil, err
		}
		c.nullable = nullable == "YES"
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// listTables lists the tables of a database (MySQL) or schema (PostgreSQL).
func (r *sqlReader) listTables(ctx context.Context, db string) ([]string, error) {
	var out []string
	if r.kind == "mysql" {
		rows, err := r.db.QueryContext(ctx, `SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`, db)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, rows.Err()
	}
	rows, err := r.pg.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name`, db)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

var intWidthRE = regexp.MustCompile(`^(tinyint|smallint|mediumint|int|bigint|year)\(\d+\)`)

// mysqlTypeMatches compares MySQL's COLUMN_TYPE with the upstream type:
// display widths do not matter, and MariaDB's JSON is a LONGTEXT.
func mysqlTypeMatches(got string, t model.ColumnType) bool {
	g := intWidthRE.ReplaceAllString(strings.ToLower(got), "$1")
	g = strings.TrimSuffix(g, " zerofill")
	want := strings.ToLower(t.String())
	return g == want || t.Kind == model.TypeJSON && g == "longtext"
}

func (r *sqlReader) load(ctx context.Context, want []upstreamTable, rep *StateReport) (map[model.TableID]*downTable, error) {
	out := map[model.TableID]*downTable{}
	wanted := map[string]map[string]bool{}
	for _, ut := range want {
		db := r.dbName(ut.name.Schema)
		if wanted[db] == nil {
			wanted[db] = map[string]bool{}
		}
		wanted[db][ut.name.Table] = true
		cols, err := r.describe(ctx, db, ut.name.Table)
		if err != nil {
			return nil, fmt.Errorf("verify: describe %s.%s: %w", db, ut.name.Table, err)
		}
		if len(cols) == 0 {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: the table does not exist downstream (%s.%s)", ut.name, db, ut.name.Table))
			continue
		}
		idx := r.checkColumns(ut, cols, rep)
		dt, err := r.readRows(ctx, db, ut, idx, rep)
		if err != nil {
			return nil, err
		}
		out[ut.name.ID] = dt
	}
	// Tables the downstream has that no longer exist upstream (a DROP or a
	// RENAME that was not applied).
	for db, tables := range wanted {
		names, err := r.listTables(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("verify: list the tables of %s: %w", db, err)
		}
		for _, n := range names {
			if !tables[n] {
				rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s.%s exists downstream but not upstream at the checkpoint", db, n))
			}
		}
	}
	return out, nil
}

// checkColumns compares the downstream columns with the upstream schema
// and returns, per upstream column, the downstream column's position (-1
// when it has none).
func (r *sqlReader) checkColumns(ut upstreamTable, cols []sqlColumn, rep *StateReport) []int {
	idx := make([]int, len(ut.schema.Columns))
	pk := map[string]bool{}
	if ix := ut.schema.PrimaryKey(); ix != nil {
		for _, c := range ix.Columns {
			pk[c] = true
		}
	}
	byName := map[string]int{}
	for i, c := range cols {
		byName[c.name] = i
	}
	for i, c := range ut.schema.Columns {
		j, ok := byName[c.Name]
		if !ok {
			idx[i] = -1
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: column %s is missing downstream", ut.name, c.Name))
			continue
		}
		idx[i] = j
		d := cols[j]
		if j != i {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: column %s is column %d downstream, %d upstream", ut.name, c.Name, j+1, i+1))
		}
		if r.kind == "mysql" && !mysqlTypeMatches(d.typ, c.Type) {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: column %s is %s downstream, %s upstream", ut.name, c.Name, d.typ, c.Type))
		}
		if d.nullable != c.Nullable {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: column %s nullable %v downstream, %v upstream", ut.name, c.Name, d.nullable, c.Nullable))
		}
		if d.pk != pk[c.Name] {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: column %s in the primary key %v downstream, %v upstream", ut.name, c.Name, d.pk, pk[c.Name]))
		}
	}
	for _, d := range cols {
		if ut.schema.ColumnIndex(d.name) < 0 {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: column %s exists downstream but not upstream", ut.name, d.name))
		}
	}
	return idx
}

func (r *sqlReader) readRows(ctx context.Context, db string, ut upstreamTable, idx []int, rep *StateReport) (*downTable, error) {
	s := ut.schema
	var names []string
	var at []int // upstream column of each selected column
	for i, c := range s.Columns {
		if idx[i] < 0 {
			continue
		}
		if r.kind == "mysql" {
			names = append(names, model.QuoteIdent(c.Name))
		} else {
			names = append(names, pgIdent(c.Name)+"::text")
		}
		at = append(at, i)
	}
	dt := &downTable{name: ut.name, rows: map[uint64][]model.Value{}}
	add := func(vals []any) error {
		img := make([]model.Value, len(s.Columns))
		for k, i := range at {
			v, err := r.toValue(s.Columns[i].Type, vals[k])
			if err != nil {
				return fmt.Errorf("verify: %s column %s: %w", ut.name, s.Columns[i].Name, err)
			}
			img[i] = v
		}
		key, ok := datagen.KeyOf(s, img)
		if !ok {
			rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s: a row without a datagen key", ut.name))
			return nil
		}
		if _, dup := dt.rows[key]; dup {
			rep.addExtra(RowKey{Table: ut.name, Key: key})
		}
		dt.rows[key] = img
		return nil
	}
	if r.kind == "mysql" {
		q := "SELECT " + strings.Join(names, ", ") + " FROM " + model.QuoteIdent(db) + "." + model.QuoteIdent(ut.name.Table)
		stmt, err := r.db.PrepareContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("verify: read %s.%s: %w", db, ut.name.Table, err)
		}
		defer stmt.Close()
		rows, err := stmt.QueryContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("verify: read %s.%s: %w", db, ut.name.Table, err)
		}
		defer rows.Close()
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				return nil, fmt.Errorf("verify: read %s.%s: %w", db, ut.name.Table, err)
			}
			if err := add(vals); err != nil {
				return nil, err
			}
		}
		return dt, rows.Err()
	}
	q := "SELECT " + strings.Join(names, ", ") + " FROM " + pgIdent(db) + "." + pgIdent(ut.name.Table)
	rows, err := r.pg.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("verify: read %s.%s: %w", db, ut.name.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		vals := make([]any, len(raw))
		for i, b := range raw {
			if b != nil {
				vals[i] = string(b)
			}
		}
		if err := add(vals); err != nil {
			return nil, err
		}
	}
	return dt, rows.Err()
}

func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// toValue turns what the driver returned (MySQL's binary protocol values,
// or PostgreSQL's text forms) into the canonical value of the upstream
// column type.
func (r *sqlReader) toValue(t model.ColumnType, v any) (model.Value, error) {
	if v == nil {
		return model.Null(), nil
	}
	var text string
	switch x := v.(type) {
	case int64:
		if t.ValueKind() == model.ValueUint {
			if x < 0 {
				return model.Value{}, fmt.Errorf("negative %d for %s", x, t)
			}
			return model.UintValue(uint64(x)), nil
		}
		return model.IntValue(x), nil
	case uint64:
		if t.ValueKind() == model.ValueInt {
			return model.IntValue(int64(x)), nil
		}
		return model.UintValue(x), nil
	case float32:
		return model.FloatValue(float64(x)), nil
	case float64:
		return model.FloatValue(x), nil
	case []byte:
		if r.kind == "mysql" && t.Kind == model.TypeBit {
			// BIT arrives as its bytes, big-endian.
			var buf [8]byte
			if len(x) > 8 {
				return model.Value{}, fmt.Errorf("bit value of %d bytes", len(x))
			}
			copy(buf[8-len(x):], x)
			return model.UintValue(binary.BigEndian.Uint64(buf[:])), nil
		}
		if t.IsBinary() {
			return model.BytesValue(append([]byte{}, x...)), nil
		}
		text = string(x)
	case string:
		text = x
	case time.Time:
		text = x.UTC().Format("2006-01-02 15:04:05.999999")
	default:
		return model.Value{}, fmt.Errorf("unexpected %T value", v)
	}
	return parseSQLText(r.kind, t, text)
}

// parseSQLText reads a value's text form as the servers write it.
func parseSQLText(kind string, t model.ColumnType, s string) (model.Value, error) {
	switch t.ValueKind() {
	case model.ValueInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return model.Value{}, fmt.Errorf("%q is not a %s", s, t)
		}
		return model.IntValue(n), nil
	case model.ValueUint:
		if t.Kind == model.TypeBit && len(s) == t.Length && strings.Trim(s, "01") == "" {
			n, err := strconv.ParseUint(s, 2, 64)
			if err == nil {
				return model.UintValue(n), nil
			}
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return model.Value{}, fmt.Errorf("%q is not a %s", s, t)
		}
		return model.UintValue(n), nil
	case model.ValueFloat:
		bits := 64
		if t.Kind == model.TypeFloat {
			bits = 32
		}
		f, err := strconv.ParseFloat(s, bits)
		if err != nil {
			return model.Value{}, fmt.Errorf("%q is not a %s", s, t)
		}
		return model.FloatValue(f), nil
	case model.ValueBytes:
		if kind == "postgres" && strings.HasPrefix(s, `\x`) {
			b, err := hex.DecodeString(s[2:])
			if err != nil {
				return model.Value{}, fmt.Errorf("bytea %q: %v", s, err)
			}
			return model.BytesValue(b), nil
		}
		return model.BytesValue([]byte(s)), nil
	}
	switch t.Kind {
	case model.TypeChar:
		return model.StringValue(strings.TrimRight(s, " ")), nil
	case model.TypeDatetime, model.TypeTimestamp:
		tm, err := parseDateTime(s)
		if err != nil {
			return model.Value{}, fmt.Errorf("%q is not a %s", s, t)
		}
		return model.StringValue(tm.Format("2006-01-02 15:04:05") + model.FormatFsp(tm.Nanosecond()/1000, t.Fsp)), nil
	case model.TypeTime:
		return parseSQLTime(s, t)
	}
	return model.StringValue(s), nil
}

// parseDateTime reads "2006-01-02 15:04:05[.ffffff][+00]" in UTC.
func parseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not a date and time")
}

var sqlTimeRE = regexp.MustCompile(`^(-?)(\d+):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$`)

// parseSQLTime reads "[-]H:MM:SS[.f]" (MySQL's TIME, PostgreSQL's
// interval of hours) into the canonical time(fsp).
func parseSQLTime(s string, t model.ColumnType) (model.Value, error) {
	m := sqlTimeRE.FindStringSubmatch(s)
	if m == nil {
		return model.Value{}, fmt.Errorf("%q is not a %s", s, t)
	}
	h, _ := strconv.Atoi(m[2])
	frac := m[5] + strings.Repeat("0", 6-len(m[5]))
	micros, _ := strconv.Atoi(frac)
	sign := m[1]
	if h == 0 && m[3] == "00" && m[4] == "00" && micros == 0 {
		sign = ""
	}
	hh := strconv.Itoa(h)
	if len(hh) < 2 {
		hh = "0" + hh
	}
	return model.StringValue(sign + hh + ":" + m[3] + ":" + m[4] + model.FormatFsp(micros, t.Fsp)), nil
}
