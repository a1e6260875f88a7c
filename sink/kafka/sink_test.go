package kafka

import (
	"encoding/json"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/codec/open"
	"github.com/raftcdc/raftcdc/model"
)

// openEvents decodes every record of a partition as open-protocol events.
func openEvents(t *testing.T, recs map[int32][]*kgo.Record) map[int32][]open.Event {
	t.Helper()
	out := map[int32][]open.Event{}
	for p, rs := range recs {
		for _, r := range rs {
			evs, err := open.Decode(r.Key, r.Value)
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", p, r.Offset, err)
			}
			out[p] = append(out[p], evs...)
		}
	}
	return out
}

func TestOpenProtocolKeepsPerKeyOrderWithinPartitions(t *testing.T) {
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "cdc", "protocol=open-protocol&partition-num=3&max-batch-size=4"),
		WithDispatchers([]model.DispatchRule{{Matcher: []string{"shop.*"}, Topic: "{schema}_{table}", Partition: model.PartitionIndexValue}}, false))
	sc := usersSchema("shop", "users")
	ts := openTable(t, s, sc.Table)
	const keys, updates = 40, 6
	txns := keyedWorkload(sc, keys, updates, 1000)
	ctx := testCtx(t)
	// Two writes, then one flush: the flush must cover both.
	if err := ts.Write(ctx, txns[:3]); err != nil {
		t.Fatal(err)
	}
	if err := ts.Write(ctx, txns[3:]); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, txns[len(txns)-1].CommitTs); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, c, "shop_users")
	if len(recs) != 3 {
		t.Fatalf("rows landed in %d partitions, want all 3 of shop_users: %v", len(recs), counts(recs))
	}
	evs := openEvents(t, recs)
	type state struct {
		partition int32
		lastN     int64
		events    int
		deleted   bool
	}
	seen := map[string]*state{}
	total := 0
	for p, es := range evs {
		for _, e := range es {
			if e.Key.Type != open.TypeRow || e.Key.Schema != "shop" || e.Key.Table != "users" {
				t.Fatalf("partition %d: unexpected event %+v", p, e.Key)
			}
			total++
			img := e.Row.Update
			if e.Row.Delete != nil {
				img = e.Row.Delete
			}
			id := string(img["id"].Value)
			if !img["id"].Handle || img["id"].Flag&open.FlagPrimaryKey == 0 {
				t.Errorf("id column is not marked as handle/primary key: %+v", img["id"])
			}
			var n int64
			if err := json.Unmarshal(img["n"].Value, &n); err != nil {
				t.Fatal(err)
			}
			st := seen[id]
			if st == nil {
				if e.Row.Update == nil || e.Row.Prev != nil {
					t.Fatalf("key %s: first event is not an insert: %s", id, e.RawValue)
				}
				st = &state{partition: p, lastN: -1}
				seen[id] = st
			}
			if st.partition != p {
				t.Fatalf("key %s is in partitions %d and %d", id, st.partition, p)
			}
			if st.deleted {
				t.Fatalf("key %s has an event after its delete", id)
			}
			if e.Row.Delete != nil {
				st.deleted = true
				if n != updates {
					t.Fatalf("key %s deleted with n=%d, want %d", id, n, updates)
				}
			} else {
				if n != st.lastN+1 {
					t.Fatalf("key %s: n went from %d to %d: out of order within partition %d", id, st.lastN, n, p)
				}
				st.lastN = n
			}
			st.events++
		}
	}
	if len(seen) != keys || total != keys*(updates+2) {
		t.Fatalf("got %d keys and %d events, want %d and %d", len(seen), total, keys, keys*(updates+2))
	}
	for id, st := range seen {
		if !st.deleted || st.events != updates+2 {
			t.Errorf("key %s: %d events, deleted %v", id, st.events, st.deleted)
		}
	}
	// max-batch-size=4 framed several events per message.
	msgs := 0
	for _, rs := range recs {
		msgs += len(rs)
	}
	if msgs >= total || msgs < total/4 {
		t.Errorf("%d events in %d messages; max-batch-size=4 should give between %d and %d", total, msgs, total/4, total-1)
	}

}

func TestRenamedTableRoutesByItsNewName(t *testing.T) {
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "cdc", "protocol=open-protocol&partition-num=2"),
		WithDispatchers([]model.DispatchRule{{Matcher: []string{"shop.*"}, Topic: "{schema}_{table}"}}, false))
	old := usersSchema("shop", "users")
	ts := openTable(t, s, old.Table)
	renamed := old.Clone()
	renamed.Table.Table, renamed.Version = "customers", 2
	ctx := testCtx(t)
	txns := []*model.Txn{
		{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{userRow(old, model.OpInsert, 100, 1, 0, "")}},
		{CommitTs: 200, StartTs: 199, Rows: []*model.RowChange{userRow(renamed, model.OpInsert, 200, 2, 0, "")}},
	}
	if err := ts.Write(ctx, txns); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, 200); err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]string{"shop_users": "users", "shop_customers": "customers"} {
		evs := allOpenEvents(t, consume(t, c, topic))
		if len(evs) != 1 || evs[0].Key.Table != want {
			t.Fatalf("topic %s: %d events %+v, want one row of %s", topic, len(evs), evs, want)
		}
	}
}
