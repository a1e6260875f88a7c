package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/logging"
)

// maxCommand bounds a forwarded command.
const maxCommand = 64 << 20

type httpServer struct {
	srv    *http.Server
	ln     net.Listener
	client *http.Client
	scheme string
	done   chan struct{}
}

func startHTTP(n *Node) (*httpServer, error) {
	ln, err := net.Listen("tcp", n.cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("listening for the API on %s: %w", n.cfg.APIAddr, err)
	}
	n.api = api.New(n)
	for _, reg := range n.apiAddons {
		reg(n.api)
	}
	n.api.EnableOpenAPI()
	if !n.cfg.DisablePprof {
		n.api.EnablePprof()
	}
	// Node-to-node routes: never opened by the API token, always behind a
	// node's credential (or loopback, when the node has none).
	n.api.Internal("POST /internal/v1/apply", n.internalOnly(n.handleInternalApply))
	n.api.Internal("GET /internal/v1/read-index", n.internalOnly(n.handleReadIndex))
	n.api.RequireToken(n.cfg.APIToken, n.cfg.APITokenProtectReads, n.isNode)
	transport := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, TLSHandshakeTimeout: 10 * time.Second}
	hs := &httpServer{
		// The server's own complaints (a client's failed TLS handshake, say)
		// go to the node's log, not to stderr unstructured.
		srv:    &http.Server{Handler: n.api, ReadHeaderTimeout: 10 * time.Second, ErrorLog: logging.StdLogger(n.log, "api-http")},
		ln:     ln,
		client: &http.Client{Timeout: 30 * time.Second, Transport: transport},
		scheme: "http",
		done:   make(chan struct{}),
	}
	if n.tls.Enabled() {
		// One TLS configuration: the API presents the node's certificate and
		// asks peers for theirs; forwarding presents it and checks the
		// leader's against the cluster's CA.
		hs.srv.TLSConfig = n.tls.APIServer()
		hs.scheme = "https"
		transport.TLSClientConfig = n.tls.Client("")
		ln = tls.NewListener(ln, hs.srv.TLSConfig)
	}
	go func() {
		defer close(hs.done)
		if err := hs.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error().Err(err).Msg("API server stopped")
		}
	}()
	return hs, nil
}

func (h *httpServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.srv.Close()
	}
	<-h.done
	h.client.CloseIdleConnections()
}

// APIAddr is where the API actually listens (useful with port 0).
func (n *Node) APIAddr() string { return n.http.ln.Addr().String() }

// isNode says whether a request comes from another node of this cluster:
// its TLS client certificate is from the cluster's CA (mutual TLS), or it
// carries the cluster secret.
func (n *Node) isNode(r *http.Request) bool {
	if n.tls.IsNode(r.TLS) {
		return true
	}
	return n.secretOK(r)
}

func (n *Node) secretOK(r *http.Request) bool {
	if n.cfg.ClusterSecret == "" {
		return false
	}
	got := sha256.Sum256([]byte(r.Header.Get(headerSecret)))
	want := sha256.Sum256([]byte(n.cfg.ClusterSecret))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// internalOnly guards node-to-node endpoints. With a node credential
// configured (mutual TLS, the cluster secret) the request must carry one;
// the API token is never enough. Without one, Config.Validate has already
// refused to start a node other hosts can reach, and this admits loopback
// peers only — which also covers an API bound to a wildcard address.
func (n *Node) internalOnly(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.cfg.HasNodeCredentials() {
			if !n.isNode(r) {
				api.WriteError(w, api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "internal endpoint: only nodes of this cluster may call it (a certificate from the cluster's CA, or the cluster secret); the API token does not open it"))
				return
			}
		} else if !loopbackPeer(r) {
			api.WriteError(w, api.Errorf(http.StatusForbidden, api.CodeForbidden, "internal endpoint: this node has no node credential configured, so it answers loopback peers only"))
			return
		}
		fn(w, r)
	}
}

func loopbackPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (n *Node) handleInternalApply(w http.ResponseWriter, r *http.Request) {
	data, err := api.ReadBody(r, maxCommand)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if _, err := fsm.Decode(data); err != nil {
		api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "%v", err))
		return
	}
	res, err := n.applyEncoded(r.Context(), data, true)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	_ = api.WriteJSON(w, http.StatusOK, res)
}

func (n *Node) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	if n.lease != nil {
		// Any round trip counts as hearing from the caller; noted before the
		// answer, which errs towards waiting longer for its lease to end.
		n.lease.heardFrom(r.Header.Get(headerForwarded), time.Now())
	}
	if n.raft.State() != raft.Leader {
		api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeNotLeader, "this node is not the leader"))
		return
	}
	index, err := n.leaderReadIndex(r.Context())
	if err != nil {
		api.WriteError(w, err)
		return
	}
	_ = api.WriteJSON(w, http.StatusOK, map[string]uint64{"index": index})
}

// LeaderAPIAddr implements api.Store.
func (n *Node) LeaderAPIAddr() string {
	_, addr := n.leaderAPI()
	return addr
}

// View implements api.Store.
func (n *Node) View(fn func(r fsm.Reader, appliedIndex uint64) error) error { return n.fsm.View(fn) }

// Metrics implements api.Store.
func (n *Node) Metrics() http.Handler {
	return promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{})
}

// Forward implements api.Store: relays a request to the leader.
func (n *Node) Forward(w http.ResponseWriter, r *http.Request) {
	addr := n.LeaderAPIAddr()
	if addr == "" {
		api.WriteError(w, api.NoLeader())
		return
	}
	target := &url.URL{Scheme: n.http.scheme, Host: addr}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(api.HeaderForwarded, n.id)
			if n.cfg.ClusterSecret != "" {
				pr.Out.Header.Set(headerSecret, n.cfg.ClusterSecret)
			}
		},
		Transport: n.http.client.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			api.WriteError(w, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: fmt.Sprintf("forwarding to the leader at %s: %v", addr, err), RetryAfter: 1})
		},
	}
	proxy.ServeHTTP(w, r)
}

func sortMembers(m []api.Member) {
	sort.Slice(m, func(i, j int) bool { return m[i].ID < m[j].ID })
}
