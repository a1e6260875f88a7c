package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/raftcdc/raftcdc/codec/open"
	"github.com/raftcdc/raftcdc/model"
)

// failProduceTransiently makes every produce request fail with one of the
// transient errors the issue names, in turn, until the returned func is
// called. It returns a counter of faulted requests.
func failProduceTransiently(c *kfake.Cluster) (stop func(), hits *atomic.Int64) {
	var n atomic.Int64
	errs := []*kerr.Error{kerr.LeaderNotAvailable, kerr.NotEnoughReplicas, kerr.RequestTimedOut}
	var handles []*kfake.FaultHandle
	for i, e := range errs {
		i := i
		handles = append(handles, c.Fault(kfake.Fault{
			Keys:  []kmsg.Key{kmsg.Produce},
			Err:   e,
			Count: -1,
			When: func(kmsg.Request) bool {
				if n.Load()%int64(len(errs)) != int64(i) {
					return false
				}
				n.Add(1)
				return true
			},
		}))
	}
	return func() {
		for _, h := range handles {
			h.Remove()
		}
	}, &n
}

func TestTransientBrokerErrorsFor10sLoseNothingAndFailNothing(t *testing.T) {
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "cdc", "protocol=open-protocol&partition-num=3&max-batch-size=1"),
		WithDispatchers([]model.DispatchRule{{Matcher: []string{"*.*"}, Partition: model.PartitionIndexValue}}, false))
	sc := usersSchema("shop", "users")
	ts := openTable(t, s, sc.Table)
	ctx := testCtx(t)
	const keys, updates = 20, 4
	txns := keyedWorkload(sc, keys, updates, 1000)

	stop, hits := failProduceTransiently(c)
	faultStart := time.Now()
	for i := range txns {
		if err := ts.Write(ctx, txns[i:i+1]); err != nil {
			t.Fatalf("write during broker errors: %v", err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- ts.Flush(ctx, txns[len(txns)-1].CommitTs) }()
	waitFor(t, "produce requests to be refused", 10*time.Second, func() bool { return hits.Load() >= 3 })
	for time.Since(faultStart) < 10*time.Second {
		select {
		case err := <-flushed:
			t.Fatalf("flush returned while every produce was being refused: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	stop()
	t.Logf("%d produce requests refused over %v", hits.Load(), time.Since(faultStart).Round(time.Millisecond))
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatalf("flush after the errors stopped: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("flush did not return within 30s of the broker recovering")
	}

	// Everything arrived once, in per-key order: REQUEST_TIMED_OUT is
	// answered after the broker appended the batch, so only the idempotent
	// producer's sequence numbers keep the retry from duplicating it.
	// Per key, within its one partition, the versions come in commit
	// order: the insert (n=0), the updates (n=1..updates) and the delete,
	// each at a later commit ts than the one before; a retried batch that
	// overtook a later one would break this.
	recs := consume(t, c, "cdc")
	total := 0
	keyPart := map[string]int32{}
	for p, evs := range openEvents(t, recs) {
		type version struct {
			events int
			ts     uint64
			n      int64
		}
		last := map[string]*version{}
		for _, e := range evs {
			img, deleted := e.Row.Update, false
			if img == nil {
				img, deleted = e.Row.Delete, true
			}
			id := string(img["id"].Value)
			n := jsonInt(t, img["n"].Value)
			if q, ok := keyPart[id]; ok && q != p {
				t.Fatalf("key %s in partitions %d and %d", id, q, p)
			}
			keyPart[id] = p
			v := last[id]
			want := int64(0)
			switch {
			case v == nil && deleted:
				t.Fatalf("partition %d key %s: first event is a delete", p, id)
			case v == nil:
				v = &version{}
				last[id] = v
			case deleted:
				want = v.n // the delete carries the last update's image
			default:
				want = v.n + 1
			}
			if n != want || (v.events > 0 && e.Key.Ts <= v.ts) {
				t.Fatalf("partition %d key %s: event %d (n=%d at ts %d) after n=%d at ts %d: out of commit order",
					p, id, v.events+1, n, e.Key.Ts, v.n, v.ts)
			}
			v.events, v.ts, v.n = v.events+1, e.Key.Ts, n
			total++
		}
		for id, v := range last {
			if v.events != updates+2 {
				t.Errorf("partition %d key %s: %d events, want %d (lost or duplicated)", p, id, v.events, updates+2)
			}
		}
	}
	if total != keys*(updates+2) {
		t.Fatalf("%d events, want %d", total, keys*(updates+2))
	}
}

func TestWatermarksAndDDLReachEveryPartition(t *testing.T) {
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "cdc", "protocol=open-protocol&partition-num=3"),
		WithDispatchers([]model.DispatchRule{{Matcher: []string{"shop.*"}, Topic: "{schema}_{table}"}}, false))
	ctx := testCtx(t)
	// The owner's sink opens no table: SetTables tells it where
	// checkpoints go.
	s.SetTables([]model.TableName{{Schema: "shop", Table: "a"}, {Schema: "log", Table: "b"}})
	ddl := &model.DDLEvent{CommitTs: 500, Kind: model.DDLAddColumn, Query: "ALTER TABLE `shop`.`a` ADD COLUMN `c` INT", Schema: "shop",
		Tables: []model.TableName{{Schema: "shop", Table: "a"}}}
	if err := s.EmitDDL(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	if err := s.EmitCheckpoint(ctx, 600); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"shop_a", "cdc"} {
		evs := openEvents(t, consume(t, c, topic))
		if len(evs) != 3 {
			t.Fatalf("topic %s: events in %d partitions, want 3", topic, len(evs))
		}
		for p, es := range evs {
			var types []int
			for _, e := range es {
				types = append(types, e.Key.Type)
			}
			want := []int{open.TypeResolved}
			if topic == "shop_a" {
				want = []int{open.TypeDDL, open.TypeResolved}
				if es[0].DDL.Query != ddl.Query || es[0].DDL.Type != 5 || es[0].Key.Ts != 500 {
					t.Errorf("topic %s partition %d: DDL event %+v %+v", topic, p, es[0].Key, es[0].DDL)
				}
			}
			if len(types) != len(want) || types[len(types)-1] != open.TypeResolved || es[len(es)-1].Key.Ts != 600 {
				t.Errorf("topic %s partition %d: events %v (last ts %d), want types %v ending in resolved 600", topic, p, types, es[len(es)-1].Key.Ts, want)
			}
		}
	}
}

// With the broker gone, a watermark's or a DDL's send ends with its
// context: the owner's worker (and a node's shutdown behind it) is not held
// for franz-go's own retry timeout.
func TestEmitsEndWithTheirContextWhenTheBrokerIsGone(t *testing.T) {
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&enable-tidb-extension=true&partition-num=3"))
	if err := s.EmitCheckpoint(testCtx(t), 100); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, emit := range []func(context.Context) error{
		func(ctx context.Context) error { return s.EmitCheckpoint(ctx, 200) },
		func(ctx context.Context) error {
			return s.EmitDDL(ctx, &model.DDLEvent{CommitTs: 300, Kind: model.DDLCreateSchema, Query: "CREATE DATABASE `x`", Schema: "x"})
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		err := emit(ctx)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("emit with the broker gone: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("emit with a 1 s context returned after %v", d)
		}
	}
}

// A message's bytes are reused only after the broker acknowledged it: with
// a broker slow to answer, later writes (which encode into recycled
// memory) must not change what earlier, still-buffered records carry. Every
// protocol encodes into reused buffers; open-protocol also frames batches
// into them.
func TestMessageBytesStayIntactUntilTheBrokerAcknowledges(t *testing.T) {
	for _, tc := range everyProtocol() {
		t.Run(tc.protocol, func(t *testing.T) {
			params, dec := tc.setup(t)
			c := startBroker(t)
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				time.Sleep(50 * time.Millisecond) // a slow broker: records queue up behind each request
				return nil, nil, false
			})
			s := openSink(t, brokerURI(c, "cdc", "partition-num=1&protocol="+tc.protocol+"&"+params))
			sc := usersSchema("shop", "users")
			ts := openTable(t, s, sc.Table)
			ctx := testCtx(t)
			const writes, rows = 12, 40
			pad := strings.Repeat("x", 300)
			var want []string
			commit := model.Ts(1000)
			for w := 0; w < writes; w++ {
				commit += 10
				txn := &model.Txn{CommitTs: commit, StartTs: commit - 1}
				for k := 0; k < rows; k++ {
					id := int64(w*rows + k + 1)
					// Lengths differ from row to row, so that a reused
					// buffer would hold another message's bytes at
					// another offset.
					note := fmt.Sprintf("write %d row %d %s", w, k, pad[:(w*7+k)%len(pad)])
					txn.Rows = append(txn.Rows, userRow(sc, model.OpInsert, commit, id, uint64(id%7), note))
					want = append(want, fmt.Sprintf("%d/%d", id, id%7))
				}
				// No Flush in between: each write's messages are still
				// queued when the next write encodes.
				if err := ts.Write(ctx, []*model.Txn{txn}); err != nil {
					t.Fatal(err)
				}
			}
			if err := ts.Flush(ctx, commit); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range consume(t, c, "cdc")[0] {
				for _, e := range dec(t, r) {
					if e.kind == "row" {
						got = append(got, fmt.Sprintf("%s/%d", e.id, e.n))
					}
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d row events, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("row event %d is id/n %s, want %s: its bytes were reused before the broker acknowledged it", i, got[i], want[i])
				}
			}
		})
	}
}

// max-message-bytes may be set above franz-go's default request cap (100
// MiB): the producer's request cap follows it, so the sink opens and
// delivers instead of failing franz-go's option check.
func TestMaxMessageBytesAboveTheDefaultRequestCapWorks(t *testing.T) {
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&max-message-bytes=209715200"))
	sc := usersSchema("shop", "users")
	ts := openTable(t, s, sc.Table)
	ctx := testCtx(t)
	txn := &model.Txn{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{userRow(sc, model.OpInsert, 100, 1, 0, "big limit")}}
	if err := ts.Write(ctx, []*model.Txn{txn}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, 100); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range counts(consume(t, c, "cdc")) {
		n += k
	}
	if n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}
