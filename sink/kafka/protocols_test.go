package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/codec/avro"
	"github.com/raftcdc/raftcdc/codec/avro/avrotest"
	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/codec/debezium"
	"github.com/raftcdc/raftcdc/codec/open"
	"github.com/raftcdc/raftcdc/codec/simple"
	"github.com/raftcdc/raftcdc/model"
)

// event is what the protocol-independent checks need from a message.
type event struct {
	kind  string // row, ddl, watermark
	table string
	op    model.Op
	read  bool // Debezium's op "r": a row read by a source's snapshot
	id    string
	n     int64
	ts    model.Ts
	query string
}

// decoder turns one Kafka record into events.
type decoder func(t *testing.T, r *kgo.Record) []event

func jsonInt(t *testing.T, raw json.RawMessage) int64 {
	t.Helper()
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		t.Fatalf("%s is not an integer", raw)
	}
	return n
}

func decodeOpen(t *testing.T, r *kgo.Record) []event {
	evs, err := open.Decode(r.Key, r.Value)
	if err != nil {
		t.Fatal(err)
	}
	var out []event
	for _, e := range evs {
		switch e.Key.Type {
		case open.TypeResolved:
			out = append(out, event{kind: "watermark", ts: e.Key.Ts})
		case open.TypeDDL:
			out = append(out, event{kind: "ddl", table: e.Key.Table, ts: e.Key.Ts, query: e.DDL.Query})
		default:
			ev := event{kind: "row", table: e.Key.Table, ts: e.Key.Ts, op: model.OpInsert}
			img := e.Row.Update
			switch {
			case e.Row.Delete != nil:
				ev.op, img = model.OpDelete, e.Row.Delete
			case e.Row.Prev != nil:
				ev.op = model.OpUpdate
			}
			ev.id, ev.n = string(img["id"].Value), jsonInt(t, img["n"].Value)
			out = append(out, ev)
		}
	}
	return out
}

func decodeCanal(t *testing.T, r *kgo.Record) []event {
	m, err := canal.Decode(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	switch m.Kind() {
	case canal.KindWatermark:
		return []event{{kind: "watermark", ts: m.TiDB.WatermarkTs}}
	case canal.KindDDL:
		return []event{{kind: "ddl", table: m.Table, ts: m.CommitTs(), query: m.SQL}}
	}
	n, _ := strconv.ParseInt(*m.Data[0]["n"], 10, 64)
	return []event{{kind: "row", table: m.Table, op: m.Op(), id: *m.Data[0]["id"], n: n, ts: m.CommitTs()}}
}

func decodeDebezium(t *testing.T, r *kgo.Record) []event {
	d, err := debezium.Decode(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	p := d.Payload
	switch {
	case p.Op == "m":
		return []event{{kind: "watermark", ts: p.Source.CommitTs}}
	case p.DDL != "":
		return []event{{kind: "ddl", table: p.Source.Table, ts: p.Source.CommitTs, query: p.DDL}}
	}
	ev := event{kind: "row", table: p.Source.Table, ts: p.Source.CommitTs}
	img := p.After
	op, read, err := p.RowOp()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[bool]string{true: "true", false: "false"}[read]; p.Source.Snapshot != want {
		t.Fatalf("debezium op %q with source.snapshot %q, want %q", p.Op, p.Source.Snapshot, want)
	}
	ev.op, ev.read = op, read
	if op == model.OpDelete {
		img = p.Before
	}
	ev.id, ev.n = string(img["id"]), jsonInt(t, img["n"])
	var key struct{ Payload map[string]json.RawMessage }
	if err := json.Unmarshal(r.Key, &key); err != nil || string(key.Payload["id"]) != ev.id {
		t.Fatalf("debezium key %s does not carry id %s", r.Key, ev.id)
	}
	return []event{ev}
}

func decodeSimple(t *testing.T, r *kgo.Record) []event {
	m, err := simple.Decode(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	switch m.Type {
	case "WATERMARK":
		return []event{{kind: "watermark", ts: m.CommitTs}}
	case "INSERT", "UPDATE", "DELETE":
	default:
		return []event{{kind: "ddl", table: m.Table, ts: m.CommitTs, query: m.SQL}}
	}
	ev := event{kind: "row", table: m.Table, ts: m.CommitTs, op: map[string]model.Op{"INSERT": model.OpInsert, "UPDATE": model.OpUpdate, "DELETE": model.OpDelete}[m.Type]}
	img := m.Data
	if ev.op == model.OpDelete {
		img = m.Old
	}
	ev.id = *img["id"]
	ev.n, _ = strconv.ParseInt(*img["n"], 10, 64)
	return []event{ev}
}

// avroDecoder reads records with the registry, for a consumer that knows
// the table's schema.
func avroDecoder(registry string, sc *model.TableSchema) decoder {
	opts := avro.Options{EnableTiDBExtension: true}
	d := avro.NewDecoder(opts, avro.NewRegistry(registry, nil))
	return func(t *testing.T, r *kgo.Record) []event {
		ctx := testCtx(t)
		if len(r.Value) > 0 && r.Value[0] != avro.RecordMarker {
			switch r.Value[0] {
			case avro.DDLMarker:
				var m avro.DDL
				if err := json.Unmarshal(r.Value[1:], &m); err != nil {
					t.Fatal(err)
				}
				return []event{{kind: "ddl", table: m.Table, ts: m.CommitTs, query: m.Query}}
			case avro.WatermarkMarker:
				var m avro.Watermark
				if err := json.Unmarshal(r.Value[1:], &m); err != nil {
					t.Fatal(err)
				}
				return []event{{kind: "watermark", ts: m.Ts}}
			}
			t.Fatalf("unknown marker %d", r.Value[0])
		}
		k, err := d.DecodeKey(ctx, sc, r.Key)
		if err != nil {
			t.Fatal(err)
		}
		id := strconv.FormatInt(k.Image[0].I, 10)
		if r.Value == nil {
			return []event{{kind: "row", table: sc.Table.Table, op: model.OpDelete, id: id, n: -1}}
		}
		v, err := d.DecodeValue(ctx, sc, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		op := map[string]model.Op{"c": model.OpInsert, "u": model.OpUpdate, "d": model.OpDelete}[v.Extension[avro.FieldOp].S]
		return []event{{kind: "row", table: sc.Table.Table, op: op, id: id, n: int64(v.Image[4].Uint()), ts: model.Ts(v.Extension[avro.FieldCommitTs].I)}}
	}
}

// checkDelivery checks, per partition, that every key's rows arrive once
// and in order, that the DDL reached every partition once, and that the
// last event of every partition is the watermark.
func checkDelivery(t *testing.T, recs map[int32][]*kgo.Record, dec decoder, keys, updates int, ddlTs, watermark model.Ts) {
	t.Helper()
	keyPart := map[string]int32{}
	rows := 0
	for p, rs := range recs {
		var evs []event
		for _, r := range rs {
			evs = append(evs, dec(t, r)...)
		}
		last := map[string]int64{}
		ddls := 0
		for i, e := range evs {
			switch e.kind {
			case "watermark":
				if i != len(evs)-1 || e.ts != watermark {
					t.Errorf("partition %d: watermark %d at %d of %d, want %d last", p, e.ts, i, len(evs), watermark)
				}
				continue
			case "ddl":
				ddls++
				if e.ts != ddlTs {
					t.Errorf("partition %d: DDL at %d, want %d", p, e.ts, ddlTs)
				}
				continue
			}
			rows++
			if q, ok := keyPart[e.id]; ok && q != p {
				t.Fatalf("key %s in partitions %d and %d", e.id, q, p)
			}
			keyPart[e.id] = p
			prev, seen := last[e.id]
			want := map[model.Op]int64{model.OpInsert: 0, model.OpUpdate: prev + 1, model.OpDelete: int64(updates)}[e.op]
			if e.n == -1 && e.op == model.OpDelete { // a tombstone carries only the key
				e.n = want
			}
			if (e.op == model.OpInsert) == seen || e.n != want || e.ts >= ddlTs {
				t.Fatalf("partition %d key %s: %s n=%d at %d after n=%d: out of order", p, e.id, e.op, e.n, e.ts, prev)
			}
			last[e.id] = e.n
		}
		if ddls != 1 {
			t.Errorf("partition %d: %d DDL messages, want 1", p, ddls)
		}
	}
	if rows != keys*(updates+2) || len(keyPart) != keys {
		t.Fatalf("%d row events for %d keys, want %d for %d", rows, len(keyPart), keys*(updates+2), keys)
	}
}

// protocolCase is one protocol as the tests configure it: setup returns
// the URI parameters it needs and a decoder for its messages of
// usersSchema("shop", "users") (avro starts a schema registry).
type protocolCase struct {
	protocol string
	setup    func(t *testing.T) (params string, dec decoder)
}

func everyProtocol() []protocolCase {
	fixed := func(params string, dec decoder) func(t *testing.T) (string, decoder) {
		return func(*testing.T) (string, decoder) { return params, dec }
	}
	return []protocolCase{
		{ProtocolOpen, fixed("max-batch-size=8", decodeOpen)},
		{ProtocolCanalJSON, fixed("enable-tidb-extension=true", decodeCanal)},
		{ProtocolDebezium, fixed("enable-tidb-extension=true", decodeDebezium)},
		{ProtocolSimple, fixed("", decodeSimple)},
		{ProtocolAvro, func(t *testing.T) (string, decoder) {
			reg := avrotest.Start(t)
			return "enable-tidb-extension=true&schema-registry=" + reg.URL, avroDecoder(reg.URL, usersSchema("shop", "users"))
		}},
	}
}

func TestEveryProtocolDeliversRowsDDLAndWatermarks(t *testing.T) {
	for _, tc := range everyProtocol() {
		t.Run(tc.protocol, func(t *testing.T) {
			params, dec := tc.setup(t)
			tc := struct {
				protocol, params string
				dec              decoder
			}{tc.protocol, params, dec}
			c := startBroker(t)
			s := openSink(t, brokerURI(c, "cdc", fmt.Sprintf("protocol=%s&partition-num=3&%s", tc.protocol, tc.params)),
				WithDispatchers([]model.DispatchRule{{Matcher: []string{"*.*"}, Topic: "{schema}_{table}", Partition: model.PartitionIndexValue}}, false))
			sc := usersSchema("shop", "users")
			ts := openTable(t, s, sc.Table)
			ctx := testCtx(t)
			const keys, updates = 24, 3
			txns := keyedWorkload(sc, keys, updates, 1000)
			if err := ts.Write(ctx, txns); err != nil {
				t.Fatal(err)
			}
			end := txns[len(txns)-1].CommitTs
			if err := ts.Flush(ctx, end); err != nil {
				t.Fatal(err)
			}
			addColumnAndWatermark(t, ctx, s, sc.Table, end+1)
			recs := consume(t, c, "shop_users")
			if len(recs) != 3 {
				t.Fatalf("messages in %d partitions, want 3", len(recs))
			}
			checkDelivery(t, recs, tc.dec, keys, updates, end+1, end+1)
		})
	}
}

func snapshotRead(r *model.RowChange) *model.RowChange {
	r.Snapshot = true
	return r
}

// TestSnapshotReadsAreDebeziumReadsAndInsertsElsewhere: rows a source read
// by its snapshot reach Kafka as Debezium's op "r" (source.snapshot
// "true"), and as plain inserts in the protocols that have no such op;
// an insert streamed after them is a "c".
func TestSnapshotReadsAreDebeziumReadsAndInsertsElsewhere(t *testing.T) {
	for _, tc := range everyProtocol() {
		t.Run(tc.protocol, func(t *testing.T) {
			params, dec := tc.setup(t)
			c := startBroker(t)
			s := openSink(t, brokerURI(c, "shop_users", fmt.Sprintf("protocol=%s&partition-num=1&%s", tc.protocol, params)))
			sc := usersSchema("shop", "users")
			ts := openTable(t, s, sc.Table)
			ctx := testCtx(t)
			copied := &model.Txn{CommitTs: 100, StartTs: 100}
			for id := int64(1); id <= 3; id++ {
				copied.Rows = append(copied.Rows, snapshotRead(userRow(sc, model.OpInsert, 100, id, 0, "")))
			}
			streamed := &model.Txn{CommitTs: 110, StartTs: 109, Rows: []*model.RowChange{userRow(sc, model.OpInsert, 110, 4, 0, "new")}}
			if err := ts.Write(ctx, []*model.Txn{copied, streamed}); err != nil {
				t.Fatal(err)
			}
			if err := ts.Flush(ctx, 110); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range consume(t, c, "shop_users")[0] {
				for _, e := range dec(t, r) {
					if e.kind == "row" {
						got = append(got, fmt.Sprintf("%s %s read=%v", e.id, e.op, e.read))
					}
				}
			}
			debezium := tc.protocol == ProtocolDebezium
			want := []string{
				fmt.Sprintf("1 insert read=%v", debezium), fmt.Sprintf("2 insert read=%v", debezium), fmt.Sprintf("3 insert read=%v", debezium),
				"4 insert read=false",
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("rows %v, want %v", got, want)
			}
		})
	}
}

// The table sink encodes rows into buffers it reuses (appendRow); what it
// appends must be exactly the message encodeRow returns, after whatever
// the buffer already holds, and a nil key or tombstone stays nil.
func TestAppendedRowsAreTheEncodedMessages(t *testing.T) {
	reg := avrotest.Start(t)
	sc := usersSchema("shop", "users")
	rows := []*model.RowChange{
		userRow(sc, model.OpInsert, 100, 1, 0, "héllo"),
		userRow(sc, model.OpUpdate, 110, 1, 1, ""),
		userRow(sc, model.OpDelete, 120, 1, 1, "bye"),
		snapshotRead(userRow(sc, model.OpInsert, 90, 2, 0, "")),
	}
	for _, cfg := range []Config{
		{Protocol: ProtocolOpen, MaxBatchSize: 8},
		{Protocol: ProtocolCanalJSON, EnableTiDBExtension: true},
		{Protocol: ProtocolDebezium},
		{Protocol: ProtocolSimple},
		{Protocol: ProtocolAvro, SchemaRegistry: reg.URL},
		{Protocol: ProtocolAvro, SchemaRegistry: reg.URL, EnableTiDBExtension: true},
	} {
		p, err := newProtocol(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		// canal-json's ts, debezium's ts_ms and simple's buildTs are the
		// encoding's wall clock: fixed, so that two encodings compare.
		now := func() time.Time { return time.UnixMilli(1707103832957) }
		switch p.(type) {
		case canalProtocol:
			p = canalProtocol{enc: canal.NewEncoder(canal.Options{EnableTiDBExtension: true, Now: now})}
		case debeziumProtocol:
			p = debeziumProtocol{enc: debezium.NewEncoder(debezium.Options{Now: now})}
		case simpleProtocol:
			p = simpleProtocol{enc: simple.NewEncoder(now)}
		}
		for _, r := range rows {
			wantK, wantV, err := p.encodeRow(testCtx(t), "shop_users", r, rowOpts{})
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte("dirty")
			kd := append(make([]byte, 0, 64), prefix...)
			vd := append(make([]byte, 0, 64), prefix...)
			k, v, err := p.appendRow(testCtx(t), "shop_users", kd, vd, r)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				what      string
				got, want []byte
			}{{"key", k, wantK}, {"value", v, wantV}} {
				switch {
				case c.want == nil && c.got != nil:
					t.Errorf("%s %s: appended %s %.60q, want nil", cfg.Protocol, r.Op, c.what, c.got)
				case c.want != nil && !bytes.Equal(c.got, append(append([]byte(nil), prefix...), c.want...)):
					t.Errorf("%s %s: appended %s %.80q, want the prefix then %.80q", cfg.Protocol, r.Op, c.what, c.got, c.want)
				}
			}
		}
	}
}
