package adversarial

import (
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/server"
)

// TestIdleRaftConnectionsAreClosed opens 500 connections to a follower's
// Raft port from one address, sends one byte on each (the first byte of an
// AppendEntries) and then nothing. Every one must be closed by the server
// within the handshake deadline plus slack — those over the per-address
// cap at once — while the cluster's own links keep working: a write
// commits during the attack.
func TestIdleRaftConnectionsAreClosed(t *testing.T) {
	const (
		conns    = 500
		deadline = time.Second
		// The slack covers a loaded two-core machine; the point is that the
		// connections do not stay open for good.
		within = 15 * time.Second
	)
	for _, mode := range []string{"plaintext", "mutual TLS"} {
		t.Run(mode, func(t *testing.T) {
			s := startCluster(t, clusterOpts{tls: mode == "mutual TLS", configure: func(_ int, c *server.Config) {
				c.RaftHandshakeTimeout = deadline
			}})
			leader := s.WaitForLeader(10 * time.Second)
			follower := (leader + 1) % s.Size()
			addr := s.Node(follower).Config().AdvertiseRaftAddr
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			began := time.Now()
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				closed []time.Duration
				open   int
				other  []error
			)
			for k := 0; k < conns; k++ {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					// Refused outright is as good as closed.
					mu.Lock()
					closed = append(closed, time.Since(began))
					mu.Unlock()
					continue
				}
				t.Cleanup(func() { c.Close() })
				_, _ = c.Write([]byte{0})
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = c.SetReadDeadline(began.Add(within))
					buf := make([]byte, 512)
					for {
						_, err := c.Read(buf)
						if err == nil {
							continue // a TLS alert, say
						}
						mu.Lock()
						defer mu.Unlock()
						switch {
						case errors.Is(err, os.ErrDeadlineExceeded):
							open++
						case isClosed(err):
							closed = append(closed, time.Since(began))
						default:
							other = append(other, err)
						}
						return
					}
				}()
			}
			// The cluster's own connections come from another address and
			// are not affected.
			if r := do(t, s.client, http.MethodPut, s.url(follower, "/api/v1/kv/during-attack"), apiToken, strings.NewReader(`1`)); r.status != http.StatusOK {
				t.Errorf("a write during the attack: %s", r)
			}
			wg.Wait()
			if open > 0 || len(other) > 0 {
				t.Fatalf("%d of %d idle connections still open %v after they were made; other errors: %v", open, conns, within, other)
			}
			var last time.Duration
			for _, d := range closed {
				last = max(last, d)
			}
			t.Logf("all %d idle connections closed; the last after %v", len(closed), last.Round(time.Millisecond))
		})
	}
}

func isClosed(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false // our own Close, not the server's
	}
	s := err.Error()
	return strings.Contains(s, "EOF") || strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}
