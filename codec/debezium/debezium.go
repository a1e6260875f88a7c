// Package debezium encodes changes in Debezium's JSON envelope, as TiCDC's
// debezium protocol writes it for a MySQL-compatible upstream: a key with
// the handle-key columns and a value
//
//	{"payload":{"before":{...},"after":{...},"source":{...},"op":"c","ts_ms":...,"transaction":null},
//	 "schema":{...}}
//
// op is c (insert), u (update) or d (delete), and r (read) for a row a
// source read from a table's existing rows (model.RowChange.Snapshot: a
// PostgreSQL initial snapshot or the copy of a table added later), as
// Debezium's connectors write their snapshot; source.snapshot is "true" for
// those and "false" otherwise ("last" is not written: the encoder sees one
// row at a time and cannot know which is a snapshot's last). source carries
// the connector ("TiCDC"), db, table, ts_ms (the commit's physical time) and
// TiCDC's commit_ts. The Kafka Connect schema is included unless DisableSchema is
// set (TiCDC's debezium-disable-schema).
//
// Column values follow Debezium's MySQL connector with
// decimal.handling.mode=string and time.precision.mode=adaptive_time_microseconds:
// integers as numbers, decimal as its text, float and double as numbers,
// text as strings, binary and blobs as base64 (Kafka Connect's JSON form of
// bytes), date as days since the epoch (io.debezium.time.Date), datetime as
// milliseconds or, with fsp > 3, microseconds since the epoch
// (Timestamp / MicroTimestamp), timestamp as an ISO-8601 UTC string
// (ZonedTimestamp), time as microseconds (MicroTime), year as a number,
// enum and set as their text, bit(1) as a boolean and wider bits as
// little-endian bytes (io.debezium.data.Bits), json as its text
// (io.debezium.data.Json).
//
// DDL messages are TiCDC's (Debezium's schema-change event): key
// {"databaseName":...}, value with source, ts_ms, databaseName, ddl and
// tableChanges. With the TiDB extension a watermark message (op "m",
// source.commit_ts the watermark) is sent at each checkpoint.
package debezium

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/internal/jsonenc"
	"github.com/raftcdc/raftcdc/model"
)

// Options select the encoder's variants.
type Options struct {
	// DisableSchema leaves the Kafka Connect schema out of keys and values.
	DisableSchema bool
	// EnableTiDBExtension enables watermark messages.
	EnableTiDBExtension bool
	// ClusterName is source.name and the schema names' prefix ("default").
	ClusterName string
	// Now is the clock for payload.ts_ms (time.Now if nil).
	Now func() time.Time
}

// Encoder encodes rows, DDLs and watermarks. Safe for concurrent use.
type Encoder struct {
	opts Options

	// schemas caches the key and value schemas' JSON per table version:
	// building them is most of the cost of a message.
	mu      sync.Mutex
	schemas map[schemaKey]*rowSchemas
}

type schemaKey struct {
	table   model.TableName
	version uint64
}

type rowSchemas struct {
	key, value []byte
}

// NewEncoder returns an encoder.
func NewEncoder(o Options) *Encoder {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ClusterName == "" {
		o.ClusterName = "default"
	}
	return &Encoder{opts: o, schemas: map[schemaKey]*rowSchemas{}}
}

// Field is a Kafka Connect schema field.
type Field struct {
	Type       string            `json:"type"`
	Optional   bool              `json:"optional"`
	Name       string            `json:"name,omitempty"`
	Version    int               `json:"version,omitempty"`
	Field      string            `json:"field,omitempty"`
	Parameters map[string]string `json:"parameters,omitempty"`
	Fields     []Field           `json:"fields,omitempty"`
}

// Source is the envelope's source block.
type Source struct {
	Version   string  `json:"version"`
	Connector string  `json:"connector"`
	Name      string  `json:"name"`
	TsMs      int64   `json:"ts_ms"`
	Snapshot  string  `json:"snapshot"`
	DB        string  `json:"db"`
	Table     string  `json:"table,omitempty"`
	ServerID  int64   `json:"server_id"`
	GTID      *string `json:"gtid"`
	File      string  `json:"file"`
	Pos       int64   `json:"pos"`
	Row       int     `json:"row"`
	Thread    int64   `json:"thread"`
	Query     *string `json:"query"`
	CommitTs  uint64  `json:"commit_ts"`
	ClusterID string  `json:"cluster_id"`
}

// Payload is a row or watermark envelope's payload.
type Payload struct {
	Before      map[string]json.RawMessage `json:"before"`
	After       map[string]json.RawMessage `json:"after"`
	Source      Source                     `json:"source"`
	Op          string                     `json:"op"`
	TsMs        int64                      `json:"ts_ms"`
	Transaction json.RawMessage            `json:"transaction"`
	// DDL fields (schema-change events).
	DatabaseName string        `json:"databaseName,omitempty"`
	DDL          string        `json:"ddl,omitempty"`
	TableChanges []TableChange `json:"tableChanges,omitempty"`
	// Large-message marks (TiCDC's, in the TiDB extension's spirit).
	OnlyHandleKey      bool   `json:"onlyHandleKey,omitempty"`
	ClaimCheckLocation string `json:"claimCheckLocation,omitempty"`
}

// TableChange describes a table after a DDL.
type TableChange struct {
	Type  string      `json:"type"`
	ID    string      `json:"id"`
	Table *TableShape `json:"table"`
}

// TableShape is a table's columns and key in a schema-change event.
type TableShape struct {
	PrimaryKeyColumnNames []string      `json:"primaryKeyColumnNames"`
	Columns               []ColumnShape `json:"columns"`
}

// ColumnShape is one column in a schema-change event.
type ColumnShape struct {
	Name           string `json:"name"`
	TypeName       string `json:"typeName"`
	TypeExpression string `json:"typeExpression"`
	Optional       bool   `json:"optional"`
	Position       int    `json:"position"`
}

// Envelope is a whole value (or key) message.
type Envelope struct {
	Payload json.RawMessage `json:"payload"`
	Schema  *Field          `json:"schema,omitempty"`
}

// RowOptions are the large-message variants of a row.
type RowOptions struct {
	OnlyHandleKey bool
	ClaimCheck    string
}

func physicalMillis(ts model.Ts) int64 { return int64(ts >> 18) }

func (e *Encoder) source(db, table string, ts model.Ts) Source {
	return Source{Version: "2.4.0.Final", Connector: "TiCDC", Name: e.opts.ClusterName, TsMs: physicalMillis(ts), Snapshot: snapshotFalse,
		DB: db, Table: table, CommitTs: ts}
}

// EncodeRow encodes one row change as key and value.
func (e *Encoder) EncodeRow(r *model.RowChange, o RowOptions) (key, value []byte, err error) {
	return e.AppendRow(nil, nil, r, o)
}

// AppendRow appends one row change's key to keyDst and its value to
// valueDst, so that a caller can encode into buffers it reuses. With nil
// buffers it sizes them from the cached schemas.
func (e *Encoder) AppendRow(keyDst, valueDst []byte, r *model.RowChange, o RowOptions) (key, value []byte, err error) {
	s := r.Schema
	if s == nil {
		return nil, nil, fmt.Errorf("debezium: row at %d has no schema", r.CommitTs)
	}
	keyCols := s.KeyColumns(s.HandleKey())
	isKey := make([]bool, len(s.Columns))
	for _, i := range keyCols {
		if i >= 0 {
			isKey[i] = true
		}
	}
	var op string
	switch r.Op {
	case model.OpInsert:
		op = "c"
		if r.Snapshot {
			op = "r"
		}
	case model.OpUpdate:
		op = "u"
	case model.OpDelete:
		op = "d"
	default:
		return nil, nil, fmt.Errorf("debezium: table %s: unknown op %q", s.Table, r.Op)
	}
	var rs *rowSchemas
	if !e.opts.DisableSchema {
		if rs, err = e.rowSchemas(s, isKey); err != nil {
			return nil, nil, err
		}
	}
	only := o.OnlyHandleKey || o.ClaimCheck != ""
	// The payload is appended by hand, in column order: encoding/json on
	// maps of raw values costs several times the rest of the sink.
	image := func(dst []byte, img []model.Value, keyOnly bool) ([]byte, error) {
		if img == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '{')
		n := 0
		for i, v := range img {
			if v.IsMissing() || v.IsUnchanged() || (keyOnly && !isKey[i]) {
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = jsonenc.AppendString(dst, s.Columns[i].Name)
			dst = append(dst, ':')
			var err error
			if dst, err = appendValue(dst, s.Columns[i].Type, v); err != nil {
				return nil, fmt.Errorf("table %s column %s: %w", s.Table, s.Columns[i].Name, err)
			}
		}
		return append(dst, '}'), nil
	}
	value = valueDst
	if value == nil {
		value = make([]byte, 0, 512+len(rs.valueBytes()))
	}
	value = append(value, `{"payload":{"before":`...)
	if value, err = image(value, r.Before, only); err != nil {
		return nil, nil, err
	}
	value = append(value, `,"after":`...)
	if value, err = image(value, r.After, only); err != nil {
		return nil, nil, err
	}
	value = append(value, `,"source":`...)
	snapshot := snapshotFalse
	if op == "r" {
		snapshot = snapshotTrue
	}
	value = e.appendSource(value, s.Table.Schema, s.Table.Table, r.CommitTs, snapshot)
	value = append(value, `,"op":"`...)
	value = append(value, op...)
	value = append(value, `","ts_ms":`...)
	value = strconv.AppendInt(value, e.opts.Now().UnixMilli(), 10)
	value = append(value, `,"transaction":null`...)
	if only {
		value = append(value, `,"onlyHandleKey":true`...)
	}
	if o.ClaimCheck != "" {
		value = append(value, `,"claimCheckLocation":`...)
		value = jsonenc.AppendString(value, o.ClaimCheck)
	}
	value = append(value, '}')
	if rs != nil {
		value = append(value, `,"schema":`...)
		value = append(value, rs.value...)
	}
	value = append(value, '}')

	// The key: the handle-key columns of the row's current image.
	key = keyDst
	if key == nil {
		key = make([]byte, 0, 64+len(rs.keyBytes()))
	}
	key = append(key, `{"payload":`...)
	if key, err = image(key, r.Image(), true); err != nil {
		return nil, nil, err
	}
	if rs != nil {
		key = append(key, `,"schema":`...)
		key = append(key, rs.key...)
	}
	return append(key, '}'), value, nil
}

func (rs *rowSchemas) valueBytes() []byte {
	if rs == nil {
		return nil
	}
	return rs.value
}

func (rs *rowSchemas) keyBytes() []byte {
	if rs == nil {
		return nil
	}
	return rs.key
}

// source.snapshot's values (Debezium's enum also has "last" and
// "incremental", which are not written).
const (
	snapshotTrue  = "true"
	snapshotFalse = "false"
)

func (e *Encoder) appendSource(dst []byte, db, table string, ts model.Ts, snapshot string) []byte {
	dst = append(dst, `{"version":"2.4.0.Final","connector":"TiCDC","name":`...)
	dst = jsonenc.AppendString(dst, e.opts.ClusterName)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, physicalMillis(ts), 10)
	dst = append(dst, `,"snapshot":"`...)
	dst = append(dst, snapshot...)
	dst = append(dst, `","db":`...)
	dst = jsonenc.AppendString(dst, db)
	if table != "" {
		dst = append(dst, `,"table":`...)
		dst = jsonenc.AppendString(dst, table)
	}
	dst = append(dst, `,"server_id":0,"gtid":null,"file":"","pos":0,"row":0,"thread":0,"query":null,"commit_ts":`...)
	dst = strconv.AppendUint(dst, ts, 10)
	return append(dst, `,"cluster_id":""}`...)
}

// envelopeRaw writes {"payload":...,"schema":...} with the cached schema.
func envelopeRaw(payload any, rs *rowSchemas, key bool) ([]byte, error) {
	pb, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	var sch []byte
	if rs != nil {
		sch = rs.value
		if key {
			sch = rs.key
		}
	}
	out := make([]byte, 0, len(pb)+len(sch)+24)
	out = append(out, `{"payload":`...)
	out = append(out, pb...)
	if sch != nil {
		out = append(out, `,"schema":`...)
		out = append(out, sch...)
	}
	return append(out, '}'), nil
}

func (e *Encoder) rowSchemas(s *model.TableSchema, isKey []bool) (*rowSchemas, error) {
	k := schemaKey{s.Table, s.Version}
	e.mu.Lock()
	rs, ok := e.schemas[k]
	e.mu.Unlock()
	if ok {
		return rs, nil
	}
	prefix := e.opts.ClusterName + "." + s.Table.Schema + "." + s.Table.Table
	var keySchema, valueSchema *Field
	{
		kf := Field{Type: "struct", Name: prefix + ".Key", Optional: false}
		vf := Field{Type: "struct", Name: prefix + ".Value", Optional: true}
		for i, c := range s.Columns {
			f := ColumnField(c)
			vf.Fields = append(vf.Fields, f)
			if isKey[i] {
				kf.Fields = append(kf.Fields, f)
			}
		}
		before, after := vf, vf
		before.Field, after.Field = "before", "after"
		valueSchema = &Field{Type: "struct", Optional: false, Name: prefix + ".Envelope", Version: 1, Fields: []Field{
			before, after, sourceSchema(),
			{Type: "string", Optional: false, Field: "op"},
			{Type: "int64", Optional: true, Field: "ts_ms"},
			{Type: "struct", Optional: true, Name: "event.block", Version: 1, Field: "transaction", Fields: []Field{
				{Type: "string", Field: "id"}, {Type: "int64", Field: "total_order"}, {Type: "int64", Field: "data_collection_order"}}},
		}}
		keySchema = &kf
	}
	kb, err := json.Marshal(keySchema)
	if err != nil {
		return nil, err
	}
	vb, err := json.Marshal(valueSchema)
	if err != nil {
		return nil, err
	}
	rs = &rowSchemas{key: kb, value: vb}
	e.mu.Lock()
	if len(e.schemas) > 4096 { // bounded: versions in use are few
		e.schemas = map[schemaKey]*rowSchemas{}
	}
	e.schemas[k] = rs
	e.mu.Unlock()
	return rs, nil
}

func envelope(payload any, schema *Field) ([]byte, error) {
	pb, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Envelope{Payload: pb, Schema: schema})
}

func sourceSchema() Field {
	str := func(n string, opt bool) Field { return Field{Type: "string", Optional: opt, Field: n} }
	i64 := func(n string, opt bool) Field { return Field{Type: "int64", Optional: opt, Field: n} }
	return Field{Type: "struct", Optional: false, Name: "io.debezium.connector.mysql.Source", Field: "source", Fields: []Field{
		str("version", false), str("connector", false), str("name", false), i64("ts_ms", false),
		{Type: "string", Optional: true, Name: "io.debezium.data.Enum", Version: 1, Parameters: map[string]string{"allowed": "true,last,false,incremental"}, Field: "snapshot"},
		str("db", false), str("sequence", true), str("table", true), i64("server_id", false), str("gtid", true), str("file", false),
		i64("pos", false), {Type: "int32", Optional: false, Field: "row"}, i64("thread", true), str("query", true),
		i64("commit_ts", false), str("cluster_id", false),
	}}
}

// ColumnField is a column's Kafka Connect schema field.
func ColumnField(c model.Column) Field {
	f := Field{Field: c.Name, Optional: c.Nullable}
	t := c.Type
	switch t.Kind {
	case model.TypeTinyInt, model.TypeSmallInt:
		f.Type = "int16"
		if t.Unsigned && t.Kind == model.TypeSmallInt {
			f.Type = "int32"
		}
	case model.TypeMediumInt:
		f.Type = "int32"
	case model.TypeInt:
		f.Type = "int32"
		if t.Unsigned {
			f.Type = "int64"
		}
	case model.TypeBigInt:
		f.Type = "int64"
	case model.TypeFloat:
		f.Type = "float"
	case model.TypeDouble:
		f.Type = "double"
	case model.TypeDecimal:
		f.Type = "string"
	case model.TypeDate:
		f.Type, f.Name, f.Version = "int32", "io.debezium.time.Date", 1
	case model.TypeDatetime:
		f.Type, f.Name, f.Version = "int64", "io.debezium.time.Timestamp", 1
		if t.Fsp > 3 {
			f.Name = "io.debezium.time.MicroTimestamp"
		}
	case model.TypeTimestamp:
		f.Type, f.Name, f.Version = "string", "io.debezium.time.ZonedTimestamp", 1
	case model.TypeTime:
		f.Type, f.Name, f.Version = "int64", "io.debezium.time.MicroTime", 1
	case model.TypeYear:
		f.Type, f.Name, f.Version = "int32", "io.debezium.time.Year", 1
	case model.TypeEnum:
		f.Type, f.Name, f.Version = "string", "io.debezium.data.Enum", 1
		f.Parameters = map[string]string{"allowed": strings.Join(t.Elems, ",")}
	case model.TypeSet:
		f.Type, f.Name, f.Version = "string", "io.debezium.data.EnumSet", 1
		f.Parameters = map[string]string{"allowed": strings.Join(t.Elems, ",")}
	case model.TypeBit:
		if t.Length <= 1 {
			f.Type = "boolean"
		} else {
			f.Type, f.Name, f.Version = "bytes", "io.debezium.data.Bits", 1
			f.Parameters = map[string]string{"length": strconv.Itoa(t.Length)}
		}
	case model.TypeJSON:
		f.Type, f.Name, f.Version = "string", "io.debezium.data.Json", 1
	default:
		if t.IsBinary() {
			f.Type = "bytes"
		} else {
			f.Type = "string"
		}
	}
	return f
}

// EncodeValue renders one value in Debezium's JSON form for its type.
func EncodeValue(t model.ColumnType, v model.Value) (json.RawMessage, error) {
	return appendValue(nil, t, v)
}

func appendValue(dst []byte, t model.ColumnType, v model.Value) ([]byte, error) {
	if v.IsNull() {
		return append(dst, "null"...), nil
	}
	switch t.Kind {
	case model.TypeDate:
		d, err := time.Parse("2006-01-02", v.S)
		if err != nil {
			return nil, fmt.Errorf("date %q: %w", v.S, err)
		}
		return strconv.AppendInt(dst, floorDiv(d.Unix(), 86400), 10), nil
	case model.TypeDatetime:
		d, err := time.Parse("2006-01-02 15:04:05.999999", v.S)
		if err != nil {
			return nil, fmt.Errorf("datetime %q: %w", v.S, err)
		}
		if t.Fsp > 3 {
			return strconv.AppendInt(dst, d.UnixMicro(), 10), nil
		}
		return strconv.AppendInt(dst, d.UnixMilli(), 10), nil
	case model.TypeTimestamp:
		d, err := time.Parse("2006-01-02 15:04:05.999999", v.S)
		if err != nil {
			return nil, fmt.Errorf("timestamp %q: %w", v.S, err)
		}
		return jsonenc.AppendString(dst, d.UTC().Format("2006-01-02T15:04:05.999999Z")), nil
	case model.TypeTime:
		us, err := timeMicros(v.S)
		if err != nil {
			return nil, err
		}
		return strconv.AppendInt(dst, us, 10), nil
	case model.TypeBit:
		if t.Length <= 1 {
			return strconv.AppendBool(dst, v.Uint() != 0), nil
		}
		n := (t.Length + 7) / 8
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v.Uint())
		return jsonenc.AppendString(dst, base64.StdEncoding.EncodeToString(b[:n])), nil
	}
	switch v.Kind {
	case model.ValueInt:
		return strconv.AppendInt(dst, v.I, 10), nil
	case model.ValueUint:
		return strconv.AppendUint(dst, v.Uint(), 10), nil
	case model.ValueFloat:
		if math.IsNaN(v.Float()) || math.IsInf(v.Float(), 0) {
			return nil, fmt.Errorf("float %v has no JSON form", v.Float())
		}
		if t.Kind == model.TypeFloat {
			return strconv.AppendFloat(dst, v.Float(), 'g', -1, 32), nil
		}
		return strconv.AppendFloat(dst, v.Float(), 'g', -1, 64), nil
	case model.ValueBytes:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v.B)
		return append(dst, '"'), nil
	case model.ValueString:
		return jsonenc.AppendString(dst, v.S), nil
	}
	return nil, fmt.Errorf("value of kind %s cannot be encoded", v.Kind)
}

// DecodeValue turns a Debezium JSON value back into a model.Value of the
// column's type (for consumers and tests).
func DecodeValue(t model.ColumnType, raw json.RawMessage) (model.Value, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return model.Null(), nil
	}
	str := func() (string, error) {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	switch t.Kind {
	case model.TypeDate:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		return model.StringValue(time.Unix(n*86400, 0).UTC().Format("2006-01-02")), err
	case model.TypeDatetime:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		var d time.Time
		if t.Fsp > 3 {
			d = time.UnixMicro(n).UTC()
		} else {
			d = time.UnixMilli(n).UTC()
		}
		return model.StringValue(d.Format("2006-01-02 15:04:05") + model.FormatFsp(d.Nanosecond()/1000, t.Fsp)), err
	case model.TypeTimestamp:
		s, err := str()
		if err != nil {
			return model.Value{}, err
		}
		d, err := time.Parse("2006-01-02T15:04:05.999999Z", s)
		return model.StringValue(d.Format("2006-01-02 15:04:05") + model.FormatFsp(d.Nanosecond()/1000, t.Fsp)), err
	case model.TypeTime:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		return model.StringValue(formatTime(n, t.Fsp)), err
	case model.TypeBit:
		if t.Length <= 1 {
			b, err := strconv.ParseBool(string(raw))
			if b {
				return model.UintValue(1), err
			}
			return model.UintValue(0), err
		}
		s, err := str()
		if err != nil {
			return model.Value{}, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		var full [8]byte
		copy(full[:], b)
		return model.UintValue(binary.LittleEndian.Uint64(full[:])), err
	}
	switch t.ValueKind() {
	case model.ValueInt:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		return model.IntValue(n), err
	case model.ValueUint:
		n, err := strconv.ParseUint(string(raw), 10, 64)
		return model.UintValue(n), err
	case model.ValueFloat:
		f, err := strconv.ParseFloat(string(raw), 64)
		return model.FloatValue(f), err
	case model.ValueBytes:
		s, err := str()
		if err != nil {
			return model.Value{}, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		return model.BytesValue(b), err
	default:
		s, err := str()
		return model.StringValue(s), err
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// timeMicros parses "[-]HHH:MM:SS[.ffffff]" into microseconds.
func timeMicros(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	main, frac, _ := strings.Cut(s, ".")
	parts := strings.Split(main, ":")
	if len(parts) != 3 {
		return 0, fmt.Errorf("time %q: want HH:MM:SS", s)
	}
	var n [3]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("time %q: %w", s, err)
		}
		n[i] = v
	}
	us := ((n[0]*60+n[1])*60 + n[2]) * 1e6
	if frac != "" {
		f, err := strconv.ParseInt((frac + "000000")[:6], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("time %q: %w", s, err)
		}
		us += f
	}
	if neg {
		us = -us
	}
	return us, nil
}

func formatTime(us int64, fsp int) string {
	sign := ""
	if us < 0 {
		sign, us = "-", -us
	}
	sec := us / 1e6
	return fmt.Sprintf("%s%02d:%02d:%02d%s", sign, sec/3600, sec/60%60, sec%60, model.FormatFsp(int(us%1e6), fsp))
}

// EncodeDDL encodes a DDL as Debezium's schema-change event.
func (e *Encoder) EncodeDDL(d *model.DDLEvent) (key, value []byte, err error) {
	kp := map[string]string{"databaseName": d.Schema}
	var ks *Field
	if !e.opts.DisableSchema {
		ks = &Field{Type: "struct", Name: "io.debezium.connector.mysql.SchemaChangeKey", Optional: false, Version: 1,
			Fields: []Field{{Type: "string", Optional: false, Field: "databaseName"}}}
	}
	if key, err = envelope(kp, ks); err != nil {
		return nil, nil, err
	}
	table := ""
	if len(d.Tables) > 0 {
		table = d.Tables[0].Table
	}
	p := Payload{Source: e.source(d.Schema, table, d.CommitTs), TsMs: e.opts.Now().UnixMilli(), DatabaseName: d.Schema, DDL: d.Query,
		Transaction: json.RawMessage("null")}
	typ := "ALTER"
	switch d.Kind {
	case model.DDLCreateTable, model.DDLCreateSchema:
		typ = "CREATE"
	case model.DDLDropTable, model.DDLDropSchema:
		typ = "DROP"
	}
	for i, t := range d.Tables {
		tc := TableChange{Type: typ, ID: fmt.Sprintf("%q.%q", t.Schema, t.Table)}
		if i < len(d.After) && d.After[i] != nil {
			s := d.After[i]
			tc.ID = fmt.Sprintf("%q.%q", s.Table.Schema, s.Table.Table)
			shape := &TableShape{PrimaryKeyColumnNames: []string{}}
			if pk := s.PrimaryKey(); pk != nil {
				shape.PrimaryKeyColumnNames = pk.Columns
			}
			for j, c := range s.Columns {
				shape.Columns = append(shape.Columns, ColumnShape{Name: c.Name, TypeName: strings.ToUpper(string(c.Type.Kind)),
					TypeExpression: c.Type.String(), Optional: c.Nullable, Position: j + 1})
			}
			tc.Table = shape
		}
		p.TableChanges = append(p.TableChanges, tc)
	}
	var vs *Field
	if !e.opts.DisableSchema {
		vs = &Field{Type: "struct", Optional: false, Name: "io.debezium.connector.mysql.SchemaChangeValue", Version: 1, Fields: []Field{
			sourceSchema(), {Type: "int64", Optional: false, Field: "ts_ms"}, {Type: "string", Optional: true, Field: "databaseName"},
			{Type: "string", Optional: true, Field: "schemaName"}, {Type: "string", Optional: true, Field: "ddl"},
			{Type: "array", Optional: false, Field: "tableChanges"},
		}}
	}
	value, err = envelope(p, vs)
	return key, value, err
}

// EncodeWatermark encodes a watermark (op "m", source.commit_ts the
// watermark); ok is false without the TiDB extension.
func (e *Encoder) EncodeWatermark(ts model.Ts) (key, value []byte, ok bool) {
	if !e.opts.EnableTiDBExtension {
		return nil, nil, false
	}
	p := Payload{Source: e.source("", "", ts), Op: "m", TsMs: e.opts.Now().UnixMilli(), Transaction: json.RawMessage("null")}
	value, err := envelope(p, nil)
	if err != nil {
		return nil, nil, false
	}
	return nil, value, true
}

// Decoded is a decoded value message.
type Decoded struct {
	Payload Payload
	Schema  *Field
}

// Decode parses a value message.
func Decode(value []byte) (*Decoded, error) {
	var env Envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return nil, fmt.Errorf("debezium: %w", err)
	}
	d := &Decoded{Schema: env.Schema}
	if err := json.Unmarshal(env.Payload, &d.Payload); err != nil {
		return nil, fmt.Errorf("debezium: payload: %w", err)
	}
	return d, nil
}

// RowOp is a row message's change kind: c and r are inserts, r (with
// snapshot true) one read by a source's snapshot; u an update, d a delete.
// Any other op (a watermark's m, a DDL's none) is an error.
func (p *Payload) RowOp() (op model.Op, snapshot bool, err error) {
	switch p.Op {
	case "c":
		return model.OpInsert, false, nil
	case "r":
		return model.OpInsert, true, nil
	case "u":
		return model.OpUpdate, false, nil
	case "d":
		return model.OpDelete, false, nil
	}
	return "", false, fmt.Errorf("debezium: op %q is not a row change", p.Op)
}

// Image turns a decoded before or after map back into values aligned with s.
func Image(s *model.TableSchema, m map[string]json.RawMessage) ([]model.Value, error) {
	if m == nil {
		return nil, nil
	}
	out := make([]model.Value, len(s.Columns))
	for i, c := range s.Columns {
		raw, ok := m[c.Name]
		if !ok {
			continue
		}
		v, err := DecodeValue(c.Type, raw)
		if err != nil {
			return nil, fmt.Errorf("debezium: column %s: %w", c.Name, err)
		}
		out[i] = v
	}
	return out, nil
}
