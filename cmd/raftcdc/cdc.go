package main

import (
	"time"

	"github.com/raftcdc/raftcdc/admission"
	"github.com/raftcdc/raftcdc/owner"
	"github.com/raftcdc/raftcdc/processor"
	"github.com/raftcdc/raftcdc/server"
	"github.com/spf13/pflag"
)

// cdcOptions are the owner and processor flags.
type cdcOptions struct {
	clusterID     string
	tick          time.Duration
	evictionGrace time.Duration
	gcTTL         time.Duration
	flushInterval time.Duration
	captureLease  time.Duration
	leaseMargin   time.Duration
	recordFlushes string
	drainTimeout  time.Duration
	resignAfter   int
	resetInterval time.Duration
	tableBudget   int
}

func (o *cdcOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.clusterID, "cluster-id", owner.DefaultClusterID, "names this cluster's upstream GC service safepoint; the same on every node (a cluster restored from a backup uses its own identity unless this is set)")
	f.DurationVar(&o.tick, "owner-tick-interval", owner.DefaultTickInterval, "how often the owner re-evaluates when nothing changes")
	f.DurationVar(&o.evictionGrace, "owner-eviction-grace", owner.DefaultEvictionGrace, "a new owner waits this long before evicting captures gossip does not know")
	f.DurationVar(&o.gcTTL, "gc-ttl", owner.DefaultGCTTL, "default gc-ttl of changefeeds that set none: how long one that is not running (or cannot update its upstream's service GC safepoint) holds the upstream's GC, and the TTL of that safepoint")
	f.DurationVar(&o.flushInterval, "flush-interval", 100*time.Millisecond, "how often each processor reports its position")
	f.DurationVar(&o.captureLease, "capture-lease", processor.DefaultLeaseFence, "a capture writes to sinks only while its last round trip to the leader began less than this long ago")
	f.DurationVar(&o.captureLease, "quorum-loss-fence", processor.DefaultLeaseFence, "old name of --capture-lease")
	_ = f.MarkDeprecated("quorum-loss-fence", "use --capture-lease")
	f.DurationVar(&o.leaseMargin, "lease-margin", owner.DefaultLeaseMargin, "the owner gives a lost capture's tables to another only once its lease plus this margin has passed since the leader last heard from it")
	f.DurationVar(&o.resetInterval, "reset-interval", processor.DefaultResetInterval, "a fenced capture registers again at most once per this long, doubling while fences keep coming")
	f.IntVar(&o.resignAfter, "owner-resign-after", 10, "hand leadership to another voter after this many owner ticks in a row in which every upstream call failed (0: never)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, first move every table off this node's capture, for at most this long (0: stop without draining)")
	f.IntVar(&o.tableBudget, "table-budget", admission.DefaultTableBudget, "tables this node carries: the cluster's capacity is the sum over its live nodes, and a changefeed create, resume or update whose tables would exceed it beside the running ones is refused. The default was measured on 2 cores with datagen at a low rate (largest count with checkpoint lag p99 under 2 s; bench/RESULTS.md); raise it on bigger machines")
	f.StringVar(&o.recordFlushes, "record-flushes", "", "test instrument: record every table flush (table, capture, incarnation, times) in this directory")
	_ = f.MarkHidden("record-flushes")
}

// enable wires the owner, the processors and the changefeed API into node.
func (o *cdcOptions) enable(node *server.Node) error {
	oc := owner.Config{ClusterID: o.clusterID, TickInterval: o.tick, EvictionGrace: o.evictionGrace, GCTTL: o.gcTTL, LeaseMargin: o.leaseMargin, ResignAfter: o.resignAfter}
	co := server.CDCOptions{
		Owner:       oc,
		Processor:   processor.Config{FlushInterval: o.flushInterval, LeaseFence: o.captureLease, ResetInterval: o.resetInterval, TableBudget: o.tableBudget},
		FlushLogDir: o.recordFlushes,
	}
	if err := co.Validate(); err != nil {
		return err
	}
	server.EnableCDC(node, co)
	return nil
}
