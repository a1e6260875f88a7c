package api

import (
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/fsm"
)

// RouteOpenAPI is where the document is served.
const RouteOpenAPI = "GET /api/v1/openapi.json"

// EnableOpenAPI serves the OpenAPI document of every route this handler
// registers, including routes registered after this call: the document is
// built per request from Routes.
func (h *Handler) EnableOpenAPI() {
	h.handle(RouteOpenAPI, func(w http.ResponseWriter, r *http.Request) error {
		return WriteJSON(w, http.StatusOK, OpenAPIDocument(h.Routes, h.store.Status().Version))
	})
}

// routeDoc documents one registered pattern. Request and response shapes are
// given as Go values whose types the handlers encode.
type routeDoc struct {
	pattern      string
	id           string
	tag          string
	summary      string
	description  string
	params       map[string]string // path parameter descriptions
	query        []Parameter
	body         any
	bodyDesc     string
	bodyOptional bool
	status       int
	resp         any
	respDesc     string
	// text, when set, is the content type of a non-JSON answer.
	text string
	// errors maps a status to the error codes it carries.
	errors map[int][]string
	// raft marks routes that need a leader (writes, consistent reads).
	raft bool
}

// errorCodes are every stable code, for the Error schema's enum.
func errorCodes() []string {
	return []string{
		CodeNoLeader, CodeNotLeader, CodeUnavailable, CodeBadRequest, CodeNotFound, CodeConflict, CodeUnauthorized, CodeInternal,
		CodeForbidden, CodeTooLarge, CodeMethodNotAllowed, CodeMetadataCorrupt,
		CodeChangefeedExists, CodeChangefeedNotFound, CodeChangefeedRemoved, CodeWrongState, CodeAdminJobPending,
		CodeInvalidURI, CodeInvalidTs, CodeInvalidConfig, CodeCaptureNotFound, CodeTableNotFound, CodeSnapshotLost, CodeOverCapacity,
		string(fsm.CodePreconditionFailed), string(fsm.CodeStaleEpoch), string(fsm.CodeFenced), string(fsm.CodeTableConflict),
		string(fsm.CodeForbidden), string(fsm.CodeInvalid),
	}
}

func consistentParam() Parameter {
	return Parameter{Name: "consistent", In: "query", Description: "true makes the read linearizable: the node first learns the leader's commit index and waits until it has applied it. Default false: the node's local state, which may lag the leader slightly.",
		Schema: &Schema{Type: "boolean"}}
}

const feedIDDesc = "changefeed ID: letters, digits and single dashes between them, at most 128 characters"

func routeDocs() []routeDoc {
	adminErrs := map[int][]string{
		http.StatusBadRequest: {CodeBadRequest},
		http.StatusNotFound:   {CodeChangefeedNotFound},
		http.StatusConflict:   {CodeChangefeedRemoved, CodeWrongState, CodeAdminJobPending},
	}
	return []routeDoc{
		{pattern: "GET /healthz", id: "healthz", tag: "node", summary: "Liveness: the process serves HTTP",
			status: 200, resp: HealthResponse{}, respDesc: `always {"status": "ok"}`},
		{pattern: "GET /readyz", id: "readyz", tag: "node", summary: "Readiness: a leader is known and this node has applied what it knows to be committed",
			status: 200, resp: HealthResponse{}, respDesc: `{"status": "ready"}`,
			errors: map[int][]string{http.StatusServiceUnavailable: {CodeNoLeader, CodeUnavailable}}},
		{pattern: "GET /metrics", id: "metrics", tag: "node", summary: "Prometheus metrics",
			status: 200, text: "text/plain", respDesc: "metrics in the Prometheus text format"},
		{pattern: "GET /api/v1/status", id: "getStatus", tag: "cluster", summary: "This node's view of the cluster: Raft state, leader, term, indexes, owner",
			status: 200, resp: Status{}},
		{pattern: "GET /api/v1/cluster/members", id: "listMembers", tag: "cluster", summary: "Every node as gossip and the Raft configuration see it",
			status: 200, resp: MemberList{}},
		{pattern: "POST /api/v1/cluster/transfer-leader", id: "transferLeader", tag: "cluster", summary: "Hand Raft leadership to another voter",
			description: "Carried out by the leader; a follower forwards the request. With no body or an empty `to`, Raft picks the most up-to-date voter. A failed attempt is retried for up to 10 s; a target gossip does not see alive is refused (409).",
			body:        TransferLeaderRequest{}, bodyOptional: true, status: 200, resp: TransferLeaderResponse{}, raft: true,
			errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest}, http.StatusNotFound: {CodeNotFound}, http.StatusConflict: {CodeConflict}}},
		{pattern: "POST /api/v1/cluster/remove-node", id: "removeNode", tag: "cluster", summary: "Remove a node from the Raft configuration",
			description: "Carried out by the leader; a follower forwards the request. Refused when the remaining voters could not keep a quorum.",
			body:        RemoveNodeRequest{}, status: 200, resp: RemoveNodeResponse{}, raft: true,
			errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest}, http.StatusNotFound: {CodeNotFound}, http.StatusConflict: {CodeConflict}}},
		{pattern: "POST /api/v1/cluster/snapshot", id: "saveSnapshot", tag: "cluster", summary: "Stream a consistent backup of the state machine",
			description: "Carried out by the leader after a read-index (a follower forwards the request), so the backup holds every write acknowledged before it. The answer is the backup file: JSON lines (a header, one line per key, a trailer with the key count, length and SHA-256 of everything before it); a stream that breaks off has no trailer. It holds every changefeed's URIs with their credentials, hence a POST: with an API token it always needs the token. `raftcdc ctl cluster snapshot save FILE` saves and checks it; `raftcdc tools restore` seeds a new cluster from it.",
			status:      200, text: BackupContentType, respDesc: "the backup file", raft: true},
		{pattern: "GET /api/v1/cluster/metadata", id: "showMetadata", tag: "cluster", summary: "Every metadata key, decoded, for debugging",
			description: "Each key under `prefix` with its revisions and its record as the metadata schema decodes it (passwords and secret URI parameters hidden); a key that does not decode is shown as stored, with the reason. TiCDC's `cli unsafe show-metadata`.",
			query:       []Parameter{{Name: "prefix", In: "query", Description: "only keys under this prefix, such as /changefeed/ (default: every key)", Schema: &Schema{Type: "string"}}, consistentParam()},
			status:      200, resp: Metadata{}, errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest}}},
		{pattern: "GET /api/v1/kv/{key...}", id: "getKey", tag: "kv", summary: "Read a free-form key",
			params: map[string]string{"key": "key path under the user key space; may contain slashes, at most 512 characters"},
			query:  []Parameter{consistentParam()}, status: 200, resp: KVResponse{},
			errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest}, http.StatusNotFound: {CodeNotFound}}},
		{pattern: "PUT /api/v1/kv/{key...}", id: "putKey", tag: "kv", summary: "Write a free-form key (any JSON value)",
			params: map[string]string{"key": "key path under the user key space; may contain slashes, at most 512 characters"},
			query: []Parameter{{Name: "prev_rev", In: "query", Description: "compare-and-set: apply only if the key was last changed at this revision (0: only if absent)",
				Schema: &Schema{Type: "integer", Format: "int64"}}},
			body: jsonValue{}, status: 200, resp: IndexResponse{}, raft: true,
			errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest}, http.StatusConflict: {string(fsm.CodePreconditionFailed)}}},
		{pattern: "DELETE /api/v1/kv/{key...}", id: "deleteKey", tag: "kv", summary: "Delete a free-form key",
			params: map[string]string{"key": "key path under the user key space"},
			status: 200, resp: IndexResponse{}, raft: true, errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest}}},
		{pattern: "POST /api/v1/txn", id: "txn", tag: "kv", summary: "Apply conditions and operations on free-form keys atomically",
			body: TxnRequest{}, status: 200, resp: IndexResponse{}, raft: true,
			errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest, string(fsm.CodeInvalid), string(fsm.CodeForbidden)}, http.StatusConflict: {string(fsm.CodePreconditionFailed)}}},

		{pattern: "GET /api/v1/changefeeds", id: "listChangefeeds", tag: "changefeed", summary: "List changefeeds with state, checkpoint and lag",
			query:  []Parameter{{Name: "all", In: "query", Description: "true includes removed and finished changefeeds", Schema: &Schema{Type: "boolean"}}, consistentParam()},
			status: 200, resp: ChangefeedList{}},
		{pattern: "POST /api/v1/changefeeds", id: "createChangefeed", tag: "changefeed", summary: "Create a changefeed",
			description: "Validates the ID, the URIs, the timestamps and the filter; reaches the source to check the GC safepoint and that the filter selects at least one table. An empty id is generated; start_ts 0 means now. A removed changefeed's ID may be reused. Refused with 409 over_capacity, naming the numbers, when its tables do not fit beside the running changefeeds' tables in the cluster's capacity (the sum of the live captures' --table-budget).",
			body:        ChangefeedRequest{}, status: 201, resp: CreateChangefeedResponse{}, raft: true,
			errors: map[int][]string{
				http.StatusBadRequest: {CodeBadRequest, CodeInvalidURI, CodeInvalidTs, CodeInvalidConfig, CodeSnapshotLost},
				http.StatusConflict:   {CodeChangefeedExists, CodeOverCapacity},
			}},
		{pattern: "POST /api/v1/changefeeds/preview", id: "previewChangefeed", tag: "changefeed", summary: "Check a changefeed as a create would, and list the tables it would replicate",
			description: "Takes a create's body and runs every check of createChangefeed (ID, URIs, timestamps, filter, the source's GC safepoint, at least one selected table, the ID not taken by a changefeed that is not removed) but writes nothing. The node that receives it answers, from its own state and its own connection to the source; no leader is needed. An empty id stays empty (a create would generate one); start_ts 0 is answered as the node's now.",
			body:        ChangefeedRequest{}, status: 200, resp: ChangefeedPreview{},
			errors: map[int][]string{
				http.StatusBadRequest: {CodeBadRequest, CodeInvalidURI, CodeInvalidTs, CodeInvalidConfig, CodeSnapshotLost},
				http.StatusConflict:   {CodeChangefeedExists, CodeOverCapacity},
				// The source's GC safepoint or table list could not be read.
				http.StatusServiceUnavailable: {CodeUnavailable},
			}},
		{pattern: "GET /api/v1/changefeeds/{id}", id: "getChangefeed", tag: "changefeed", summary: "One changefeed: definition, owner status, every processor's task and position",
			params: map[string]string{"id": feedIDDesc}, query: []Parameter{consistentParam()}, status: 200, resp: ChangefeedDetail{},
			errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest}, http.StatusNotFound: {CodeChangefeedNotFound}}},
		{pattern: "PUT /api/v1/changefeeds/{id}", id: "updateChangefeed", tag: "changefeed", summary: "Change a stopped or failed changefeed",
			description: "Empty fields keep their values; config replaces the whole config. start_ts cannot change (resume with overwrite_checkpoint_ts instead). Answers the definition before and after and, when the source or the filter changes, the tables that will be added and removed: the table set is derived again at the checkpoint when the changefeed runs next. With dry_run=true it runs every check and writes nothing.",
			params:      map[string]string{"id": feedIDDesc}, body: ChangefeedRequest{}, status: 200, resp: UpdateChangefeedResponse{}, raft: true,
			query: []Parameter{{Name: "dry_run", In: "query", Description: "true checks the update and answers what it would change without writing it", Schema: &Schema{Type: "boolean"}}},
			errors: map[int][]string{
				http.StatusBadRequest: {CodeBadRequest, CodeInvalidURI, CodeInvalidTs, CodeInvalidConfig},
				http.StatusNotFound:   {CodeChangefeedNotFound},
				http.StatusConflict:   {CodeChangefeedRemoved, CodeWrongState, CodeAdminJobPending, CodeOverCapacity},
			}},
		{pattern: "DELETE /api/v1/changefeeds/{id}", id: "removeChangefeed", tag: "changefeed", summary: "Ask the owner to remove a changefeed",
			description: "With force=true a changefeed whose metadata does not decode (answered 500 metadata_corrupt otherwise) is removed too: its info is replaced by a removed changefeed's record, and the answer is a ForceRemoveResult.",
			params:      map[string]string{"id": feedIDDesc},
			query:       []Parameter{{Name: "force", In: "query", Description: "true also removes a changefeed whose metadata does not decode", Schema: &Schema{Type: "boolean"}}},
			status:      202, resp: AdminJobResponse{}, raft: true,
			errors: map[int][]string{
				http.StatusBadRequest:          {CodeBadRequest},
				http.StatusNotFound:            {CodeChangefeedNotFound},
				http.StatusConflict:            {CodeChangefeedRemoved, CodeWrongState, CodeAdminJobPending},
				http.StatusInternalServerError: {CodeMetadataCorrupt},
			}},
		{pattern: "POST /api/v1/changefeeds/{id}/pause", id: "pauseChangefeed", tag: "changefeed", summary: "Ask the owner to pause a changefeed",
			params: map[string]string{"id": feedIDDesc}, status: 202, resp: AdminJobResponse{}, raft: true, errors: adminErrs},
		{pattern: "POST /api/v1/changefeeds/{id}/resume", id: "resumeChangefeed", tag: "changefeed", summary: "Ask the owner to resume a changefeed, optionally from another checkpoint",
			description: "overwrite_checkpoint_ts later than the checkpoint skips changes; earlier replays them. It must be at or above the upstream GC safepoint and before target_ts.",
			params:      map[string]string{"id": feedIDDesc}, body: ResumeRequest{}, bodyOptional: true, status: 202, resp: AdminJobResponse{}, raft: true,
			errors: map[int][]string{
				http.StatusBadRequest: {CodeBadRequest, CodeSnapshotLost, CodeInvalidTs},
				http.StatusNotFound:   {CodeChangefeedNotFound},
				http.StatusConflict:   {CodeChangefeedRemoved, CodeWrongState, CodeAdminJobPending, CodeOverCapacity},
			}},
		{pattern: "POST /api/v1/changefeeds/{id}/rebalance", id: "rebalanceChangefeed", tag: "changefeed", summary: "Ask the owner to spread a running changefeed's tables evenly again",
			params: map[string]string{"id": feedIDDesc}, status: 202, resp: RebalanceResponse{}, raft: true, errors: adminErrs},
		{pattern: "POST /api/v1/changefeeds/{id}/move-table", id: "moveTable", tag: "changefeed", summary: "Ask the owner to move one table of a running changefeed to a live capture",
			params: map[string]string{"id": feedIDDesc}, body: MoveTableRequest{}, status: 202, resp: MoveTableResponse{}, raft: true,
			errors: map[int][]string{
				http.StatusBadRequest: {CodeBadRequest, CodeCaptureNotFound, CodeTableNotFound},
				http.StatusNotFound:   {CodeChangefeedNotFound},
				http.StatusConflict:   {CodeChangefeedRemoved, CodeWrongState, CodeAdminJobPending},
			}},
		{pattern: "POST /api/v1/captures/{id}/drain", id: "drainCapture", tag: "capture", summary: "Ask the owner to move every table off a capture (before a restart or an upgrade)",
			description: "Tables move in two phases: each stops at a boundary on the drained capture and continues on another one from exactly there, so nothing is replayed. The request names the capture's current incarnation: a capture that restarts takes tables again. Answers how many tables the capture still holds; repeat the request, or list the captures, to follow it. Refused when no other live capture could take the tables.",
			params:      map[string]string{"id": "capture (node) ID"}, status: 202, resp: DrainCaptureResponse{}, raft: true,
			errors: map[int][]string{
				http.StatusBadRequest: {CodeBadRequest},
				http.StatusNotFound:   {CodeCaptureNotFound},
				http.StatusConflict:   {CodeConflict},
			}},
		{pattern: "GET /api/v1/captures", id: "listCaptures", tag: "capture", summary: "Every capture: address, owner or not, gossip liveness, tables",
			query: []Parameter{consistentParam()}, status: 200, resp: CaptureList{}},
		{pattern: "GET /api/v1/processors", id: "listProcessors", tag: "processor", summary: "Every (changefeed, capture) pair with its table count and checkpoint",
			query: []Parameter{consistentParam()}, status: 200, resp: ProcessorList{}},
		{pattern: "GET /api/v1/processors/{changefeed}/{capture}", id: "getProcessor", tag: "processor", summary: "One processor: its task, position and per-table workload",
			params: map[string]string{"changefeed": feedIDDesc, "capture": "capture (node) ID"}, query: []Parameter{consistentParam()},
			status: 200, resp: ProcessorView{},
			errors: map[int][]string{http.StatusBadRequest: {CodeBadRequest}, http.StatusNotFound: {CodeNotFound}}},
		{pattern: "GET /api/v1/tso", id: "getTSO", tag: "changefeed", summary: "The current TSO (physical milliseconds << 18) and its wall time",
			status: 200, resp: TSOResponse{}},
		{pattern: RouteOpenAPI, id: "getOpenAPI", tag: "node", summary: "This document",
			status: 200, resp: jsonValue{}, respDesc: "an OpenAPI 3.0 document"},
	}
}

// jsonValue stands for a body that may be any JSON value.
type jsonValue struct{}

// documentedPatterns lists every pattern the document can describe.
func documentedPatterns() []string {
	var out []string
	for _, d := range routeDocs() {
		out = append(out, d.pattern)
	}
	return out
}

// OpenAPIDocument describes the given registered patterns (Handler.Routes);
// patterns without documentation are left out, which the API tests catch.
func OpenAPIDocument(routes []string, version string) *OpenAPI {
	if version == "" {
		version = "dev"
	}
	doc := &OpenAPI{
		OpenAPI: "3.0.3",
		Info: Info{Title: "raftcdc API", Version: version, Description: `The API every raftcdc node serves. Any node answers reads from its replica
(?consistent=true makes a read linearizable) and forwards writes to the Raft
leader. Every error is {"code", "message"}: the code is stable, the message says
what was wrong and how to fix it. When the server runs with an API token, every
write under /api/ needs "Authorization: Bearer <token>", and reads do too if
the server protects them; /healthz, /readyz and /metrics are always open.`},
		Paths: map[string]PathItem{},
		Components: Components{
			Schemas: map[string]*Schema{},
			SecuritySchemes: map[string]SecurityScheme{"bearer": {Type: "http", Scheme: "bearer",
				Description: "the server's --api-token; required for writes when set, and for reads with --api-token-protect-reads"}},
		},
		Tags: []Tag{
			{Name: "node", Description: "health, readiness, metrics"},
			{Name: "cluster", Description: "Raft membership and leadership"},
			{Name: "changefeed", Description: "changefeeds and their lifecycle"},
			{Name: "capture", Description: "captures (every node is one)"},
			{Name: "processor", Description: "one changefeed's work on one capture"},
			{Name: "kv", Description: "free-form keys, for tests and benchmarks"},
		},
	}
	g := &schemaGen{schemas: doc.Components.Schemas}
	g.schemas["Error"] = &Schema{Type: "object", AdditionalProperties: false, Required: []string{"code", "message"},
		Properties: map[string]*Schema{
			"code":    {Type: "string", Enum: errorCodes(), Description: "stable error code"},
			"message": {Type: "string", Description: "what was wrong and how to fix it"},
		}}
	registered := map[string]bool{}
	for _, r := range routes {
		registered[r] = true
	}
	for _, d := range routeDocs() {
		if !registered[d.pattern] {
			continue
		}
		method, path, _ := strings.Cut(d.pattern, " ")
		oaPath := strings.ReplaceAll(path, "...}", "}")
		if doc.Paths[oaPath] == nil {
			doc.Paths[oaPath] = PathItem{}
		}
		doc.Paths[oaPath][strings.ToLower(method)] = d.operation(g, method, path)
	}
	return doc
}

func (d routeDoc) operation(g *schemaGen, method, path string) *Operation {
	op := &Operation{OperationID: d.id, Summary: d.summary, Description: d.description, Tags: []string{d.tag}, Responses: map[string]Response{}}
	for _, seg := range strings.Split(path, "/") {
		if !strings.HasPrefix(seg, "{") {
			continue
		}
		name := strings.TrimSuffix(strings.Trim(seg, "{}"), "...")
		op.Parameters = append(op.Parameters, Parameter{Name: name, In: "path", Required: true, Description: d.params[name], Schema: &Schema{Type: "string"}})
	}
	op.Parameters = append(op.Parameters, d.query...)
	if d.body != nil {
		op.RequestBody = &RequestBody{Description: d.bodyDesc, Required: !d.bodyOptional,
			Content: map[string]MediaType{"application/json": {Schema: g.schemaFor(d.body)}}}
	}
	ok := Response{Description: d.respDesc}
	if ok.Description == "" {
		ok.Description = http.StatusText(d.status)
	}
	switch {
	case d.text != "":
		ok.Content = map[string]MediaType{d.text: {Schema: &Schema{Type: "string"}}}
	case d.resp != nil:
		ok.Content = map[string]MediaType{"application/json": {Schema: g.schemaFor(d.resp)}}
	}
	op.Responses[strconv.Itoa(d.status)] = ok
	errs := map[int][]string{}
	for status, codes := range d.errors {
		errs[status] = append(errs[status], codes...)
	}
	underAPI := strings.HasPrefix(path, "/api/")
	write := method != http.MethodGet
	if underAPI {
		errs[http.StatusUnauthorized] = append(errs[http.StatusUnauthorized], CodeUnauthorized)
		errs[http.StatusInternalServerError] = append(errs[http.StatusInternalServerError], CodeInternal)
		if write {
			op.Security = []map[string][]string{{"bearer": {}}}
		} else {
			// Reads need the token only when the server protects them.
			op.Security = []map[string][]string{{}, {"bearer": {}}}
		}
	}
	if d.raft || d.queryHas("consistent") {
		errs[http.StatusServiceUnavailable] = append(errs[http.StatusServiceUnavailable], CodeNoLeader, CodeNotLeader, CodeUnavailable)
		errs[http.StatusGatewayTimeout] = append(errs[http.StatusGatewayTimeout], CodeUnavailable)
	}
	statuses := make([]int, 0, len(errs))
	for s := range errs {
		statuses = append(statuses, s)
	}
	sort.Ints(statuses)
	for _, s := range statuses {
		codes := dedupe(errs[s])
		op.Responses[strconv.Itoa(s)] = Response{
			Description: http.StatusText(s) + "; code: " + strings.Join(codes, ", "),
			Content:     map[string]MediaType{"application/json": {Schema: &Schema{Ref: "#/components/schemas/Error"}}},
		}
	}
	return op
}

func (d routeDoc) queryHas(name string) bool {
	for _, p := range d.query {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (g *schemaGen) schemaFor(v any) *Schema {
	if _, ok := v.(jsonValue); ok {
		return &Schema{Description: "any JSON value"}
	}
	return g.of(reflect.TypeOf(v))
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
