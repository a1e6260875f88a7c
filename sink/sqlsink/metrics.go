package sqlsink

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the SQL sinks' Prometheus series, labelled by changefeed and
// sink (mysql, tidb, postgres). Make one per process with NewMetrics and
// pass it to every sink the process opens.
type Metrics struct {
	Statements      *prometheus.CounterVec
	Rows            *prometheus.CounterVec
	TxnLatency      *prometheus.HistogramVec
	ConflictsWaited *prometheus.CounterVec
	Retries         *prometheus.CounterVec
	DDL             *prometheus.CounterVec
}

// NewMetrics makes the series and registers them with reg (nil: not
// registered, for tests). Registering twice adopts the first set, so two
// servers in one test process share them.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Statements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_sql_sink_statements_total",
			Help: "Statements the SQL sink executed downstream, by changefeed, sink and kind (insert, upsert, delete, update).",
		}, []string{"changefeed", "sink", "kind"}),
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_sql_sink_rows_total",
			Help: "Rows the SQL sink committed downstream, by changefeed and sink.",
		}, []string{"changefeed", "sink"}),
		TxnLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftcdc_sql_sink_txn_seconds",
			Help:    "Time to apply one downstream transaction (a batch of upstream transactions), retries included, by changefeed and sink.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"changefeed", "sink"}),
		ConflictsWaited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_sql_sink_conflicts_waited_total",
			Help: "Upstream transactions that had to wait for an earlier one touching a common key, by changefeed and sink.",
		}, []string{"changefeed", "sink"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_sql_sink_retries_total",
			Help: "Downstream transactions retried after a transient error, by changefeed, sink and error class.",
		}, []string{"changefeed", "sink", "class"}),
		DDL: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_sql_sink_ddl_total",
			Help: "DDL statements executed, by changefeed, sink and result (applied, already_applied).",
		}, []string{"changefeed", "sink", "result"}),
	}
	if reg == nil {
		return m
	}
	m.Statements = register(reg, m.Statements)
	m.Rows = register(reg, m.Rows)
	m.TxnLatency = register(reg, m.TxnLatency)
	m.ConflictsWaited = register(reg, m.ConflictsWaited)
	m.Retries = register(reg, m.Retries)
	m.DDL = register(reg, m.DDL)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
