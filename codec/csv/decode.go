package csv

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// Field is one field as written: its text (unquoted and unescaped) and
// whether it was a string. A bare field whose raw text is the null string
// is NULL.
type Field struct {
	Text   string
	Quoted bool
	Null   bool
}

// Record is one decoded record.
type Record struct {
	Op        string // I, U or D
	Table     string
	Schema    string
	CommitTs  model.Ts // 0 without include-commit-ts
	IsUpdated bool     // only with output-old-value
	Values    []Field
	// Line is the record's 1-based line number in the input, for messages.
	Line int
}

// Decoder reads what an Encoder with the same options wrote.
type Decoder struct {
	opts Options
}

// NewDecoder checks the options and returns a decoder.
func NewDecoder(opts Options) (*Decoder, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Decoder{opts: opts}, nil
}

// Decode splits data into records. Every record must end with the
// terminator (a file is written whole).
func (d *Decoder) Decode(data []byte) ([]Record, error) {
	var out []Record
	line := 1
	for len(data) > 0 {
		fields, rest, lines, err := d.readRecord(data)
		if err != nil {
			return out, fmt.Errorf("csv: line %d: %w", line, err)
		}
		rec, err := d.record(fields)
		if err != nil {
			return out, fmt.Errorf("csv: line %d: %w", line, err)
		}
		rec.Line = line
		out = append(out, rec)
		line += lines
		data = rest
	}
	return out, nil
}

func (d *Decoder) record(fields []Field) (Record, error) {
	meta := 3
	if d.opts.IncludeCommitTs {
		meta++
	}
	if d.opts.OutputOldValue {
		meta++
	}
	if len(fields) < meta {
		return Record{}, fmt.Errorf("%d fields, a record has at least %d before the columns", len(fields), meta)
	}
	rec := Record{Op: fields[0].Text, Table: fields[1].Text, Schema: fields[2].Text}
	switch rec.Op {
	case "I", "U", "D":
	default:
		return Record{}, fmt.Errorf("operation %q is not I, U or D", rec.Op)
	}
	i := 3
	if d.opts.IncludeCommitTs {
		ts, err := strconv.ParseUint(fields[i].Text, 10, 64)
		if err != nil || fields[i].Quoted && d.opts.Quote != "" {
			return Record{}, fmt.Errorf("commit ts %q is not a number", fields[i].Text)
		}
		rec.CommitTs = ts
		i++
	}
	if d.opts.OutputOldValue {
		b, err := strconv.ParseBool(fields[i].Text)
		if err != nil {
			return Record{}, fmt.Errorf("is-updated %q is not a boolean", fields[i].Text)
		}
		rec.IsUpdated = b
		i++
	}
	rec.Values = fields[i:]
	return rec, nil
}

// readRecord reads fields up to and including the terminator.
func (d *Decoder) readRecord(data []byte) (fields []Field, rest []byte, lines int, err error) {
	delim, quote, term := d.opts.Delimiter, d.opts.Quote, d.opts.Terminator
	lines = 1
	for {
		var f Field
		if quote != "" && bytes.HasPrefix(data, []byte(quote)) {
			data = data[len(quote):]
			var b strings.Builder
			for {
				i := bytes.Index(data, []byte(quote))
				if i < 0 {
					return nil, nil, 0, fmt.Errorf("quoted field is not closed")
				}
				lines += bytes.Count(data[:i], []byte("\n"))
				b.Write(data[:i])
				data = data[i+len(quote):]
				if bytes.HasPrefix(data, []byte(quote)) { // a doubled quote
					b.WriteString(quote)
					data = data[len(quote):]
					continue
				}
				break
			}
			f = Field{Text: b.String(), Quoted: true}
		} else {
			end := 0
			for end < len(data) && !bytes.HasPrefix(data[end:], []byte(delim)) && !bytes.HasPrefix(data[end:], []byte(term)) {
				if quote == "" && data[end] == '\\' && end+1 < len(data) {
					end += 2
					continue
				}
				end++
			}
			raw := string(data[:end])
			data = data[end:]
			switch {
			case raw == d.opts.Null:
				f = Field{Null: true}
			case quote == "":
				f = Field{Text: unescape(raw), Quoted: true}
			default:
				f = Field{Text: raw}
			}
		}
		fields = append(fields, f)
		switch {
		case bytes.HasPrefix(data, []byte(delim)):
			data = data[len(delim):]
		case bytes.HasPrefix(data, []byte(term)):
			return fields, data[len(term):], lines, nil
		case len(data) == 0:
			return nil, nil, 0, fmt.Errorf("record does not end with the terminator %q", term)
		default:
			return nil, nil, 0, fmt.Errorf("unexpected %q after a quoted field", data[:1])
		}
	}
}

// unescape reverses the escaping of unquoted strings. Without a quote
// character a bare field may be a number or a string; both unescape the
// same way, since numbers contain no backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		default: // backslash or a delimiter character
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// Value turns one field into a typed value of the column type.
func (d *Decoder) Value(t model.ColumnType, f Field) (model.Value, error) {
	if f.Null {
		return model.Null(), nil
	}
	s := f.Text
	switch t.ValueKind() {
	case model.ValueInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return model.Value{}, fmt.Errorf("%q is not a %s", s, t)
		}
		return model.IntValue(n), nil
	case model.ValueUint:
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
		v, err := strconv.ParseFloat(s, bits)
		if err != nil {
			return model.Value{}, fmt.Errorf("%q is not a %s", s, t)
		}
		return model.FloatValue(v), nil
	case model.ValueBytes:
		var b []byte
		var err error
		if d.opts.BinaryEncoding == BinaryHex {
			b, err = hex.DecodeString(s)
		} else {
			b, err = base64.StdEncoding.DecodeString(s)
		}
		if err != nil {
			return model.Value{}, fmt.Errorf("binary value is not %s: %v", d.opts.BinaryEncoding, err)
		}
		if b == nil {
			b = []byte{}
		}
		return model.BytesValue(b), nil
	}
	if !f.Quoted {
		return model.Value{}, fmt.Errorf("%s value %q is not quoted", t, s)
	}
	return model.StringValue(s), nil
}

// Image turns a record's values into an image of schema s.
func (d *Decoder) Image(rec Record, s *model.TableSchema) ([]model.Value, error) {
	if len(rec.Values) != len(s.Columns) {
		return nil, fmt.Errorf("csv: line %d: %d values, schema version %d of %s has %d columns", rec.Line, len(rec.Values), s.Version, s.Table, len(s.Columns))
	}
	img := make([]model.Value, len(s.Columns))
	for i, c := range s.Columns {
		v, err := d.Value(c.Type, rec.Values[i])
		if err != nil {
			return nil, fmt.Errorf("csv: line %d column %s: %w", rec.Line, c.Name, err)
		}
		img[i] = v
	}
	return img, nil
}

// Rows turns records of one table into row changes of schema s: "I" is an
// insert, "D" a delete, "U" an update with no before image; with
// output-old-value a "D" and "I" pair marked is-updated is one update.
func (d *Decoder) Rows(recs []Record, s *model.TableSchema) ([]*model.RowChange, error) {
	var out []*model.RowChange
	for i := 0; i < len(recs); i++ {
		rec := recs[i]
		if rec.Schema != s.Table.Schema || rec.Table != s.Table.Table {
			return nil, fmt.Errorf("csv: line %d: a record of %s.%s read with the schema of %s", rec.Line, rec.Schema, rec.Table, s.Table)
		}
		img, err := d.Image(rec, s)
		if err != nil {
			return nil, err
		}
		r := &model.RowChange{Schema: s, CommitTs: rec.CommitTs}
		switch {
		case rec.Op == "D" && rec.IsUpdated:
			if i+1 == len(recs) || recs[i+1].Op != "I" || !recs[i+1].IsUpdated {
				return nil, fmt.Errorf("csv: line %d: the old value of an update is not followed by its new value", rec.Line)
			}
			after, err := d.Image(recs[i+1], s)
			if err != nil {
				return nil, err
			}
			i++
			r.Op, r.Before, r.After = model.OpUpdate, img, after
		case rec.Op == "D":
			r.Op, r.Before = model.OpDelete, img
		case rec.Op == "U":
			r.Op, r.After = model.OpUpdate, img
		default:
			r.Op, r.After = model.OpInsert, img
		}
		out = append(out, r)
	}
	return out, nil
}
