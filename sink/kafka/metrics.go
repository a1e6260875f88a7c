package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Metrics are the Kafka sinks' Prometheus metrics, labelled by changefeed.
// One Metrics serves every Kafka sink of a process: create it once with the
// process's registry and pass it to each Open with WithMetrics. Rates
// (messages/s, bytes/s) are rate() over the counters.
type Metrics struct {
	messages      *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	rows          *prometheus.CounterVec
	batchRecords  *prometheus.HistogramVec
	batchBytes    *prometheus.HistogramVec
	latency       *prometheus.HistogramVec
	largeMessages *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests and tools).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_kafka_messages_total", Help: "Kafka messages the broker acknowledged.",
		}, []string{"changefeed"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_kafka_bytes_total", Help: "Key and value bytes of acknowledged Kafka messages.",
		}, []string{"changefeed"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_kafka_rows_total", Help: "Row changes in acknowledged Kafka messages.",
		}, []string{"changefeed"}),
		batchRecords: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftcdc_kafka_batch_records", Help: "Records per produce batch written to a partition.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}, []string{"changefeed"}),
		batchBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftcdc_kafka_batch_bytes", Help: "Uncompressed bytes per produce batch written to a partition.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 12),
		}, []string{"changefeed"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "raftcdc_kafka_produce_latency_seconds", Help: "Time from handing a message to the producer to the broker's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"changefeed"}),
		largeMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_kafka_large_messages_total", Help: "Row changes over max-message-bytes, by how they were handled (handle-key-only, claim-check, or none: failed).",
		}, []string{"changefeed", "handling"}),
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.bytes, m.rows, m.batchRecords, m.batchBytes, m.latency, m.largeMessages)
	}
	return m
}

// feedMetrics are one changefeed's children, looked up once.
type feedMetrics struct {
	messages, bytes, rows prometheus.Counter
	latency               prometheus.Observer
	batchRecords          prometheus.Observer
	batchBytes            prometheus.Observer
	large                 func(handling string) prometheus.Counter
}

func (m *Metrics) forFeed(id string) *feedMetrics {
	return &feedMetrics{
		messages:     m.messages.WithLabelValues(id),
		bytes:        m.bytes.WithLabelValues(id),
		rows:         m.rows.WithLabelValues(id),
		latency:      m.latency.WithLabelValues(id),
		batchRecords: m.batchRecords.WithLabelValues(id),
		batchBytes:   m.batchBytes.WithLabelValues(id),
		large:        func(h string) prometheus.Counter { return m.largeMessages.WithLabelValues(id, h) },
	}
}

// batchHook feeds franz-go's per-batch numbers into the histograms.
type batchHook struct{ fm *feedMetrics }

var _ kgo.HookProduceBatchWritten = batchHook{}

func (h batchHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h.fm.batchRecords.Observe(float64(m.NumRecords))
	h.fm.batchBytes.Observe(float64(m.UncompressedBytes))
}
