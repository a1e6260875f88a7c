package processor

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	fenced         prometheus.Counter
	localFence     prometheus.Gauge
	rowsFlushed    *prometheus.CounterVec
	positionWrites *prometheus.CounterVec
	checkpointLag  *prometheus.GaugeVec
	quotaUsed      *prometheus.GaugeVec
	quotaLimit     *prometheus.GaugeVec
	spilledBytes   *prometheus.CounterVec
	reconcileWalks *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftcdc_processor_fenced_total",
			Help: "Times this capture found its incarnation fenced and reset every processor.",
		}),
		localFence: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raftcdc_processor_local_fence",
			Help: "1 while sink writes are paused because this node lost contact with the quorum.",
		}),
		rowsFlushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_processor_rows_flushed_total",
			Help: "Rows made durable in the sink, by changefeed.",
		}, []string{"changefeed"}),
		positionWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_processor_position_writes_total",
			Help: "Position reports proposed, by result (ok, refused, error).",
		}, []string{"result"}),
		checkpointLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_processor_checkpoint_lag_seconds",
			Help: "How far the processor's checkpoint is behind wall time, by changefeed.",
		}, []string{"changefeed"}),
		quotaUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_processor_memory_quota_used_bytes",
			Help: "Bytes of transactions this capture holds in memory between source and sink, by changefeed.",
		}, []string{"changefeed"}),
		quotaLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_processor_memory_quota_limit_bytes",
			Help: "The changefeed's memory quota on this capture (memory-quota), by changefeed.",
		}, []string{"changefeed"}),
		spilledBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_processor_spilled_bytes_total",
			Help: "Bytes of buffered transactions moved to disk because the memory quota was full, by changefeed.",
		}, []string{"changefeed"}),
		reconcileWalks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_processor_reconcile_walks_total",
			Help: "Reconciles that went over every table of the changefeed on this capture (its task changed, or a table stopped), by changefeed; a change of the changefeed's status alone does not.",
		}, []string{"changefeed"}),
	}
	if reg == nil {
		return m
	}
	m.fenced = register(reg, m.fenced)
	m.localFence = register(reg, m.localFence)
	m.rowsFlushed = register(reg, m.rowsFlushed)
	m.positionWrites = register(reg, m.positionWrites)
	m.checkpointLag = register(reg, m.checkpointLag)
	m.quotaUsed = register(reg, m.quotaUsed)
	m.quotaLimit = register(reg, m.quotaLimit)
	m.spilledBytes = register(reg, m.spilledBytes)
	m.reconcileWalks = register(reg, m.reconcileWalks)
	return m
}

// register adopts an already registered collector of the same name, so two
// managers in one process (tests) share the series instead of panicking.
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
