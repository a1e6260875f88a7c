package api

import (
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// The answers below are the bodies the routes write. Most handlers build them
// as maps; these types give them names so that the OpenAPI document and ctl
// share one definition, and api tests check every handler's answer against
// the document.

// HealthResponse is the answer of /healthz and /readyz.
type HealthResponse struct {
	Status string `json:"status"`
}

// MemberList is the answer of GET /api/v1/cluster/members.
type MemberList struct {
	Members []Member `json:"members"`
}

// TransferLeaderRequest asks for a leadership transfer; an empty To lets Raft
// choose the most up-to-date voter.
type TransferLeaderRequest struct {
	To string `json:"to,omitempty"`
}

// TransferLeaderResponse is the answer of a transfer.
type TransferLeaderResponse struct {
	PreviousLeader string `json:"previous_leader"`
	Requested      string `json:"requested"`
}

// RemoveNodeRequest names the node to remove from the Raft configuration.
type RemoveNodeRequest struct {
	ID string `json:"id"`
}

// RemoveNodeResponse is the answer of a removal.
type RemoveNodeResponse struct {
	Removed string `json:"removed"`
}

// IndexResponse is the Raft index at which a write applied.
type IndexResponse struct {
	Index uint64 `json:"index"`
}

// ChangefeedList is the answer of GET /api/v1/changefeeds.
type ChangefeedList struct {
	Changefeeds []ChangefeedSummary `json:"changefeeds"`
}

// CreateChangefeedResponse is the answer of a create.
type CreateChangefeedResponse struct {
	ID      string    `json:"id"`
	StartTs *TimeInfo `json:"start_ts"`
	Index   uint64    `json:"index"`
}

// UpdateChangefeedResponse is a changefeed's definition before and after an
// update.
type UpdateChangefeedResponse struct {
	ID     string               `json:"id"`
	Before model.ChangefeedInfo `json:"before"`
	After  model.ChangefeedInfo `json:"after"`
	// TablesAdded and TablesRemoved are how the table set changes when the
	// changefeed runs next, if the update changes its source or filter:
	// the owner derives the set again at the checkpoint.
	TablesAdded   []string `json:"tables_added,omitempty"`
	TablesRemoved []string `json:"tables_removed,omitempty"`
	// DryRun is set when nothing was written (?dry_run=true).
	DryRun bool `json:"dry_run,omitempty"`
}

// AdminJobResponse says an operator request (pause, resume, remove) was
// recorded; the owner carries it out and clears admin_job.
type AdminJobResponse struct {
	ID       string             `json:"id"`
	AdminJob model.AdminJobType `json:"admin_job"`
	State    model.FeedState    `json:"state"`
}

// RebalanceResponse says a rebalance was requested.
type RebalanceResponse struct {
	ID        string `json:"id"`
	Rebalance string `json:"rebalance"`
}

// MoveTableResponse says a table move was requested.
type MoveTableResponse struct {
	ID            string        `json:"id"`
	TableID       model.TableID `json:"table_id"`
	TargetCapture string        `json:"target_capture"`
}

// DrainCaptureResponse says a drain was requested and how many tables the
// capture still holds (0: drained).
type DrainCaptureResponse struct {
	CaptureID       string `json:"capture_id"`
	Incarnation     uint64 `json:"incarnation"`
	TablesRemaining int    `json:"tables_remaining"`
}

// CaptureList is the answer of GET /api/v1/captures.
type CaptureList struct {
	Captures []CaptureView `json:"captures"`
}

// ProcessorList is the answer of GET /api/v1/processors.
type ProcessorList struct {
	Processors []ProcessorView `json:"processors"`
}

// TSOResponse is the cluster's current TSO.
type TSOResponse struct {
	TSO        model.Ts  `json:"tso"`
	Time       time.Time `json:"time"`
	PhysicalMS int64     `json:"physical_ms"`
	// Text is the TSO as a decimal string, for clients whose JSON numbers
	// are doubles and would round it.
	Text string `json:"text"`
}

// ChangefeedPreview is what a create with the same body would do, answered
// by the preview route, which writes nothing.
type ChangefeedPreview struct {
	// ID is empty when the request had none: the create would generate one.
	ID string `json:"id"`
	// StartTs is the start the create would use; a request without one
	// starts at the answering node's now.
	StartTs  *TimeInfo `json:"start_ts"`
	TargetTs *TimeInfo `json:"target_ts,omitempty"`
	// Tables are the source's tables the filter selects, as schema.table,
	// in the order the source lists them.
	Tables      []string `json:"tables"`
	TotalTables int      `json:"total_tables"`
}
