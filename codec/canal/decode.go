package canal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/raftcdc/raftcdc/model"
)

// Message is one decoded canal-json message. Column values are kept as
// the strings (or nulls) of the wire form; Row turns them into typed
// values against a schema.
type Message struct {
	ID        int64                `json:"id"`
	Database  string               `json:"database"`
	Table     string               `json:"table"`
	PKNames   []string             `json:"pkNames"`
	IsDDL     bool                 `json:"isDdl"`
	Type      string               `json:"type"`
	ES        int64                `json:"es"`
	TS        int64                `json:"ts"`
	SQL       string               `json:"sql"`
	SQLType   map[string]int32     `json:"sqlType"`
	MySQLType map[string]string    `json:"mysqlType"`
	Data      []map[string]*string `json:"data"`
	Old       []map[string]*string `json:"old"`
	// TiDB is the "_tidb" extension, nil when absent.
	TiDB *TiDBExtension `json:"_tidb,omitempty"`
}

// TiDBExtension is TiCDC's "_tidb" field.
type TiDBExtension struct {
	CommitTs    model.Ts `json:"commitTs,omitempty"`
	WatermarkTs model.Ts `json:"watermarkTs,omitempty"`
	// OnlyHandleKey and ClaimCheckLocation mark a large row's stand-in
	// (see LargeMessage).
	OnlyHandleKey      bool   `json:"onlyHandleKey,omitempty"`
	ClaimCheckLocation string `json:"claimCheckLocation,omitempty"`
}

// Kind is what a message carries.
type Kind int

const (
	KindRow Kind = iota
	KindDDL
	KindWatermark
)

// Kind tells rows, DDLs and watermarks apart as TiCDC's consumers do: by
// isDdl, then by the watermark type.
func (m *Message) Kind() Kind {
	switch {
	case m.IsDDL:
		return KindDDL
	case m.Type == WatermarkType:
		return KindWatermark
	default:
		return KindRow
	}
}

// CommitTs is the message's commit ts from the TiDB extension, or 0 when the
// message was written without it.
func (m *Message) CommitTs() model.Ts {
	if m.TiDB == nil {
		return 0
	}
	return m.TiDB.CommitTs
}

// Decode parses one message. It checks the shape (a known type, one image
// per row message) but not the values; see Row.
func Decode(b []byte) (*Message, error) {
	b = bytes.TrimSpace(b)
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("canal-json: decode message: %w", err)
	}
	switch m.Kind() {
	case KindDDL:
		if m.SQL == "" {
			return nil, fmt.Errorf("canal-json: DDL message of %s.%s has no sql", m.Database, m.Table)
		}
	case KindWatermark:
		if m.TiDB == nil || m.TiDB.WatermarkTs == 0 {
			return nil, fmt.Errorf("canal-json: watermark message has no _tidb.watermarkTs")
		}
	default:
		switch m.Type {
		case "INSERT", "UPDATE", "DELETE":
		default:
			return nil, fmt.Errorf("canal-json: row message of %s.%s has unknown type %q", m.Database, m.Table, m.Type)
		}
		if len(m.Data) != 1 {
			return nil, fmt.Errorf("canal-json: %s message of %s.%s has %d data images, want 1", m.Type, m.Database, m.Table, len(m.Data))
		}
		if m.Type == "UPDATE" && len(m.Old) != 1 {
			return nil, fmt.Errorf("canal-json: UPDATE message of %s.%s has %d old images, want 1", m.Database, m.Table, len(m.Old))
		}
	}
	return &m, nil
}

// Op is the row message's op.
func (m *Message) Op() model.Op {
	switch m.Type {
	case "INSERT":
		return model.OpInsert
	case "UPDATE":
		return model.OpUpdate
	case "DELETE":
		return model.OpDelete
	}
	return ""
}

// Row turns a row message into a typed row change of the given schema
// version. Columns absent from an image are model.ValueMissing (an "old"
// written with only the changed columns, for example). Every column of an
// image must exist in the schema and hold a value of its type. The commit
// ts comes from the TiDB extension (0 without it).
func (m *Message) Row(s *model.TableSchema) (*model.RowChange, error) {
	if m.Kind() != KindRow {
		return nil, fmt.Errorf("canal-json: %s message is not a row change", m.Type)
	}
	if s == nil {
		return nil, fmt.Errorf("canal-json: %s message of %s.%s: no schema to decode against", m.Type, m.Database, m.Table)
	}
	if m.Database != s.Table.Schema || m.Table != s.Table.Table {
		return nil, fmt.Errorf("canal-json: message of %s.%s decoded against schema of %s", m.Database, m.Table, s.Table)
	}
	r := &model.RowChange{Schema: s, CommitTs: m.CommitTs(), Op: m.Op()}
	img, err := decodeImage(s, m.Data[0])
	if err != nil {
		return nil, fmt.Errorf("canal-json: %s of %s at %d: data: %w", m.Type, s.Table, r.CommitTs, err)
	}
	switch r.Op {
	case model.OpInsert:
		r.After = img
	case model.OpDelete:
		r.Before = img
	case model.OpUpdate:
		r.After = img
		if r.Before, err = decodeImage(s, m.Old[0]); err != nil {
			return nil, fmt.Errorf("canal-json: UPDATE of %s at %d: old: %w", s.Table, r.CommitTs, err)
		}
	}
	return r, nil
}

func decodeImage(s *model.TableSchema, cols map[string]*string) ([]model.Value, error) {
	img := make([]model.Value, len(s.Columns))
	for name, text := range cols {
		i := s.ColumnIndex(name)
		if i < 0 {
			return nil, fmt.Errorf("column %q is not in schema version %d", name, s.Version)
		}
		if text == nil {
			img[i] = model.Null()
			continue
		}
		v, err := ParseValue(s.Columns[i].Type, *text)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", name, err)
		}
		img[i] = v
	}
	return img, nil
}

// ParseValue turns one canal-json value string into a typed value of the
// column type, reversing the encoder.
func ParseValue(t model.ColumnType, s string) (model.Value, error) {
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
		f, err := strconv.ParseFloat(s, bits)
		if err != nil {
			return model.Value{}, fmt.Errorf("%q is not a %s", s, t)
		}
		return model.FloatValue(f), nil
	case model.ValueBytes:
		b, ok := latin1Bytes(s)
		if !ok {
			return model.Value{}, fmt.Errorf("binary value has a character above U+00FF, so it is not ISO-8859-1 text")
		}
		return model.BytesValue(b), nil
	}
	switch t.Kind {
	case model.TypeEnum:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return model.Value{}, fmt.Errorf("enum value %q is not an index", s)
		}
		name, err := enumName(t, n)
		if err != nil {
			return model.Value{}, err
		}
		return model.StringValue(name), nil
	case model.TypeSet:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return model.Value{}, fmt.Errorf("set value %q is not a bitmask", s)
		}
		names, err := setNames(t, n)
		if err != nil {
			return model.Value{}, err
		}
		return model.StringValue(names), nil
	}
	return model.StringValue(s), nil
}

// SchemaDiff lists how a row message's column types and primary key differ
// from a schema version: columns missing from mysqlType, columns the schema
// does not have, type strings that differ, and a different primary key.
// Empty means the message matches.
func (m *Message) SchemaDiff(s *model.TableSchema) []string {
	var diffs []string
	for _, c := range s.Columns {
		got, ok := m.MySQLType[c.Name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("column %s is not in the message", c.Name))
			continue
		}
		want := MySQLType(c.Type, false)
		if got != want {
			// Content-compatible messages carry the full type.
			if got == MySQLType(c.Type, true) {
				continue
			}
			diffs = append(diffs, fmt.Sprintf("column %s has mysqlType %q, want %q", c.Name, got, want))
		}
	}
	for name := range m.MySQLType {
		if s.ColumnIndex(name) < 0 {
			diffs = append(diffs, fmt.Sprintf("column %s is not in schema version %d", name, s.Version))
		}
	}
	var want []string
	if pk := s.PrimaryKey(); pk != nil {
		for _, c := range s.Columns {
			if slices.Contains(pk.Columns, c.Name) {
				want = append(want, c.Name)
			}
		}
	}
	if !slices.Equal(m.PKNames, want) {
		diffs = append(diffs, fmt.Sprintf("pkNames %q, want %q", m.PKNames, want))
	}
	slices.Sort(diffs)
	return diffs
}
