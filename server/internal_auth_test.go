package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"
)

// TestInternalEndpointsWithoutCredentialsAnswerLoopbackOnly covers the case
// the start-up check cannot see: no node credential, a loopback advertise
// address, but an API bound to a wildcard address. Only loopback peers get
// in; with a credential configured, loopback is not enough.
func TestInternalEndpointsWithoutCredentialsAnswerLoopbackOnly(t *testing.T) {
	newNode := func(secret string) *Node {
		cfg := DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.APIAddr = "0.0.0.0:0"
		cfg.AdvertiseAPIAddr = "127.0.0.1:8300"
		cfg.ClusterSecret = secret
		n, err := New(cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	call := func(n *Node, remote string, header ...string) int {
		h := n.internalOnly(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
		req := httptest.NewRequest(http.MethodPost, "/internal/v1/apply", nil)
		req.RemoteAddr = remote
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h(rec, req)
		return rec.Code
	}
	open := newNode("")
	for remote, want := range map[string]int{
		"127.0.0.1:4000": http.StatusNoContent, "127.9.9.9:4000": http.StatusNoContent, "[::1]:4000": http.StatusNoContent,
		"192.0.2.7:4000": http.StatusForbidden, "[2001:db8::1]:4000": http.StatusForbidden, "garbage": http.StatusForbidden,
	} {
		if got := call(open, remote); got != want {
			t.Errorf("no credential, peer %s: %d, want %d", remote, got, want)
		}
	}
	secured := newNode("s3cret")
	for _, c := range []struct {
		remote string
		header []string
		want   int
	}{
		{"127.0.0.1:4000", nil, http.StatusUnauthorized},
		{"127.0.0.1:4000", []string{headerSecret, "wrong"}, http.StatusUnauthorized},
		{"127.0.0.1:4000", []string{"Authorization", "Bearer s3cret"}, http.StatusUnauthorized},
		{"192.0.2.7:4000", []string{headerSecret, "s3cret"}, http.StatusNoContent},
	} {
		if got := call(secured, c.remote, c.header...); got != c.want {
			t.Errorf("secret, peer %s, headers %v: %d, want %d", c.remote, c.header, got, c.want)
		}
	}
}
