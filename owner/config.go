// Package owner is the cluster's scheduler. It runs only on the Raft leader:
// a pure reactor (Tick) turns one consistent snapshot of the FSM plus the
// membership view into guarded commands, and one worker (Run) does all the
// I/O around it. See DESIGN.md in this directory.
package owner

import (
	"fmt"
	"time"
)

// DefaultClusterID names the GC service of a cluster that was given no
// --cluster-id.
const DefaultClusterID = "default"

// Config tunes the owner. The zero value of every field means "use the
// default", so a caller can set only what it cares about.
type Config struct {
	// ClusterID makes the upstream GC service ID unique per cluster, so two
	// raftcdc clusters on one upstream do not overwrite each other's
	// safepoint. It must be the same on every node of a cluster.
	ClusterID string
	// TickInterval is how often the owner ticks when nothing happens.
	TickInterval time.Duration
	// MinTickInterval coalesces bursts of FSM changes into one tick.
	MinTickInterval time.Duration
	// EvictionGrace is how long a new owner waits before evicting a
	// registered capture that gossip does not know at all: right after an
	// election the new leader's gossip view may still be filling in.
	EvictionGrace time.Duration
	// GCTTL is the gc-ttl of changefeeds that set none (see
	// model.ChangefeedConfig.GCTTL); the service safepoint of an upstream is
	// pushed with the largest gc-ttl of its changefeeds as its TTL.
	GCTTL time.Duration
	// GCRefreshInterval is how often an unchanged safepoint is pushed again
	// to keep its TTL alive.
	GCRefreshInterval time.Duration
	// ErrorBackoffBase and ErrorBackoffMax bound the retry delay of a
	// changefeed in the error state; it doubles with every recent error.
	ErrorBackoffBase time.Duration
	ErrorBackoffMax  time.Duration
	// ErrorHistoryWindow and ErrorHistoryMax bound what counts as "recent".
	ErrorHistoryWindow time.Duration
	ErrorHistoryMax    int
	// MaxMovesPerChangefeed caps table moves in flight per changefeed, so a
	// rebalance does not stop half of a changefeed's tables at once.
	MaxMovesPerChangefeed int
	// IOTimeout bounds each upstream call made by the worker.
	IOTimeout time.Duration
	// LeaseFence is the capture lease assumed for a capture whose record
	// does not declare one (captures declare theirs); LeaseMargin is added
	// to it before a lost capture's tables go to another capture: it
	// covers a flush that was checked against the lease just before the
	// lease ended, and the difference between two machines' clock rates.
	LeaseFence  time.Duration
	LeaseMargin time.Duration
	// ResignAfter is how many ticks in a row in which every upstream call
	// failed make the owner hand leadership to another voter; 0 never.
	ResignAfter int
	// StatusBytesPerSecond paces the changefeed status writes that only
	// move its checkpoint and resolved ts, by the status's size (see
	// DefaultStatusBytesPerSecond).
	StatusBytesPerSecond int
	// CheckpointPublishInterval is how often, at most, the owner publishes a
	// changefeed's checkpoint through its sink (EmitCheckpoint).
	CheckpointPublishInterval time.Duration
}

// Defaults.
const (
	DefaultTickInterval          = 200 * time.Millisecond
	DefaultMinTickInterval       = 20 * time.Millisecond
	DefaultEvictionGrace         = 5 * time.Second
	DefaultGCTTL                 = 24 * time.Hour
	DefaultGCRefreshInterval     = 5 * time.Second
	DefaultErrorBackoffBase      = 10 * time.Second
	DefaultErrorBackoffMax       = 10 * time.Minute
	DefaultErrorHistoryWindow    = 30 * time.Minute
	DefaultErrorHistoryMax       = 16
	DefaultMaxMovesPerChangefeed = 4
	DefaultIOTimeout             = 5 * time.Second
	DefaultLeaseFence            = 2 * time.Second
	DefaultLeaseMargin           = time.Second
	// MinLeaseMargin is the least margin accepted: a sink checks the lease
	// right before a write becomes visible, and the write must land within
	// the margin.
	MinLeaseMargin = 100 * time.Millisecond
	// DefaultStatusBytesPerSecond: a status lists every table of the
	// changefeed (~50 bytes a table), so writing it on every checkpoint
	// advance is 5 MB per write at 100,000 tables, many times a second.
	// Past 1 MiB/s the progress of a large changefeed is written less
	// often: every ~5 s at 100,000 tables; up to ~4,000 tables, every tick.
	DefaultStatusBytesPerSecond = 1 << 20
	// DefaultCheckpointPublishInterval matches how often TiCDC's storage
	// sink rewrites its metadata file at most.
	DefaultCheckpointPublishInterval = time.Second
	// ServiceIDPrefix starts the upstream GC service ID.
	ServiceIDPrefix = "raftcdc-"
)

// MovingShare is the share of a large changefeed's tables that may be
// moving at once (one in this many), when that is more than
// MaxMovesPerChangefeed. Every step of a rebalance rewrites the task
// statuses of the captures involved, each listing all their tables: moving
// 4 of 100,000 tables at a time meant thousands of multi-megabyte rewrites
// after one capture joined (issue 16).
const MovingShare = 100

// movesAllowed is the cap on moves in flight of a changefeed of n tables.
func (c Config) movesAllowed(n int) int { return max(c.MaxMovesPerChangefeed, n/MovingShare) }

// DefaultConfig is the configuration with every default filled in.
func DefaultConfig() Config { return Config{}.withDefaults() }

func (c Config) withDefaults() Config {
	setDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	setDur(&c.TickInterval, DefaultTickInterval)
	setDur(&c.MinTickInterval, DefaultMinTickInterval)
	setDur(&c.EvictionGrace, DefaultEvictionGrace)
	setDur(&c.GCTTL, DefaultGCTTL)
	setDur(&c.GCRefreshInterval, DefaultGCRefreshInterval)
	setDur(&c.ErrorBackoffBase, DefaultErrorBackoffBase)
	setDur(&c.ErrorBackoffMax, DefaultErrorBackoffMax)
	setDur(&c.ErrorHistoryWindow, DefaultErrorHistoryWindow)
	setDur(&c.IOTimeout, DefaultIOTimeout)
	setDur(&c.LeaseFence, DefaultLeaseFence)
	setDur(&c.LeaseMargin, DefaultLeaseMargin)
	setDur(&c.CheckpointPublishInterval, DefaultCheckpointPublishInterval)
	if c.StatusBytesPerSecond <= 0 {
		c.StatusBytesPerSecond = DefaultStatusBytesPerSecond
	}
	if c.ErrorHistoryMax <= 0 {
		c.ErrorHistoryMax = DefaultErrorHistoryMax
	}
	if c.MaxMovesPerChangefeed <= 0 {
		c.MaxMovesPerChangefeed = DefaultMaxMovesPerChangefeed
	}
	if c.ClusterID == "" {
		c.ClusterID = DefaultClusterID
	}
	return c
}

// Validate reports settings that cannot work together.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.MinTickInterval > c.TickInterval {
		return fmt.Errorf("owner min tick interval %s is longer than the tick interval %s", c.MinTickInterval, c.TickInterval)
	}
	if c.ErrorBackoffBase > c.ErrorBackoffMax {
		return fmt.Errorf("owner error backoff base %s is longer than its maximum %s", c.ErrorBackoffBase, c.ErrorBackoffMax)
	}
	if c.ResignAfter < 0 {
		return fmt.Errorf("owner resign-after %d is negative; give 0 (never) or a count of ticks", c.ResignAfter)
	}
	if c.LeaseMargin < MinLeaseMargin {
		return fmt.Errorf("owner lease margin %s is below %s: a write checked against a capture's lease just before it ended must land before its tables move", c.LeaseMargin, MinLeaseMargin)
	}
	if c.GCRefreshInterval >= c.GCTTL {
		return fmt.Errorf("owner GC refresh interval %s must be shorter than the GC TTL %s, or the safepoint expires between refreshes", c.GCRefreshInterval, c.GCTTL)
	}
	return nil
}

// ServiceID is the upstream GC service ID of this cluster.
func (c Config) ServiceID() string { return ServiceIDPrefix + c.withDefaults().ClusterID }
