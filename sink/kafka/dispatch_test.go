package kafka

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/model"
)

// Dispatcher rules, each shown by where rows land in a 4-partition topic:
// the tests write canal-json (one row a message, with its commit ts) and
// read every partition back.

const dispatchPartitions = 4

// landing is one row message as a consumer found it.
type landing struct {
	partition      int32
	schemaAndTable string
	id, email, n   string
	ts             model.Ts
}

// landings reads every row message of topic.
func landings(t *testing.T, c *kfake.Cluster, topic string) []landing {
	t.Helper()
	var out []landing
	for p, rs := range consume(t, c, topic) {
		for _, r := range rs {
			m, err := canal.Decode(r.Value)
			if err != nil {
				t.Fatalf("%s partition %d offset %d: %v", topic, p, r.Offset, err)
			}
			if m.Kind() != canal.KindRow {
				continue
			}
			d := m.Data[0]
			out = append(out, landing{partition: p, schemaAndTable: m.Database + "." + m.Table, ts: m.CommitTs(),
				id: *d["id"], email: *d["email"], n: *d["n"]})
		}
	}
	return out
}

// dispatchSink opens a canal-json sink whose topics get 4 partitions.
func dispatchSink(t *testing.T, c *kfake.Cluster, rules ...model.DispatchRule) *Sink {
	t.Helper()
	return openSink(t, brokerURI(c, "cdc", fmt.Sprintf("protocol=canal-json&enable-tidb-extension=true&partition-num=%d", dispatchPartitions)),
		WithDispatchers(rules, false))
}

// writeAll writes the transactions to a table sink of their table and
// flushes them, returning the error of either.
func writeAll(t *testing.T, s *Sink, table model.TableName, txns []*model.Txn) error {
	t.Helper()
	ts := openTable(t, s, table)
	ctx := testCtx(t)
	if err := ts.Write(ctx, txns); err != nil {
		return err
	}
	return ts.Flush(ctx, txns[len(txns)-1].CommitTs)
}

func mustWriteAll(t *testing.T, s *Sink, table model.TableName, txns []*model.Txn) {
	t.Helper()
	if err := writeAll(t, s, table, txns); err != nil {
		t.Fatalf("writing %s: %v", table, err)
	}
}

// partitionsBy groups the landings by a value and returns, for each value,
// the partitions its rows landed in.
func partitionsBy(ls []landing, key func(landing) string) map[string]map[int32]bool {
	out := map[string]map[int32]bool{}
	for _, l := range ls {
		k := key(l)
		if out[k] == nil {
			out[k] = map[int32]bool{}
		}
		out[k][l.partition] = true
	}
	return out
}

func partitionSet(m map[int32]bool) []int32 {
	var ps []int32
	for p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

// usedPartitions is how many partitions the landings spread over.
func usedPartitions(ls []landing) int {
	seen := map[int32]bool{}
	for _, l := range ls {
		seen[l.partition] = true
	}
	return len(seen)
}

func TestTsDispatcherPutsACommitTsInThePartitionItsTsSelects(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c, model.DispatchRule{Matcher: []string{"shop.*"}, Partition: model.PartitionTs})
	sc := usersSchema("shop", "users")
	// Eight consecutive commit ts of five rows each (different keys):
	// every partition is some ts's.
	var txns []*model.Txn
	for i := 0; i < 8; i++ {
		ts := model.Ts(1000 + i)
		txn := &model.Txn{CommitTs: ts, StartTs: ts - 1}
		for k := 0; k < 5; k++ {
			id := int64(i*5 + k + 1)
			txn.Rows = append(txn.Rows, userRow(sc, model.OpInsert, ts, id, uint64(id), ""))
		}
		txns = append(txns, txn)
	}
	mustWriteAll(t, s, sc.Table, txns)
	ls := landings(t, c, "cdc")
	if len(ls) != 40 {
		t.Fatalf("%d rows landed, want 40", len(ls))
	}
	for ts, ps := range partitionsBy(ls, func(l landing) string { return fmt.Sprint(l.ts) }) {
		n, _ := strconv.ParseUint(ts, 10, 64)
		if want := int32(n % dispatchPartitions); len(ps) != 1 || !ps[want] {
			t.Errorf("commit ts %s landed in partitions %v, want only %d (ts mod %d)", ts, partitionSet(ps), want, dispatchPartitions)
		}
	}
	if n := usedPartitions(ls); n != dispatchPartitions {
		t.Errorf("eight commit ts spread over %d partitions, want all %d", n, dispatchPartitions)
	}
}

// "table" and "default" (and a table no rule selects) keep a table in one
// partition, the same one under either rule, and different tables spread.
func TestTableAndDefaultDispatchersKeepATableInOnePartition(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c,
		model.DispatchRule{Matcher: []string{"shop.*"}, Partition: model.PartitionTable},
		model.DispatchRule{Matcher: []string{"shop2.*"}, Partition: model.PartitionDefault},
		// index-value on tables of the other schema would spread rows; the
		// rule must not apply to shop3, which no rule selects.
		model.DispatchRule{Matcher: []string{"other.*"}, Partition: model.PartitionIndexValue})
	names := []string{"users", "orders", "items", "carts", "invoices", "payments"}
	for _, schema := range []string{"shop", "shop2", "shop3"} {
		for i, name := range names {
			sc := usersSchema(schema, name)
			mustWriteAll(t, s, sc.Table, keyedWorkload(sc, 8, 1, model.Ts(1000*(i+1))))
		}
	}
	ls := landings(t, c, "cdc")
	if len(ls) != 3*len(names)*8*3 {
		t.Fatalf("%d rows landed, want %d", len(ls), 3*len(names)*8*3)
	}
	byTable := partitionsBy(ls, func(l landing) string { return l.schemaAndTable })
	tablePartition := map[string]int32{}
	for table, ps := range byTable {
		if len(ps) != 1 {
			t.Fatalf("table %s landed in partitions %v, want one", table, partitionSet(ps))
		}
		tablePartition[table] = partitionSet(ps)[0]
	}
	// The rule hashes the table's name: schema and table together.
	spread := map[int32]bool{}
	for _, name := range names {
		spread[tablePartition["shop."+name]] = true
	}
	if len(spread) < 2 {
		t.Errorf("six tables all landed in partition %v: the table rule does not spread tables", partitionSet(spread))
	}
	for _, name := range names {
		if p, q := tablePartition["shop."+name], tablePartition["shop2."+name]; p != hashTable(model.TableName{Schema: "shop", Table: name}, dispatchPartitions) ||
			q != hashTable(model.TableName{Schema: "shop2", Table: name}, dispatchPartitions) {
			t.Errorf("table %s: partition %d under table and %d under default, not what the table rule computes", name, p, q)
		}
		if p, q := tablePartition["shop2."+name], tablePartition["shop3."+name]; q != hashTable(model.TableName{Schema: "shop3", Table: name}, dispatchPartitions) {
			t.Errorf("shop3.%s (no rule) landed in %d, want the default rule's partition (shop2's is %d)", name, q, p)
		}
	}
}

// columns routes by the named columns' values: rows with equal values
// share a partition whatever their key, and the column names match
// without case, as MySQL's do.
func TestColumnsDispatcherKeepsEqualColumnValuesInOnePartition(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c, model.DispatchRule{Matcher: []string{"shop.*"}, Partition: model.PartitionColumns, Columns: []string{"N", "note"}})
	sc := usersSchema("shop", "users")
	// 48 keys, n and note from id mod 6: six groups of eight keys.
	var txns []*model.Txn
	for i := 0; i < 6; i++ {
		ts := model.Ts(1000 + 10*i)
		txn := &model.Txn{CommitTs: ts, StartTs: ts - 1}
		for k := 0; k < 8; k++ {
			id := int64(i*8 + k + 1)
			g := uint64(id % 6)
			txn.Rows = append(txn.Rows, userRow(sc, model.OpInsert, ts, id, g, fmt.Sprintf("group %d", g)))
		}
		txns = append(txns, txn)
	}
	mustWriteAll(t, s, sc.Table, txns)
	ls := landings(t, c, "cdc")
	if len(ls) != 48 {
		t.Fatalf("%d rows landed, want 48", len(ls))
	}
	groups := partitionsBy(ls, func(l landing) string { return l.n })
	if len(groups) != 6 {
		t.Fatalf("%d groups of n, want 6", len(groups))
	}
	for n, ps := range groups {
		if len(ps) != 1 {
			t.Errorf("rows with n=%s landed in partitions %v, want one", n, partitionSet(ps))
		}
	}
	if n := usedPartitions(ls); n < 3 {
		t.Errorf("six column values landed in %d partitions: the rule does not spread", n)
	}
}

// Values that differ only in the high bits of a byte ('a', 'e', 'i' ...
// share their low two bits) must still spread over four partitions: the
// rules' hash once kept only the low bits of every byte modulo a power of
// two, and sent all of these to one partition.
func TestColumnsDispatcherSpreadsValuesThatDifferInHighBits(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c, model.DispatchRule{Matcher: []string{"shop.*"}, Partition: model.PartitionColumns, Columns: []string{"email"}})
	sc := usersSchema("shop", "accounts")
	txn := &model.Txn{CommitTs: 1000, StartTs: 999}
	for i, ch := range "aeimquy" {
		r := userRow(sc, model.OpInsert, 1000, int64(i+1), 0, "")
		r.After[1] = model.StringValue("user-" + string(ch))
		txn.Rows = append(txn.Rows, r)
	}
	mustWriteAll(t, s, sc.Table, []*model.Txn{txn})
	ls := landings(t, c, "cdc")
	if len(ls) != 7 {
		t.Fatalf("%d rows landed, want 7", len(ls))
	}
	if n := usedPartitions(ls); n < 3 {
		t.Fatalf("seven emails landed in %d of %d partitions: the hash ignores the high bits of bytes", n, dispatchPartitions)
	}
}

func TestColumnsDispatcherNamingAMissingColumnFailsNamingItAndTheTable(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c, model.DispatchRule{Matcher: []string{"shop.*"}, Partition: model.PartitionColumns, Columns: []string{"n", "region"}})
	sc := usersSchema("shop", "users")
	err := writeAll(t, s, sc.Table, keyedWorkload(sc, 4, 0, 1000))
	if err == nil || !strings.Contains(err.Error(), `column "region"`) || !strings.Contains(err.Error(), "table shop.users") {
		t.Fatalf("got %v, want an error naming column region and table shop.users", err)
	}
	if n := sumCounts(endOffsets(t, c, "cdc")); n != 0 {
		t.Fatalf("%d messages reached the topic", n)
	}
}

// index-value with a named index routes by that index's columns, not the
// primary key: rows of different ids with one email share a partition
// (as a user deleted and created again under a new id), while the same
// rows routed by the primary key spread.
func TestIndexValueDispatcherWithANamedIndexRoutesByThatIndex(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c,
		model.DispatchRule{Matcher: []string{"shop.by_email"}, Topic: "by_email", Partition: model.PartitionIndexValue, Index: "UK_EMAIL"},
		model.DispatchRule{Matcher: []string{"shop.by_pk"}, Topic: "by_pk", Partition: model.PartitionIndexValue})
	for _, name := range []string{"by_email", "by_pk"} {
		sc := usersSchema("shop", name)
		// Each of six emails is held by four ids in turn: inserted,
		// deleted, and inserted again under the next id.
		var txns []*model.Txn
		ts := model.Ts(1000)
		for gen := 0; gen < 4; gen++ {
			ts += 10
			txn := &model.Txn{CommitTs: ts, StartTs: ts - 1}
			for e := 0; e < 6; e++ {
				id := int64(gen*6 + e + 1)
				if gen > 0 {
					old := userRow(sc, model.OpDelete, ts, id-6, 0, "")
					old.Before[1] = model.StringValue(fmt.Sprintf("user%d@x", e))
					txn.Rows = append(txn.Rows, old)
				}
				r := userRow(sc, model.OpInsert, ts, id, 0, "")
				r.After[1] = model.StringValue(fmt.Sprintf("user%d@x", e))
				txn.Rows = append(txn.Rows, r)
			}
			txns = append(txns, txn)
		}
		mustWriteAll(t, s, sc.Table, txns)
	}
	byEmail := landings(t, c, "by_email")
	if len(byEmail) != 6*4+6*3 {
		t.Fatalf("%d rows landed in by_email, want %d", len(byEmail), 6*4+6*3)
	}
	for email, ps := range partitionsBy(byEmail, func(l landing) string { return l.email }) {
		if len(ps) != 1 {
			t.Errorf("by uk_email: rows with email %s landed in partitions %v, want one", email, partitionSet(ps))
		}
	}
	if usedPartitions(byEmail) < 2 {
		t.Errorf("six emails all landed in one partition: the rule does not spread")
	}
	// The control: by the primary key, the same data does not keep an
	// email in one partition, so the test above did route by the index.
	split := 0
	for _, ps := range partitionsBy(landings(t, c, "by_pk"), func(l landing) string { return l.email }) {
		if len(ps) > 1 {
			split++
		}
	}
	if split == 0 {
		t.Fatalf("by the primary key, every email still landed in one partition; the data cannot tell the index from the key")
	}
}

func TestIndexValueDispatcherNamingAMissingIndexFailsNamingItAndTheTable(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c, model.DispatchRule{Matcher: []string{"shop.*"}, Partition: model.PartitionIndexValue, Index: "uk_phone"})
	sc := usersSchema("shop", "users")
	err := writeAll(t, s, sc.Table, keyedWorkload(sc, 4, 0, 1000))
	if err == nil || !strings.Contains(err.Error(), `index "uk_phone"`) || !strings.Contains(err.Error(), "table shop.users") {
		t.Fatalf("got %v, want an error naming index uk_phone and table shop.users", err)
	}
}

// A table without a primary or unique key has no handle: index-value keeps
// all its rows in the table's partition rather than failing.
func TestIndexValueDispatcherOnAKeylessTableUsesTheTablesPartition(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c, model.DispatchRule{Matcher: []string{"log.*"}, Partition: model.PartitionIndexValue})
	sc := usersSchema("log", "events")
	sc.Indexes = nil
	mustWriteAll(t, s, sc.Table, keyedWorkload(sc, 12, 1, 1000))
	ls := landings(t, c, "cdc")
	ps := partitionsBy(ls, func(landing) string { return "" })[""]
	if len(ls) != 36 || len(ps) != 1 || !ps[hashTable(sc.Table, dispatchPartitions)] {
		t.Fatalf("%d rows in partitions %v, want 36 in the table's partition %d", len(ls), partitionSet(ps), hashTable(sc.Table, dispatchPartitions))
	}
}

// Topic expressions: {schema} and {table} fill in the table's names, with
// characters Kafka refuses made '_'; the first rule that selects a table
// decides; tables no rule selects go to the URI's topic.
func TestTopicExpressionsRouteEachTableToItsTopic(t *testing.T) {
	c := startBroker(t)
	s := dispatchSink(t, c,
		model.DispatchRule{Matcher: []string{"shop.orders"}, Topic: "orders-only"},
		model.DispatchRule{Matcher: []string{"shop.*"}, Topic: "{schema}.{table}"},
		model.DispatchRule{Matcher: []string{"crm.*"}, Topic: "cdc-{table}"})
	want := map[string]string{ // table -> topic
		"shop.orders":       "orders-only",
		"shop.users":        "shop.users",
		"crm.order items":   "cdc-order_items",
		"crm.kunden_größe":  "cdc-kunden_gr__e",
		"misc.unrouted":     "cdc",
		"misc.also_default": "cdc",
	}
	for i, name := range sortedKeys(want) {
		schema, table, _ := strings.Cut(name, ".")
		sc := usersSchema(schema, table)
		mustWriteAll(t, s, sc.Table, keyedWorkload(sc, 2, 0, model.Ts(1000*(i+1))))
	}
	byTopic := map[string][]string{}
	for _, topic := range []string{"orders-only", "shop.users", "cdc-order_items", "cdc-kunden_gr__e", "cdc"} {
		for _, l := range landings(t, c, topic) {
			byTopic[topic] = append(byTopic[topic], l.schemaAndTable)
		}
	}
	got := map[string]string{}
	for topic, tables := range byTopic {
		for _, tb := range tables {
			if prev, ok := got[tb]; ok && prev != topic {
				t.Errorf("table %s in topics %s and %s", tb, prev, topic)
			}
			got[tb] = topic
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tables went to topics\n%v\nwant\n%v", got, want)
	}
	for topic, tables := range byTopic {
		// keyedWorkload(2 keys, 0 updates): an insert and a delete a key.
		if len(tables) != 4*len(tablesOf(want, topic)) {
			t.Errorf("topic %s has %d rows, want %d", topic, len(tables), 4*len(tablesOf(want, topic)))
		}
	}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func tablesOf(m map[string]string, topic string) []string {
	var out []string
	for k, v := range m {
		if v == topic {
			out = append(out, k)
		}
	}
	return out
}
