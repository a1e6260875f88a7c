package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/codec/avro"
	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/codec/debezium"
	"github.com/raftcdc/raftcdc/codec/open"
	"github.com/raftcdc/raftcdc/codec/simple"
	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/kafka"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// kafkaReader is a consumer that rebuilds the tables from a Kafka sink's
// topics: it reads every topic of the broker (a verification broker holds
// one changefeed's output), decodes each message in the sink URI's
// protocol against the upstream schema of its table at its commit ts, and
// keeps per key the change with the highest commit ts at or below the
// checkpoint — robust to the replays a failover causes (avro needs the
// TiDB extension, whose delete records carry their commit ts). It also
// checks per-key order in every partition (partitionOrder: replays are
// told from reorderings) and that every DDL reached the topics.
type kafkaReader struct {
	cfg  *kafka.Config
	hist *datagen.History
	flt  *filter.Filter
	p    StateParams
	cp   model.Ts
	reg  *avro.Registry
	adec *avro.Decoder
}

func openKafka(ctx context.Context, p StateParams, hist *datagen.History, flt *filter.Filter) (*kafkaReader, error) {
	cfg, err := kafka.ParseURI(p.Downstream)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	switch cfg.Protocol {
	case kafka.ProtocolCanalJSON, kafka.ProtocolAvro:
		if !cfg.EnableTiDBExtension {
			return nil, fmt.Errorf("verify: %s messages carry commit ts only with the TiDB extension; the sink URI needs enable-tidb-extension=true to be verified at a checkpoint", cfg.Protocol)
		}
	}
	if cfg.LargeMessageHandle != kafka.LargeMessageNone {
		return nil, fmt.Errorf("verify: large-message-handle-option=%s sends only keys for large rows; verify a changefeed without it", cfg.LargeMessageHandle)
	}
	r := &kafkaReader{cfg: cfg, hist: hist, flt: flt, p: p}
	if cfg.Protocol == kafka.ProtocolAvro {
		r.reg = avro.NewRegistry(cfg.SchemaRegistry, nil)
		r.adec = avro.NewDecoder(avro.Options{DecimalString: cfg.AvroDecimalHandlingMode == "string",
			BigintUnsignedString: cfg.AvroBigintUnsignedHandling == "string", EnableTiDBExtension: cfg.EnableTiDBExtension}, r.reg)
	}
	return r, nil
}

// kafkaStall is how long the reader waits for the next message before it
// reports the broker as stalled.
const kafkaStall = 90 * time.Second

func (r *kafkaReader) setCheckpoint(t model.Ts) { r.cp = t }
func (r *kafkaReader) close() error             { return nil }

// kafkaEvent is one decoded message's content.
type kafkaEvent struct {
	ddl       bool
	watermark bool
	ts        model.Ts // 0: unknown (avro tombstone)
	row       *model.RowChange
}

func (r *kafkaReader) load(ctx context.Context, want []upstreamTable, rep *StateReport) (map[model.TableID]*downTable, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.cfg.Brokers...), kgo.FetchMaxBytes(16<<20), kgo.FetchMaxPartitionBytes(4<<20),
		kgo.DialTimeout(r.cfg.DialTimeout))
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: listing the topics of %v: %w", r.cfg.Brokers, err)
	}
	names := topics.Names()
	if len(names) == 0 {
		return nil, fmt.Errorf("verify: the broker %v has no topics", r.cfg.Brokers)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	want64 := map[string]map[int32]int64{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		if want64[o.Topic] == nil {
			want64[o.Topic] = map[int32]int64{}
		}
		want64[o.Topic][o.Partition] = o.Offset
		total += o.Offset
	})
	offsets := map[string]map[int32]kgo.Offset{}
	for t, ps := range want64 {
		offsets[t] = map[int32]kgo.Offset{}
		for p := range ps {
			offsets[t][p] = kgo.NewOffset().AtStart()
		}
	}
	cl.AddConsumePartitions(offsets)
	recs := map[string]map[int32][]*kgo.Record{}
	got := int64(0)
	for got < total {
		// A loaded machine (CI runs several packages' servers at once)
		// can leave a broker silent for a while; give up only after a
		// long stall, and fetch in pieces small enough to arrive often.
		pctx, cancel := context.WithTimeout(ctx, kafkaStall)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("verify: reading the topics: %w", err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded {
				ferr = fmt.Errorf("verify: reading %s partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		n := 0
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Offset >= want64[rec.Topic][rec.Partition] {
				return
			}
			if recs[rec.Topic] == nil {
				recs[rec.Topic] = map[int32][]*kgo.Record{}
			}
			recs[rec.Topic][rec.Partition] = append(recs[rec.Topic][rec.Partition], rec)
			got++
			n++
		})
		if n == 0 && fs.Empty() && pctx.Err() != nil {
			return nil, fmt.Errorf("verify: read %d of %d messages from %v, then nothing for %s", got, total, r.cfg.Brokers, kafkaStall)
		}
	}

	state := map[model.TableID]map[uint64]*keyEvent{}
	ddls := map[model.Ts]int{}
	names2 := map[string]model.TableID{}
	lookup := func(schema, table string, ts model.Ts) (model.TableID, *model.TableSchema) {
		name := schema + "." + table
		if id, ok := names2[name]; ok {
			if n, err := r.hist.Name(id, ts); err == nil && n.Schema == schema && n.Table == table {
				s, err := r.hist.SchemaAt(id, ts)
				if err == nil {
					return id, s
				}
			}
		}
		for _, tn := range r.hist.TablesAt(ts) {
			if tn.Schema == schema && tn.Table == table {
				s, err := r.hist.SchemaAt(tn.ID, ts)
				if err == nil {
					names2[name] = tn.ID
					return tn.ID, s
				}
			}
		}
		return 0, nil
	}
	for _, topic := range sortedKeys(recs) {
		for _, p := range sortedParts(recs[topic]) {
			order := newPartitionOrder()
			for _, rec := range recs[topic][p] {
				evs, err := r.decode(ctx, rec, lookup)
				if err != nil {
					rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s partition %d offset %d: %v", topic, p, rec.Offset, err))
					continue
				}
				for _, ev := range evs {
					switch {
					case ev.watermark:
						continue
					case ev.ddl:
						ddls[ev.ts]++
						continue
					}
					rep.Events++
					row := ev.row
					id, _ := lookup(row.Schema.Table.Schema, row.Schema.Table.Table, max(ev.ts, 1))
					key, ok := datagen.KeyOf(row.Schema, row.Image())
					if !ok {
						rep.SchemaDiffs = append(rep.SchemaDiffs, fmt.Sprintf("%s partition %d offset %d: a row without a datagen key", topic, p, rec.Offset))
						continue
					}
					// Order is the partition's, whatever the checkpoint:
					// a consumer reads the messages after it too.
					if ev.ts != 0 {
						kk := fmt.Sprintf("%d/%d", id, key)
						switch newest, c := order.observe(kk, ev.ts, rowDigest(row)); c {
						case orderReplayed:
							rep.OutOfOrder++
							rep.Replayed++
						case orderReordered:
							rep.OutOfOrder++
							rep.Reordered++
							if len(rep.ReorderedExamples) < MaxExamples {
								rep.ReorderedExamples = append(rep.ReorderedExamples, fmt.Sprintf("%s partition %d offset %d: table %d key %d at commit ts %d, first delivered after its version at %d",
									topic, p, rec.Offset, id, key, ev.ts, newest))
							}
						}
					}
					if ev.ts > r.cp {
						rep.AfterCheckpoint++
						continue
					}
					ks := state[id]
					if ks == nil {
						ks = map[uint64]*keyEvent{}
						state[id] = ks
					}
					cur := ks[key]
					switch {
					case cur != nil && ev.ts <= cur.ts:
						rep.Duplicates++
					case row.Op == model.OpDelete:
						ks[key] = &keyEvent{ts: ev.ts}
					default:
						ks[key] = &keyEvent{ts: ev.ts, img: row.After, schema: row.Schema}
					}
				}
			}
		}
	}

	// Every DDL in (start, checkpoint] of a replicated table must have
	// reached the topics (DDLs go to every partition of a topic, so one
	// DDL is many messages).
	expected := map[model.Ts]bool{}
	r.hist.DDLs(r.p.StartTs, r.cp, func(ddl *model.DDLEvent) bool {
		if len(ddl.Tables) > 0 && !r.flt.Match(ddl.Tables[0]) {
			return true
		}
		expected[ddl.CommitTs] = true
		rep.DDLs++
		if ddls[ddl.CommitTs] > 0 {
			rep.DDLsFound++
		} else {
			rep.DDLsMissing++
			rep.addDDL(fmt.Sprintf("missing: %s", ddl))
		}
		return true
	})
	for ts := range ddls {
		if ts > r.p.StartTs && ts <= r.cp && !expected[ts] {
			rep.DDLsExtra++
			rep.addDDL(fmt.Sprintf("extra DDL message at %d", ts))
		}
	}

	out := map[model.TableID]*downTable{}
	wantIDs := map[model.TableID]upstreamTable{}
	for _, ut := range want {
		wantIDs[ut.name.ID] = ut
	}
	for id, ks := range state {
		ut, ok := wantIDs[id]
		if !ok {
			if _, err := r.hist.SchemaAt(id, r.cp); err != nil {
				continue // dropped or truncated by the checkpoint: history
			}
			for k, e := range ks {
				if e.img != nil {
					name, _ := r.hist.Name(id, e.ts)
					rep.addExtra(RowKey{Table: name, Key: k})
				}
			}
			continue
		}
		dt := &downTable{name: ut.name, rows: map[uint64][]model.Value{}}
		for k, e := range ks {
			if e.img != nil {
				dt.rows[k] = alignImage(e.img, e.schema, ut.schema)
			}
		}
		out[id] = dt
	}
	return out, nil
}

// partitionOrder checks per-key order within one partition. At-least-once
// delivery replays rows after a failover (a new capture restarts from the
// checkpoint), so a key's older versions may come again after newer ones;
// that is no reordering as long as each such message is an exact copy —
// same commit ts, same content — of a version the partition delivered
// earlier for that key. A version first delivered after a newer one of its
// key is a reordering: a consumer applying the partition in order would end
// with the older version, and no failover explains it (a restarted capture
// writes from the checkpoint in commit order, so any version it writes
// after a newer one it wrote before was written by it before too).
type partitionOrder struct {
	newest map[string]model.Ts
	seen   map[orderVersion]bool
}

type orderVersion struct {
	key     string
	ts      model.Ts
	content uint64
}

type orderClass int

const (
	orderInOrder orderClass = iota
	orderReplayed
	orderReordered
)

func newPartitionOrder() *partitionOrder {
	return &partitionOrder{newest: map[string]model.Ts{}, seen: map[orderVersion]bool{}}
}

// observe classifies the partition's next message for key: at ts, with a
// digest of its content. It returns the newest commit ts the key had
// before it.
func (o *partitionOrder) observe(key string, ts model.Ts, content uint64) (model.Ts, orderClass) {
	v := orderVersion{key: key, ts: ts, content: content}
	newest, known := o.newest[key]
	c := orderInOrder
	if known && ts < newest {
		c = orderReordered
		if o.seen[v] {
			c = orderReplayed
		}
	}
	o.seen[v] = true
	if !known || ts > newest {
		o.newest[key] = ts
	}
	return newest, c
}

// rowDigest is a hash of what a row change says (its operation and both
// images), to tell an exact copy from another change at the same ts.
func rowDigest(row *model.RowChange) uint64 {
	h := fnv.New64a()
	row.HashContent(h)
	return h.Sum64()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedParts[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

type tableLookup func(schema, table string, ts model.Ts) (model.TableID, *model.TableSchema)

// decode turns one message into events, rows typed against the upstream
// schema of their table at their commit ts.
func (r *kafkaReader) decode(ctx context.Context, rec *kgo.Record, lookup tableLookup) ([]kafkaEvent, error) {
	schemaOf := func(db, table string, ts model.Ts) (*model.TableSchema, error) {
		_, s := lookup(db, table, ts)
		if s == nil {
			return nil, fmt.Errorf("no upstream table %s.%s at %d", db, table, ts)
		}
		return s, nil
	}
	rowOf := func(s *model.TableSchema, op model.Op, ts model.Ts, before, after []model.Value) kafkaEvent {
		return kafkaEvent{ts: ts, row: &model.RowChange{Schema: s, CommitTs: ts, Op: op, Before: before, After: after}}
	}
	switch r.cfg.Protocol {
	case kafka.ProtocolCanalJSON:
		m, err := canal.Decode(rec.Value)
		if err != nil {
			return nil, err
		}
		switch m.Kind() {
		case canal.KindWatermark:
			return []kafkaEvent{{watermark: true}}, nil
		case canal.KindDDL:
			return []kafkaEvent{{ddl: true, ts: m.CommitTs()}}, nil
		}
		s, err := schemaOf(m.Database, m.Table, m.CommitTs())
		if err != nil {
			return nil, err
		}
		row, err := m.Row(s)
		if err != nil {
			return nil, err
		}
		return []kafkaEvent{{ts: row.CommitTs, row: row}}, nil
	case kafka.ProtocolOpen:
		evs, err := open.Decode(rec.Key, rec.Value)
		if err != nil {
			return nil, err
		}
		var out []kafkaEvent
		for _, e := range evs {
			switch e.Key.Type {
			case open.TypeResolved:
				out = append(out, kafkaEvent{watermark: true})
				continue
			case open.TypeDDL:
				out = append(out, kafkaEvent{ddl: true, ts: e.Key.Ts})
				continue
			}
			s, err := schemaOf(e.Key.Schema, e.Key.Table, e.Key.Ts)
			if err != nil {
				return nil, err
			}
			img := func(m map[string]open.Column) ([]model.Value, error) {
				if m == nil {
					return nil, nil
				}
				out := make([]model.Value, len(s.Columns))
				for i, c := range s.Columns {
					col, ok := m[c.Name]
					if !ok {
						continue
					}
					v, err := open.DecodeValue(col)
					if err != nil {
						return nil, fmt.Errorf("column %s: %w", c.Name, err)
					}
					out[i] = v
				}
				return out, nil
			}
			op, before, after := model.OpInsert, e.Row.Prev, e.Row.Update
			switch {
			case e.Row.Delete != nil:
				op, before, after = model.OpDelete, e.Row.Delete, nil
			case e.Row.Prev != nil:
				op = model.OpUpdate
			}
			b, err := img(before)
			if err != nil {
				return nil, err
			}
			a, err := img(after)
			if err != nil {
				return nil, err
			}
			out = append(out, rowOf(s, op, e.Key.Ts, b, a))
		}
		return out, nil
	case kafka.ProtocolDebezium:
		d, err := debezium.Decode(rec.Value)
		if err != nil {
			return nil, err
		}
		p := d.Payload
		switch {
		case p.Op == "m":
			return []kafkaEvent{{watermark: true}}, nil
		case p.DDL != "":
			return []kafkaEvent{{ddl: true, ts: p.Source.CommitTs}}, nil
		}
		s, err := schemaOf(p.Source.DB, p.Source.Table, p.Source.CommitTs)
		if err != nil {
			return nil, err
		}
		b, err := debezium.Image(s, p.Before)
		if err != nil {
			return nil, err
		}
		a, err := debezium.Image(s, p.After)
		if err != nil {
			return nil, err
		}
		op, _, err := p.RowOp()
		if err != nil {
			return nil, err
		}
		return []kafkaEvent{rowOf(s, op, p.Source.CommitTs, b, a)}, nil
	case kafka.ProtocolSimple:
		m, err := simple.Decode(rec.Value)
		if err != nil {
			return nil, err
		}
		var op model.Op
		switch m.Type {
		case "WATERMARK", "BOOTSTRAP":
			return []kafkaEvent{{watermark: true}}, nil
		case "INSERT":
			op = model.OpInsert
		case "UPDATE":
			op = model.OpUpdate
		case "DELETE":
			op = model.OpDelete
		default:
			return []kafkaEvent{{ddl: true, ts: m.CommitTs}}, nil
		}
		s, err := schemaOf(m.Database, m.Table, m.CommitTs)
		if err != nil {
			return nil, err
		}
		if m.SchemaVersion != 0 && m.SchemaVersion != s.Version {
			return nil, fmt.Errorf("%s.%s at %d: schema version %d, upstream has %d", m.Database, m.Table, m.CommitTs, m.SchemaVersion, s.Version)
		}
		b, err := simple.Image(s, m.Old)
		if err != nil {
			return nil, err
		}
		a, err := simple.Image(s, m.Data)
		if err != nil {
			return nil, err
		}
		return []kafkaEvent{rowOf(s, op, m.CommitTs, b, a)}, nil
	case kafka.ProtocolAvro:
		if len(rec.Value) > 0 && rec.Value[0] != avro.RecordMarker {
			switch rec.Value[0] {
			case avro.DDLMarker:
				var m avro.DDL
				if err := json.Unmarshal(rec.Value[1:], &m); err != nil {
					return nil, err
				}
				return []kafkaEvent{{ddl: true, ts: m.CommitTs}}, nil
			case avro.WatermarkMarker:
				return []kafkaEvent{{watermark: true}}, nil
			}
			return nil, fmt.Errorf("avro: unknown marker byte %d", rec.Value[0])
		}
		// The topic names the table (one topic per table for avro), as it
		// was named when the row was written.
		db, table, ok := strings.Cut(rec.Topic, "_")
		if !ok {
			return nil, fmt.Errorf("avro: topic %s does not name a table as {schema}_{table}", rec.Topic)
		}
		if rec.Value == nil {
			// A tombstone follows a delete record (with the extension,
			// which verification needs) only when the before image lacked
			// a NOT NULL column: it cannot be placed in time.
			return nil, fmt.Errorf("avro: a tombstone without a commit ts cannot be verified")
		}
		// The commit ts is inside the record: read it with the writer
		// schema, then decode against the version the name meant at that
		// ts, which also checks the writer schema is that version's.
		fields, err := r.adec.DecodeFields(ctx, rec.Value)
		if err != nil {
			return nil, err
		}
		cts, ok := fields[avro.FieldCommitTs]
		if !ok || cts.Kind != model.ValueInt {
			return nil, fmt.Errorf("avro: record without %s", avro.FieldCommitTs)
		}
		ts := model.Ts(cts.I)
		s, err := schemaOf(db, table, ts)
		if err != nil {
			return nil, err
		}
		d, err := r.adec.DecodeValue(ctx, s, rec.Value)
		if err != nil {
			return nil, fmt.Errorf("at %d: %w", ts, err)
		}
		switch d.Extension[avro.FieldOp].S {
		case "c":
			return []kafkaEvent{rowOf(s, model.OpInsert, ts, nil, d.Image)}, nil
		case "u":
			return []kafkaEvent{rowOf(s, model.OpUpdate, ts, nil, d.Image)}, nil
		case "d":
			return []kafkaEvent{rowOf(s, model.OpDelete, ts, d.Image, nil)}, nil
		}
		return nil, fmt.Errorf("avro: _tidb_op %q", d.Extension[avro.FieldOp].S)
	}
	return nil, fmt.Errorf("protocol %s cannot be verified", r.cfg.Protocol)
}
