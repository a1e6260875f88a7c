package avro

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/raftcdc/raftcdc/model"
)

// Markers start the values of messages that are not Avro records.
const (
	// RecordMarker is Confluent's magic byte.
	RecordMarker    = 0
	DDLMarker       = 1
	WatermarkMarker = 2
)

// Encoder encodes rows for one changefeed. Safe for concurrent use.
type Encoder struct {
	opts Options
	reg  *Registry

	mu      sync.Mutex
	schemas map[schemaKey]*tableSchemas
}

type schemaKey struct {
	table   model.TableName
	version uint64
}

type tableSchemas struct {
	key, value, handle *Schema
}

// NewEncoder returns an encoder that registers schemas with reg.
func NewEncoder(opts Options, reg *Registry) *Encoder {
	return &Encoder{opts: opts, reg: reg, schemas: map[schemaKey]*tableSchemas{}}
}

func (e *Encoder) tableSchemas(s *model.TableSchema) (*tableSchemas, error) {
	k := schemaKey{s.Table, s.Version}
	e.mu.Lock()
	ts, ok := e.schemas[k]
	e.mu.Unlock()
	if ok {
		return ts, nil
	}
	ks, err := e.opts.KeySchema(s)
	if err != nil {
		return nil, err
	}
	vs, err := e.opts.ValueSchema(s)
	if err != nil {
		return nil, err
	}
	ho := e.opts
	ho.EnableTiDBExtension = false
	hs, err := handleSchema(ho, s)
	if err != nil {
		return nil, err
	}
	ts = &tableSchemas{key: ks, value: vs, handle: hs}
	e.mu.Lock()
	e.schemas[k] = ts
	e.mu.Unlock()
	return ts, nil
}

// handleSchema is the value schema of a large row sent with only its
// handle key: the key's fields, named as a value.
func handleSchema(o Options, s *model.TableSchema) (*Schema, error) {
	ks, err := o.KeySchema(s)
	if err != nil {
		return nil, err
	}
	return build(o.namespace(s.Table), sanitize(s.Table.Table)+"_handle_key_only", ks.Fields)
}

// appendHeader starts a message in Confluent's wire format (marker 0,
// the schema ID); the record is appended after it.
func appendHeader(dst []byte, id int32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, RecordMarker), uint32(id))
}

// EncodeRow encodes one row for topic: key and value (nil for a delete's
// tombstone, or with the TiDB extension a record with _tidb_op "d").
// onlyHandleKey sends a large row's handle key as its value.
func (e *Encoder) EncodeRow(ctx context.Context, topic string, r *model.RowChange, onlyHandleKey bool) (key, value []byte, err error) {
	return e.AppendRow(ctx, nil, nil, topic, r, onlyHandleKey)
}

// AppendRow is EncodeRow appending the key to keyDst and the value to
// valueDst, so that a caller can encode into buffers it reuses. With nil
// buffers it sizes them from the schemas. A tombstone's value is nil
// whatever valueDst is.
func (e *Encoder) AppendRow(ctx context.Context, keyDst, valueDst []byte, topic string, r *model.RowChange, onlyHandleKey bool) (key, value []byte, err error) {
	s := r.Schema
	ts, err := e.tableSchemas(s)
	if err != nil {
		return nil, nil, fmt.Errorf("avro: %w", err)
	}
	keyID, err := e.reg.Register(ctx, topic+"-key", ts.key)
	if err != nil {
		return nil, nil, err
	}
	if keyDst == nil {
		keyDst = make([]byte, 0, 5+16*len(ts.key.Fields))
	}
	key, err = appendRecord(appendHeader(keyDst, keyID), ts.key, r.Image(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("avro: table %s key: %w", s.Table, err)
	}
	img := r.After
	op := "c"
	switch r.Op {
	case model.OpUpdate:
		op = "u"
	case model.OpDelete:
		// Without the TiDB extension a delete is a tombstone. With it, a
		// record of the before image with _tidb_op "d", so that consumers
		// learn the delete's commit ts (a tombstone has none); a before
		// image that lacks a NOT NULL column still goes as a tombstone.
		if !e.opts.EnableTiDBExtension || onlyHandleKey {
			return key, nil, nil
		}
		op, img = "d", r.Before
		for i, v := range img {
			if (v.IsMissing() || v.IsUnchanged()) && !s.Columns[i].Nullable {
				return key, nil, nil
			}
		}
	}
	vs := ts.value
	if onlyHandleKey {
		vs = ts.handle
	}
	valueID, err := e.reg.Register(ctx, topic+"-value", vs)
	if err != nil {
		return nil, nil, err
	}
	if valueDst == nil {
		valueDst = make([]byte, 0, 5+16*len(vs.Fields))
	}
	value, err = appendRecord(appendHeader(valueDst, valueID), vs, img, func(name string) (model.Value, bool) {
		switch name {
		case FieldOp:
			return model.StringValue(op), true
		case FieldCommitTs:
			return model.IntValue(int64(r.CommitTs)), true
		case FieldCommitPhysicalTime:
			return model.IntValue(int64(r.CommitTs >> 18)), true
		}
		return model.Value{}, false
	})
	if err != nil {
		return nil, nil, fmt.Errorf("avro: table %s value: %w", s.Table, err)
	}
	return key, value, nil
}

// DDL is the JSON after a DDL message's marker.
type DDL struct {
	Query    string `json:"query"`
	Type     string `json:"type"`
	Schema   string `json:"schema"`
	Table    string `json:"table,omitempty"`
	CommitTs uint64 `json:"commitTs"`
}

// Watermark is the JSON after a watermark message's marker.
type Watermark struct {
	Ts uint64 `json:"ts"`
}

// EncodeDDL encodes a DDL message.
func (e *Encoder) EncodeDDL(d *model.DDLEvent) ([]byte, error) {
	m := DDL{Query: d.Query, Type: string(d.Kind), Schema: d.Schema, CommitTs: d.CommitTs}
	if len(d.Tables) > 0 {
		m.Table = d.Tables[0].Table
	}
	b, err := json.Marshal(m)
	return append([]byte{DDLMarker}, b...), err
}

// EncodeWatermark encodes a watermark; ok is false without the TiDB
// extension.
func (e *Encoder) EncodeWatermark(ts model.Ts) ([]byte, bool) {
	if !e.opts.EnableTiDBExtension {
		return nil, false
	}
	b, _ := json.Marshal(Watermark{Ts: ts})
	return append([]byte{WatermarkMarker}, b...), true
}

// Decoder reads records back for a consumer that knows the table's schema
// version (from DDL messages or its own catalogue): it fetches the writer
// schema by ID from the registry and checks that it is the one the
// encoder derives for that version before decoding.
type Decoder struct {
	opts Options
	reg  *Registry

	// schemas caches the Avro schemas derived from table versions: building
	// one costs ~180 µs (a JSON document of every column), and a consumer
	// needs it for every record it decodes.
	mu      sync.Mutex
	schemas map[derivedKey]*Schema
	// writers caches the schemas parsed from the registry's text, by ID.
	writers map[int32]*Schema
}

// derivedKey names a table version's key or value schema.
type derivedKey struct {
	schemaKey
	key bool
}

// NewDecoder returns a decoder.
func NewDecoder(opts Options, reg *Registry) *Decoder {
	return &Decoder{opts: opts, reg: reg, schemas: map[derivedKey]*Schema{}, writers: map[int32]*Schema{}}
}

// derived is s's value (or key) schema, built once per table version.
func (d *Decoder) derived(s *model.TableSchema, key bool) (*Schema, error) {
	k := derivedKey{schemaKey{s.Table, s.Version}, key}
	d.mu.Lock()
	sc := d.schemas[k]
	d.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	build := d.opts.ValueSchema
	if key {
		build = d.opts.KeySchema
	}
	sc, err := build(s)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.schemas[k] = sc
	d.mu.Unlock()
	return sc, nil
}

// Decoded is one decoded record.
type Decoded struct {
	Image     []model.Value
	Extension map[string]model.Value
	SchemaID  int32
}

// DecodeValue decodes a value record of table s (nil value: a tombstone,
// returned as nil). onlyHandleKey selects the large-row schema.
func (d *Decoder) DecodeValue(ctx context.Context, s *model.TableSchema, value []byte) (*Decoded, error) {
	if value == nil {
		return nil, nil
	}
	vs, err := d.derived(s, false)
	if err != nil {
		return nil, err
	}
	return d.decode(ctx, s, vs, value)
}

// DecodeKey decodes a key record.
func (d *Decoder) DecodeKey(ctx context.Context, s *model.TableSchema, key []byte) (*Decoded, error) {
	ks, err := d.derived(s, true)
	if err != nil {
		return nil, err
	}
	return d.decode(ctx, s, ks, key)
}

func (d *Decoder) decode(ctx context.Context, s *model.TableSchema, want *Schema, b []byte) (*Decoded, error) {
	id, ok := schemaID(b)
	if !ok {
		return nil, fmt.Errorf("avro: not a Confluent-framed record")
	}
	text, err := d.reg.SchemaText(ctx, id)
	if err != nil {
		return nil, err
	}
	if text != want.JSON {
		return nil, fmt.Errorf("avro: schema %d is not %s's schema for version %d:\n%s\nwant\n%s", id, s.Table, s.Version, text, want.JSON)
	}
	img, ext, err := decodeRecord(b[5:], want, len(s.Columns))
	if err != nil {
		return nil, err
	}
	return &Decoded{Image: img, Extension: ext, SchemaID: id}, nil
}

// DecodeFields decodes a framed record with the schema it was written
// with, fetched from the registry, into its fields by name. It needs no
// table schema: a consumer that knows table versions only by time reads
// _tidb_commit_ts this way, then decodes against the version in force
// then (DecodeValue), which also checks the writer schema is that
// version's.
func (d *Decoder) DecodeFields(ctx context.Context, b []byte) (map[string]model.Value, error) {
	id, ok := schemaID(b)
	if !ok {
		return nil, fmt.Errorf("avro: not a Confluent-framed record")
	}
	d.mu.Lock()
	ws := d.writers[id]
	d.mu.Unlock()
	if ws == nil {
		text, err := d.reg.SchemaText(ctx, id)
		if err != nil {
			return nil, err
		}
		if ws, err = ParseSchema(text); err != nil {
			return nil, fmt.Errorf("avro: schema %d: %w", id, err)
		}
		d.mu.Lock()
		d.writers[id] = ws
		d.mu.Unlock()
	}
	_, fields, err := decodeRecord(b[5:], ws, 0)
	if err != nil {
		return nil, fmt.Errorf("avro: record with schema %d: %w", id, err)
	}
	return fields, nil
}

// schemaID is the registry ID a framed record was written with.
func schemaID(value []byte) (int32, bool) {
	if len(value) < 5 || value[0] != RecordMarker {
		return 0, false
	}
	return int32(binary.BigEndian.Uint32(value[1:5])), true
}
