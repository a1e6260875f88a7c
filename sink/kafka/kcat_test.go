package kafka

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/model"
)

// TestKcatReadsCanalJSONPerPartition writes two tables through dispatchers
// into a 3-partition topic each, with a DDL and a checkpoint, and checks
// what kcat (librdkafka, code we did not write) reads back, partition by
// partition.
func TestKcatReadsCanalJSONPerPartition(t *testing.T) {
	kcatPath(t)
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&enable-tidb-extension=true&partition-num=3"),
		WithDispatchers([]model.DispatchRule{{Matcher: []string{"shop.*"}, Topic: "{schema}_{table}", Partition: model.PartitionIndexValue}}, false))
	ctx := testCtx(t)
	const keys, updates = 30, 3
	var last model.Ts
	for i, name := range []string{"users", "orders"} {
		sc := usersSchema("shop", name)
		ts := openTable(t, s, sc.Table)
		txns := keyedWorkload(sc, keys, updates, model.Ts(1000*(i+1)))
		if err := ts.Write(ctx, txns); err != nil {
			t.Fatal(err)
		}
		last = max(last, txns[len(txns)-1].CommitTs)
		if err := ts.Flush(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	ddl := &model.DDLEvent{CommitTs: last + 1, Kind: model.DDLAddColumn, Schema: "shop", Query: "ALTER TABLE `shop`.`users` ADD COLUMN `z` INT",
		Tables: []model.TableName{{Schema: "shop", Table: "users"}}}
	if err := s.EmitDDL(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	checkpoint := last + 2
	if err := s.EmitCheckpoint(ctx, checkpoint); err != nil {
		t.Fatal(err)
	}

	for _, table := range []string{"users", "orders"} {
		topic := "shop_" + table
		lines := runKcat(t, c, topic)
		perPart := map[int32][]kcatLine{}
		for _, l := range lines {
			perPart[l.partition] = append(perPart[l.partition], l)
		}
		if len(perPart) != 3 {
			t.Fatalf("%s: kcat saw %d partitions, want 3", topic, len(perPart))
		}
		// franz-go's consumer must see the same per-partition counts.
		if got, want := countLines(perPart), counts(consume(t, c, topic)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: kcat counts %v, franz-go counts %v", topic, got, want)
		}
		keyPart := map[string]int32{}
		rows := 0
		for p, ls := range perPart {
			lastN := map[string]int{}
			sawDDL := 0
			for i, l := range ls {
				if l.key != "" {
					t.Errorf("%s partition %d: canal-json message has key %q", topic, p, l.key)
				}
				m, err := canal.Decode([]byte(l.value))
				if err != nil {
					t.Fatalf("%s partition %d: %v: %s", topic, p, err, l.value)
				}
				switch m.Kind() {
				case canal.KindWatermark:
					if i != len(ls)-1 || m.TiDB.WatermarkTs != checkpoint {
						t.Errorf("%s partition %d: watermark %d at %d of %d, want %d last", topic, p, m.TiDB.WatermarkTs, i, len(ls), checkpoint)
					}
					continue
				case canal.KindDDL:
					sawDDL++
					if table != "users" || m.SQL != ddl.Query || m.TiDB.CommitTs != ddl.CommitTs {
						t.Errorf("%s partition %d: unexpected DDL %+v", topic, p, m)
					}
					continue
				}
				rows++
				if m.Database != "shop" || m.Table != table || fmt.Sprint(m.PKNames) != "[id]" || m.TiDB == nil || m.TiDB.CommitTs == 0 {
					t.Fatalf("%s partition %d: fields %s", topic, p, l.value)
				}
				id := *m.Data[0]["id"]
				if q, ok := keyPart[id]; ok && q != p {
					t.Fatalf("%s: key %s in partitions %d and %d", topic, id, q, p)
				}
				keyPart[id] = p
				n, _ := strconv.Atoi(*m.Data[0]["n"])
				want := map[string]int{"INSERT": 0, "UPDATE": lastN[id] + 1, "DELETE": updates}[m.Type]
				if (m.Type == "INSERT") == hasKey(lastN, id) || n != want {
					t.Fatalf("%s partition %d key %s: %s with n=%d after n=%d: out of order", topic, p, id, m.Type, n, lastN[id])
				}
				lastN[id] = n
				if m.Type == "UPDATE" && (len(m.Old) != 1 || *m.Old[0]["n"] != strconv.Itoa(n-1)) {
					t.Errorf("%s: update's old image %s", topic, l.value)
				}
			}
			if want := map[string]int{"users": 1, "orders": 0}[table]; sawDDL != want {
				t.Errorf("%s partition %d: %d DDL messages, want %d", topic, p, sawDDL, want)
			}
		}
		if rows != keys*(updates+2) || len(keyPart) != keys {
			t.Fatalf("%s: %d row messages for %d keys, want %d for %d", topic, rows, len(keyPart), keys*(updates+2), keys)
		}
	}
	// The default topic got the watermark too (on its partitions).
	for _, l := range runKcat(t, c, "cdc") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l.value), &m); err != nil || m["type"] != canal.WatermarkType {
			t.Errorf("default topic: %s", l.value)
		}
	}
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

func countLines(m map[int32][]kcatLine) map[int32]int {
	out := map[int32]int{}
	for p, ls := range m {
		out[p] = len(ls)
	}
	return out
}
