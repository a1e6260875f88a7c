package ctl

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
)

// The typed calls below decode into the API's own types, so the JSON that
// `-o json` prints is exactly the documented API schema (see
// /api/v1/openapi.json) and cannot drift from it.

// CreateResult is the answer to a create.
type CreateResult struct {
	ID      string        `json:"id"`
	StartTs *api.TimeInfo `json:"start_ts"`
	Index   uint64        `json:"index"`
}

// AdminResult is the answer to pause, resume and remove: the request is
// recorded and the owner carries it out.
type AdminResult struct {
	ID       string             `json:"id"`
	AdminJob model.AdminJobType `json:"admin_job"`
	State    model.FeedState    `json:"state"`
}

// RemoveResult answers a remove: an admin job, or, forced on a changefeed
// whose metadata does not decode, what was replaced (api.ForceRemoveResult).
type RemoveResult struct {
	AdminResult
	Replaced        string   `json:"replaced,omitempty"`
	UpstreamCleanup string   `json:"upstream_cleanup,omitempty"`
	CorruptLeft     []string `json:"corrupt_left,omitempty"`
}

// UpdateResult is the changefeed before and after an update.
type UpdateResult struct {
	ID            string               `json:"id"`
	Before        model.ChangefeedInfo `json:"before"`
	After         model.ChangefeedInfo `json:"after"`
	TablesAdded   []string             `json:"tables_added,omitempty"`
	TablesRemoved []string             `json:"tables_removed,omitempty"`
	DryRun        bool                 `json:"dry_run,omitempty"`
}

// MoveResult is the answer to move-table.
type MoveResult struct {
	ID            string        `json:"id"`
	TableID       model.TableID `json:"table_id"`
	TargetCapture string        `json:"target_capture"`
}

// RebalanceResult is the answer to rebalance.
type RebalanceResult struct {
	ID        string `json:"id"`
	Rebalance string `json:"rebalance"`
}

// TransferResult is the answer to transfer-leader.
type TransferResult struct {
	PreviousLeader string `json:"previous_leader"`
	Requested      string `json:"requested"`
}

// TSO is the answer of GET /api/v1/tso.
type TSO struct {
	TSO        model.Ts  `json:"tso"`
	Time       time.Time `json:"time"`
	PhysicalMS int64     `json:"physical_ms"`
	Text       string    `json:"text"`
}

func feedPath(id string, rest string) string {
	return "/api/v1/changefeeds/" + url.PathEscape(id) + rest
}

// read adds ?consistent=true to a read path when the client asks for
// linearizable reads.
func (c *Client) read(path string, query url.Values) string {
	if c.consistent {
		if query == nil {
			query = url.Values{}
		}
		query.Set("consistent", "true")
	}
	if len(query) == 0 {
		return path
	}
	return path + "?" + query.Encode()
}

// ListChangefeeds lists changefeeds; all includes removed and finished ones.
func (c *Client) ListChangefeeds(ctx context.Context, all bool) ([]api.ChangefeedSummary, error) {
	var out struct {
		Changefeeds []api.ChangefeedSummary `json:"changefeeds"`
	}
	q := url.Values{}
	if all {
		q.Set("all", "true")
	}
	err := c.Do(ctx, http.MethodGet, c.read("/api/v1/changefeeds", q), nil, &out)
	return out.Changefeeds, err
}

// GetChangefeed reads one changefeed with everything known about it.
func (c *Client) GetChangefeed(ctx context.Context, id string) (*api.ChangefeedDetail, error) {
	var out api.ChangefeedDetail
	if err := c.Do(ctx, http.MethodGet, c.read(feedPath(id, ""), nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateChangefeed creates a changefeed.
func (c *Client) CreateChangefeed(ctx context.Context, req api.ChangefeedRequest) (*CreateResult, error) {
	var out CreateResult
	if err := c.Do(ctx, http.MethodPost, "/api/v1/changefeeds", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PreviewChangefeed has the server run every check of a create of req and
// answer the tables it would replicate, without creating anything. The
// server, not ctl, opens the source: it has the network access and the
// credentials that ctl's machine may lack.
func (c *Client) PreviewChangefeed(ctx context.Context, req api.ChangefeedRequest) (*api.ChangefeedPreview, error) {
	var out api.ChangefeedPreview
	if err := c.Do(ctx, http.MethodPost, "/api/v1/changefeeds/preview", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateChangefeed changes a stopped or failed changefeed; with dryRun the
// server checks the update and answers what it would change, writing
// nothing.
func (c *Client) UpdateChangefeed(ctx context.Context, id string, req api.ChangefeedRequest, dryRun bool) (*UpdateResult, error) {
	var out UpdateResult
	path := feedPath(id, "")
	if dryRun {
		path += "?dry_run=true"
	}
	if err := c.Do(ctx, http.MethodPut, path, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PauseChangefeed asks the owner to pause a changefeed.
func (c *Client) PauseChangefeed(ctx context.Context, id string) (*AdminResult, error) {
	var out AdminResult
	if err := c.Do(ctx, http.MethodPost, feedPath(id, "/pause"), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ResumeChangefeed asks the owner to resume a changefeed, optionally from
// another checkpoint (0 keeps the checkpoint).
func (c *Client) ResumeChangefeed(ctx context.Context, id string, overwrite model.Ts) (*AdminResult, error) {
	var out AdminResult
	var body any
	if overwrite != 0 {
		body = api.ResumeRequest{OverwriteCheckpointTs: overwrite}
	}
	if err := c.Do(ctx, http.MethodPost, feedPath(id, "/resume"), body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveChangefeed asks the owner to remove a changefeed.
func (c *Client) RemoveChangefeed(ctx context.Context, id string, force bool) (*RemoveResult, error) {
	var out RemoveResult
	path := feedPath(id, "")
	if force {
		path += "?force=true"
	}
	if err := c.Do(ctx, http.MethodDelete, path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Rebalance asks the owner to spread a changefeed's tables evenly again.
func (c *Client) Rebalance(ctx context.Context, id string) (*RebalanceResult, error) {
	var out RebalanceResult
	if err := c.Do(ctx, http.MethodPost, feedPath(id, "/rebalance"), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// MoveTable asks the owner to move one table to a capture.
func (c *Client) MoveTable(ctx context.Context, id string, table model.TableID, target string) (*MoveResult, error) {
	var out MoveResult
	req := api.MoveTableRequest{TableID: table, TargetCapture: target}
	if err := c.Do(ctx, http.MethodPost, feedPath(id, "/move-table"), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DrainCapture asks the owner to move every table off a capture.
func (c *Client) DrainCapture(ctx context.Context, id string) (*api.DrainCaptureResponse, error) {
	var out api.DrainCaptureResponse
	if err := c.Do(ctx, http.MethodPost, "/api/v1/captures/"+url.PathEscape(id)+"/drain", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Captures lists the captures.
func (c *Client) Captures(ctx context.Context) ([]api.CaptureView, error) {
	var out struct {
		Captures []api.CaptureView `json:"captures"`
	}
	err := c.Do(ctx, http.MethodGet, c.read("/api/v1/captures", nil), nil, &out)
	return out.Captures, err
}

// Processors lists every (changefeed, capture) pair.
func (c *Client) Processors(ctx context.Context) ([]api.ProcessorView, error) {
	var out struct {
		Processors []api.ProcessorView `json:"processors"`
	}
	err := c.Do(ctx, http.MethodGet, c.read("/api/v1/processors", nil), nil, &out)
	return out.Processors, err
}

// Processor reads one processor.
func (c *Client) Processor(ctx context.Context, changefeed, capture string) (*api.ProcessorView, error) {
	var out api.ProcessorView
	path := "/api/v1/processors/" + url.PathEscape(changefeed) + "/" + url.PathEscape(capture)
	if err := c.Do(ctx, http.MethodGet, c.read(path, nil), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status is the answering node's view of the cluster.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var out api.Status
	if err := c.Do(ctx, http.MethodGet, "/api/v1/status", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Members lists the nodes as gossip and Raft see them.
func (c *Client) Members(ctx context.Context) ([]api.Member, error) {
	var out struct {
		Members []api.Member `json:"members"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/cluster/members", nil, &out)
	return out.Members, err
}

// TransferLeader moves leadership, to a given node or to any voter ("").
func (c *Client) TransferLeader(ctx context.Context, to string) (*TransferResult, error) {
	var out TransferResult
	var body any
	if to != "" {
		body = map[string]string{"to": to}
	}
	if err := c.Do(ctx, http.MethodPost, "/api/v1/cluster/transfer-leader", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveNode removes a node from the Raft configuration.
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/cluster/remove-node", map[string]string{"id": id}, nil)
}

// TSO reads the current TSO.
func (c *Client) TSO(ctx context.Context) (*TSO, error) {
	var out TSO
	if err := c.Do(ctx, http.MethodGet, "/api/v1/tso", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
