// Package ctl is the client side of `raftcdc ctl`: an HTTP client for the
// node API that fails over between nodes, the changefeed config file, and the
// table and JSON renderings of every answer. It holds no global state; the
// command line in cmd/raftcdc builds one Client per invocation.
package ctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configure a Client.
type Options struct {
	// Servers are node API addresses, host:port or a URL with a scheme; they
	// are tried in order, moving on only when a connection cannot be made.
	Servers []string
	// Token is sent as a bearer token when not empty.
	Token string
	// CAFile, when set, switches to https and trusts only this CA bundle.
	CAFile string
	// Timeout bounds each request, including reading the answer.
	Timeout time.Duration
	// Consistent makes reads of changefeeds, captures and processors
	// linearizable: the answering node first catches up with the leader, so
	// a read through any node sees every write acknowledged before it.
	Consistent bool
	// ReadRetry is how long a read keeps retrying while the servers answer
	// that they cannot serve right now (an election); 0 means 5 s, and a
	// negative value tries each server once.
	ReadRetry time.Duration
}

// DefaultReadRetry is how long reads ride out an election by default.
const DefaultReadRetry = 5 * time.Second

// Client talks to the node API.
type Client struct {
	bases      []*url.URL
	token      string
	timeout    time.Duration
	consistent bool
	readRetry  time.Duration
	hc         *http.Client
	// preferred is the server that answered last; requests try it first,
	// so a dead or stopped node costs one failed attempt, not one per
	// request.
	preferred atomic.Int32
}

// NewClient checks the options and builds a client.
func NewClient(o Options) (*Client, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("no server address given")
	}
	scheme := "http"
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA file %s holds no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	c := &Client{token: o.Token, timeout: o.Timeout, consistent: o.Consistent, readRetry: o.ReadRetry, hc: &http.Client{Transport: tr}}
	if c.readRetry == 0 {
		c.readRetry = DefaultReadRetry
	}
	for _, s := range o.Servers {
		u, err := parseServer(s, scheme)
		if err != nil {
			return nil, err
		}
		c.bases = append(c.bases, u)
	}
	return c, nil
}

// SplitServers splits a comma-separated --server value, dropping blanks.
func SplitServers(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseServer(s, scheme string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("server address %q is malformed: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server address %q: the scheme must be http or https", s)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("server address %q: give host:port, for example 127.0.0.1:8300", s)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return nil, fmt.Errorf("server address %q: give host:port, for example 127.0.0.1:8300", s)
	}
	u.Path = ""
	return u, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// APIError is an error answer of the API: its stable code and its message.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Server is the node that answered.
	Server string
}

func (e *APIError) Error() string { return e.Message }

// ConnError says that no server could be reached.
type ConnError struct {
	Errs []error
}

func (e *ConnError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		parts[i] = err.Error()
	}
	return "cannot reach any server: " + strings.Join(parts, "; ")
}

func (e *ConnError) Unwrap() []error { return e.Errs }

// isConnFailure is true when the request never reached a server, so that
// trying the next one cannot apply a write twice.
func isConnFailure(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// Do sends one request and decodes a successful JSON answer into out (unless
// out is nil). in, when not nil, is sent as the JSON body.
//
// The servers are tried in turn, starting with the one that answered last.
// A write moves on only when a server could not be reached at all, so it
// can never apply twice; a read (GET) also moves on when a server did not
// answer or answered that it cannot serve now (5xx: no leader, catching up),
// since asking another node is harmless and may succeed.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encoding the request: %w", err)
		}
	}
	read := method == http.MethodGet
	if !read {
		return c.doRound(ctx, method, path, body, in != nil, out, false)
	}
	// A read is retried, with backoff, while every server answers that it
	// cannot serve right now (an election, a new leader confirming itself):
	// such a window lasts a second or two, and asking again is harmless.
	deadline := time.Now().Add(c.readRetry)
	wait := 100 * time.Millisecond
	for {
		err := c.doRound(ctx, method, path, body, in != nil, out, true)
		if err == nil || !Transient(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// doRound tries every server once, as Do describes.
func (c *Client) doRound(ctx context.Context, method, path string, body []byte, hasBody bool, out any, read bool) error {
	start := int(c.preferred.Load())
	var connErrs []error
	var last error
	for k := range c.bases {
		i := (start + k) % len(c.bases)
		err := c.doOne(ctx, c.bases[i], method, path, body, hasBody, out)
		if err == nil {
			c.preferred.Store(int32(i))
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if isConnFailure(err) {
			connErrs = append(connErrs, err)
			continue
		}
		if read && Transient(err) {
			last = err
			continue
		}
		return err
	}
	if last != nil {
		return last
	}
	return &ConnError{Errs: connErrs}
}

// Transient says whether err may go away by itself: no server could be
// reached, one did not answer in time or dropped the connection, or one
// answered that it cannot serve right now (no leader, an election, catching
// up). Errors that will not change on a retry — a bad request, an unknown
// changefeed, a wrong token — are not transient.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	var ce *ConnError
	if errors.As(err, &ce) {
		return true
	}
	var te *timeoutError
	if errors.As(err, &te) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// timeoutError is a request that got no answer within the client's timeout.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string { return e.msg }
func (e *timeoutError) Timeout() bool { return true }

func (c *Client) doOne(ctx context.Context, base *url.URL, method, path string, body []byte, hasBody bool, out any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := c.send(ctx, base, method, path, body, hasBody)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", base.Host, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the answer of %s to %s %s: %w", base.Host, method, path, err)
	}
	return nil
}

// send makes one request and returns the response of a successful answer
// with its body unread; an error answer is decoded into an *APIError.
func (c *Client) send(ctx context.Context, base *url.URL, method, path string, body []byte, hasBody bool) (*http.Response, error) {
	var rd io.Reader
	if hasBody {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base.String()+path, rd)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) && ctx.Err() != nil {
			return nil, &timeoutError{msg: fmt.Sprintf("%s: no answer to %s %s within %v", base.Host, method, path, c.timeout)}
		}
		// url.Error repeats the method and URL; the host is enough.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: %w", base.Host, err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", base.Host, err)
	}
	e := &APIError{Status: resp.StatusCode, Server: base.Host}
	var wire struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &wire) == nil && wire.Code != "" {
		e.Code, e.Message = wire.Code, wire.Message
	} else {
		e.Code = fmt.Sprintf("http_%d", resp.StatusCode)
		e.Message = fmt.Sprintf("%s answered %s: %s", base.Host, resp.Status, strings.TrimSpace(string(data)))
	}
	return nil, e
}

// Stream sends a body-less request and returns the answer's body to read
// at the caller's pace: the client's timeout bounds only the wait for the
// answer to begin, not the transfer. Servers are tried as for a write: the
// next one only when one cannot be reached. Close the body when done.
func (c *Client) Stream(ctx context.Context, method, path string) (io.ReadCloser, error) {
	var connErrs []error
	for k := range c.bases {
		i := (int(c.preferred.Load()) + k) % len(c.bases)
		sctx, cancel := context.WithCancel(ctx)
		var timer *time.Timer
		if c.timeout > 0 {
			timer = time.AfterFunc(c.timeout, cancel)
		}
		resp, err := c.send(sctx, c.bases[i], method, path, nil, false)
		if timer != nil && !timer.Stop() && err == nil {
			// The timer fired just as the answer began: its body is
			// already cancelled.
			resp.Body.Close()
			err = &timeoutError{msg: fmt.Sprintf("%s: no answer to %s %s within %v", c.bases[i].Host, method, path, c.timeout)}
		}
		if err == nil {
			c.preferred.Store(int32(i))
			return &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}, nil
		}
		cancel()
		if ctx.Err() == nil && isConnFailure(err) {
			connErrs = append(connErrs, err)
			continue
		}
		return nil, err
	}
	return nil, &ConnError{Errs: connErrs}
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
