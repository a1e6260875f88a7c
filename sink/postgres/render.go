package postgres

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// rendered is one statement: SQL with literals or with $n parameters (all
// in PostgreSQL's text input form), or a COPY of rows.
type rendered struct {
	sql  string
	args []any
	copy *copyData
	stmt *sqlsink.Stmt
}

type copyData struct {
	sql  string // COPY … FROM STDIN
	data []byte // text format
}

// maxParams is PostgreSQL's limit of parameters in one statement.
const maxParams = 65535

// renderer turns planned statements into PostgreSQL SQL.
type renderer struct {
	literal  bool // literals instead of $n parameters
	copyMin  int  // plain inserts of at least this many rows go as COPY (0: never)
	maxBytes int  // a multi-row statement is cut before it grows past this
}

type stmtBuf struct {
	b    strings.Builder
	args []any
	base int // parameters already in the statement this part joins
}

// value writes one value as a literal or a parameter.
func (r *renderer) value(b *stmtBuf, c model.Column, v model.Value) error {
	if r.literal {
		s, err := literal(c, v)
		if err != nil {
			return err
		}
		b.b.WriteString(s)
		return nil
	}
	s, null, err := textValue(c, v)
	if err != nil {
		return err
	}
	if null {
		b.args = append(b.args, nil)
	} else {
		b.args = append(b.args, s)
	}
	b.b.WriteString("$" + strconv.Itoa(b.base+len(b.args)))
	return nil
}

func rowErr(st *sqlsink.Stmt, c model.Column, err error) error {
	return &sqlsink.StmtError{Stmt: st, Err: fmt.Errorf("column %s: %w", c.Name, err)}
}

func (r *renderer) render(dst []rendered, st *sqlsink.Stmt) ([]rendered, error) {
	switch st.Kind {
	case sqlsink.Insert:
		if r.copyMin > 0 && len(st.Rows) >= r.copyMin && complete(st) {
			return r.renderCopy(dst, st)
		}
		return r.renderInsert(dst, st)
	case sqlsink.Upsert:
		return r.renderUpsert(dst, st)
	case sqlsink.Delete:
		return r.renderDelete(dst, st)
	case sqlsink.Update:
		for _, row := range st.Rows {
			var err error
			if dst, err = r.renderUpdate(dst, st, row); err != nil {
				return nil, err
			}
		}
		return dst, nil
	}
	return nil, fmt.Errorf("unknown statement kind %v", st.Kind)
}

// complete reports whether every after image has a value for every column
// (COPY cannot say DEFAULT).
func complete(st *sqlsink.Stmt) bool {
	for _, rc := range st.Rows {
		for _, v := range rc.After {
			if v.IsMissing() || v.IsUnchanged() {
				return false
			}
		}
	}
	return true
}

func columnList(s *model.TableSchema) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, c := range s.Columns {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(quoteIdent(c.Name))
	}
	b.WriteByte(')')
	return b.String()
}

// renderRows writes "(v,…),(v,…)" statements: head, then rows, then tail,
// cut where a statement would pass the size or parameter limits.
func (r *renderer) renderRows(dst []rendered, st *sqlsink.Stmt, head, tail string, row func(*stmtBuf, *model.RowChange) error) ([]rendered, error) {
	var cur stmtBuf
	n := 0
	flush := func() {
		if n > 0 {
			cur.b.WriteString(tail)
			dst = append(dst, rendered{sql: cur.b.String(), args: cur.args, stmt: st})
		}
		cur = stmtBuf{}
		n = 0
	}
	var one stmtBuf
	for _, rc := range st.Rows {
		one.b.Reset()
		one.args = one.args[:0]
		one.base = len(cur.args) // number the parameters after the statement's
		if err := row(&one, rc); err != nil {
			return nil, err
		}
		if n > 0 && (cur.b.Len()+one.b.Len()+1 > r.maxBytes || len(cur.args)+len(one.args) > maxParams) {
			flush()
			// Render the row again, numbered from 1.
			one.b.Reset()
			one.args = one.args[:0]
			one.base = 0
			if err := row(&one, rc); err != nil {
				return nil, err
			}
		}
		if n == 0 {
			cur.b.WriteString(head)
		} else {
			cur.b.WriteByte(',')
		}
		cur.b.WriteString(one.b.String())
		cur.args = append(cur.args, one.args...)
		n++
	}
	flush()
	return dst, nil
}

func (r *renderer) afterRow(st *sqlsink.Stmt) func(*stmtBuf, *model.RowChange) error {
	return func(b *stmtBuf, rc *model.RowChange) error {
		b.b.WriteByte('(')
		for i, c := range st.Schema.Columns {
			if i > 0 {
				b.b.WriteByte(',')
			}
			v := rc.After[i]
			if v.IsMissing() || v.IsUnchanged() {
				b.b.WriteString("DEFAULT")
				continue
			}
			if err := r.value(b, c, v); err != nil {
				return rowErr(st, c, err)
			}
		}
		b.b.WriteByte(')')
		return nil
	}
}

func (r *renderer) renderInsert(dst []rendered, st *sqlsink.Stmt) ([]rendered, error) {
	s := st.Schema
	return r.renderRows(dst, st, "INSERT INTO "+qname(s.Table)+" "+columnList(s)+" VALUES ", "", r.afterRow(st))
}

// renderUpsert writes after images idempotently, with MySQL REPLACE's
// effect: rows holding any of the new rows' other unique values go first,
// then INSERT … ON CONFLICT on the handle key updates or inserts.
func (r *renderer) renderUpsert(dst []rendered, st *sqlsink.Stmt) ([]rendered, error) {
	s := st.Schema
	hk := s.HandleKey()
	var err error
	for i := range s.Indexes {
		ix := &s.Indexes[i]
		if !(ix.Primary || ix.Unique) || ix.Name == hk.Name {
			continue
		}
		if dst, err = r.deleteByIndex(dst, st, ix, func(rc *model.RowChange) []model.Value { return rc.After }); err != nil {
			return nil, err
		}
	}
	keyCols := map[string]bool{}
	var target []string
	for _, c := range hk.Columns {
		keyCols[c] = true
		target = append(target, quoteIdent(c))
	}
	var set []string
	for _, c := range s.Columns {
		if !keyCols[c.Name] {
			set = append(set, quoteIdent(c.Name)+"=EXCLUDED."+quoteIdent(c.Name))
		}
	}
	tail := " ON CONFLICT (" + strings.Join(target, ",") + ") DO "
	if len(set) == 0 {
		tail += "NOTHING"
	} else {
		tail += "UPDATE SET " + strings.Join(set, ",")
	}
	return r.renderRows(dst, st, "INSERT INTO "+qname(s.Table)+" "+columnList(s)+" VALUES ", tail, r.afterRow(st))
}

// deleteByIndex deletes the rows whose values of ix equal the images'
// (images with a NULL in ix are skipped: they conflict with nothing).
func (r *renderer) deleteByIndex(dst []rendered, st *sqlsink.Stmt, ix *model.Index, img func(*model.RowChange) []model.Value) ([]rendered, error) {
	s := st.Schema
	cols := s.KeyColumns(ix)
	var sub sqlsink.Stmt = *st
	sub.Rows = nil
	for _, rc := range st.Rows {
		ok := true
		for _, c := range cols {
			if v := img(rc)[c]; !v.HasData() {
				ok = false
			}
		}
		if ok {
			sub.Rows = append(sub.Rows, rc)
		}
	}
	if len(sub.Rows) == 0 {
		return dst, nil
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(s.Columns[c].Name)
	}
	head := "DELETE FROM " + qname(s.Table) + " WHERE (" + strings.Join(names, ",") + ") IN ("
	return r.renderRows(dst, st, head, ")", func(b *stmtBuf, rc *model.RowChange) error {
		b.b.WriteByte('(')
		for i, c := range cols {
			if i > 0 {
				b.b.WriteByte(',')
			}
			if err := r.value(b, s.Columns[c], img(rc)[c]); err != nil {
				return rowErr(st, s.Columns[c], err)
			}
		}
		b.b.WriteByte(')')
		return nil
	})
}

// whereRow finds one row: by its handle key, or for a table without one
// by every column, through its ctid (PostgreSQL has no DELETE … LIMIT).
func (r *renderer) whereRow(b *stmtBuf, st *sqlsink.Stmt, img []model.Value) error {
	s := st.Schema
	if ix := s.HandleKey(); ix != nil {
		for j, ci := range s.KeyColumns(ix) {
			if j > 0 {
				b.b.WriteString(" AND ")
			}
			c := s.Columns[ci]
			if !img[ci].HasData() {
				return rowErr(st, c, fmt.Errorf("the key value is %s", img[ci].Kind))
			}
			b.b.WriteString(quoteIdent(c.Name) + "=")
			if err := r.value(b, c, img[ci]); err != nil {
				return rowErr(st, c, err)
			}
		}
		return nil
	}
	b.b.WriteString("ctid = (SELECT ctid FROM " + qname(s.Table) + " WHERE ")
	for i, c := range s.Columns {
		v := img[i]
		if v.IsMissing() || v.IsUnchanged() {
			return rowErr(st, c, fmt.Errorf("a table without a usable key needs the full before image; the value is %s", v.Kind))
		}
		if i > 0 {
			b.b.WriteString(" AND ")
		}
		name := quoteIdent(c.Name)
		if c.Type.Kind == model.TypeJSON {
			name += "::text" // json has no equality; its text is what was written
		}
		b.b.WriteString(name)
		if v.IsNull() {
			b.b.WriteString(" IS NULL")
			continue
		}
		b.b.WriteByte('=')
		if err := r.value(b, c, v); err != nil {
			return rowErr(st, c, err)
		}
	}
	b.b.WriteString(" LIMIT 1)")
	return nil
}

func (r *renderer) renderDelete(dst []rendered, st *sqlsink.Stmt) ([]rendered, error) {
	s := st.Schema
	ix := s.HandleKey()
	if ix == nil {
		for _, rc := range st.Rows {
			var b stmtBuf
			b.b.WriteString("DELETE FROM " + qname(s.Table) + " WHERE ")
			if err := r.whereRow(&b, st, rc.Before); err != nil {
				return nil, err
			}
			dst = append(dst, rendered{sql: b.b.String(), args: b.args, stmt: st})
		}
		return dst, nil
	}
	return r.deleteByIndex(dst, st, ix, func(rc *model.RowChange) []model.Value { return rc.Before })
}

func (r *renderer) renderUpdate(dst []rendered, st *sqlsink.Stmt, rc *model.RowChange) ([]rendered, error) {
	s := st.Schema
	var b stmtBuf
	b.b.WriteString("UPDATE " + qname(s.Table) + " SET ")
	set := 0
	for i, c := range s.Columns {
		v := rc.After[i]
		if v.IsMissing() || v.IsUnchanged() {
			continue
		}
		if set > 0 {
			b.b.WriteByte(',')
		}
		set++
		b.b.WriteString(quoteIdent(c.Name) + "=")
		if err := r.value(&b, c, v); err != nil {
			return nil, rowErr(st, c, err)
		}
	}
	if set == 0 {
		return dst, nil
	}
	b.b.WriteString(" WHERE ")
	if err := r.whereRow(&b, st, sqlsink.KeyImage(sqlsink.Update, rc)); err != nil {
		return nil, err
	}
	return append(dst, rendered{sql: b.b.String(), args: b.args, stmt: st}), nil
}

// renderCopy writes plain inserts as COPY in text format.
func (r *renderer) renderCopy(dst []rendered, st *sqlsink.Stmt) ([]rendered, error) {
	s := st.Schema
	var buf bytes.Buffer
	for _, rc := range st.Rows {
		for i, c := range s.Columns {
			if i > 0 {
				buf.WriteByte('\t')
			}
			v, null, err := textValue(c, rc.After[i])
			if err != nil {
				return nil, rowErr(st, c, err)
			}
			if null {
				buf.WriteString(`\N`)
				continue
			}
			copyEscape(&buf, v)
		}
		buf.WriteByte('\n')
	}
	cd := &copyData{sql: "COPY " + qname(s.Table) + " " + columnList(s) + " FROM STDIN", data: buf.Bytes()}
	return append(dst, rendered{copy: cd, stmt: st}), nil
}

// copyEscape writes a value in COPY's text format.
func copyEscape(buf *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			buf.WriteString(`\\`)
		case '\t':
			buf.WriteString(`\t`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		default:
			buf.WriteByte(c)
		}
	}
}
