package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// HeaderClusterSecret carries the cluster secret on requests one node sends
// another.
const HeaderClusterSecret = "X-Raftcdc-Cluster-Secret"

// RequireToken makes the API demand "Authorization: Bearer <token>" on every
// write (any method but GET, HEAD and OPTIONS) under /api/, and on reads too
// when protectReads is set. /healthz, /readyz and /metrics stay open so that
// probes and scrapers need no secret. A request another node forwarded, with
// X-Raftcdc-Forwarded and the right X-Raftcdc-Cluster-Secret, passes: that is
// the internal credential, and it works even when the forwarding node did not
// pass the client's header on. An empty token leaves the API open, so the
// server can call this unconditionally.
//
// It wraps the routes registered so far: call it after New, EnableCDC,
// EnableOpenAPI and every other registration (in the server, after the
// OnAPI addons have run). A route registered afterwards is not protected.
func (h *Handler) RequireToken(token string, protectReads bool, clusterSecret string) {
	if token == "" {
		return
	}
	g := &tokenGuard{next: h.mux, token: sha256.Sum256([]byte(token)), protectReads: protectReads}
	if clusterSecret != "" {
		g.secret = sha256.Sum256([]byte(clusterSecret))
		g.hasSecret = true
	}
	outer := http.NewServeMux()
	outer.Handle("/", g)
	h.mux = outer
}

type tokenGuard struct {
	next         http.Handler
	token        [sha256.Size]byte
	protectReads bool
	secret       [sha256.Size]byte
	hasSecret    bool
}

// equal compares a presented secret with a stored digest in time that does
// not depend on where they differ or on the presented length (both sides are
// hashed to a fixed size first).
func equal(presented string, want [sha256.Size]byte) bool {
	got := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (g *tokenGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.needsToken(r) {
		g.next.ServeHTTP(w, r)
		return
	}
	// Forwarded requests are checked against the cluster secret only; a
	// wrong secret falls through to the token check, so it cannot be used to
	// get around it.
	if g.hasSecret && r.Header.Get(HeaderForwarded) != "" && equal(r.Header.Get(HeaderClusterSecret), g.secret) {
		g.next.ServeHTTP(w, r)
		return
	}
	auth := r.Header.Get("Authorization")
	scheme, presented, ok := strings.Cut(auth, " ")
	if auth == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		g.deny(w, r, "this request needs the API token: send the header 'Authorization: Bearer <token>' (ctl: --token or RAFTCDC_TOKEN)")
		return
	}
	if !equal(strings.TrimSpace(presented), g.token) {
		g.deny(w, r, "the API token is wrong")
		return
	}
	g.next.ServeHTTP(w, r)
}

func (g *tokenGuard) needsToken(r *http.Request) bool {
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
	WriteError(w, Errorf(http.StatusUnauthorized, CodeUnauthorized, "%s %s: %s", r.Method, r.URL.Path, msg))
}
