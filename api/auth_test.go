package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
)

const (
	token  = "t0ken-for-tests"
	secret = "cluster-secret-for-tests"
)

type authCase struct {
	name    string
	method  string
	path    string
	body    string
	headers map[string]string
	// want is the status; 401 answers must carry code unauthorized.
	want int
}

func doAuth(t *testing.T, url string, c authCase) (int, string) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, url+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusUnauthorized {
		var e api.Error
		if err := json.Unmarshal(b, &e); err != nil || e.Code != api.CodeUnauthorized {
			t.Errorf("401 body %s is not {code: unauthorized}", b)
		}
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
	}
	return resp.StatusCode, string(b)
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestRequireToken(t *testing.T) {
	for _, protectReads := range []bool{false, true} {
		name := "writes only"
		if protectReads {
			name = "reads too"
		}
		t.Run(name, func(t *testing.T) {
			s := ctltest.NewServer(t, func(h *api.Handler) { h.RequireToken(token, protectReads, api.ClusterSecretCheck(secret)) })
			fill(t, s)
			readStatus := http.StatusOK
			if protectReads {
				readStatus = http.StatusUnauthorized
			}
			pause := `/api/v1/changefeeds/orders/pause`
			cases := []authCase{
				{"write without token", "POST", pause, "", nil, 401},
				{"write with wrong token", "POST", pause, "", bearer("nope"), 401},
				{"write with a prefix of the token", "POST", pause, "", bearer(token[:5]), 401},
				{"write with the token as basic auth", "POST", pause, "", map[string]string{"Authorization": "Basic " + token}, 401},
				{"write with the bare token", "POST", pause, "", map[string]string{"Authorization": token}, 401},
				{"PUT without token", "PUT", "/api/v1/kv/x", "1", nil, 401},
				{"DELETE without token", "DELETE", "/api/v1/changefeeds/orders", "", nil, 401},
				{"create without token", "POST", "/api/v1/changefeeds", `{"source_uri":"datagen://","sink_uri":"blackhole://"}`, nil, 401},
				{"forwarded without secret", "POST", pause, "", map[string]string{api.HeaderForwarded: "node2"}, 401},
				{"forwarded with wrong secret", "POST", pause, "", map[string]string{api.HeaderForwarded: "node2", api.HeaderClusterSecret: "guess"}, 401},
				{"secret without the forwarded header", "POST", pause, "", map[string]string{api.HeaderClusterSecret: secret}, 401},
				{"read without token", "GET", "/api/v1/changefeeds", "", nil, readStatus},
				{"openapi without token", "GET", "/api/v1/openapi.json", "", nil, readStatus},
				{"read with token", "GET", "/api/v1/changefeeds", "", bearer(token), 200},
				{"healthz stays open", "GET", "/healthz", "", nil, 200},
				{"readyz stays open", "GET", "/readyz", "", nil, 200},
				{"metrics stay open", "GET", "/metrics", "", nil, 200},
				{"unknown path under /api/ asks for the token first", "POST", "/api/v1/nothing", "", nil, 401},
			}
			before := s.Store.Dump(t)
			for _, c := range cases {
				if got, body := doAuth(t, s.HTTP.URL, c); got != c.want {
					t.Errorf("%s: status %d, want %d (%s)", c.name, got, c.want, body)
				}
			}
			if s.Store.Dump(t) != before {
				t.Fatal("a refused request changed the state")
			}
			// The token, in any case of "Bearer", lets a write through.
			if got, body := doAuth(t, s.HTTP.URL, authCase{method: "POST", path: pause, headers: map[string]string{"Authorization": "bearer " + token}}); got != http.StatusAccepted {
				t.Fatalf("write with token: %d %s", got, body)
			}
			// So does a forwarded request with the cluster secret, without
			// the client's token.
			fwd := map[string]string{api.HeaderForwarded: "node2", api.HeaderClusterSecret: secret}
			if got, body := doAuth(t, s.HTTP.URL, authCase{method: "POST", path: "/api/v1/changefeeds/orders/rebalance", headers: fwd}); got == http.StatusUnauthorized {
				t.Fatalf("forwarded with secret: %d %s", got, body)
			}
		})
	}
}

func TestRequireTokenMessages(t *testing.T) {
	s := ctltest.NewServer(t, func(h *api.Handler) { h.RequireToken(token, false, nil) })
	_, body := doAuth(t, s.HTTP.URL, authCase{method: "POST", path: "/api/v1/changefeeds/orders/pause"})
	var e api.Error
	_ = json.Unmarshal([]byte(body), &e)
	want := "POST /api/v1/changefeeds/orders/pause: this request needs the API token: send the header 'Authorization: Bearer <token>' (ctl: --token or RAFTCDC_TOKEN)"
	if e.Message != want {
		t.Errorf("message %q, want %q", e.Message, want)
	}
	_, body = doAuth(t, s.HTTP.URL, authCase{method: "POST", path: "/api/v1/changefeeds/orders/pause", headers: bearer("x")})
	_ = json.Unmarshal([]byte(body), &e)
	if e.Message != "POST /api/v1/changefeeds/orders/pause: the API token is wrong" {
		t.Errorf("message %q", e.Message)
	}
	// With no cluster secret configured, the forwarded header alone is
	// worth nothing: anyone can set it.
	if got, _ := doAuth(t, s.HTTP.URL, authCase{method: "POST", path: "/api/v1/changefeeds/orders/pause", headers: map[string]string{api.HeaderForwarded: "node2", api.HeaderClusterSecret: ""}}); got != http.StatusUnauthorized {
		t.Errorf("forwarded header without a configured secret: %d", got)
	}
}

func TestRequireTokenEmptyIsOpen(t *testing.T) {
	s := ctltest.NewServer(t, func(h *api.Handler) { h.RequireToken("", true, api.ClusterSecretCheck(secret)) })
	fill(t, s)
	if got, body := doAuth(t, s.HTTP.URL, authCase{method: "POST", path: "/api/v1/changefeeds/orders/pause"}); got != http.StatusAccepted {
		t.Errorf("no token configured: %d %s", got, body)
	}
}
