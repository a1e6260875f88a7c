package tidb

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the TiDB source's Prometheus series, labelled by upstream
// (PD's cluster ID). Make one per process with NewMetrics and pass it to
// every source the process opens (WithMetrics).
type Metrics struct {
	Regions        *prometheus.GaugeVec
	Reconnects     *prometheus.CounterVec
	ScanRows       *prometheus.CounterVec
	ResolvedLag    *prometheus.GaugeVec
	StalledRegions *prometheus.GaugeVec
	LockResolves   *prometheus.CounterVec
}

// NewMetrics makes the series and registers them with reg (nil: not
// registered). Registering twice adopts the first set.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Regions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_tidb_regions",
			Help: "Regions subscribed for a table's record range (each partition counts), by upstream and table.",
		}, []string{"upstream", "table"}),
		Reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_tidb_region_reconnects_total",
			Help: "Region subscriptions made again, by upstream and reason (not_leader, epoch_not_match, region_not_found, server_is_busy, congested, store_unreachable, stream_closed, eventfeed_v2_unimplemented, stale_region_cache, protocol_error, fatal).",
		}, []string{"upstream", "reason"}),
		ScanRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_tidb_incremental_scan_rows_total",
			Help: "Rows received from TiKV's incremental scans (COMMITTED events), by upstream.",
		}, []string{"upstream"}),
		ResolvedLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_tidb_resolved_ts_lag_seconds",
			Help: "How far a table subscription's resolved ts is behind the wall clock, by upstream and table.",
		}, []string{"upstream", "table"}),
		StalledRegions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_tidb_stalled_regions",
			Help: "Initialized regions whose resolved ts has not moved for longer than the stall bound, by upstream.",
		}, []string{"upstream"}),
		LockResolves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_tidb_lock_resolves_total",
			Help: "Lock resolutions run for stalled regions, by upstream.",
		}, []string{"upstream"}),
	}
	if reg == nil {
		return m
	}
	m.Regions = register(reg, m.Regions)
	m.Reconnects = register(reg, m.Reconnects)
	m.ScanRows = register(reg, m.ScanRows)
	m.ResolvedLag = register(reg, m.ResolvedLag)
	m.StalledRegions = register(reg, m.StalledRegions)
	m.LockResolves = register(reg, m.LockResolves)
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

// upstreamMetrics are the series of one upstream.
type upstreamMetrics struct {
	regions        *prometheus.GaugeVec
	reconnects     *prometheus.CounterVec
	scanRows       prometheus.Counter
	resolvedLag    *prometheus.GaugeVec
	stalledRegions prometheus.Gauge
	lockResolves   prometheus.Counter
}

func (m *Metrics) forUpstream(id string) *upstreamMetrics {
	l := prometheus.Labels{"upstream": id}
	return &upstreamMetrics{
		regions:        m.Regions.MustCurryWith(l),
		reconnects:     m.Reconnects.MustCurryWith(l),
		scanRows:       m.ScanRows.With(l),
		resolvedLag:    m.ResolvedLag.MustCurryWith(l),
		stalledRegions: m.StalledRegions.With(l),
		lockResolves:   m.LockResolves.With(l),
	}
}
