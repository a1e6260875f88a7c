// Package raftnet is the stream layer under hashicorp/raft's network
// transport: TCP, over TLS when the node has a certificate, with two limits
// on what an unauthenticated connection can hold.
//
//   - A deadline for new connections. The TLS handshake, and then the first
//     RPC, must keep arriving: every read before the node has answered once
//     must come within HandshakeTimeout of the previous one (and all of them
//     within ten times that). A connection that sends a byte and stalls is
//     closed. After the first answer the connection is a peer's pooled
//     connection, idle for as long as Raft likes.
//   - A cap on concurrent inbound connections per remote address. Each
//     accepted connection counts until it is closed; one over the cap is
//     closed at once.
//
// The handshake runs in a goroutine per connection, never in Accept, so a
// slow or hostile client cannot hold up the peers behind it. Raft only ever
// sees connections that completed the handshake: with mutual TLS, a peer
// without the cluster's certificate never gets a byte to the decoder.
package raftnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftcdc/raftcdc/nodetls"
	"github.com/rs/zerolog"
)

// Defaults of Options.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxConnsPerPeer  = 100
)

// Options configure a Stream.
type Options struct {
	// TLS, when enabled, wraps every connection: NodeServer for accepted
	// ones, Client for dialled ones. Nil or disabled is plaintext.
	TLS *nodetls.Config
	// HandshakeTimeout bounds the handshake and the wait for each read of a
	// new connection until its first RPC is answered.
	HandshakeTimeout time.Duration
	// MaxConnsPerPeer caps concurrent inbound connections per remote IP.
	MaxConnsPerPeer int
	Logger          zerolog.Logger
	// Registerer, if set, gets the refusal counter.
	Registerer prometheus.Registerer
}

// Stream implements raft.StreamLayer.
type Stream struct {
	ln   net.Listener
	adv  net.Addr
	o    Options
	tls  *tls.Config // server side, nil for plaintext
	done chan struct{}
	// accepted hands admitted connections to Accept.
	accepted chan net.Conn
	once     sync.Once
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc

	mu      sync.Mutex
	perPeer map[string]int

	refused *prometheus.CounterVec
	logGate logGate
}

var _ raft.StreamLayer = (*Stream)(nil)

// Listen opens the listener on bind and starts admitting connections.
func Listen(bind string, advertise net.Addr, o Options) (*Stream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listening for Raft on %s: %w", bind, err)
	}
	return New(ln, advertise, o), nil
}

// New wraps a listener the caller opened. The Stream owns it from now on.
func New(ln net.Listener, advertise net.Addr, o Options) *Stream {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxConnsPerPeer <= 0 {
		o.MaxConnsPerPeer = DefaultMaxConnsPerPeer
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	s := &Stream{ln: ln, adv: advertise, o: o, done: make(chan struct{}), accepted: make(chan net.Conn), perPeer: map[string]int{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftcdc_raft_connections_refused_total",
			Help: "Inbound Raft connections refused, by reason: peer_cap (over the per-address cap), handshake (TLS failed or timed out), deadline (no complete first request in time).",
		}, []string{"reason"}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.refused); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				s.refused = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	if o.TLS.Enabled() {
		s.tls = o.TLS.NodeServer()
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Addr is the advertised address.
func (s *Stream) Addr() net.Addr { return s.adv }

// Accept returns the next admitted connection.
func (s *Stream) Accept() (net.Conn, error) {
	select {
	case c := <-s.accepted:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops listening and waits for connections being admitted to give
// up; admitted ones belong to Raft, which closes them.
func (s *Stream) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		s.cancel()
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

// Dial connects to a peer, completing the TLS handshake within timeout.
func (s *Stream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	if !s.o.TLS.Enabled() {
		return conn, nil
	}
	tc := tls.Client(conn, s.o.TLS.Client(nodetls.HostOf(string(address))))
	if timeout > 0 {
		_ = tc.SetDeadline(time.Now().Add(timeout))
	}
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", address, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

func (s *Stream) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// Out of file descriptors and the like: back off rather than
			// spin, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.o.Logger.Warn().Err(err).Dur("retry_in", delay).Msg("accepting a Raft connection")
			select {
			case <-time.After(delay):
				continue
			case <-s.done:
				return
			}
		}
		delay = 0
		peer := peerKey(raw.RemoteAddr())
		if !s.take(peer) {
			raw.Close()
			s.refused.WithLabelValues("peer_cap").Inc()
			s.logGate.warn(s.o.Logger, "peer_cap", peer, fmt.Sprintf("refused a Raft connection: %s already holds %d (the per-address cap)", peer, s.o.MaxConnsPerPeer))
			continue
		}
		c := &tracked{Conn: raw, release: func() { s.give(peer) }}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.admit(c, peer)
		}()
	}
}

// admit runs the handshake under the deadline and hands the connection to
// Accept.
func (s *Stream) admit(c *tracked, peer string) {
	start := time.Now()
	var conn net.Conn = c
	if s.tls != nil {
		_ = c.SetDeadline(start.Add(s.o.HandshakeTimeout))
		tc := tls.Server(c, s.tls)
		if err := tc.HandshakeContext(s.ctx); err != nil {
			c.Close()
			s.refused.WithLabelValues("handshake").Inc()
			s.logGate.warn(s.o.Logger, "handshake", peer, "refused a Raft connection: TLS handshake: "+err.Error())
			return
		}
		_ = c.SetWriteDeadline(time.Time{})
		conn = tc
	}
	g := &guarded{Conn: conn, timeout: s.o.HandshakeTimeout, limit: start.Add(10 * s.o.HandshakeTimeout), onTimeout: func() {
		s.refused.WithLabelValues("deadline").Inc()
		s.logGate.warn(s.o.Logger, "deadline", peer, fmt.Sprintf("closing a Raft connection that sent no complete request within %v", s.o.HandshakeTimeout))
	}}
	g.armed.Store(true)
	select {
	case s.accepted <- g:
	case <-s.done:
		g.Close()
	}
}

func (s *Stream) take(peer string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perPeer[peer] >= s.o.MaxConnsPerPeer {
		return false
	}
	s.perPeer[peer]++
	return true
}

func (s *Stream) give(peer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perPeer[peer]--; s.perPeer[peer] <= 0 {
		delete(s.perPeer, peer)
	}
}

// Conns is how many inbound connections each remote address holds now.
func (s *Stream) Conns() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.perPeer))
	for k, v := range s.perPeer {
		out[k] = v
	}
	return out
}

func peerKey(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// tracked gives its slot of the per-peer count back when closed.
type tracked struct {
	net.Conn
	once    sync.Once
	release func()
}

func (t *tracked) Close() error {
	err := t.Conn.Close()
	t.once.Do(t.release)
	return err
}

// guarded keeps a read deadline armed until the connection first writes,
// that is until Raft has answered its first RPC.
type guarded struct {
	net.Conn
	armed     atomic.Bool
	timeout   time.Duration
	limit     time.Time
	onTimeout func()
}

func (g *guarded) Read(p []byte) (int, error) {
	if g.armed.Load() {
		dl := time.Now().Add(g.timeout)
		if dl.After(g.limit) {
			dl = g.limit
		}
		_ = g.Conn.SetReadDeadline(dl)
	}
	n, err := g.Conn.Read(p)
	if err != nil && g.armed.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		g.onTimeout()
	}
	return n, err
}

func (g *guarded) Write(p []byte) (int, error) {
	n, err := g.Conn.Write(p)
	if g.armed.CompareAndSwap(true, false) {
		_ = g.Conn.SetReadDeadline(time.Time{})
	}
	return n, err
}

// logGate keeps a flood of refused connections from flooding the log: per
// reason, one line every ten seconds, with how many were not logged.
type logGate struct {
	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func (g *logGate) warn(log zerolog.Logger, reason, peer, msg string) {
	g.mu.Lock()
	if g.last == nil {
		g.last, g.suppressed = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if now.Sub(g.last[reason]) < 10*time.Second {
		g.suppressed[reason]++
		g.mu.Unlock()
		return
	}
	n := g.suppressed[reason]
	g.last[reason], g.suppressed[reason] = now, 0
	g.mu.Unlock()
	log.Warn().Str("peer", peer).Str("reason", reason).Int("not_logged_since_last", n).Msg(msg)
}
