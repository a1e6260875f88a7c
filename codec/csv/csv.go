// Package csv encodes and decodes row changes in the CSV format of TiCDC's
// storage sink, so that files written by raftcdc load with the tools built
// for TiCDC's output.
//
// One change is one record:
//
//	op, table, schema[, commit-ts][, is-updated], column values...
//
// op is "I", "U" or "D"; the values are the after image (the before image
// for "D") in schema column order. Strings (text, decimal, dates and times,
// enum and set names, JSON, and binary values in base64 or hex) are quoted
// with the quote character doubled inside; numbers are bare; NULL is the
// null string, bare. Without a quote character, strings are bare and CR,
// LF, backslash and the delimiter are escaped with a backslash. With
// OutputOldValue an update becomes a "D" record of the before image and an
// "I" record of the after image, and every record carries is-updated.
package csv

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// Binary encodings.
const (
	BinaryBase64 = "base64"
	BinaryHex    = "hex"
)

// Options are TiCDC's [sink.csv] settings and the line terminator.
type Options struct {
	// Delimiter separates fields: one or two characters (default ",").
	Delimiter string
	// Quote encloses strings: one character, or empty for no quoting
	// (default `"`).
	Quote string
	// Null stands for NULL (default `\N`).
	Null string
	// IncludeCommitTs adds the commit ts after the schema name.
	IncludeCommitTs bool
	// OutputOldValue writes an update as "D" (before) and "I" (after)
	// records and adds the is-updated field.
	OutputOldValue bool
	// BinaryEncoding is base64 (default) or hex.
	BinaryEncoding string
	// Terminator ends every record (default "\r\n", TiCDC's default).
	Terminator string
}

// DefaultOptions are TiCDC's defaults.
func DefaultOptions() Options {
	return Options{Delimiter: ",", Quote: `"`, Null: `\N`, BinaryEncoding: BinaryBase64, Terminator: "\r\n"}
}

// Validate checks the options as TiCDC does, naming the offending setting.
func (o Options) Validate() error {
	switch {
	case o.Delimiter == "" || len([]rune(o.Delimiter)) > 2:
		return fmt.Errorf("csv delimiter %q: must be one or two characters", o.Delimiter)
	case strings.ContainsAny(o.Delimiter, "\r\n"):
		return fmt.Errorf("csv delimiter %q: must not contain CR or LF", o.Delimiter)
	case len([]rune(o.Quote)) > 1:
		return fmt.Errorf("csv quote %q: must be one character or empty", o.Quote)
	case o.Quote != "" && strings.ContainsAny(o.Quote, "\r\n\\"):
		return fmt.Errorf("csv quote %q: must not be CR, LF or backslash", o.Quote)
	case o.Quote != "" && strings.Contains(o.Delimiter, o.Quote):
		return fmt.Errorf("csv quote %q: must not appear in the delimiter %q", o.Quote, o.Delimiter)
	case strings.ContainsAny(o.Null, "\r\n"):
		return fmt.Errorf("csv null %q: must not contain CR or LF", o.Null)
	case o.Null != "" && strings.Contains(o.Null, o.Delimiter):
		return fmt.Errorf("csv null %q: must not contain the delimiter %q", o.Null, o.Delimiter)
	case o.Quote != "" && strings.Contains(o.Null, o.Quote):
		return fmt.Errorf("csv null %q: must not contain the quote %q", o.Null, o.Quote)
	case o.Quote != "" && isNumber(o.Null):
		return fmt.Errorf("csv null %q: must not look like a number, which is written bare too", o.Null)
	case o.Quote == "" && !escapedNull(o.Null, o.Delimiter):
		return fmt.Errorf("csv null %q: without a quote character it must contain a backslash followed by a character other than \\, r, n or the delimiter (as \\N does), or a string could look the same", o.Null)
	case o.BinaryEncoding != BinaryBase64 && o.BinaryEncoding != BinaryHex:
		return fmt.Errorf("csv binary encoding %q: must be %s or %s", o.BinaryEncoding, BinaryBase64, BinaryHex)
	case o.Terminator != "\r\n" && o.Terminator != "\n":
		return fmt.Errorf("csv terminator %q: must be \\r\\n or \\n", o.Terminator)
	}
	return nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil || strings.Contains(err.Error(), "range")
}

// escapedNull reports whether null contains a backslash sequence that the
// escaping of unquoted strings never produces, so that no string encodes
// to it.
func escapedNull(null, delim string) bool {
	for i := 0; i+1 < len(null); i++ {
		if null[i] == '\\' {
			c := null[i+1]
			if c != '\\' && c != 'r' && c != 'n' && !strings.ContainsRune(delim, rune(c)) {
				return true
			}
			i++
		}
	}
	return false
}

// Encoder writes records. It is safe for concurrent use.
type Encoder struct {
	opts Options
}

// NewEncoder checks the options and returns an encoder.
func NewEncoder(opts Options) (*Encoder, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Encoder{opts: opts}, nil
}

// Options are the encoder's options.
func (e *Encoder) Options() Options { return e.opts }

// AppendRow appends the record(s) of one row change, each ended by the
// terminator. On error dst is returned unchanged in length.
func (e *Encoder) AppendRow(dst []byte, r *model.RowChange) ([]byte, error) {
	start := len(dst)
	out, err := e.appendRow(dst, r)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

func (e *Encoder) appendRow(dst []byte, r *model.RowChange) ([]byte, error) {
	if r == nil || r.Schema == nil {
		return dst, errors.New("csv: encode row: row has no schema")
	}
	s := r.Schema
	var err error
	switch r.Op {
	case model.OpInsert:
		return e.appendRecord(dst, r, "I", false, r.After, nil)
	case model.OpDelete:
		return e.appendRecord(dst, r, "D", false, r.Before, nil)
	case model.OpUpdate:
		if e.opts.OutputOldValue && r.Before != nil {
			if dst, err = e.appendRecord(dst, r, "D", true, r.Before, nil); err != nil {
				return dst, err
			}
			return e.appendRecord(dst, r, "I", true, r.After, r.Before)
		}
		return e.appendRecord(dst, r, "U", true, r.After, r.Before)
	}
	return dst, fmt.Errorf("csv: encode row of %s at %d: unknown op %q", s.Table, r.CommitTs, r.Op)
}

func (e *Encoder) appendRecord(dst []byte, r *model.RowChange, op string, updated bool, img, fill []model.Value) ([]byte, error) {
	s := r.Schema
	if len(img) != len(s.Columns) {
		return dst, fmt.Errorf("csv: encode row of %s at %d: image has %d values, schema version %d has %d columns", s.Table, r.CommitTs, len(img), s.Version, len(s.Columns))
	}
	dst = e.appendString(dst, op)
	dst = append(dst, e.opts.Delimiter...)
	dst = e.appendString(dst, s.Table.Table)
	dst = append(dst, e.opts.Delimiter...)
	dst = e.appendString(dst, s.Table.Schema)
	if e.opts.IncludeCommitTs {
		dst = append(dst, e.opts.Delimiter...)
		dst = strconv.AppendUint(dst, r.CommitTs, 10)
	}
	if e.opts.OutputOldValue {
		dst = append(dst, e.opts.Delimiter...)
		dst = strconv.AppendBool(dst, updated)
	}
	for i, c := range s.Columns {
		dst = append(dst, e.opts.Delimiter...)
		v := img[i]
		if v.IsUnchanged() && fill != nil {
			v = fill[i]
		}
		var err error
		if dst, err = e.appendValue(dst, c, v); err != nil {
			return dst, fmt.Errorf("csv: encode row of %s at %d: %w", s.Table, r.CommitTs, err)
		}
	}
	return append(dst, e.opts.Terminator...), nil
}

func (e *Encoder) appendValue(dst []byte, c model.Column, v model.Value) ([]byte, error) {
	switch v.Kind {
	case model.ValueNull, model.ValueMissing:
		// A before image that carries only the key (PostgreSQL's replica
		// identity default) leaves the other columns unknown; CSV has no
		// "absent", so they are written as NULL.
		return append(dst, e.opts.Null...), nil
	case model.ValueUnchanged:
		return dst, fmt.Errorf("column %s: value not sent by the upstream (unchanged) and no before image to take it from", c.Name)
	}
	if want := c.Type.ValueKind(); v.Kind != want {
		return dst, fmt.Errorf("column %s holds a %s value, type %s needs %s", c.Name, v.Kind, c.Type, want)
	}
	switch v.Kind {
	case model.ValueInt:
		return strconv.AppendInt(dst, v.I, 10), nil
	case model.ValueUint:
		return strconv.AppendUint(dst, v.Uint(), 10), nil
	case model.ValueFloat:
		return append(dst, model.FloatText(v.Float(), c.Type)...), nil
	case model.ValueBytes:
		if e.opts.BinaryEncoding == BinaryHex {
			return e.appendString(dst, hex.EncodeToString(v.B)), nil
		}
		return e.appendString(dst, base64.StdEncoding.EncodeToString(v.B)), nil
	}
	return e.appendString(dst, v.S), nil
}

// appendString writes a string field: quoted with the quote doubled, or,
// without a quote character, with CR, LF, backslash and the delimiter
// escaped by a backslash.
func (e *Encoder) appendString(dst []byte, s string) []byte {
	q := e.opts.Quote
	if q != "" {
		dst = append(dst, q...)
		for {
			i := strings.Index(s, q)
			if i < 0 {
				break
			}
			dst = append(dst, s[:i+len(q)]...)
			dst = append(dst, q...)
			s = s[i+len(q):]
		}
		dst = append(dst, s...)
		return append(dst, q...)
	}
	d := e.opts.Delimiter
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], d):
			for k := 0; k < len(d); k++ {
				dst = append(dst, '\\', d[k])
			}
			i += len(d)
			continue
		case s[i] == '\r':
			dst = append(dst, '\\', 'r')
		case s[i] == '\n':
			dst = append(dst, '\\', 'n')
		case s[i] == '\\':
			dst = append(dst, '\\', '\\')
		default:
			dst = append(dst, s[i])
		}
		i++
	}
	return dst
}
