package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Handler serves the public API.
type Handler struct {
	store Store
	cdc   CDC
	mux   *http.ServeMux
	// Routes lists every registered route, for the OpenAPI cross-check.
	Routes []string
}

// New builds the handler and registers every route.
func New(store Store) *Handler {
	h := &Handler{store: store, mux: http.NewServeMux()}
	h.handle("GET /healthz", h.healthz)
	h.handle("GET /readyz", h.readyz)
	h.mux.Handle("GET /metrics", store.Metrics())
	h.Routes = append(h.Routes, "GET /metrics")
	h.handle("GET /api/v1/status", h.status)
	h.handle("GET /api/v1/cluster/members", h.members)
	h.handle("POST /api/v1/cluster/transfer-leader", h.leaderOnly(h.transferLeader))
	h.handle("POST /api/v1/cluster/remove-node", h.leaderOnly(h.removeNode))
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

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

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
	_ = WriteJSON(w, e.Status, e)
}

// DecodeBody reads a JSON body strictly: unknown fields are errors, so a typo
// in a request is reported instead of silently ignored.
func DecodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "the request body is empty; send a JSON object")
		}
		return Errorf(http.StatusBadRequest, CodeBadRequest, "the request body is not valid: %v", err)
	}
	return nil
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
		if err := model.ValidateNodeID(req.To); err != nil {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
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
	if err := model.ValidateNodeID(req.ID); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
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
		return "", Errorf(http.StatusBadRequest, CodeBadRequest, "key %q is invalid: use a non-empty path of at most 512 characters without empty segments", k)
	}
	return meta.PrefixUser + k, nil
}

// consistentRead honours ?consistent=true.
func (h *Handler) consistentRead(r *http.Request) error {
	v := r.URL.Query().Get("consistent")
	if v == "" || v == "false" {
		return nil
	}
	if v != "true" {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "consistent must be true or false, not %q", v)
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
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "reading the body: %v", err)
	}
	if !json.Valid(body) {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "the value must be a JSON document")
	}
	cmd := fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: key, Value: body}}}
	if pr := r.URL.Query().Get("prev_rev"); pr != "" {
		rev, err := strconv.ParseUint(pr, 10, 64)
		if err != nil {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "prev_rev %q is not a revision number", pr)
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
