package kafka

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/raftcdc/raftcdc/model"
)

// metric finds a series in what reg gathers: nil when it does not exist.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return m
		}
	}
	return nil
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	if m := metric(t, reg, name, labels...); m != nil {
		return m.GetCounter().GetValue()
	}
	return 0
}

func histogram(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (count uint64, sum float64) {
	t.Helper()
	m := metric(t, reg, name, labels...)
	if m == nil {
		t.Fatalf("no series %s%v", name, labels)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// After N rows and one large row sent with only its handle key, then a
// watermark on every partition, each metric holds what was sent, read
// through the registry the sink's Metrics were registered with; a second
// changefeed on the same Metrics keeps its own series, and a large row
// refused (none) counts as none and sends nothing.
func TestMetricsCountWhatTheBrokerAcknowledged(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	c := startBroker(t)
	const partitions, n = 3, 25
	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&enable-tidb-extension=true&partition-num=3&large-message-handle-option=handle-key-only"),
		WithMetrics(m), WithChangefeed("cf-1"))
	sc := usersSchema("shop", "users")
	ts := openTable(t, s, sc.Table)
	ctx := testCtx(t)
	txn := &model.Txn{CommitTs: 100, StartTs: 99}
	for id := int64(1); id <= n; id++ {
		txn.Rows = append(txn.Rows, userRow(sc, model.OpInsert, 100, id, uint64(id), strings.Repeat("n", int(id))))
	}
	txn.Rows = append(txn.Rows, bigRow(sc, 100))
	if err := ts.Write(ctx, []*model.Txn{txn}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, 100); err != nil {
		t.Fatal(err)
	}
	var rowBytes float64
	msgs := 0
	for _, rs := range consume(t, c, "cdc") {
		for _, r := range rs {
			rowBytes += float64(len(r.Key) + len(r.Value))
			msgs++
		}
	}
	if msgs != n+1 {
		t.Fatalf("%d messages on the topic, want %d", msgs, n+1)
	}
	cf := []string{"changefeed", "cf-1"}
	for _, c := range []struct {
		name string
		want float64
	}{
		{"raftcdc_kafka_messages_total", n + 1},
		{"raftcdc_kafka_rows_total", n + 1},
		{"raftcdc_kafka_bytes_total", rowBytes},
	} {
		if got := counterValue(t, reg, c.name, cf...); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if got := counterValue(t, reg, "raftcdc_kafka_large_messages_total", "changefeed", "cf-1", "handling", LargeMessageHandleKeyOnly); got != 1 {
		t.Errorf("large messages handled by handle-key-only = %v, want 1", got)
	}
	for _, h := range []string{LargeMessageNone, LargeMessageClaimCheck} {
		if got := counterValue(t, reg, "raftcdc_kafka_large_messages_total", "changefeed", "cf-1", "handling", h); got != 0 {
			t.Errorf("large messages handled by %s = %v, want 0", h, got)
		}
	}
	if cnt, _ := histogram(t, reg, "raftcdc_kafka_produce_latency_seconds", cf...); cnt != n+1 {
		t.Errorf("produce latency observations = %d, want one a message (%d)", cnt, n+1)
	}
	// franz-go's per-batch numbers: every record in some batch, and the
	// batches' bytes are the records' plus a few bytes of framing each.
	batches, records := histogram(t, reg, "raftcdc_kafka_batch_records", cf...)
	if records != n+1 || batches == 0 || batches > n+1 {
		t.Errorf("batch records: %d batches holding %v records, want %d records in 1..%d batches", batches, records, n+1, n+1)
	}
	byteBatches, batchBytes := histogram(t, reg, "raftcdc_kafka_batch_bytes", cf...)
	if byteBatches != batches || batchBytes < rowBytes || batchBytes > rowBytes+32*(n+1) {
		t.Errorf("batch bytes: %d batches of %v bytes in all, want %d batches of %v bytes plus at most 32 a record", byteBatches, batchBytes, batches, rowBytes)
	}

	// A watermark: one message a partition, each counted and timed.
	if err := s.EmitCheckpoint(ctx, 200); err != nil {
		t.Fatal(err)
	}
	var allBytes float64
	for _, rs := range consume(t, c, "cdc") {
		for _, r := range rs {
			allBytes += float64(len(r.Key) + len(r.Value))
		}
	}
	if got := counterValue(t, reg, "raftcdc_kafka_messages_total", cf...); got != n+1+partitions {
		t.Errorf("after a watermark, messages = %v, want %d", got, n+1+partitions)
	}
	if got := counterValue(t, reg, "raftcdc_kafka_bytes_total", cf...); got != allBytes {
		t.Errorf("after a watermark, bytes = %v, want %v", got, allBytes)
	}
	if got := counterValue(t, reg, "raftcdc_kafka_rows_total", cf...); got != n+1 {
		t.Errorf("after a watermark, rows = %v, want still %d", got, n+1)
	}
	if cnt, _ := histogram(t, reg, "raftcdc_kafka_produce_latency_seconds", cf...); cnt != n+1+partitions {
		t.Errorf("after a watermark, latency observations = %d, want one a message (%d)", cnt, n+1+partitions)
	}

	// Another changefeed on the same Metrics, refusing large rows: its
	// series are its own, and a refused row sends and counts nothing but
	// the refusal.
	s2 := openSink(t, brokerURI(c, "cdc2", "protocol=canal-json"), WithMetrics(m), WithChangefeed("cf-2"))
	ts2 := openTable(t, s2, sc.Table)
	small := &model.Txn{CommitTs: 300, StartTs: 299, Rows: []*model.RowChange{userRow(sc, model.OpInsert, 300, 1, 1, "")}}
	if err := ts2.Write(ctx, []*model.Txn{small}); err != nil {
		t.Fatal(err)
	}
	if err := ts2.Flush(ctx, 300); err != nil {
		t.Fatal(err)
	}
	if err := ts2.Write(ctx, []*model.Txn{{CommitTs: 310, StartTs: 309, Rows: []*model.RowChange{bigRow(sc, 310)}}}); err == nil {
		t.Fatal("a 12 MiB row with large-message-handle-option=none was written")
	}
	cf2 := []string{"changefeed", "cf-2"}
	if got := counterValue(t, reg, "raftcdc_kafka_messages_total", cf2...); got != 1 {
		t.Errorf("cf-2 messages = %v, want 1", got)
	}
	if got := counterValue(t, reg, "raftcdc_kafka_rows_total", cf2...); got != 1 {
		t.Errorf("cf-2 rows = %v, want 1", got)
	}
	if got := counterValue(t, reg, "raftcdc_kafka_large_messages_total", "changefeed", "cf-2", "handling", LargeMessageNone); got != 1 {
		t.Errorf("cf-2 large messages refused (none) = %v, want 1", got)
	}
	if got := counterValue(t, reg, "raftcdc_kafka_messages_total", cf...); got != n+1+partitions {
		t.Errorf("cf-1 messages changed to %v by cf-2's writes", got)
	}
}
