package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/hashicorp/raft"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/fsm"
)

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
	mux := http.NewServeMux()
	n.api = api.New(n)
	for _, reg := range n.apiAddons {
		reg(n.api)
	}
	n.api.EnableOpenAPI()
	// Last, so that the guard covers every route registered above.
	n.api.RequireToken(n.cfg.APIToken, n.cfg.APITokenProtectReads, n.cfg.ClusterSecret)
	mux.Handle("/", n.api)
	// Profiling for operators, as Consul and TiCDC expose it.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("POST /internal/v1/apply", n.internalOnly(n.handleInternalApply))
	mux.HandleFunc("GET /internal/v1/read-index", n.internalOnly(n.handleReadIndex))
	transport := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	hs := &httpServer{
		srv:    &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		ln:     ln,
		client: &http.Client{Timeout: 30 * time.Second, Transport: transport},
		scheme: "http",
		done:   make(chan struct{}),
	}
	if n.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
		}
		hs.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		hs.scheme = "https"
		transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if n.cfg.TLSCAFile != "" {
			pem, err := os.ReadFile(n.cfg.TLSCAFile)
			if err != nil {
				ln.Close()
				return nil, fmt.Errorf("reading --tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				ln.Close()
				return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", n.cfg.TLSCAFile)
			}
			transport.TLSClientConfig.RootCAs = pool
		}
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

// internalOnly guards node-to-node endpoints with the cluster secret, compared
// in constant time, when one is configured.
func (n *Node) internalOnly(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.cfg.ClusterSecret != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(headerSecret)), []byte(n.cfg.ClusterSecret)) != 1 {
			api.WriteError(w, api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "internal endpoint: missing or wrong cluster secret"))
			return
		}
		fn(w, r)
	}
}

func (n *Node) handleInternalApply(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		api.WriteError(w, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "reading command: %v", err))
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
	if n.raft.State() != raft.Leader {
		api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeNotLeader, "this node is not the leader"))
		return
	}
	index, err := n.leaderReadIndex()
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
