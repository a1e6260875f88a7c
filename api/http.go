package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// validateNodeID checks a node ID from a request; an overlong one is not
// quoted back whole.
func validateNodeID(field, id string) error {
	if len(id) > 64 {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "%s: node ID %s is longer than 64 characters", field, quoteClip(id))
	}
	if err := model.ValidateNodeID(id); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "%s: %v", field, err)
	}
	return nil
}

// validateChangefeedID is model.ValidateChangefeedID with a bounded echo.
func validateChangefeedID(id string) error {
	if len(id) > 128 {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "changefeed ID %s is longer than 128 characters", quoteClip(id))
	}
	if err := model.ValidateChangefeedID(id); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
	}
	return nil
}

// Handler serves the public API.
type Handler struct {
	store Store
	cdc   CDC
	mux   *http.ServeMux
	// guard, when set, checks the API token before any route runs.
	guard *tokenGuard
	// Routes lists every registered public route, for the OpenAPI
	// cross-check. Internal and profiling routes are not in it.
	Routes []string
	// decoded keeps decoded metadata by revision between requests: at
	// 100,000 tables one changefeed's records are megabytes, and a list
	// polled twice a second decoded them all each time.
	decoded *meta.Cache
}

// decodeSweep is how long a decoded record nobody asked for stays cached.
const decodeSweep = 30 * time.Second

// New builds the handler and registers every route.
func New(store Store) *Handler {
	h := &Handler{store: store, mux: http.NewServeMux(), decoded: meta.NewCache()}
	h.handle("GET /healthz", h.healthz)
	h.handle("GET /readyz", h.readyz)
	h.mux.Handle("GET /metrics", store.Metrics())
	h.Routes = append(h.Routes, "GET /metrics")
	h.handle("GET /api/v1/status", h.status)
	h.handle("GET /api/v1/cluster/members", h.members)
	h.handle("POST /api/v1/cluster/transfer-leader", h.leaderOnly(h.transferLeader))
	h.handle("POST /api/v1/cluster/remove-node", h.leaderOnly(h.removeNode))
	h.handle("POST /api/v1/cluster/snapshot", h.leaderOnly(h.snapshot))
	h.handle("GET /api/v1/cluster/metadata", h.metadata)
	h.handle("GET /api/v1/kv/{key...}", h.kvGet)
	h.handle("PUT /api/v1/kv/{key...}", h.kvPut)
	h.handle("DELETE /api/v1/kv/{key...}", h.kvDelete)
	h.handle("POST /api/v1/txn", h.txn)
	return h
}

func (h *Handler) handle(pattern string, fn func(w http.ResponseWriter, r *http.Request) error) {
	h.Routes = append(h.Routes, pattern)
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			WriteError(w, err)
		}
	})
}

// Internal registers a node-to-node route. It is served like the others
// (JSON errors, 404/405) but is not part of the public API: not in Routes,
// never opened by the API token. The caller guards it with node
// credentials.
func (h *Handler) Internal(pattern string, fn http.HandlerFunc) {
	h.mux.HandleFunc(pattern, fn)
}

// ServeHTTP checks the API token (when one is required) and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.guard != nil && !h.guard.admit(w, r) {
		return
	}
	h.route(w, r)
}

// route serves from the mux, answering what it has no route for in the
// API's JSON: 404 for an unknown path, 405 with Allow for a wrong method.
// The mux's own answers are text/plain.
func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		h.mux.ServeHTTP(w, r)
		return
	}
	rec := &headerRecorder{header: http.Header{}}
	h.mux.ServeHTTP(rec, r)
	switch {
	case rec.status == http.StatusMethodNotAllowed:
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		WriteError(w, Errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method %s is not allowed on %s; allowed: %s", Clip(r.Method), quoteClip(r.URL.Path), allow))
	case rec.status >= 300 && rec.status < 400:
		// The mux's redirect to a cleaned path.
		w.Header().Set("Location", rec.header.Get("Location"))
		w.WriteHeader(rec.status)
	default:
		WriteError(w, Errorf(http.StatusNotFound, CodeNotFound, "no route for %s %s; GET /api/v1/openapi.json lists the API", Clip(r.Method), quoteClip(r.URL.Path)))
	}
}

// headerRecorder keeps the status and headers of the mux's fallback answer
// and drops its text body.
type headerRecorder struct {
	header http.Header
	status int
}

func (r *headerRecorder) Header() http.Header         { return r.header }
func (r *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *headerRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// maxMessage bounds an error message in an answer.
const maxMessage = 1024

// WriteError maps any error to {code, message} and its status.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	var fe *fsm.Error
	switch {
	case errors.As(err, &e):
	case errors.As(err, &fe):
		status := http.StatusConflict
		if fe.Code == fsm.CodeInvalid || fe.Code == fsm.CodeForbidden {
			status = http.StatusBadRequest
		}
		e = &Error{Status: status, Code: string(fe.Code), Message: fe.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		e = &Error{Status: http.StatusGatewayTimeout, Code: CodeUnavailable, Message: err.Error(), RetryAfter: 1}
	default:
		e = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
	}
	if e.Status == 0 {
		e.Status = http.StatusInternalServerError
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if len(e.Message) > maxMessage {
		// A message quoting something a client sent (a URI, say) stays
		// bounded whatever was sent.
		cut := *e
		n := maxMessage
		for n > 0 && !utf8.RuneStart(cut.Message[n]) {
			n--
		}
		cut.Message = fmt.Sprintf("%s… (message cut at %d of %d bytes)", cut.Message[:n], n, len(e.Message))
		e = &cut
	}
	_ = WriteJSON(w, e.Status, e)
}

func (h *Handler) leaderOnly(fn func(w http.ResponseWriter, r *http.Request) error) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if h.store.IsLeader() {
			return fn(w, r)
		}
		if r.Header.Get(HeaderForwarded) != "" {
			return Errorf(http.StatusServiceUnavailable, CodeNotLeader, "this node is no longer the leader")
		}
		if h.store.LeaderAPIAddr() == "" {
			return NoLeader()
		}
		h.store.Forward(w, r)
		return nil
	}
}

// HeaderForwarded marks a request one node sent to another.
const HeaderForwarded = "X-Raftcdc-Forwarded"

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) error {
	return WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := h.store.Ready(); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error(), RetryAfter: 1}
		}
		if e.Status == 0 || e.Status < 500 {
			e.Status = http.StatusServiceUnavailable
		}
		return e
	}
	return WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) error {
	return WriteJSON(w, http.StatusOK, h.store.Status())
}

func (h *Handler) members(w http.ResponseWriter, r *http.Request) error {
	m, err := h.store.ClusterMembers()
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, map[string]any{"members": m})
}

func (h *Handler) transferLeader(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		To string `json:"to"`
	}
	if r.ContentLength != 0 {
		if err := DecodeBody(r, &req); err != nil {
			return err
		}
	}
	if req.To != "" {
		if err := validateNodeID("to", req.To); err != nil {
			return err
		}
	}
	from := h.store.Status().NodeID
	if err := h.store.TransferLeader(r.Context(), req.To); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, map[string]string{"previous_leader": from, "requested": req.To})
}

func (h *Handler) removeNode(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID string `json:"id"`
	}
	if err := DecodeBody(r, &req); err != nil {
		return err
	}
	if err := validateNodeID("id", req.ID); err != nil {
		return err
	}
	if err := h.store.RemoveNode(r.Context(), req.ID); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, map[string]string{"removed": req.ID})
}

// KVResponse is a key read through the API.
type KVResponse struct {
	Key          string          `json:"key"`
	Value        json.RawMessage `json:"value"`
	CreateRev    uint64          `json:"create_rev"`
	ModRev       uint64          `json:"mod_rev"`
	AppliedIndex uint64          `json:"applied_index"`
}

func userKey(r *http.Request) (string, error) {
	k := r.PathValue("key")
	if k == "" || strings.Contains(k, "//") || len(k) > 512 {
		return "", Errorf(http.StatusBadRequest, CodeBadRequest, "key %s is invalid: use a non-empty path of at most 512 characters without empty segments", quoteClip(k))
	}
	return meta.PrefixUser + k, nil
}

// consistentRead honours ?consistent=true.
func (h *Handler) consistentRead(r *http.Request) error {
	consistent, err := BoolParam(r, "consistent")
	if err != nil || !consistent {
		return err
	}
	return h.store.ReadIndex(r.Context())
}

func (h *Handler) kvGet(w http.ResponseWriter, r *http.Request) error {
	key, err := userKey(r)
	if err != nil {
		return err
	}
	if err := h.consistentRead(r); err != nil {
		return err
	}
	var out KVResponse
	found := false
	err = h.store.View(func(rd fsm.Reader, applied uint64) error {
		kv, ok := rd.Get(key)
		found = ok
		out = KVResponse{Key: strings.TrimPrefix(kv.Key, meta.PrefixUser), Value: kv.Value, CreateRev: kv.CreateRev, ModRev: kv.ModRev, AppliedIndex: applied}
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return Errorf(http.StatusNotFound, CodeNotFound, "key %q does not exist", r.PathValue("key"))
	}
	return WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) kvPut(w http.ResponseWriter, r *http.Request) error {
	key, err := userKey(r)
	if err != nil {
		return err
	}
	body, err := ReadBody(r, ValueLimit)
	if err != nil {
		return err
	}
	// A value is free-form JSON, but still exactly one document.
	if !json.Valid(body) {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "the value must be one JSON document")
	}
	cmd := fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: key, Value: body}}}
	if pr := r.URL.Query().Get("prev_rev"); pr != "" {
		rev, err := strconv.ParseUint(pr, 10, 64)
		if err != nil {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "prev_rev %s is not a revision number", quoteClip(pr))
		}
		cmd.Conds = []fsm.Cond{{Type: fsm.CondModRev, Key: key, ModRev: rev}}
	}
	return h.applyAndReply(w, r, cmd)
}

func (h *Handler) kvDelete(w http.ResponseWriter, r *http.Request) error {
	key, err := userKey(r)
	if err != nil {
		return err
	}
	return h.applyAndReply(w, r, fsm.Command{Ops: []fsm.Op{{Type: fsm.OpDelete, Key: key}}})
}

// TxnRequest is a batch of conditions and operations on user keys, applied
// atomically: the batched write path.
type TxnRequest struct {
	Conds []fsm.Cond `json:"conds"`
	Ops   []fsm.Op   `json:"ops"`
}

func (h *Handler) txn(w http.ResponseWriter, r *http.Request) error {
	var req TxnRequest
	if err := DecodeBody(r, &req); err != nil {
		return err
	}
	if len(req.Ops) == 0 {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "a txn needs at least one op")
	}
	for i := range req.Ops {
		if !strings.HasPrefix(req.Ops[i].Key, meta.PrefixUser) {
			req.Ops[i].Key = meta.PrefixUser + strings.TrimPrefix(req.Ops[i].Key, "/")
		}
	}
	for i := range req.Conds {
		if !strings.HasPrefix(req.Conds[i].Key, meta.PrefixUser) {
			req.Conds[i].Key = meta.PrefixUser + strings.TrimPrefix(req.Conds[i].Key, "/")
		}
	}
	return h.applyAndReply(w, r, fsm.Command{Conds: req.Conds, Ops: req.Ops})
}

func (h *Handler) applyAndReply(w http.ResponseWriter, r *http.Request, cmd fsm.Command) error {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := h.store.Apply(ctx, cmd)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return WriteJSON(w, http.StatusOK, map[string]uint64{"index": res.Index})
}
