package adversarial

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/server"
)

// TestPprofIsClosed asks every profiling endpoint for heap, goroutine
// stacks, a CPU profile and a trace without the API token, and with a wrong
// one, on a node that protects reads: each is refused. With the token the
// index answers (the control); with --enable-pprof=false nothing answers,
// token or not.
func TestPprofIsClosed(t *testing.T) {
	paths := []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2", "/debug/pprof/allocs",
		"/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"}
	t.Run("token", func(t *testing.T) {
		for _, protectReads := range []bool{true, false} {
			s := startCluster(t, clusterOpts{nodes: 1, configure: func(_ int, c *server.Config) { c.APITokenProtectReads = protectReads }})
			for _, p := range paths {
				for _, tok := range []string{"", "wrong-token"} {
					r := do(t, s.client, http.MethodGet, s.url(0, p), tok, nil)
					if r.status != http.StatusUnauthorized {
						t.Errorf("protect-reads=%v: GET %s with token %q: %s, want 401", protectReads, p, tok, r)
						continue
					}
					r.jsonError(t)
				}
			}
			if r := do(t, s.client, http.MethodGet, s.url(0, "/debug/pprof/"), apiToken, nil); r.status != http.StatusOK {
				t.Errorf("control: GET /debug/pprof/ with the token: %s", r)
			}
		}
	})
	t.Run("disabled", func(t *testing.T) {
		s := startCluster(t, clusterOpts{nodes: 1, configure: func(_ int, c *server.Config) { c.DisablePprof = true }})
		for _, p := range paths {
			r := do(t, s.client, http.MethodGet, s.url(0, p), apiToken, nil)
			if r.status != http.StatusNotFound {
				t.Errorf("GET %s with pprof disabled: %s, want 404", p, r)
				continue
			}
			r.jsonError(t)
		}
	})
}

// TestSloppyJSONIsRejected sends request bodies that encoding/json takes
// without a word — trailing data, duplicate keys (the last would win),
// field names in another case — to the routes that decode bodies. Each is a
// 400 that names the problem, and nothing is written.
func TestSloppyJSONIsRejected(t *testing.T) {
	s := startCluster(t, clusterOpts{nodes: 1, cdc: true})
	s.WaitForLeader(10 * time.Second)
	good := `{"id": "good", "source_uri": "datagen://?tables=2", "sink_uri": "blackhole://"}`
	cases := []struct {
		name, method, path, body, want string
	}{
		{"trailing garbage", "POST", "/api/v1/changefeeds", good + ` x`, "after"},
		{"a second object", "POST", "/api/v1/changefeeds", good + good, "after"},
		{"trailing garbage on preview", "POST", "/api/v1/changefeeds/preview", good + `]`, "after"},
		{"duplicate key", "POST", "/api/v1/changefeeds", `{"id": "dup", "source_uri": "datagen://?tables=2", "sink_uri": "file:///etc", "sink_uri": "blackhole://"}`, "sink_uri"},
		{"duplicate nested key", "POST", "/api/v1/changefeeds", `{"id": "dup2", "source_uri": "datagen://?tables=2", "sink_uri": "blackhole://", "config": {"filter": {"rules": ["*.*"], "rules": ["a.b"]}}}`, "rules"},
		{"upper-case name", "POST", "/api/v1/changefeeds", `{"id": "case", "SOURCE_URI": "datagen://?tables=2", "sink_uri": "blackhole://"}`, "SOURCE_URI"},
		{"mixed-case name", "POST", "/api/v1/changefeeds/preview", `{"Source_Uri": "datagen://?tables=2", "sink_uri": "blackhole://"}`, "Source_Uri"},
		{"case in a nested name", "POST", "/api/v1/txn", `{"ops": [{"TYPE": "put", "key": "a", "value": 1}]}`, "TYPE"},
		{"duplicate in a txn op", "POST", "/api/v1/txn", `{"ops": [{"type": "put", "key": "a", "key": "b", "value": 1}]}`, "key"},
		{"trailing data after a txn", "POST", "/api/v1/txn", `{"ops": [{"type": "put", "key": "a", "value": 1}]} {}`, "after"},
		{"case on resume", "POST", "/api/v1/changefeeds/good/resume", `{"Overwrite_Checkpoint_Ts": 1}`, "Overwrite_Checkpoint_Ts"},
		{"duplicate on remove-node", "POST", "/api/v1/cluster/remove-node", `{"id": "node9", "id": "node1"}`, "id"},
	}
	for _, c := range cases {
		r := do(t, s.client, c.method, s.url(0, c.path), apiToken, strings.NewReader(c.body), "Content-Type", "application/json")
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %s %s: %s, want 400", c.name, c.method, c.path, r)
			continue
		}
		if _, msg := r.jsonError(t); !strings.Contains(msg, c.want) {
			t.Errorf("%s: the message does not mention %q: %s", c.name, c.want, msg)
		}
	}
	for _, prefix := range []string{meta.PrefixChangefeedInfo, meta.PrefixUser} {
		if kvs, _ := s.Node(0).FSM().List(prefix); len(kvs) != 0 {
			t.Errorf("rejected bodies wrote %v", kvs)
		}
	}
	// The control: the same body, well formed, is accepted.
	if r := do(t, s.client, "POST", s.url(0, "/api/v1/changefeeds"), apiToken, strings.NewReader(good)); r.status != http.StatusCreated {
		t.Errorf("control: create: %s", r)
	}
}

// TestOversizedBodiesAre413 sends bodies over each route's limit, with and
// without a Content-Length: the answer is 413 and names the limit, and the
// server does not read more than it has to.
func TestOversizedBodiesAre413(t *testing.T) {
	s := startCluster(t, clusterOpts{nodes: 1, cdc: true})
	s.WaitForLeader(10 * time.Second)
	big := func(n int) []byte {
		b := bytes.Repeat([]byte(" "), n)
		b[0], b[n-1] = '{', '}'
		return b
	}
	cases := []struct {
		method, path string
		size         int
		limit        string
	}{
		{"POST", "/api/v1/changefeeds", 50 << 20, "16 MiB"},
		{"POST", "/api/v1/txn", 17 << 20, "16 MiB"},
		{"PUT", "/api/v1/kv/big", 5 << 20, "4 MiB"},
	}
	for _, c := range cases {
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(big(c.size))
			if chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			r := do(t, s.client, c.method, s.url(0, c.path), apiToken, body)
			if r.status != http.StatusRequestEntityTooLarge {
				t.Errorf("%s %s with %d bytes (chunked %v): %s, want 413", c.method, c.path, c.size, chunked, r)
				continue
			}
			if _, msg := r.jsonError(t); !strings.Contains(msg, c.limit) {
				t.Errorf("%s %s: the message does not name the limit %s: %s", c.method, c.path, c.limit, msg)
			}
		}
	}
}

// TestErrorAnswersAreJSONAndBounded checks what an error answer may carry:
// a huge ID comes back cut short, unknown routes and wrong methods answer
// in the API's JSON, and a boolean query parameter that is not true or
// false is an error rather than false.
func TestErrorAnswersAreJSONAndBounded(t *testing.T) {
	s := startCluster(t, clusterOpts{nodes: 1, cdc: true})
	s.WaitForLeader(10 * time.Second)
	huge := strings.Repeat("a", 1<<20)
	long := strings.Repeat("b", 64<<10)
	bounded := []struct {
		name, method, path, body string
	}{
		{"a 1 MiB changefeed ID in the body", "POST", "/api/v1/changefeeds", fmt.Sprintf(`{"id": %q, "source_uri": "datagen://", "sink_uri": "blackhole://"}`, huge)},
		{"a 1 MiB source URI", "POST", "/api/v1/changefeeds/preview", fmt.Sprintf(`{"source_uri": "datagen://?x=%s", "sink_uri": "blackhole://"}`, huge)},
		{"a 64 KiB changefeed ID in the path", "GET", "/api/v1/changefeeds/" + long, ""},
		{"a 64 KiB capture in the path", "GET", "/api/v1/processors/feed/" + long, ""},
		{"a 64 KiB key", "GET", "/api/v1/kv/" + long, ""},
		{"a 1 MiB move target", "POST", "/api/v1/changefeeds/feed/move-table", fmt.Sprintf(`{"table_id": 1, "target_capture": %q}`, huge)},
		{"a 1 MiB transfer target", "POST", "/api/v1/cluster/transfer-leader", fmt.Sprintf(`{"to": %q}`, huge)},
	}
	for _, c := range bounded {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		r := do(t, s.client, c.method, s.url(0, c.path), apiToken, body)
		if r.status < 400 || r.status >= 500 {
			t.Errorf("%s: %s, want a 4xx", c.name, r)
			continue
		}
		r.jsonError(t)
		if len(r.body) > 2048 {
			t.Errorf("%s: the error answer is %d bytes", c.name, len(r.body))
		}
	}

	routes := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/nope", http.StatusNotFound, ""},
		{"GET", "/api/v2/changefeeds", http.StatusNotFound, ""},
		{"GET", "/api/v1/changefeeds/a/b/c", http.StatusNotFound, ""},
		{"POST", "/internal/v1/nope", http.StatusNotFound, ""},
		{"PATCH", "/api/v1/changefeeds", http.StatusMethodNotAllowed, "GET"},
		{"DELETE", "/api/v1/status", http.StatusMethodNotAllowed, "GET"},
		{"GET", "/api/v1/txn", http.StatusMethodNotAllowed, "POST"},
		{"GET", "/internal/v1/apply", http.StatusMethodNotAllowed, "POST"},
		{"POST", "/healthz", http.StatusMethodNotAllowed, "GET"},
	}
	for _, c := range routes {
		r := do(t, s.client, c.method, s.url(0, c.path), apiToken, nil)
		if r.status != c.status {
			t.Errorf("%s %s: %s, want %d", c.method, c.path, r, c.status)
			continue
		}
		r.jsonError(t)
		if c.allow != "" && !strings.Contains(r.header.Get("Allow"), c.allow) {
			t.Errorf("%s %s: Allow %q does not list %s", c.method, c.path, r.header.Get("Allow"), c.allow)
		}
	}

	for _, q := range []string{"all=yes", "all=1", "all=TRUE", "all=", "consistent=yes", "all=true&all=false"} {
		r := do(t, s.client, "GET", s.url(0, "/api/v1/changefeeds?"+q), apiToken, nil)
		if r.status != http.StatusBadRequest {
			t.Errorf("GET /api/v1/changefeeds?%s: %s, want 400", q, r)
			continue
		}
		r.jsonError(t)
	}
	for _, q := range []string{"all=true", "all=false", "consistent=true"} {
		if r := do(t, s.client, "GET", s.url(0, "/api/v1/changefeeds?"+q), apiToken, nil); r.status != http.StatusOK {
			t.Errorf("control: GET /api/v1/changefeeds?%s: %s", q, r)
		}
	}
}
