// Package simple encodes changes in TiCDC's simple protocol (JSON form):
// one self-describing message per row change, DDL or watermark.
//
//	{"version":1,"database":"db","table":"t","tableID":42,"type":"UPDATE",
//	 "commitTs":...,"buildTs":...,"schemaVersion":...,
//	 "data":{"id":"1","note":null},"old":{"id":"1","note":"x"}}
//
// Values are the canonical text of model.Value (numbers in decimal, time
// types as MySQL prints them), byte strings in base64, NULL as null; the
// row's schema version points at the tableSchema that the table's last DDL
// message carried. DDL messages carry the statement and the table's schema
// after (and, for a change, before) it; watermark messages
// ({"type":"WATERMARK","commitTs":...}) go out at every checkpoint. A large
// row is sent with only its handle key ("handleKeyOnly") and, with a claim
// check, "claimCheckLocation".
package simple

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/internal/jsonenc"
	"github.com/raftcdc/raftcdc/model"
)

// Version is the protocol version in every message.
const Version = 1

// Message is one message.
type Message struct {
	Version            int                `json:"version"`
	Database           string             `json:"database,omitempty"`
	Table              string             `json:"table,omitempty"`
	TableID            int64              `json:"tableID,omitempty"`
	Type               string             `json:"type"`
	SQL                string             `json:"sql,omitempty"`
	CommitTs           uint64             `json:"commitTs"`
	BuildTs            int64              `json:"buildTs"`
	SchemaVersion      uint64             `json:"schemaVersion,omitempty"`
	Data               map[string]*string `json:"data,omitempty"`
	Old                map[string]*string `json:"old,omitempty"`
	HandleKeyOnly      bool               `json:"handleKeyOnly,omitempty"`
	ClaimCheckLocation string             `json:"claimCheckLocation,omitempty"`
	TableSchema        *TableSchema       `json:"tableSchema,omitempty"`
	PreTableSchema     *TableSchema       `json:"preTableSchema,omitempty"`
}

// TableSchema is a table's schema in DDL messages.
type TableSchema struct {
	Schema  string   `json:"schema"`
	Table   string   `json:"table"`
	TableID int64    `json:"tableID"`
	Version uint64   `json:"version"`
	Columns []Column `json:"columns"`
	Indexes []Index  `json:"indexes"`
}

// Column is one column of a TableSchema.
type Column struct {
	Name     string   `json:"name"`
	DataType DataType `json:"dataType"`
	Nullable bool     `json:"nullable"`
}

// DataType is a column's type.
type DataType struct {
	MySQLType string   `json:"mysqlType"`
	Charset   string   `json:"charset,omitempty"`
	Collate   string   `json:"collate,omitempty"`
	Length    int      `json:"length,omitempty"`
	Decimal   int      `json:"decimal,omitempty"`
	Elements  []string `json:"elements,omitempty"`
	Unsigned  bool     `json:"unsigned,omitempty"`
}

// Index is one index of a TableSchema.
type Index struct {
	Name    string   `json:"name"`
	Unique  bool     `json:"unique"`
	Primary bool     `json:"primary"`
	Columns []string `json:"columns"`
}

// Encoder encodes messages. Safe for concurrent use.
type Encoder struct{ now func() time.Time }

// NewEncoder returns an encoder; now is the clock for buildTs (time.Now if nil).
func NewEncoder(now func() time.Time) *Encoder {
	if now == nil {
		now = time.Now
	}
	return &Encoder{now: now}
}

// RowOptions are the large-message variants of a row.
type RowOptions struct {
	OnlyHandleKey bool
	ClaimCheck    string
}

// EncodeRow encodes one row change. It writes the message with appends
// rather than encoding/json over maps: a row message is the sink's hot
// path, and marshalling a map of pointers per image cost about three
// times the rest of the Kafka sink's work (bench/RESULTS.md "Kafka sink").
// The output decodes to the same Message; "data" and "old" list their
// columns in table order.
func (e *Encoder) EncodeRow(r *model.RowChange, o RowOptions) ([]byte, error) {
	if r.Schema == nil {
		return nil, fmt.Errorf("simple: row at %d has no schema", r.CommitTs)
	}
	return e.AppendRow(make([]byte, 0, 256+48*len(r.Schema.Columns)*2), r, o)
}

// AppendRow appends one row change's message to dst, so that a caller can
// encode into a buffer it reuses (the Kafka sink does).
func (e *Encoder) AppendRow(dst []byte, r *model.RowChange, o RowOptions) ([]byte, error) {
	s := r.Schema
	if s == nil {
		return nil, fmt.Errorf("simple: row at %d has no schema", r.CommitTs)
	}
	var typ string
	switch r.Op {
	case model.OpInsert:
		typ = "INSERT"
	case model.OpUpdate:
		typ = "UPDATE"
	case model.OpDelete:
		typ = "DELETE"
	default:
		return nil, fmt.Errorf("simple: table %s: unknown op %q", s.Table, r.Op)
	}
	onlyKey := o.OnlyHandleKey || o.ClaimCheck != ""
	var keep []bool
	if onlyKey {
		keep = make([]bool, len(s.Columns))
		for _, i := range s.KeyColumns(s.HandleKey()) {
			keep[i] = true
		}
	}
	b := append(dst, `{"version":`...)
	b = strconv.AppendInt(b, Version, 10)
	if s.Table.Schema != "" {
		b = append(b, `,"database":`...)
		b = jsonenc.AppendString(b, s.Table.Schema)
	}
	if s.Table.Table != "" {
		b = append(b, `,"table":`...)
		b = jsonenc.AppendString(b, s.Table.Table)
	}
	if s.Table.ID != 0 {
		b = append(b, `,"tableID":`...)
		b = strconv.AppendInt(b, s.Table.ID, 10)
	}
	b = append(b, `,"type":"`...)
	b = append(b, typ...)
	b = append(b, `","commitTs":`...)
	b = strconv.AppendUint(b, r.CommitTs, 10)
	b = append(b, `,"buildTs":`...)
	b = strconv.AppendInt(b, e.now().UnixMilli(), 10)
	if s.Version != 0 {
		b = append(b, `,"schemaVersion":`...)
		b = strconv.AppendUint(b, s.Version, 10)
	}
	image := func(name string, img []model.Value) {
		if img == nil {
			return
		}
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, `":{`...)
		first := true
		for i, v := range img {
			if v.IsMissing() || v.IsUnchanged() || (keep != nil && !keep[i]) {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = jsonenc.AppendString(b, s.Columns[i].Name)
			b = append(b, ':')
			b = appendValue(b, v, s.Columns[i].Type)
		}
		b = append(b, '}')
	}
	if r.Op != model.OpDelete {
		image("data", r.After)
	}
	if r.Op != model.OpInsert {
		image("old", r.Before)
	}
	if onlyKey {
		b = append(b, `,"handleKeyOnly":true`...)
	}
	if o.ClaimCheck != "" {
		b = append(b, `,"claimCheckLocation":`...)
		b = jsonenc.AppendString(b, o.ClaimCheck)
	}
	return append(b, '}'), nil
}

// appendValue writes a non-null value as the protocol's JSON string:
// canonical text, base64 for byte strings, floats at their column's
// precision.
func appendValue(b []byte, v model.Value, t model.ColumnType) []byte {
	switch v.Kind {
	case model.ValueNull:
		return append(b, "null"...)
	case model.ValueInt:
		b = append(b, '"')
		b = strconv.AppendInt(b, v.I, 10)
		return append(b, '"')
	case model.ValueUint:
		b = append(b, '"')
		b = strconv.AppendUint(b, v.Uint(), 10)
		return append(b, '"')
	case model.ValueFloat:
		return jsonenc.AppendString(b, model.FloatText(v.Float(), t))
	case model.ValueBytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.B)
		return append(b, '"')
	case model.ValueString:
		return jsonenc.AppendString(b, v.S)
	}
	return jsonenc.AppendString(b, v.Text())
}

// EncodeDDL encodes a DDL with the table's schema after it.
func (e *Encoder) EncodeDDL(d *model.DDLEvent) ([]byte, error) {
	m := Message{Version: Version, Database: d.Schema, Type: ddlType(d.Kind), SQL: d.Query, CommitTs: d.CommitTs, BuildTs: e.now().UnixMilli()}
	if len(d.Tables) > 0 {
		m.Table = d.Tables[0].Table
		m.TableID = d.Tables[0].ID
	}
	if len(d.After) > 0 && d.After[0] != nil {
		m.TableSchema = schemaOf(d.After[0])
		m.Table, m.TableID, m.SchemaVersion = d.After[0].Table.Table, d.After[0].Table.ID, d.After[0].Version
	}
	return json.Marshal(m)
}

// EncodeWatermark encodes a watermark message.
func (e *Encoder) EncodeWatermark(ts model.Ts) []byte {
	b, _ := json.Marshal(Message{Version: Version, Type: "WATERMARK", CommitTs: ts, BuildTs: e.now().UnixMilli()})
	return b
}

func ddlType(k model.DDLKind) string {
	switch k {
	case model.DDLCreateSchema, model.DDLCreateTable:
		return "CREATE"
	case model.DDLDropSchema, model.DDLDropTable:
		return "DROP"
	case model.DDLTruncateTable:
		return "TRUNCATE"
	case model.DDLRenameTable:
		return "RENAME"
	case model.DDLAddIndex:
		return "CINDEX"
	case model.DDLDropIndex:
		return "DINDEX"
	}
	return "ALTER"
}

func schemaOf(s *model.TableSchema) *TableSchema {
	out := &TableSchema{Schema: s.Table.Schema, Table: s.Table.Table, TableID: s.Table.ID, Version: s.Version, Indexes: []Index{}}
	for _, c := range s.Columns {
		t := c.Type
		out.Columns = append(out.Columns, Column{Name: c.Name, Nullable: c.Nullable, DataType: DataType{
			MySQLType: string(t.Kind), Charset: t.Charset, Collate: t.Collation, Length: t.Length, Decimal: max(t.Scale, t.Fsp),
			Elements: t.Elems, Unsigned: t.Unsigned}})
	}
	for _, ix := range s.Indexes {
		out.Indexes = append(out.Indexes, Index{Name: ix.Name, Unique: ix.Unique || ix.Primary, Primary: ix.Primary, Columns: ix.Columns})
	}
	return out
}

// Model turns a DDL message's tableSchema back into a model schema.
func (ts *TableSchema) Model() *model.TableSchema {
	s := &model.TableSchema{Table: model.TableName{ID: ts.TableID, Schema: ts.Schema, Table: ts.Table}, Version: ts.Version}
	for _, c := range ts.Columns {
		t := model.ColumnType{Kind: model.TypeKind(c.DataType.MySQLType), Unsigned: c.DataType.Unsigned, Length: c.DataType.Length,
			Charset: c.DataType.Charset, Collation: c.DataType.Collate, Elems: c.DataType.Elements}
		if t.Kind == model.TypeDecimal {
			t.Scale = c.DataType.Decimal
		} else if t.IsTime() {
			t.Fsp = c.DataType.Decimal
		}
		s.Columns = append(s.Columns, model.Column{Name: c.Name, Type: t, Nullable: c.Nullable})
	}
	for _, ix := range ts.Indexes {
		s.Indexes = append(s.Indexes, model.Index{Name: ix.Name, Columns: ix.Columns, Primary: ix.Primary, Unique: ix.Unique && !ix.Primary})
	}
	return s
}

// Decode parses a message.
func Decode(b []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("simple: %w", err)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("simple: version %d, want %d", m.Version, Version)
	}
	if m.Type == "" {
		return nil, fmt.Errorf("simple: message has no type")
	}
	return &m, nil
}

// Image turns data or old back into values aligned with s.
func Image(s *model.TableSchema, m map[string]*string) ([]model.Value, error) {
	if m == nil {
		return nil, nil
	}
	out := make([]model.Value, len(s.Columns))
	for i, c := range s.Columns {
		p, ok := m[c.Name]
		if !ok {
			continue
		}
		if p == nil {
			out[i] = model.Null()
			continue
		}
		v, err := parseValue(c.Type, *p)
		if err != nil {
			return nil, fmt.Errorf("simple: column %s: %w", c.Name, err)
		}
		out[i] = v
	}
	return out, nil
}

func parseValue(t model.ColumnType, s string) (model.Value, error) {
	switch t.ValueKind() {
	case model.ValueInt:
		n, err := strconv.ParseInt(s, 10, 64)
		return model.IntValue(n), err
	case model.ValueUint:
		n, err := strconv.ParseUint(s, 10, 64)
		return model.UintValue(n), err
	case model.ValueFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		return model.FloatValue(f), err
	case model.ValueBytes:
		b, err := base64.StdEncoding.DecodeString(s)
		return model.BytesValue(b), err
	}
	return model.StringValue(s), nil
}
