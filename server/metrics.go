package server

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
)

type nodeMetrics struct {
	applyLatency *prometheus.HistogramVec
}

func newNodeMetrics(n *Node) *nodeMetrics {
	m := &nodeMetrics{
		applyLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftcdc_fsm_apply_seconds",
			Help:    "Time to apply one command to the state machine, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"result"}),
	}
	n.registry.MustRegister(m.applyLatency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.registry.MustRegister(&raftCollector{n: n})
	return m
}

func (m *nodeMetrics) observeApply(d time.Duration, r *fsm.Result) {
	outcome := "ok"
	if r != nil && r.Err != nil {
		outcome = string(r.Err.Code)
	}
	m.applyLatency.WithLabelValues(outcome).Observe(d.Seconds())
}

// raftCollector reads Raft and gossip state at scrape time, so the numbers
// are never stale and no goroutine has to keep gauges up to date.
type raftCollector struct{ n *Node }

var (
	descState       = prometheus.NewDesc("raftcdc_raft_state", "1 for the Raft state this node is in.", []string{"state"}, nil)
	descTerm        = prometheus.NewDesc("raftcdc_raft_term", "Current Raft term.", nil, nil)
	descCommit      = prometheus.NewDesc("raftcdc_raft_commit_index", "Raft commit index known to this node.", nil, nil)
	descApplied     = prometheus.NewDesc("raftcdc_fsm_applied_index", "Raft index last applied to the state machine.", nil, nil)
	descLastContact = prometheus.NewDesc("raftcdc_raft_last_contact_seconds", "Seconds since a follower last heard from the leader (0 on the leader).", nil, nil)
	descMembers     = prometheus.NewDesc("raftcdc_gossip_members", "Gossip members by status.", []string{"status"}, nil)
	descOwnerEpoch  = prometheus.NewDesc("raftcdc_fsm_owner_epoch", "Owner epoch recorded in this replica of the state machine.", nil, nil)
)

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descTerm, descCommit, descApplied, descLastContact, descMembers, descOwnerEpoch} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	r, f, members := n.raft, n.fsm, n.members
	if r == nil || f == nil || members == nil {
		return
	}
	state := r.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, s.String())
	}
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(r.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(f.AppliedIndex()))
	lc := 0.0
	if state != raft.Leader {
		if t := r.LastContact(); !t.IsZero() {
			lc = time.Since(t).Seconds()
		}
	}
	ch <- prometheus.MustNewConstMetric(descLastContact, prometheus.GaugeValue, lc)
	counts := map[string]int{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
	for _, m := range members.Members() {
		counts[string(m.Status)]++
	}
	for s, v := range counts {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(v), s)
	}
	if o, err := meta.ReadOwner(f); err == nil {
		ch <- prometheus.MustNewConstMetric(descOwnerEpoch, prometheus.GaugeValue, float64(o.Epoch))
	}
}
