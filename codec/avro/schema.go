// Package avro encodes row changes as Avro records in Confluent's wire
// format (a zero byte, the 4-byte schema ID from a schema registry, then
// the Avro binary encoding), as TiCDC's avro protocol does.
//
// Per table there are two schemas: the key (the handle-key columns) and the
// value (every column, plus _tidb_op, _tidb_commit_ts and
// _tidb_commit_physical_time with the TiDB extension). Both are registered
// under Confluent's TopicNameStrategy subjects, "<topic>-key" and
// "<topic>-value", and registered again whenever a DDL changes the table.
// An insert or update sends the after image; a delete sends a tombstone
// (the key with a null value), so that compacted topics drop the row —
// except with the TiDB extension, where it sends the before image with
// _tidb_op "d" so that consumers learn its commit ts.
//
// Column types (TiCDC's mapping): integer types are int, or long where the
// range needs it (int unsigned, bigint); bigint unsigned is long, or string
// with avro-bigint-unsigned-handling-mode=string; float and double as
// themselves; decimal is bytes with the decimal logical type, or string
// with avro-decimal-handling-mode=string; text is string; binary and blobs
// are bytes; date, datetime, timestamp and time are strings in their
// canonical form; year is int; enum, set and json are strings; bit is
// bytes (big-endian, the width's bytes). Nullable columns are unions with
// null, defaulting to null. Each field carries the MySQL type in
// connect.parameters.tidb_type.
//
// DDL and watermark messages are not Avro: their value is one marker byte
// (DDLMarker, WatermarkMarker) followed by JSON, so a consumer tells them
// from records by the first byte (records start with 0).
package avro

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// Options select TiCDC's avro variants.
type Options struct {
	// DecimalString encodes decimals as strings instead of the decimal
	// logical type (avro-decimal-handling-mode=string).
	DecimalString bool
	// BigintUnsignedString encodes bigint unsigned as string
	// (avro-bigint-unsigned-handling-mode=string).
	BigintUnsignedString bool
	// EnableTiDBExtension adds the _tidb_* fields and watermarks.
	EnableTiDBExtension bool
	// Namespace prefixes record names ("default").
	Namespace string
}

// Extension field names.
const (
	FieldOp                 = "_tidb_op"
	FieldCommitTs           = "_tidb_commit_ts"
	FieldCommitPhysicalTime = "_tidb_commit_physical_time"
)

// Schema is a parsed record schema: what the encoder and decoder walk.
type Schema struct {
	JSON   string // canonical text registered with the registry
	Name   string
	Fields []FieldSchema

	// fingerprint is JSON's, computed once: every row's registration
	// lookup asks for it, and hashing the text each time was a tenth of
	// the Avro sink's CPU.
	fingerprint string
}

// FieldSchema is one field of a record.
type FieldSchema struct {
	Name     string
	Type     string // int, long, float, double, string, bytes
	Nullable bool
	// Decimal logical type (Type bytes).
	Decimal        bool
	Precision      int
	Scale          int
	column         int // position in the table schema, -1 for extension fields
	colType        model.ColumnType
	unsignedString bool
}

func (o Options) namespace(t model.TableName) string {
	ns := o.Namespace
	if ns == "" {
		ns = "default"
	}
	return sanitize(ns) + "." + sanitize(t.Schema)
}

// sanitize makes an Avro name: letters, digits and '_', not starting with
// a digit.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		b = append([]byte{'_'}, b...)
	}
	return string(b)
}

// ValueSchema is the value schema of a table version.
func (o Options) ValueSchema(s *model.TableSchema) (*Schema, error) {
	var fields []FieldSchema
	for i, c := range s.Columns {
		f, err := o.field(c, i)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", s.Table, c.Name, err)
		}
		fields = append(fields, f)
	}
	if o.EnableTiDBExtension {
		fields = append(fields,
			FieldSchema{Name: FieldOp, Type: "string", column: -1},
			FieldSchema{Name: FieldCommitTs, Type: "long", column: -1},
			FieldSchema{Name: FieldCommitPhysicalTime, Type: "long", column: -1})
	}
	return build(o.namespace(s.Table), sanitize(s.Table.Table), fields)
}

// KeySchema is the key schema of a table version (its handle key; every
// column when it has none).
func (o Options) KeySchema(s *model.TableSchema) (*Schema, error) {
	cols := s.KeyColumns(s.HandleKey())
	if len(cols) == 0 {
		for i := range s.Columns {
			cols = append(cols, i)
		}
	}
	var fields []FieldSchema
	for _, i := range cols {
		f, err := o.field(s.Columns[i], i)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", s.Table, s.Columns[i].Name, err)
		}
		fields = append(fields, f)
	}
	return build(o.namespace(s.Table), sanitize(s.Table.Table)+"_key", fields)
}

func (o Options) field(c model.Column, i int) (FieldSchema, error) {
	t := c.Type
	f := FieldSchema{Name: sanitize(c.Name), Nullable: c.Nullable, column: i, colType: t}
	switch {
	case t.Kind == model.TypeBigInt && t.Unsigned:
		f.Type = "long"
		if o.BigintUnsignedString {
			f.Type, f.unsignedString = "string", true
		}
	case t.Kind == model.TypeInt && t.Unsigned, t.Kind == model.TypeBigInt:
		f.Type = "long"
	case t.IsInteger(), t.Kind == model.TypeYear:
		f.Type = "int"
	case t.Kind == model.TypeFloat:
		f.Type = "float"
	case t.Kind == model.TypeDouble:
		f.Type = "double"
	case t.Kind == model.TypeDecimal:
		if o.DecimalString {
			f.Type = "string"
		} else {
			p := t.Length
			if p == 0 {
				p = 10
			}
			f.Type, f.Decimal, f.Precision, f.Scale = "bytes", true, p, t.Scale
		}
	case t.IsBinary(), t.Kind == model.TypeBit:
		f.Type = "bytes"
	default:
		f.Type = "string"
	}
	return f, nil
}

func build(namespace, name string, fields []FieldSchema) (*Schema, error) {
	type jsonField struct {
		Name    string `json:"name"`
		Type    any    `json:"type"`
		Default any    `json:"default,omitempty"`
	}
	var jf []json.RawMessage
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f.Name] {
			return nil, fmt.Errorf("two columns map to the Avro field name %q", f.Name)
		}
		seen[f.Name] = true
		var typ any = f.Type
		if f.Decimal {
			typ = map[string]any{"type": "bytes", "logicalType": "decimal", "precision": f.Precision, "scale": f.Scale}
		}
		if f.column >= 0 {
			params := map[string]string{"tidb_type": strings.ToUpper(f.colType.String())}
			if f.colType.Kind == model.TypeEnum || f.colType.Kind == model.TypeSet {
				params["allowed"] = strings.Join(f.colType.Elems, ",")
			}
			if f.Decimal {
				typ = map[string]any{"type": "bytes", "logicalType": "decimal", "precision": f.Precision, "scale": f.Scale, "connect.parameters": params}
			} else {
				typ = map[string]any{"type": f.Type, "connect.parameters": params}
			}
		}
		var b []byte
		var err error
		if f.Nullable {
			b, err = json.Marshal(map[string]any{"name": f.Name, "type": []any{"null", typ}, "default": nil})
		} else {
			b, err = json.Marshal(jsonField{Name: f.Name, Type: typ})
		}
		if err != nil {
			return nil, err
		}
		jf = append(jf, b)
	}
	doc, err := json.Marshal(map[string]any{"type": "record", "name": name, "namespace": namespace, "fields": jf})
	if err != nil {
		return nil, err
	}
	return &Schema{JSON: string(doc), Name: namespace + "." + name, Fields: fields, fingerprint: fingerprint(doc)}, nil
}

// ParseSchema reads a record schema of the shapes this package writes
// (fields of int, long, float, double, string or bytes, the decimal
// logical type, and unions of null with one of those) into a Schema whose
// fields are all extension-like: decoded by name, aligned with no table.
func ParseSchema(text string) (*Schema, error) {
	var doc struct {
		Type      string `json:"type"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		Fields    []struct {
			Name string          `json:"name"`
			Type json.RawMessage `json:"type"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	if doc.Type != "record" {
		return nil, fmt.Errorf("parse schema: type %q, want a record", doc.Type)
	}
	s := &Schema{JSON: text, Name: doc.Namespace + "." + doc.Name}
	for _, f := range doc.Fields {
		fs, err := parseFieldType(f.Type, true)
		if err != nil {
			return nil, fmt.Errorf("parse schema: field %s: %w", f.Name, err)
		}
		fs.Name, fs.column = f.Name, -1
		s.Fields = append(s.Fields, fs)
	}
	return s, nil
}

// parseFieldType reads a field's type: a name, an object with a logical
// type, or (when union is allowed) ["null", type].
func parseFieldType(raw json.RawMessage, union bool) (FieldSchema, error) {
	var name string
	if json.Unmarshal(raw, &name) == nil {
		switch name {
		case "int", "long", "float", "double", "string", "bytes":
			return FieldSchema{Type: name}, nil
		}
		return FieldSchema{}, fmt.Errorf("unsupported type %q", name)
	}
	var branches []json.RawMessage
	if json.Unmarshal(raw, &branches) == nil {
		if !union || len(branches) != 2 || string(branches[0]) != `"null"` {
			return FieldSchema{}, fmt.Errorf("unsupported union %s", raw)
		}
		f, err := parseFieldType(branches[1], false)
		f.Nullable = true
		return f, err
	}
	var obj struct {
		Type        string `json:"type"`
		LogicalType string `json:"logicalType"`
		Precision   int    `json:"precision"`
		Scale       int    `json:"scale"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return FieldSchema{}, fmt.Errorf("unsupported type %s", raw)
	}
	f, err := parseFieldType(json.RawMessage(strconv.Quote(obj.Type)), false)
	if err != nil {
		return FieldSchema{}, err
	}
	if obj.LogicalType == "decimal" {
		if f.Type != "bytes" {
			return FieldSchema{}, fmt.Errorf("decimal on %s, want bytes", f.Type)
		}
		f.Decimal, f.Precision, f.Scale = true, obj.Precision, obj.Scale
	}
	return f, nil
}

// Fingerprint identifies a schema text, for caching registrations.
func (s *Schema) Fingerprint() string {
	if s.fingerprint != "" {
		return s.fingerprint
	}
	return fingerprint([]byte(s.JSON))
}

func fingerprint(text []byte) string {
	sum := sha256.Sum256(text)
	return hex.EncodeToString(sum[:])
}
