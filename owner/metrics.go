package owner

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// Metrics are the owner's Prometheus collectors. A nil *Metrics is valid
// and records nothing, so tests and tools need not register anything.
type Metrics struct {
	epoch         prometheus.Gauge
	tickDuration  prometheus.Histogram
	checkpoint    *prometheus.GaugeVec
	checkpointLag *prometheus.GaugeVec
	resolvedLag   *prometheus.GaugeVec
	tables        *prometheus.GaugeVec
	refused       *prometheus.CounterVec

	mu sync.Mutex
	// feeds and captures are the label values set last time, so that
	// series of removed changefeeds and captures disappear instead of
	// freezing at their last value.
	feeds    map[model.ChangefeedID]bool
	captures map[[2]string]bool
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raftcdc_owner_epoch", Help: "Owner epoch of this node while it is the owner, 0 otherwise.",
		}),
		tickDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "raftcdc_owner_tick_duration_seconds", Help: "Time one owner tick took, including applying its commands.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_owner_changefeed_checkpoint_time_seconds", Help: "Physical part of a changefeed's checkpoint ts, as Unix time in seconds (millisecond precision).",
		}, []string{"changefeed"}),
		checkpointLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_owner_changefeed_checkpoint_lag_seconds", Help: "How far a running changefeed's checkpoint is behind wall time.",
		}, []string{"changefeed"}),
		resolvedLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_owner_changefeed_resolved_lag_seconds", Help: "How far a running changefeed's resolved ts is behind wall time.",
		}, []string{"changefeed"}),
		tables: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftcdc_owner_tables", Help: "Tables assigned to each capture, per changefeed.",
		}, []string{"changefeed", "capture"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_owner_commands_refused_total", Help: "Owner commands the state machine refused, by refusal code.",
		}, []string{"code"}),
		feeds:    map[model.ChangefeedID]bool{},
		captures: map[[2]string]bool{},
	}
	for _, c := range []prometheus.Collector{m.epoch, m.tickDuration, m.checkpoint, m.checkpointLag, m.resolvedLag, m.tables, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering owner metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) setEpoch(e uint64) {
	if m != nil {
		m.epoch.Set(float64(e))
	}
}

func (m *Metrics) observeTick(d time.Duration) {
	if m != nil {
		m.tickDuration.Observe(d.Seconds())
	}
}

func (m *Metrics) refusedCommand(code string) {
	if m != nil {
		m.refused.WithLabelValues(code).Inc()
	}
}

// observeState exports the progress and assignment of running changefeeds.
func (m *Metrics) observeState(s *meta.State, now time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	feeds := map[model.ChangefeedID]bool{}
	captures := map[[2]string]bool{}
	for id, f := range s.Changefeeds {
		if f.Info == nil || !isNormal(f.Info.State) || f.Status == nil || !f.Status.Initialized {
			continue
		}
		feeds[id] = true
		m.checkpoint.WithLabelValues(id).Set(float64(model.TsTime(f.Status.CheckpointTs).UnixMilli()) / 1000)
		m.checkpointLag.WithLabelValues(id).Set(model.LagSeconds(f.Status.CheckpointTs, now))
		m.resolvedLag.WithLabelValues(id).Set(model.LagSeconds(f.Status.ResolvedTs, now))
		for c, task := range f.Tasks {
			if task.Status == nil {
				continue
			}
			captures[[2]string{id, c}] = true
			m.tables.WithLabelValues(id, c).Set(float64(len(task.Status.Tables)))
		}
	}
	m.forget(feeds, captures)
}

// forget deletes the series not in the given sets; caller holds mu.
func (m *Metrics) forget(feeds map[model.ChangefeedID]bool, captures map[[2]string]bool) {
	for id := range m.feeds {
		if !feeds[id] {
			m.checkpoint.DeleteLabelValues(id)
			m.checkpointLag.DeleteLabelValues(id)
			m.resolvedLag.DeleteLabelValues(id)
		}
	}
	for k := range m.captures {
		if !captures[k] {
			m.tables.DeleteLabelValues(k[0], k[1])
		}
	}
	m.feeds, m.captures = feeds, captures
}

// reset clears everything that only the owner knows, when this node stops
// being the owner, so a follower does not export frozen values.
func (m *Metrics) reset() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch.Set(0)
	m.forget(map[model.ChangefeedID]bool{}, map[[2]string]bool{})
}
