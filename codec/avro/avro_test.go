package avro

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/codec/avro/avrotest"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/model/modeltest"
)

func TestAvroRoundTripsEveryTypeThroughARegistryOverHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := avrotest.Start(t)
	s := modeltest.AllTypesSchema("db", "all", 1, 1)
	for _, opts := range []Options{{}, {DecimalString: true, BigintUnsignedString: true, EnableTiDBExtension: true}} {
		enc := NewEncoder(opts, NewRegistry(reg.URL, nil))
		dec := NewDecoder(opts, NewRegistry(reg.URL, nil))
		for i, img := range modeltest.EdgeImages() {
			r := &model.RowChange{Schema: s, CommitTs: 449189129134866433, Op: model.OpUpdate, After: img}
			k, v, err := enc.EncodeRow(ctx, "db_all", r, false)
			if err != nil {
				t.Fatalf("%+v image %d: %v", opts, i, err)
			}
			d, err := dec.DecodeValue(ctx, s, v)
			if err != nil {
				t.Fatalf("%+v image %d: %v", opts, i, err)
			}
			for j, c := range s.Columns {
				if !model.ValueEqual(c.Type, img[j], d.Image[j]) {
					t.Errorf("%+v image %d column %s (%s): got %#v want %#v", opts, i, c.Name, c.Type, d.Image[j], img[j])
				}
			}
			if opts.EnableTiDBExtension && (d.Extension[FieldOp].S != "u" || d.Extension[FieldCommitTs].I != int64(r.CommitTs)) {
				t.Errorf("extension fields %+v", d.Extension)
			}
			// Decoded with the writer schema alone, by field name.
			fields, err := dec.DecodeFields(ctx, v)
			if err != nil {
				t.Fatalf("%+v image %d: DecodeFields: %v", opts, i, err)
			}
			if want := len(s.Columns) + len(d.Extension); len(fields) != want {
				t.Errorf("%+v image %d: DecodeFields gave %d fields, want %d", opts, i, len(fields), want)
			}
			if opts.EnableTiDBExtension && fields[FieldCommitTs].I != int64(r.CommitTs) {
				t.Errorf("DecodeFields: %s = %+v, want %d", FieldCommitTs, fields[FieldCommitTs], r.CommitTs)
			}
			if got := fields[s.Columns[0].Name]; img[0].IsNull() != got.IsNull() {
				t.Errorf("DecodeFields: column %s = %+v, want %+v", s.Columns[0].Name, got, img[0])
			}
			kd, err := dec.DecodeKey(ctx, s, k)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range s.KeyColumns(s.HandleKey()) {
				if !model.ValueEqual(s.Columns[j].Type, img[j], kd.Image[j]) {
					t.Errorf("key column %s: got %#v want %#v", s.Columns[j].Name, kd.Image[j], img[j])
				}
			}
		}
	}
	if n := len(reg.Versions("db_all-value")); n != 2 {
		t.Errorf("db_all-value has %d versions, want 2 (one per option set)", n)
	}
}

func TestAvroDeleteIsATombstoneAndSchemasAreRegisteredOnce(t *testing.T) {
	ctx := context.Background()
	reg := avrotest.Start(t)
	s := modeltest.AllTypesSchema("db", "all", 1, 1)
	enc := NewEncoder(Options{}, NewRegistry(reg.URL, nil))
	img := modeltest.EdgeImages()[0]
	for i := 0; i < 5; i++ {
		if _, _, err := enc.EncodeRow(ctx, "t", &model.RowChange{Schema: s, CommitTs: 1, Op: model.OpInsert, After: img}, false); err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.Requests(); n != 2 {
		t.Errorf("%d registry requests for 5 rows, want 2 (key and value once)", n)
	}
	k, v, err := enc.EncodeRow(ctx, "t", &model.RowChange{Schema: s, CommitTs: 2, Op: model.OpDelete, Before: img}, false)
	if err != nil || v != nil || len(k) < 5 {
		t.Fatalf("delete: key %d bytes, value %v, %v", len(k), v, err)
	}
	// With the TiDB extension a delete is a record that says "d", with its
	// commit ts.
	ext := NewEncoder(Options{EnableTiDBExtension: true}, NewRegistry(reg.URL, nil))
	_, v, err = ext.EncodeRow(ctx, "t-ext", &model.RowChange{Schema: s, CommitTs: 2, Op: model.OpDelete, Before: img}, false)
	if err != nil || v == nil {
		t.Fatalf("delete with the extension: %v %v", v, err)
	}
	d, err := NewDecoder(Options{EnableTiDBExtension: true}, NewRegistry(reg.URL, nil)).DecodeValue(ctx, s, v)
	if err != nil || d.Extension[FieldOp].S != "d" || d.Extension[FieldCommitTs].I != 2 {
		t.Fatalf("delete record: %+v %v", d, err)
	}
	// A new schema version registers a new value schema.
	s2 := s.Clone()
	s2.Version = 2
	s2.Columns = append(s2.Columns, model.Column{Name: "added", Type: model.ColumnType{Kind: model.TypeInt}, Nullable: true})
	img2 := append(append([]model.Value(nil), img...), model.Null())
	if _, _, err := enc.EncodeRow(ctx, "t", &model.RowChange{Schema: s2, CommitTs: 3, Op: model.OpInsert, After: img2}, false); err != nil {
		t.Fatal(err)
	}
	if n := len(reg.Versions("t-value")); n != 2 {
		t.Errorf("t-value has %d versions after a DDL, want 2", n)
	}
}

func TestAvroRegistryErrorsAreClear(t *testing.T) {
	ctx := context.Background()
	s := modeltest.AllTypesSchema("db", "all", 1, 1)
	enc := NewEncoder(Options{}, NewRegistry("http://127.0.0.1:1", nil))
	_, _, err := enc.EncodeRow(ctx, "t", &model.RowChange{Schema: s, CommitTs: 1, Op: model.OpInsert, After: modeltest.EdgeImages()[0]}, false)
	if err == nil || !strings.Contains(err.Error(), "schema registry: registering subject t-key") {
		t.Fatalf("unreachable registry: %v", err)
	}
	reg := avrotest.Start(t)
	if _, err := NewRegistry(reg.URL, nil).SchemaText(ctx, 99); err == nil || !strings.Contains(err.Error(), "Schema not found (HTTP 404, error code 40403)") {
		t.Fatalf("missing schema: %v", err)
	}
}

func TestParseSchemaRefusesWhatItCannotRead(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{`{"type":"enum","name":"e"}`, `type "enum", want a record`},
		{`{"type":"record","name":"r","fields":[{"name":"a","type":"boolean"}]}`, `field a: unsupported type "boolean"`},
		{`{"type":"record","name":"r","fields":[{"name":"a","type":["int","null"]}]}`, "field a: unsupported union"},
		{`{"type":"record","name":"r","fields":[{"name":"a","type":{"type":"int","logicalType":"decimal"}}]}`, "decimal on int"},
		{`not json`, "parse schema"},
	} {
		if _, err := ParseSchema(c.text); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.text, err, c.want)
		}
	}
}

func TestAvroDecimalBytes(t *testing.T) {
	for _, c := range []struct {
		s     string
		scale int
	}{{"0.00", 2}, {"-0.01", 2}, {"123.45", 2}, {"-128", 0}, {"127", 0}, {"128", 0}, {"-129", 0}, {"99999999999999999999999999999.999999999", 9}} {
		u, err := unscaled(c.s, c.scale)
		if err != nil {
			t.Fatal(err)
		}
		if got := formatDecimal(fromTwosComplement(twosComplement(u)), c.scale); got != strings.TrimPrefix(strings.Replace(c.s, "-0.00", "0.00", 1), "") {
			t.Errorf("%s: round trip gave %s", c.s, got)
		}
	}
}

// A consumer fetches each schema ID from the registry once, however many
// records carry it (an ID never changes its schema); a fetch per record
// made the Kafka scenario's avro verification take minutes.
func TestDecoderFetchesEachSchemaOnce(t *testing.T) {
	ctx := context.Background()
	reg := avrotest.Start(t)
	s := modeltest.AllTypesSchema("db", "all", 1, 1)
	enc := NewEncoder(Options{}, NewRegistry(reg.URL, nil))
	img := modeltest.EdgeImages()[0]
	k, v, err := enc.EncodeRow(ctx, "t", &model.RowChange{Schema: s, CommitTs: 1, Op: model.OpInsert, After: img}, false)
	if err != nil {
		t.Fatal(err)
	}
	before := reg.Requests()
	dec := NewDecoder(Options{}, NewRegistry(reg.URL, nil))
	for i := 0; i < 50; i++ {
		if _, err := dec.DecodeValue(ctx, s, v); err != nil {
			t.Fatal(err)
		}
		if _, err := dec.DecodeKey(ctx, s, k); err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.Requests() - before; n != 2 {
		t.Fatalf("%d registry requests to decode 50 keys and values, want 2 (each schema once)", n)
	}
}

// TestDecoderDerivesEachSchemaOnce: the Avro form of a table version is
// built once and reused; a new version gets its own.
func TestDecoderDerivesEachSchemaOnce(t *testing.T) {
	dec := NewDecoder(Options{EnableTiDBExtension: true}, nil)
	v1 := modeltest.AllTypesSchema("db", "all", 1, 1)
	a, err := dec.derived(v1, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dec.derived(v1, false)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("the value schema of one table version was built twice")
	}
	k, err := dec.derived(v1, true)
	if err != nil {
		t.Fatal(err)
	}
	if k == a || !strings.HasSuffix(k.Name, "_key") {
		t.Fatalf("the key schema is %q, the value schema's entry answered for it", k.Name)
	}
	v2 := modeltest.AllTypesSchema("db", "all", 1, 2)
	v2.Columns = v2.Columns[:len(v2.Columns)-1]
	c, err := dec.derived(v2, false)
	if err != nil {
		t.Fatal(err)
	}
	if c == a || c.JSON == a.JSON {
		t.Fatal("a new table version reused the old version's schema")
	}
}
