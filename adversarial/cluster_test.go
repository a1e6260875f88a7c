package adversarial

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/testcluster"
)

const apiToken = "adversarial-api-token"

// clusterOpts are the security settings of a test cluster.
type clusterOpts struct {
	nodes  int
	tls    bool // mutual TLS on every node-to-node path, API over HTTPS
	secret string
	cdc    bool
	// configure adjusts each node further.
	configure func(i int, c *server.Config)
}

// secured is a running test cluster and what a client needs to talk to it.
type secured struct {
	*testcluster.Cluster
	ca     *testCA
	scheme string
	// client trusts the cluster's CA and presents no certificate.
	client *http.Client
}

func startCluster(t *testing.T, o clusterOpts) *secured {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 3
	}
	s := &secured{scheme: "http", client: &http.Client{Timeout: 30 * time.Second}}
	if o.tls {
		s.ca = newTestCA(t, "cluster-ca")
		s.scheme = "https"
		s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.pool()}}
	}
	ca := s.ca
	s.Cluster = testcluster.MakeCluster(t, o.nodes, testcluster.Options{NoCDC: !o.cdc, Configure: func(i int, c *server.Config) {
		c.APIToken = apiToken
		c.APITokenProtectReads = true
		c.ClusterSecret = o.secret
		if o.tls {
			c.TLSCertFile, c.TLSKeyFile, _ = ca.issue(t, fmt.Sprintf("node%d", i+1))
			c.TLSCAFile = ca.caFile()
		}
		if o.configure != nil {
			o.configure(i, c)
		}
	}})
	t.Cleanup(func() { s.client.CloseIdleConnections() })
	// The leader writes the cluster record on its own once every voter is
	// known; tests that compare state before and after an attack start
	// after it, or a slow machine shows the record as a change.
	testcluster.WaitFor(t, 30*time.Second, "the cluster record on every replica", func() bool {
		for i := 0; i < o.nodes; i++ {
			if _, ok, err := meta.ReadCluster(s.Node(i).FSM()); err != nil || !ok {
				return false
			}
		}
		return true
	})
	return s
}

// url is the API URL of path on node i.
func (s *secured) url(i int, path string) string {
	return s.scheme + "://" + s.APIAddr(i) + path
}

// response is what came back, body included.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	b := r.body
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

// jsonError decodes a {code, message} error body; it fails the test when
// the body is anything else.
func (r response) jsonError(t *testing.T) (code, message string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error answer has Content-Type %q, not JSON: %s", ct, r)
	}
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("error answer is not {code, message}: %v: %s", err, r)
	}
	return e.Code, e.Message
}

// do sends a request with the given client; token "" sends none.
func do(t *testing.T, c *http.Client, method, url, token string, body io.Reader, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// stateHash is a digest of a replica's whole state machine: every key with
// its revisions and value, and the applied index.
func (s *secured) stateHash(t *testing.T, i int) string {
	t.Helper()
	n := s.Node(i)
	kvs, err := n.FSM().List("")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "applied %d\n", n.FSM().AppliedIndex())
	for _, kv := range kvs {
		fmt.Fprintf(h, "%q %d %d %q\n", kv.Key, kv.CreateRev, kv.ModRev, kv.Value)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// settledHashes waits until every replica has the same state and returns
// it: a quiet cluster's replicas converge within a heartbeat or two.
func (s *secured) settledHashes(t *testing.T) string {
	t.Helper()
	var ref string
	testcluster.WaitFor(t, 20*time.Second, "every replica with the same state", func() bool {
		ref = ""
		for _, i := range s.Up() {
			h := s.stateHash(t, i)
			if ref != "" && h != ref {
				return false
			}
			ref = h
		}
		return true
	})
	return ref
}

// raftView is what a forged RPC would change: who leads, in which term.
type raftView struct {
	leader string
	term   uint64
}

func (s *secured) raftViews() []raftView {
	var out []raftView
	for _, i := range s.Up() {
		st := s.Node(i).Status()
		out = append(out, raftView{leader: st.LeaderID, term: st.Term})
	}
	return out
}
