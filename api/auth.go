package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strings"
)

// HeaderClusterSecret carries the cluster secret on requests one node sends
// another.
const HeaderClusterSecret = "X-Raftcdc-Cluster-Secret"

// NodeCheck says whether a request comes from another node of the cluster
// (its certificate, or the cluster secret). The server supplies it; the API
// only asks.
type NodeCheck func(r *http.Request) bool

// ClusterSecretCheck accepts requests that carry the cluster secret,
// compared in constant time. An empty secret accepts nothing.
func ClusterSecretCheck(secret string) NodeCheck {
	if secret == "" {
		return func(*http.Request) bool { return false }
	}
	want := sha256.Sum256([]byte(secret))
	return func(r *http.Request) bool { return equal(r.Header.Get(HeaderClusterSecret), want) }
}

// RequireToken makes the API demand "Authorization: Bearer <token>" on every
// write (any method but GET, HEAD and OPTIONS) under /api/, on reads there
// too when protectReads is set, and on everything under /debug/ (profiles
// show memory, stacks and timings) always. /healthz, /readyz and /metrics
// stay open so that probes and scrapers need no secret; /internal/ is never
// opened by the token — the server guards it with node credentials.
//
// A request another node forwarded (X-Raftcdc-Forwarded) passes when
// isNode accepts it: that is the internal credential, and it works even when
// the forwarding node did not pass the client's header on. An empty token
// leaves the API open, so the server can call this unconditionally. The
// check runs before routing, so it covers routes registered at any time.
func (h *Handler) RequireToken(token string, protectReads bool, isNode NodeCheck) {
	if token == "" {
		h.guard = nil
		return
	}
	h.guard = &tokenGuard{token: sha256.Sum256([]byte(token)), protectReads: protectReads, isNode: isNode}
}

type tokenGuard struct {
	token        [sha256.Size]byte
	protectReads bool
	isNode       NodeCheck
}

// equal compares a presented secret with a stored digest in time that does
// not depend on where they differ or on the presented length (both sides are
// hashed to a fixed size first).
func equal(presented string, want [sha256.Size]byte) bool {
	got := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// admit lets the request through or answers 401 and returns false.
func (g *tokenGuard) admit(w http.ResponseWriter, r *http.Request) bool {
	if !g.needsToken(r) {
		return true
	}
	// A forwarded request with a node's credential passes; a wrong one falls
	// through to the token check, so it cannot be used to get around it.
	if g.isNode != nil && r.Header.Get(HeaderForwarded) != "" && g.isNode(r) {
		return true
	}
	auth := r.Header.Get("Authorization")
	scheme, presented, ok := strings.Cut(auth, " ")
	if auth == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		g.deny(w, r, "this request needs the API token: send the header 'Authorization: Bearer <token>' (ctl: --token or RAFTCDC_TOKEN)")
		return false
	}
	if !equal(strings.TrimSpace(presented), g.token) {
		g.deny(w, r, "the API token is wrong")
		return false
	}
	return true
}

func (g *tokenGuard) needsToken(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/debug/") {
		return true
	}
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return g.protectReads
	}
	return true
}

func (g *tokenGuard) deny(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="raftcdc"`)
	WriteError(w, Errorf(http.StatusUnauthorized, CodeUnauthorized, "%s %s: %s", Clip(r.Method), Clip(r.URL.Path), msg))
}

// EnablePprof serves Go's profiles under /debug/pprof/ for operators, as
// Consul and TiCDC do: the index, the named profiles (heap, goroutine,
// allocs, block, mutex, threadcreate), a CPU profile and an execution
// trace. With an API token they need it (RequireToken). /debug/pprof/cmdline
// is left out on purpose: the command line can hold --api-token.
func (h *Handler) EnablePprof() {
	h.mux.HandleFunc("GET /debug/pprof/{$}", pprof.Index)
	h.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	h.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	h.mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !knownProfile(name) {
			WriteError(w, Errorf(http.StatusNotFound, CodeNotFound, "no profile %s; GET /debug/pprof/ lists them", quoteClip(name)))
			return
		}
		pprof.Handler(name).ServeHTTP(w, r)
	})
}

func knownProfile(name string) bool {
	switch name {
	case "heap", "goroutine", "allocs", "block", "mutex", "threadcreate":
		return true
	}
	return false
}
