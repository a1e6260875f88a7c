package adversarial

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"testing"
	"time"
)

// TestInternalWritesNeedNodeCredentials posts a command straight to the
// leader's /internal/v1/apply — the path followers forward writes on, which
// reaches the state machine without any of the API's checks — as a client
// that is not a node: with nothing, with the API token, with a wrong secret,
// with another CA's certificate. Every one is refused and nothing applies;
// a node's credential (the cluster's certificate, or the cluster secret) is
// the control that shows the endpoint itself works.
func TestInternalWritesNeedNodeCredentials(t *testing.T) {
	t.Run("mutual TLS", func(t *testing.T) {
		s := startCluster(t, clusterOpts{tls: true})
		leader := s.WaitForLeader(10 * time.Second)
		rogue := newTestCA(t, "rogue-ca")
		_, _, rogueCert := rogue.issue(t, "rogue")
		_, _, member := s.ca.issue(t, "member")
		withCert := func(c tls.Certificate) *http.Client {
			return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.pool(), Certificates: []tls.Certificate{c}}}}
		}
		cases := []struct {
			name   string
			client *http.Client
			token  string
			header []string
		}{
			{"no credential", s.client, "", nil},
			{"the API token", s.client, apiToken, nil},
			{"an empty cluster secret", s.client, apiToken, []string{"X-Raftcdc-Cluster-Secret", ""}},
			{"a guessed cluster secret", s.client, "", []string{"X-Raftcdc-Cluster-Secret", "secret", "X-Raftcdc-Forwarded", "node1"}},
			{"another CA's certificate", withCert(rogueCert), apiToken, nil},
		}
		for _, c := range cases {
			s.refused(t, c.name, c.client, leader, c.token, c.header...)
		}
		s.accepted(t, "a certificate of the cluster's CA", withCert(member), leader)
		s.noForgedKey(t)
	})
	t.Run("cluster secret", func(t *testing.T) {
		const secret = "the-cluster-secret"
		s := startCluster(t, clusterOpts{secret: secret})
		leader := s.WaitForLeader(10 * time.Second)
		s.refused(t, "no credential", s.client, leader, "")
		s.refused(t, "the API token", s.client, leader, apiToken)
		s.refused(t, "a wrong secret", s.client, leader, apiToken, "X-Raftcdc-Cluster-Secret", secret+"x", "X-Raftcdc-Forwarded", "node1")
		s.refused(t, "the token in the secret header", s.client, leader, "", "X-Raftcdc-Cluster-Secret", apiToken)
		s.accepted(t, "the cluster secret", s.client, leader, "X-Raftcdc-Cluster-Secret", secret)
		s.noForgedKey(t)
	})
}

// refused checks that both internal endpoints turn the caller away, either
// at the TLS handshake or with a JSON 401/403.
func (s *secured) refused(t *testing.T, name string, c *http.Client, node int, token string, header ...string) {
	t.Helper()
	for _, ep := range []struct{ method, path string }{{http.MethodPost, "/internal/v1/apply"}, {http.MethodGet, "/internal/v1/read-index"}} {
		req, _ := http.NewRequest(ep.method, s.url(node, ep.path), bytes.NewReader(forgedCommand(t)))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Logf("%s %s with %s: refused at the connection: %v", ep.method, ep.path, name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s with %s: %s, want 401 or 403", ep.method, ep.path, name, resp.Status)
		}
	}
}

// accepted is the control: a node's credential gets through.
func (s *secured) accepted(t *testing.T, name string, c *http.Client, node int, header ...string) {
	t.Helper()
	r := do(t, c, http.MethodGet, s.url(node, "/internal/v1/read-index"), "", nil, header...)
	if r.status != http.StatusOK {
		t.Errorf("control: read-index with %s: %s", name, r)
	}
}

func (s *secured) noForgedKey(t *testing.T) {
	t.Helper()
	// A write that got through is applied on the leader at once; wait out
	// replication to the others.
	time.Sleep(500 * time.Millisecond)
	for _, i := range s.Up() {
		if kv, ok, _ := s.Node(i).FSM().Get(forgedKey); ok {
			t.Errorf("%s holds the forged key: %s", s.NodeID(i), kv.Value)
		}
	}
}
