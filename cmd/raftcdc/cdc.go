package main

import (
	"time"

	"github.com/raftcdc/raftcdc/owner"
	"github.com/raftcdc/raftcdc/processor"
	"github.com/raftcdc/raftcdc/server"
	"github.com/spf13/pflag"
)

// cdcOptions are the owner and processor flags.
type cdcOptions struct {
	clusterID       string
	tick            time.Duration
	evictionGrace   time.Duration
	gcTTL           time.Duration
	flushInterval   time.Duration
	quorumLossFence time.Duration
}

func (o *cdcOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.clusterID, "cluster-id", "default", "names this cluster's upstream GC service safepoint; the same on every node")
	f.DurationVar(&o.tick, "owner-tick-interval", owner.DefaultTickInterval, "how often the owner re-evaluates when nothing changes")
	f.DurationVar(&o.evictionGrace, "owner-eviction-grace", owner.DefaultEvictionGrace, "a new owner waits this long before evicting captures gossip does not know")
	f.DurationVar(&o.gcTTL, "gc-ttl", owner.DefaultGCTTL, "default gc-ttl of changefeeds that set none: how long one that is not running (or cannot update its upstream's service GC safepoint) holds the upstream's GC, and the TTL of that safepoint")
	f.DurationVar(&o.flushInterval, "flush-interval", 100*time.Millisecond, "how often each processor reports its position")
	f.DurationVar(&o.quorumLossFence, "quorum-loss-fence", 5*time.Second, "stop writing to sinks after this long without a quorum")
}

// enable wires the owner, the processors and the changefeed API into node.
func (o *cdcOptions) enable(node *server.Node) error {
	oc := owner.Config{ClusterID: o.clusterID, TickInterval: o.tick, EvictionGrace: o.evictionGrace, GCTTL: o.gcTTL}
	if err := oc.Validate(); err != nil {
		return err
	}
	server.EnableCDC(node, server.CDCOptions{
		Owner:     oc,
		Processor: processor.Config{FlushInterval: o.flushInterval, QuorumLossFence: o.quorumLossFence},
	})
	return nil
}
