package mysql

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

// rendered is one SQL statement ready to send, with its placeholder
// arguments (none in literal mode) and the planned statement it came from.
type rendered struct {
	sql  string
	args []any
	stmt *sqlsink.Stmt
	// lenient statements hold an enum's empty error value (index 0),
	// which MySQL stores only outside strict mode: they run with strict
	// mode off.
	lenient bool
}

// renderer turns planned statements into MySQL SQL: with literal values
// (for multi-statement requests and the text protocol) or with '?'
// placeholders (for cached prepared statements).
type renderer struct {
	tz       *time.Location
	literal  bool
	maxBytes int // a multi-row statement is cut before it grows past this
	maxArgs  int // and before it has more placeholders than this
	bufs     *bufPool
}

// bufPool keeps a connection's statement buffers from one batch to the
// next. A batch's statements are large (a 256-row INSERT of wide rows is
// about a megabyte); allocating them afresh cost more than rendering
// them, most of it in zeroing the new memory.
type bufPool struct {
	free, used [][]byte
}

// maxFreeBufs bounds what a connection keeps between batches.
const maxFreeBufs = 4

func (p *bufPool) get() []byte {
	if p == nil || len(p.free) == 0 {
		return nil
	}
	b := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return b[:0]
}

// release makes every buffer handed out since the last release free again:
// the statements rendered into them must no longer be in use.
func (p *bufPool) release() {
	for _, b := range p.used {
		if len(p.free) < maxFreeBufs {
			p.free = append(p.free, b)
		}
	}
	clear(p.used)
	p.used = p.used[:0]
}

// newBuf starts a statement in a pooled buffer.
func (r *renderer) newBuf() stmtBuf {
	return stmtBuf{b: *bytes.NewBuffer(r.bufs.get())}
}

// text ends a statement: its SQL is a view of the buffer, not a copy, and
// the buffer goes back to the pool at the next release.
func (r *renderer) text(b *stmtBuf) string {
	bs := b.b.Bytes()
	if r.bufs != nil {
		r.bufs.used = append(r.bufs.used, bs[:0])
	}
	if len(bs) == 0 {
		return ""
	}
	return unsafe.String(&bs[0], len(bs))
}

// maxPlaceholders is MySQL's limit of parameters in one prepared statement.
const maxPlaceholders = 65535

func qname(s *model.TableSchema) string {
	return model.QuoteIdent(s.Table.Schema) + "." + model.QuoteIdent(s.Table.Table)
}

// render appends the SQL of one planned statement, cut into several
// statements where it would exceed the size or placeholder limits.
func (r *renderer) render(dst []rendered, st *sqlsink.Stmt) ([]rendered, error) {
	switch st.Kind {
	case sqlsink.Insert, sqlsink.Upsert:
		return r.renderInsert(dst, st)
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

// stmtBuf accumulates one statement, or one row of it. A bytes.Buffer, not
// a strings.Builder: a row's buffer is reset and reused for the next row
// (Builder.Reset drops its memory), and is copied into the statement's
// without a string in between.
type stmtBuf struct {
	b       bytes.Buffer
	args    []any
	lenient bool
}

func (r *renderer) renderInsert(dst []rendered, st *sqlsink.Stmt) ([]rendered, error) {
	s := st.Schema
	verb := "INSERT INTO "
	if st.Kind == sqlsink.Upsert {
		// REPLACE deletes every row that holds one of the new row's primary
		// or unique key values before inserting: a replayed insert, or an
		// update's new image, lands whatever the downstream holds.
		verb = "REPLACE INTO "
	}
	var head strings.Builder
	head.WriteString(verb + qname(s) + " (")
	for i, c := range s.Columns {
		if i > 0 {
			head.WriteByte(',')
		}
		head.WriteString(model.QuoteIdent(c.Name))
	}
	head.WriteString(") VALUES ")
	var cur, row stmtBuf
	n := 0
	flush := func() {
		if n > 0 {
			dst = append(dst, rendered{sql: r.text(&cur), args: cur.args, stmt: st, lenient: cur.lenient})
		}
		n = 0
	}
	for i, rc := range st.Rows {
		row.b.Reset()
		row.args = row.args[:0]
		row.lenient = false
		row.b.WriteByte('(')
		for i, c := range s.Columns {
			if i > 0 {
				row.b.WriteByte(',')
			}
			v := rc.After[i]
			if v.IsMissing() || v.IsUnchanged() {
				row.b.WriteString("DEFAULT")
				continue
			}
			if err := r.value(&row, c, v); err != nil {
				return nil, rowErr(st, c, err)
			}
		}
		row.b.WriteByte(')')
		if n > 0 && (cur.b.Len()+row.b.Len()+1 > r.maxBytes || len(cur.args)+len(row.args) > r.maxArgs) {
			flush()
		}
		if n == 0 {
			cur = r.newBuf()
			// Room for the rows still to come, at this row's size.
			cur.b.Grow(min(r.maxBytes, head.Len()+(row.b.Len()+1)*(len(st.Rows)-i)))
			cur.b.WriteString(head.String())
		} else {
			cur.b.WriteByte(',')
		}
		cur.b.Write(row.b.Bytes())
		cur.args = append(cur.args, row.args...)
		cur.lenient = cur.lenient || row.lenient
		n++
	}
	flush()
	return dst, nil
}

func rowErr(st *sqlsink.Stmt, c model.Column, err error) error {
	return &sqlsink.StmtError{Stmt: st, Err: fmt.Errorf("column %s: %w", c.Name, err)}
}

// whereKey writes the condition that finds one row: its handle key, or
// every comparable column for a table without one.
func (r *renderer) whereKey(b *stmtBuf, st *sqlsink.Stmt, img []model.Value) error {
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
			b.b.WriteString(model.QuoteIdent(c.Name) + "=")
			if err := r.value(b, c, img[ci]); err != nil {
				return rowErr(st, c, err)
			}
		}
		return nil
	}
	first := true
	for i, c := range s.Columns {
		// JSON compares as a document on MySQL, not as the text we hold,
		// and a float column's stored value is not the double we would
		// compare it with: neither can find the row.
		if c.Type.Kind == model.TypeJSON || c.Type.Kind == model.TypeFloat {
			continue
		}
		v := img[i]
		if v.IsMissing() || v.IsUnchanged() {
			return rowErr(st, c, fmt.Errorf("a table without a usable key needs the full before image; the value is %s", v.Kind))
		}
		if !first {
			b.b.WriteString(" AND ")
		}
		first = false
		b.b.WriteString(model.QuoteIdent(c.Name))
		if v.IsNull() {
			b.b.WriteString(" IS NULL")
			continue
		}
		b.b.WriteByte('=')
		if err := r.value(b, c, v); err != nil {
			return rowErr(st, c, err)
		}
	}
	if first {
		b.b.WriteString("1=1")
	}
	return nil
}

func (r *renderer) renderDelete(dst []rendered, st *sqlsink.Stmt) ([]rendered, error) {
	s := st.Schema
	head := "DELETE FROM " + qname(s) + " WHERE "
	if s.HandleKey() == nil {
		for _, rc := range st.Rows {
			var b stmtBuf
			b.b.WriteString(head)
			if err := r.whereKey(&b, st, rc.Before); err != nil {
				return nil, err
			}
			b.b.WriteString(" LIMIT 1")
			dst = append(dst, rendered{sql: b.b.String(), args: b.args, stmt: st, lenient: b.lenient})
		}
		return dst, nil
	}
	keyCols := s.KeyColumns(s.HandleKey())
	var cur, row stmtBuf
	n := 0
	flush := func() {
		if n > 0 {
			if len(keyCols) == 1 {
				cur.b.WriteByte(')')
			}
			dst = append(dst, rendered{sql: r.text(&cur), args: cur.args, stmt: st, lenient: cur.lenient})
		}
		n = 0
	}
	for _, rc := range st.Rows {
		row.b.Reset()
		row.args = row.args[:0]
		row.lenient = false
		if len(keyCols) == 1 {
			c := s.Columns[keyCols[0]]
			v := rc.Before[keyCols[0]]
			if !v.HasData() {
				return nil, rowErr(st, c, fmt.Errorf("the key value is %s", v.Kind))
			}
			if err := r.value(&row, c, v); err != nil {
				return nil, rowErr(st, c, err)
			}
		} else {
			row.b.WriteByte('(')
			if err := r.whereKey(&row, st, rc.Before); err != nil {
				return nil, err
			}
			row.b.WriteByte(')')
		}
		if n > 0 && (cur.b.Len()+row.b.Len()+4 > r.maxBytes || len(cur.args)+len(row.args) > r.maxArgs) {
			flush()
		}
		if n == 0 {
			cur = r.newBuf()
		}
		switch {
		case n == 0 && len(keyCols) == 1:
			cur.b.WriteString(head + model.QuoteIdent(s.Columns[keyCols[0]].Name) + " IN (")
		case n == 0:
			cur.b.WriteString(head)
		case len(keyCols) == 1:
			cur.b.WriteByte(',')
		default:
			cur.b.WriteString(" OR ")
		}
		cur.b.Write(row.b.Bytes())
		cur.args = append(cur.args, row.args...)
		cur.lenient = cur.lenient || row.lenient
		n++
	}
	flush()
	return dst, nil
}

func (r *renderer) renderUpdate(dst []rendered, st *sqlsink.Stmt, rc *model.RowChange) ([]rendered, error) {
	s := st.Schema
	var b stmtBuf
	b.b.WriteString("UPDATE " + qname(s) + " SET ")
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
		b.b.WriteString(model.QuoteIdent(c.Name) + "=")
		if err := r.value(&b, c, v); err != nil {
			return nil, rowErr(st, c, err)
		}
	}
	if set == 0 {
		return dst, nil // nothing the upstream sent changed
	}
	b.b.WriteString(" WHERE ")
	if err := r.whereKey(&b, st, sqlsink.KeyImage(sqlsink.Update, rc)); err != nil {
		return nil, err
	}
	if s.HandleKey() == nil {
		b.b.WriteString(" LIMIT 1")
	}
	return append(dst, rendered{sql: b.b.String(), args: b.args, stmt: st, lenient: b.lenient}), nil
}

// value writes one value as a literal or as a placeholder with its
// argument.
func (r *renderer) value(b *stmtBuf, c model.Column, v model.Value) error {
	if c.Type.Kind == model.TypeEnum && v.Kind == model.ValueString && v.S == "" && !hasElem(c.Type.Elems, "") {
		b.lenient = true
	}
	if !r.literal {
		a, err := r.arg(c, v)
		if err != nil {
			return err
		}
		b.b.WriteByte('?')
		b.args = append(b.args, a)
		return nil
	}
	switch v.Kind {
	case model.ValueNull:
		b.b.WriteString("NULL")
	case model.ValueInt:
		b.b.WriteString(strconv.FormatInt(v.I, 10))
	case model.ValueUint:
		b.b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case model.ValueFloat:
		s, err := floatText(c, v.Float())
		if err != nil {
			return err
		}
		b.b.WriteString(s)
	case model.ValueBytes:
		// _binary'…' with backslash escapes: the bytes as they are, half
		// the size of X'hex' for the server to parse.
		b.b.WriteString("_binary")
		if len(v.B) > 0 {
			// Viewed as a string, not copied: WriteQuoted only reads it.
			model.WriteQuoted(&b.b, unsafe.String(&v.B[0], len(v.B)))
		} else {
			b.b.WriteString("''")
		}
	case model.ValueString:
		switch c.Type.Kind {
		case model.TypeDecimal:
			if !isDecimal(v.S) {
				return fmt.Errorf("%q is not a decimal number", v.S)
			}
			b.b.WriteString(v.S)
			return nil
		case model.TypeTimestamp:
			s, err := r.timestamp(v.S)
			if err != nil {
				return err
			}
			model.WriteQuoted(&b.b, s)
			return nil
		}
		model.WriteQuoted(&b.b, v.S)
	default:
		return fmt.Errorf("cannot write a %s value", v.Kind)
	}
	return nil
}

// arg is a value as a prepared statement's argument.
func (r *renderer) arg(c model.Column, v model.Value) (any, error) {
	switch v.Kind {
	case model.ValueNull:
		return nil, nil
	case model.ValueInt:
		return v.I, nil
	case model.ValueUint:
		return v.Uint(), nil
	case model.ValueFloat:
		if math.IsNaN(v.Float()) || math.IsInf(v.Float(), 0) {
			return nil, fmt.Errorf("%v cannot be stored in MySQL", v.Float())
		}
		return v.Float(), nil
	case model.ValueBytes:
		if v.B == nil {
			return []byte{}, nil
		}
		return v.B, nil
	case model.ValueString:
		switch c.Type.Kind {
		case model.TypeDecimal:
			if !isDecimal(v.S) {
				return nil, fmt.Errorf("%q is not a decimal number", v.S)
			}
		case model.TypeTimestamp:
			return r.timestamp(v.S)
		}
		return v.S, nil
	}
	return nil, fmt.Errorf("cannot write a %s value", v.Kind)
}

func floatText(c model.Column, f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("%v cannot be stored in MySQL", f)
	}
	// Even for a float column: float32's shortest form can round above
	// FLT_MAX as a double (3.4028235e38), which the server refuses; the
	// exact double of the float32 converts back to the same float32.
	return strconv.FormatFloat(f, 'g', -1, 64), nil
}

func hasElem(elems []string, e string) bool {
	for _, x := range elems {
		if x == e {
			return true
		}
	}
	return false
}

// isDecimal accepts the canonical decimal text (and exponent forms), and
// nothing that could change the statement.
func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

// timestamp converts a canonical UTC timestamp into the session time zone.
func (r *renderer) timestamp(s string) (string, error) {
	if r.tz == time.UTC || strings.HasPrefix(s, "0000-00-00") {
		return s, nil
	}
	frac := ""
	base := s
	if i := strings.IndexByte(s, '.'); i >= 0 {
		base, frac = s[:i], s[i:]
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", base, time.UTC)
	if err != nil {
		return "", fmt.Errorf("timestamp %q: %v", s, err)
	}
	return t.In(r.tz).Format("2006-01-02 15:04:05") + frac, nil
}
