package model

import (
	"fmt"
	"regexp"
	"time"
)

// CaptureID is a node's stable ID; every node is a capture.
type CaptureID = string

// ChangefeedID names a changefeed.
type ChangefeedID = string

// CaptureInfo is what a capture registers about itself. Incarnation changes on
// every process start and on every reset after the capture was fenced.
type CaptureInfo struct {
	ID            CaptureID `json:"id"`
	AdvertiseAddr string    `json:"address"`
	Version       string    `json:"version"`
	StartTime     time.Time `json:"start_time"`
	Incarnation   uint64    `json:"incarnation"`
	// LeaseMillis is how long one round trip to the leader keeps this
	// capture's lease to write to sinks; the owner waits at least that
	// (plus its margin) after it last heard from a lost capture before it
	// gives the capture's tables to another.
	LeaseMillis int64 `json:"lease_ms,omitempty"`
	// TableBudget is how many tables this capture declares it carries (the
	// node's --table-budget); admission control sums it over the live
	// captures. 0 (a build from before admission control) counts as the
	// default budget.
	TableBudget int `json:"table_budget,omitempty"`
}

// FeedState is a changefeed's lifecycle state.
type FeedState string

const (
	StateNormal   FeedState = "normal"
	StateStopped  FeedState = "stopped" // paused by an operator
	StateFailed   FeedState = "failed"  // stopped by an error that will not be retried
	StateError    FeedState = "error"   // stopped by an error, retried after a backoff
	StateRemoved  FeedState = "removed"
	StateFinished FeedState = "finished"
)

// AdminJobType is an operator request the owner carries out.
type AdminJobType string

const (
	AdminNone   AdminJobType = ""
	AdminPause  AdminJobType = "pause"
	AdminResume AdminJobType = "resume"
	AdminRemove AdminJobType = "remove"
	AdminFinish AdminJobType = "finish"
)

// RunningError is an error reported by a processor or the owner.
type RunningError struct {
	Addr    string    `json:"addr,omitempty"`
	Code    string    `json:"code"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// FilterConfig selects tables with TiCDC-style rules: "db.table" patterns with
// * and ? wildcards, a leading ! excludes; the last matching rule wins.
type FilterConfig struct {
	Rules         []string `json:"rules,omitempty" toml:"rules"`
	CaseSensitive bool     `json:"case_sensitive" toml:"case-sensitive"`
}

// ChangefeedConfig is the user configuration of a changefeed.
type ChangefeedConfig struct {
	Filter FilterConfig      `json:"filter" toml:"filter"`
	Sink   map[string]string `json:"sink,omitempty" toml:"sink"`
	// Dispatchers route tables to topics and partitions (message-queue
	// sinks). A config file writes them as [sink] dispatchers, as TiCDC
	// does; they are a field of their own here because they are structured,
	// unlike the other sink options.
	Dispatchers []DispatchRule `json:"dispatchers,omitempty" toml:"dispatchers"`
	// MemoryQuota bounds, per processor (changefeed × capture), the bytes
	// buffered between the source and the sink; 0 means the default.
	MemoryQuota uint64 `json:"memory_quota,omitempty" toml:"memory-quota"`
	// GCTTL is how long the changefeed may hold its upstream's GC while it
	// is not running (stopped, error, failed) — and how long failing to
	// update the upstream's service GC safepoint is tolerated — as a Go
	// duration; empty means DefaultGCTTL. TiCDC's gc-ttl.
	GCTTL string `json:"gc_ttl,omitempty" toml:"gc-ttl"`
}

// DefaultGCTTL is TiCDC's default gc-ttl.
const DefaultGCTTL = 24 * time.Hour

// MinGCTTL is the smallest gc-ttl accepted.
const MinGCTTL = time.Second

// GCTTLDuration is the gc-ttl in force; a value Validate refuses reads as
// the default.
func (c ChangefeedConfig) GCTTLDuration() time.Duration {
	d, err := time.ParseDuration(c.GCTTL)
	if c.GCTTL == "" || err != nil || d < MinGCTTL {
		return DefaultGCTTL
	}
	return d
}

// DefaultMemoryQuota is TiCDC's default per-changefeed memory quota.
const DefaultMemoryQuota = 1 << 30

// MinMemoryQuota is the smallest quota accepted: below it a processor spends
// its time waiting for memory.
const MinMemoryQuota = 1 << 20

// MemoryQuotaBytes is the quota in force.
func (c ChangefeedConfig) MemoryQuotaBytes() int64 {
	if c.MemoryQuota == 0 {
		return DefaultMemoryQuota
	}
	return int64(min(c.MemoryQuota, 1<<62))
}

// Validate checks the parts of the configuration that need no connector.
func (c ChangefeedConfig) Validate() error {
	if c.MemoryQuota != 0 && c.MemoryQuota < MinMemoryQuota {
		return fmt.Errorf("memory-quota %d is below the minimum of %d bytes (1 MiB)", c.MemoryQuota, MinMemoryQuota)
	}
	if c.GCTTL != "" {
		d, err := time.ParseDuration(c.GCTTL)
		if err != nil || d < MinGCTTL {
			return fmt.Errorf("gc-ttl %q is not a Go duration of at least %v, such as 24h", c.GCTTL, MinGCTTL)
		}
	}
	return nil
}

// ChangefeedInfo is a changefeed's definition and lifecycle, written by the API
// (create/update/admin request) and by the owner (state, errors).
type ChangefeedInfo struct {
	ID           ChangefeedID     `json:"id"`
	SourceURI    string           `json:"source_uri"`
	SinkURI      string           `json:"sink_uri"`
	StartTs      Ts               `json:"start_ts"`
	TargetTs     Ts               `json:"target_ts,omitempty"`
	Config       ChangefeedConfig `json:"config"`
	State        FeedState        `json:"state"`
	Error        *RunningError    `json:"error,omitempty"`
	ErrorHistory []time.Time      `json:"error_history,omitempty"`
	// AdminJob is the pending operator request; the owner clears it once done.
	AdminJob AdminJobType `json:"admin_job,omitempty"`
	// OverwriteCheckpointTs goes with a resume that skips or replays data.
	OverwriteCheckpointTs Ts        `json:"overwrite_checkpoint_ts,omitempty"`
	CreateTime            time.Time `json:"create_time"`
	// Epoch changes on every resume so that processors of an earlier run of the
	// changefeed can be told apart.
	Epoch uint64 `json:"epoch,omitempty"`
	// RebalanceRequested and PendingMoves are operator requests that the owner
	// consumes and clears, like AdminJob.
	RebalanceRequested bool               `json:"rebalance_requested,omitempty"`
	PendingMoves       []MoveTableRequest `json:"pending_moves,omitempty"`
	// UpstreamCleaned is set once the owner has removed what the changefeed
	// keeps upstream (a PostgreSQL slot and publication) after a remove.
	UpstreamCleaned bool `json:"upstream_cleaned,omitempty"`
	// AdmittedTables is the table count admission control counted for the
	// changefeed at its last create or table-changing update: its load
	// until the owner has derived its table set (and after an update, until
	// the set is derived again). 0 on records from before admission control.
	AdmittedTables int `json:"admitted_tables,omitempty"`
}

// MoveTableRequest asks the owner to move one table to another capture.
type MoveTableRequest struct {
	TableID       TableID   `json:"table_id"`
	TargetCapture CaptureID `json:"target_capture"`
}

// ChangefeedStatus is the owner's summary of a changefeed's progress.
type ChangefeedStatus struct {
	ResolvedTs   Ts           `json:"resolved_ts"`
	CheckpointTs Ts           `json:"checkpoint_ts"`
	AdminJob     AdminJobType `json:"admin_job,omitempty"`
	// Tables is the table set chosen at initialisation, so that scheduling
	// does not depend on asking the source again.
	Tables TableNames `json:"tables,omitempty"`
	// Orphans are tables that belong to no capture, with the ts each must
	// restart from. They are durable so that a new owner inherits them.
	Orphans TableTs `json:"orphans,omitempty"`
	// OrphansGrouped is Orphans as the owner writes it from metadata
	// schema 3 on (a start-up orphans every table at one ts); meta moves it
	// into Orphans when it decodes the record.
	OrphansGrouped GroupedTableTs `json:"orphans_grouped,omitempty"`
	// Initialized is set once Tables holds the changefeed's table set.
	Initialized bool `json:"initialized,omitempty"`
	// TableSetKey identifies what Tables was derived from: the source URI
	// and the filter (as hashes, "<source>/<filter>"). When an update
	// changes either, the owner derives the table set again at the
	// checkpoint.
	TableSetKey string `json:"table_set_key,omitempty"`
	// RetiredCount is the rows counted by processors whose positions the
	// owner has since deleted (a capture gone, a pause, a resume), so that
	// the changefeed's rows_written — this plus every position's Count —
	// does not fall back when a processor's counter goes away.
	RetiredCount uint64 `json:"retired_count,omitempty"`
	// LastDDLTs is the commit ts of the last DDL the owner executed
	// downstream (or skipped as irrelevant); it is recorded in the command
	// that applies the DDL's table-set changes, after the sink executed it.
	LastDDLTs Ts `json:"last_ddl_ts,omitempty"`
	// Stream is set for a changefeed whose source is a single stream
	// (PostgreSQL): then Tables holds only the stream unit (StreamUnitID),
	// which the owner schedules like a table, and StreamTables the tables
	// replicated through it, all on the capture that holds the stream.
	Stream       bool       `json:"stream,omitempty"`
	StreamTables TableNames `json:"stream_tables,omitempty"`
	// StreamPosition is where the stream resumes: the native position that
	// is safe once everything at or below its ts is downstream. The owner
	// records it from the stream capture's reports; the capture confirms it
	// upstream only once it is here, so a failover never needs what the
	// upstream already discarded.
	StreamPosition *StreamPosition `json:"stream_position,omitempty"`
}

// ChangefeedTables is a changefeed's table set in a record of its own
// (/changefeed/tables/<cf>), from metadata schema version 3 on. The set
// changes only at initialisation and at DDL, while the status changes at
// every checkpoint advance: with 100,000 tables kept in the status, each
// advance rewrote megabytes through Raft. Readers see the set as the
// status's Tables and StreamTables (meta merges the two records); a status
// written before the split keeps its lists until the owner next writes it.
type ChangefeedTables struct {
	Tables       TableNames `json:"tables,omitempty"`
	StreamTables TableNames `json:"stream_tables,omitempty"`
}

// StreamUnitID is the table ID under which a single-stream changefeed's
// stream is scheduled (task statuses, positions, orphans, moves).
const StreamUnitID TableID = -1

// StreamUnitName is the stream unit's entry in ChangefeedStatus.Tables.
var StreamUnitName = TableName{ID: StreamUnitID, Schema: "", Table: "<stream>"}

// StreamPosition is a single stream's native resume position and the ts it
// belongs to.
type StreamPosition struct {
	Ts       Ts     `json:"ts"`
	Position string `json:"position"`
}

// TableReplicaInfo is one table assigned to a capture.
type TableReplicaInfo struct {
	StartTs Ts `json:"start_ts"`
}

// OperationStatus is how far an operation has got.
type OperationStatus string

const (
	OperDispatched OperationStatus = "dispatched"
	OperFinished   OperationStatus = "finished"
)

// TableOperation is an add or a delete of a table on a capture. A delete with
// IsMove set is the first half of a move: the capture stops the table at
// BoundaryTs, then the owner adds it on the target capture at BoundaryTs.
type TableOperation struct {
	Delete        bool            `json:"delete,omitempty"`
	IsMove        bool            `json:"move,omitempty"`
	TargetCapture CaptureID       `json:"target_capture,omitempty"`
	BoundaryTs    Ts              `json:"boundary_ts"`
	Status        OperationStatus `json:"status"`
}

// TaskStatus is what the owner asks one capture to run for one changefeed. Only
// the owner writes it; processors report through TaskPosition.
type TaskStatus struct {
	Tables     TableReplicas               `json:"tables"`
	Operations map[TableID]*TableOperation `json:"operations,omitempty"`
	AdminJob   AdminJobType                `json:"admin_job,omitempty"`
}

// TaskPosition is one processor's progress, written once per flush interval.
// Only the processor writes it (fenced by its capture incarnation).
type TaskPosition struct {
	// Epoch is the changefeed epoch (ChangefeedInfo.Epoch) of the processor
	// that wrote the position; the state machine refuses a position of any
	// other epoch, so a report delayed across a pause and resume cannot
	// move the new run's progress or fail it with the old run's error.
	Epoch        uint64 `json:"epoch,omitempty"`
	CheckpointTs Ts     `json:"checkpoint_ts"`
	ResolvedTs   Ts     `json:"resolved_ts"`
	// Stopped lists tables whose delete operation the processor carried out,
	// with the ts each table was flushed to when it stopped.
	Stopped TableTs `json:"stopped,omitempty"`
	// Running lists tables the processor has started, with their checkpoints.
	Running TableTs `json:"running,omitempty"`
	// RunningGrouped is Running as processors write it from metadata
	// schema 3 on (GroupedTableTs); meta moves it into Running when it
	// decodes the record, so readers see only Running.
	RunningGrouped GroupedTableTs `json:"running_grouped,omitempty"`
	// Count is the rows this capture's processors of the changefeed have
	// flushed to the sink; a processor restarted on the same capture
	// continues from the count it finds here.
	Count uint64        `json:"count"`
	Error *RunningError `json:"error,omitempty"`
	// Stream is, on the capture that holds a single stream, the newest
	// resume position whose ts every local table has flushed.
	Stream *StreamPosition `json:"stream,omitempty"`
	// Snapshot is the stream's initial copy progress, while it copies.
	Snapshot *SnapshotProgress `json:"snapshot,omitempty"`
}

// SnapshotProgress is a source's initial copy progress as reported by the
// capture that runs it.
type SnapshotProgress struct {
	TablesTotal int   `json:"tables_total"`
	TablesDone  int   `json:"tables_done"`
	Rows        int64 `json:"rows"`
	Bytes       int64 `json:"bytes"`
	EstRows     int64 `json:"estimated_rows,omitempty"`
	// ETASeconds is the estimated time left, 0 when unknown.
	ETASeconds float64 `json:"eta_seconds,omitempty"`
}

// DrainRequest asks the owner to move every table off one incarnation of a
// capture (the capture drain that rolling upgrades use). It names the
// incarnation so that a capture that restarted is not drained again.
type DrainRequest struct {
	Incarnation uint64    `json:"incarnation"`
	Requested   time.Time `json:"requested"`
}

// WorkloadInfo is the cost of one table, for balancing.
type WorkloadInfo struct {
	Workload uint64 `json:"workload"`
}

// TaskWorkload is the per-table workload of one processor.
type TaskWorkload map[TableID]WorkloadInfo

// OwnerInfo is the current owner: its epoch is the Raft index of its claim.
type OwnerInfo struct {
	Epoch  uint64    `json:"epoch"`
	NodeID string    `json:"node_id"`
	Since  time.Time `json:"since"`
}

// ClusterInfo is the cluster's identity and the metadata schema version
// every replica has agreed to enforce.
type ClusterInfo struct {
	// ID is random, made when the first leader records the cluster (or
	// when a backup is restored into a new cluster), so that a restored
	// cluster is never mistaken for the one its backup came from.
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// SchemaVersion is the metadata schema the cluster runs at: raised by
	// the leader only once every voter's build supports the new version,
	// so that replicas of two builds never judge one command differently.
	SchemaVersion int `json:"schema_version"`
	// RestoredFrom is the ID of the cluster a backup came from, with that
	// backup's Raft index.
	RestoredFrom  string `json:"restored_from,omitempty"`
	RestoredIndex uint64 `json:"restored_index,omitempty"`
}

// GCSafepoint is the service safepoint the owner last pushed upstream.
type GCSafepoint struct {
	ServiceID string `json:"service_id"`
	// UpstreamID is the upstream's identity; the record is kept per
	// upstream, under a key derived from it.
	UpstreamID string    `json:"upstream_id,omitempty"`
	SourceURI  string    `json:"source_uri"`
	Safepoint  Ts        `json:"safepoint"`
	Updated    time.Time `json:"updated"`
}

var idPattern = regexp.MustCompile(`^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$`)

// ValidateChangefeedID checks an ID the way TiCDC does: letters, digits and
// single dashes between them, at most 128 characters.
func ValidateChangefeedID(id string) error {
	if id == "" {
		return fmt.Errorf("changefeed ID is empty")
	}
	if len(id) > 128 {
		return fmt.Errorf("changefeed ID %q is longer than 128 characters", id)
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("changefeed ID %q is invalid: use letters, digits and single dashes between them (for example: orders-to-file)", id)
	}
	return nil
}

// ValidateNodeID checks a node (capture) ID.
func ValidateNodeID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("node ID %q must have 1 to 64 characters", id)
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("node ID %q is invalid: use letters, digits and single dashes between them", id)
	}
	return nil
}
