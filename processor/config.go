// Package processor runs the table pipelines that the owner assigns to this
// capture and reports their progress. See DESIGN.md beside this file.
package processor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
)

// Proposer submits a command to the Raft group. The node forwards it to the
// leader; Result.Err is a deterministic refusal, the error a failure to get
// an answer at all (no leader, timeout).
type Proposer interface {
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
}

// StateSource is the local replica of the state machine.
type StateSource interface {
	View(fn func(r fsm.Reader, appliedIndex uint64) error) error
	Watch(prefix string, buffer int) (<-chan fsm.WatchBatch, func())
}

// Connectors opens sources and sinks by URI (connector.Pool).
type Connectors interface {
	// SourceFor opens the source a changefeed reads; it implements
	// source.SpanSource or source.StreamSource.
	SourceFor(ctx context.Context, changefeedID, uri string) (source.Upstream, error)
	// OpenChangefeedSink opens the changefeed's sink with its config (sink
	// routing such as Kafka's dispatchers lives there).
	OpenChangefeedSink(ctx context.Context, id model.ChangefeedID, uri string, cfg model.ChangefeedConfig) (sink.Sink, error)
}

// Lease is this capture's lease (server.Node): sink writes are allowed until
// validUntil, and only to holders that saw the same term, which changes
// after every lapse. See DESIGN.md, "Writers are fenced".
type Lease interface {
	Lease() (validUntil time.Time, term uint64)
}

// Config configures a Manager. Zero durations take the defaults below.
type Config struct {
	CaptureID     model.CaptureID
	AdvertiseAddr string
	Version       string

	// FlushInterval is how often each processor reports its position.
	FlushInterval time.Duration
	// WorkloadInterval is how often the per-table workload is reported; it
	// only feeds balancing, so it is reported much less often than positions.
	WorkloadInterval time.Duration
	// LeaseFence is how long one round trip to the leader keeps this
	// capture's lease (the node renews it; the processor only declares it
	// in the capture record, so that the owner waits it out before giving
	// this capture's tables to another).
	LeaseFence time.Duration
	// ResetInterval is the least time between two registrations after the
	// capture was fenced; it doubles while fences keep coming soon after a
	// registration, so a capture the owner keeps evicting does not loop.
	ResetInterval time.Duration
	// ProposeTimeout bounds one command proposal.
	ProposeTimeout time.Duration
	// RetryBackoff and MaxRetryBackoff shape the exponential backoff between
	// attempts (registration, opening connectors, restarting a pipeline).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// MaxRetries is how many consecutive failed attempts a pipeline or a
	// connector gets before the error is reported in the position.
	MaxRetries int
	// ReportBytesPerSecond paces position reports by their size (see
	// DefaultReportBytesPerSecond); 0 means the default.
	ReportBytesPerSecond int
	// ReportTablesPerSecond paces position reports by the tables they
	// list (see DefaultReportTablesPerSecond); 0 means the default.
	ReportTablesPerSecond int
	// TableBudget is the tables this capture declares it carries, recorded
	// in its capture record for admission control (0: the default budget).
	TableBudget int
	// ReadAhead bounds the quota bytes that tables already ahead of the
	// flush barrier may hold (see DefaultReadAhead); 0 means the default.
	ReadAhead int64
	// ReadWindow lets a table within this much commit time above the
	// flush barrier read past the read-ahead, up to the quota (see
	// DefaultReadWindow); 0 means the default, negative turns it off.
	ReadWindow time.Duration
	// SpillDir is where table sorters put what does not fit in the memory
	// quota (the server uses <data-dir>/spill). Empty means a directory
	// under the system's temporary directory.
	SpillDir string
}

// MaxConcurrentOpens bounds how many table pipelines of one capture open
// (schema, sink table, subscription) at once. A dispatch of 4,000 tables
// started them all together, and the burst starved Raft's heartbeats
// into elections (issue 16).
const MaxConcurrentOpens = 16

// DefaultReadAhead: tables ahead of the flush barrier stop reading once the
// processor holds this much (or its whole quota, if smaller); the tables
// holding the barrier back read on up to the quota. Nothing ahead of the
// barrier can be flushed before the barrier moves, so holding more only
// makes the heap bigger: a catch-up that filled the default 1 GiB quota
// spent twice the CPU per row of one that held 64 MiB (bench/RESULTS.md,
// "datagen v2 → blackhole"), the difference being allocation into cold
// memory and GC marking of rows that only wait.
const DefaultReadAhead = 64 << 20

// DefaultReadWindow: a table whose resolved ts is at most this far above
// the flush barrier reads on past the read-ahead (up to the quota). With
// the read-ahead alone, the tables just above the barrier filled it and
// stopped, and only the one table holding the barrier read until the
// barrier moved: a catch-up of 8 tables ran on 1.2–1.6 of 2 cores,
// oscillating with each barrier step (about every 75 ms). Tables near the
// barrier are the ones the next step needs; letting them read keeps every
// core busy, and the window (in commit time, not bytes) bounds what they
// hold to about that much of the history. 250 ms did best of 100, 250 and
// 1,000 ms (bench/RESULTS.md, "datagen v2 → blackhole").
const DefaultReadWindow = 250 * time.Millisecond

// Defaults.
const (
	DefaultFlushInterval    = 100 * time.Millisecond
	DefaultWorkloadInterval = 5 * time.Second
	DefaultLeaseFence       = 2 * time.Second
	DefaultResetInterval    = time.Second
	DefaultProposeTimeout   = 3 * time.Second
	DefaultRetryBackoff     = 100 * time.Millisecond
	DefaultMaxRetryBackoff  = 5 * time.Second
	DefaultMaxRetries       = 5
)

func (c Config) withDefaults() Config {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&c.FlushInterval, DefaultFlushInterval)
	setDur(&c.WorkloadInterval, DefaultWorkloadInterval)
	setDur(&c.LeaseFence, DefaultLeaseFence)
	setDur(&c.ResetInterval, DefaultResetInterval)
	setDur(&c.ProposeTimeout, DefaultProposeTimeout)
	setDur(&c.RetryBackoff, DefaultRetryBackoff)
	setDur(&c.MaxRetryBackoff, DefaultMaxRetryBackoff)
	if c.ReportBytesPerSecond <= 0 {
		c.ReportBytesPerSecond = DefaultReportBytesPerSecond
	}
	if c.ReportTablesPerSecond <= 0 {
		c.ReportTablesPerSecond = DefaultReportTablesPerSecond
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.ReadAhead <= 0 {
		c.ReadAhead = DefaultReadAhead
	}
	if c.ReadWindow == 0 {
		c.ReadWindow = DefaultReadWindow
	}
	if c.SpillDir == "" {
		c.SpillDir = filepath.Join(os.TempDir(), "raftcdc-spill-"+c.CaptureID)
	}
	return c
}

func (c Config) validate() error {
	if err := model.ValidateNodeID(c.CaptureID); err != nil {
		return fmt.Errorf("processor manager: capture ID: %w", err)
	}
	return nil
}

// Error codes a processor reports in TaskPosition.Error.
const (
	CodeSnapshotLost = "snapshot_lost"
	CodeSourceError  = "source_error"
	CodeSinkError    = "sink_error"
	// CodeSinkUnretryable: the sink refused data that it will refuse on
	// every attempt (sink.Unretryable); the owner fails the changefeed.
	CodeSinkUnretryable = sink.CodeUnretryable
)
