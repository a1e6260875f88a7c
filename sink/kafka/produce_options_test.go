package kafka

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// batchCodecs records the compression of every batch a consumer reads.
type batchCodecs struct {
	mu    sync.Mutex
	types map[uint8]int
}

var _ kgo.HookFetchBatchRead = (*batchCodecs)(nil)

func (b *batchCodecs) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.types == nil {
		b.types = map[uint8]int{}
	}
	b.types[m.CompressionType]++
}

func (b *batchCodecs) seen() map[uint8]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[uint8]int{}
	for k, v := range b.types {
		out[k] = v
	}
	return out
}

// Every codec's batches reach the broker compressed with it, and a
// consumer (which decompresses) reads every row back.
func TestEveryCompressionCodecRoundTripsRows(t *testing.T) {
	// Kafka's codec numbers in a record batch's attributes.
	for _, tc := range []struct {
		name string
		id   uint8
	}{{"none", 0}, {"gzip", 1}, {"snappy", 2}, {"lz4", 3}, {"zstd", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			c := startBroker(t)
			s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&partition-num=2&compression="+tc.name))
			var codecs batchCodecs
			deliverRows(t, c, s, "cdc", 50, kgo.WithHooks(&codecs))
			if got := codecs.seen(); len(got) != 1 || got[tc.id] == 0 {
				t.Fatalf("batches read by codec %v, want all with codec %d (%s)", got, tc.id, tc.name)
			}
		})
	}
}

// Every required-acks value delivers, and is what the produce requests
// ask of the broker. With 0 the broker answers nothing, so a flush proves
// nothing: delivery is checked by consuming until every row shows.
func TestEveryRequiredAcksDelivers(t *testing.T) {
	for _, acks := range []int16{0, 1, -1} {
		t.Run(fmt.Sprint(acks), func(t *testing.T) {
			c := startBroker(t)
			var mu sync.Mutex
			asked := map[int16]int{}
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				mu.Lock()
				asked[req.(*kmsg.ProduceRequest).Acks]++
				mu.Unlock()
				return nil, nil, false
			})
			s := openSink(t, brokerURI(c, "cdc", fmt.Sprintf("protocol=canal-json&enable-tidb-extension=true&partition-num=2&required-acks=%d", acks)))
			sc := usersSchema("shop", "users")
			ts := openTable(t, s, sc.Table)
			ctx := testCtx(t)
			const keys, updates = 30, 2
			txns := keyedWorkload(sc, keys, updates, 1000)
			for i := range txns {
				if err := ts.Write(ctx, txns[i:i+1]); err != nil {
					t.Fatal(err)
				}
			}
			end := txns[len(txns)-1].CommitTs
			if err := ts.Flush(ctx, end); err != nil {
				t.Fatal(err)
			}
			// A DDL and a watermark on every partition, after the rows.
			addColumnAndWatermark(t, ctx, s, sc.Table, end+1)
			recs := consumeUntil(t, c, "cdc", keys*(updates+2)+2*2, 20*time.Second)
			// Each key's events once and in order in one partition (with
			// acks 0 and 1 the producer keeps one request in flight for
			// that), then the DDL, then the watermark.
			checkDelivery(t, recs, decodeCanal, keys, updates, end+1, end+1)
			mu.Lock()
			defer mu.Unlock()
			if len(asked) != 1 || asked[acks] == 0 {
				t.Fatalf("produce requests asked for acks %v, want only %d", asked, acks)
			}
		})
	}
}

// consumeUntil reads a topic from the beginning until it has n records or
// the deadline passes, then checks no more than n are there.
func consumeUntil(t *testing.T, c *kfake.Cluster, topic string, n int, d time.Duration) map[int32][]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out := map[int32][]*kgo.Record{}
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming %s: %d of %d records within %v", topic, got, n, d)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("consuming %s: %v", topic, err) })
		fs.EachRecord(func(r *kgo.Record) { out[r.Partition] = append(out[r.Partition], r); got++ })
	}
	if end := sumCounts(endOffsets(t, c, topic)); got != n || end != int64(n) {
		t.Fatalf("topic %s: consumed %d records and holds %d, want %d", topic, got, end, n)
	}
	return out
}
