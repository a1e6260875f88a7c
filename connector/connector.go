// Package connector opens sources and sinks by URI scheme. The set of schemes
// is a switch in this package rather than a registry filled by init
// functions, so what a binary supports is visible in one place.
package connector

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/blackhole"
	"github.com/raftcdc/raftcdc/sink/file"
	"github.com/raftcdc/raftcdc/sink/kafka"
	"github.com/raftcdc/raftcdc/sink/mysql"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
	"github.com/raftcdc/raftcdc/source"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// Supported schemes, for error messages and help text.
const (
	SourceSchemes = "datagen"
	SinkSchemes   = "file, blackhole, kafka, mysql, tidb"
)

func scheme(kind, uri string) (string, error) {
	if uri == "" {
		return "", fmt.Errorf("%s URI is empty", kind)
	}
	u, err := url.Parse(uri)
	if err != nil {
		// The parser's message can quote the URI, password included.
		return "", fmt.Errorf("malformed %s URI %q: %w", kind, redact.URI(uri), redact.Error(err, uri))
	}
	if u.Scheme == "" {
		return "", fmt.Errorf("malformed %s URI %q: no scheme, write it as scheme://...", kind, redact.URI(uri))
	}
	return u.Scheme, nil
}

// ValidateSourceURI checks a source URI without opening anything.
func ValidateSourceURI(uri string) error {
	s, err := scheme("source", uri)
	if err != nil {
		return err
	}
	switch s {
	case datagen.Scheme:
		_, err := datagen.ParseURI(uri)
		return err
	default:
		return fmt.Errorf("source URI %q: unknown scheme %q (supported: %s)", redact.URI(uri), s, SourceSchemes)
	}
}

// ValidateSinkURI checks a sink URI without touching the downstream.
func ValidateSinkURI(uri string) error {
	s, err := scheme("sink", uri)
	if err != nil {
		return err
	}
	switch s {
	case file.Scheme:
		_, err := file.ParseURI(uri)
		return err
	case blackhole.Scheme:
		return blackhole.ParseURI(uri)
	case kafka.Scheme:
		_, err := kafka.ParseURI(uri)
		return err
	case mysql.Scheme, mysql.TiDBScheme:
		_, err := mysql.ParseURI(uri)
		return err
	default:
		return fmt.Errorf("sink URI %q: unknown scheme %q (supported: %s)", redact.URI(uri), s, SinkSchemes)
	}
}

// SinkCheck is what CheckSink found about a downstream.
type SinkCheck struct {
	Scheme string `json:"scheme"`
	URI    string `json:"uri"` // redacted
	// Server is set for the SQL sinks, which connect to check: flavour,
	// version, user, and the databases whose privileges were checked.
	Server *sqlsink.CheckResult `json:"server,omitempty"`
}

// CheckSink is the create-time (and preview / --dry-run) check of a sink
// URI. Every URI is validated; for the SQL sinks it also connects, checks
// the privileges the sink needs on the given downstream databases (the
// upstream schemas of the changefeed's tables; none checks *.*), and
// reports the server's flavour and version. It changes nothing downstream.
// Errors name the problem and never show a password.
func CheckSink(ctx context.Context, uri string, databases []string) (*SinkCheck, error) {
	if err := ValidateSinkURI(uri); err != nil {
		return nil, err
	}
	s, _ := scheme("sink", uri)
	out := &SinkCheck{Scheme: s, URI: redact.URI(uri)}
	switch s {
	case mysql.Scheme, mysql.TiDBScheme:
		res, err := mysql.Check(ctx, uri, databases)
		if err != nil {
			return nil, err
		}
		out.Server = res
	}
	return out, nil
}

// PoolOption configures a Pool.
type PoolOption func(*Pool)

// WithDatagenOptions passes options (such as a test clock) to every datagen
// source the pool opens.
func WithDatagenOptions(opts ...datagen.Option) PoolOption {
	return func(p *Pool) { p.datagenOpts = append(p.datagenOpts, opts...) }
}

// WithMetricsRegistry registers the sinks' metrics (Kafka's messages,
// bytes, batch sizes, produce latency, large messages; the SQL sinks'
// statements, rows, transaction latency, conflicts waited, retries and
// DDL) with reg, once for the pool.
func WithMetricsRegistry(reg prometheus.Registerer) PoolOption {
	return func(p *Pool) {
		p.kafkaMetrics = kafka.NewMetrics(reg)
		p.sqlMetrics = sqlsink.NewMetrics(reg)
	}
}

// WithLogger gives the sinks a logger.
func WithLogger(l zerolog.Logger) PoolOption {
	return func(p *Pool) { p.log = l }
}

// Pool opens sources and sinks. It keeps one source per URI for the life of
// the process, so that the owner and the processors on one node talk to the
// same upstream (for datagen: the same simulated GC state).
type Pool struct {
	datagenOpts  []datagen.Option
	kafkaMetrics *kafka.Metrics
	log          zerolog.Logger
	sqlMetrics   *sqlsink.Metrics

	mu      sync.Mutex
	closed  bool
	sources map[string]source.SpanSource
}

// NewPool returns an empty pool.
func NewPool(opts ...PoolOption) *Pool {
	p := &Pool{sources: make(map[string]source.SpanSource), log: zerolog.Nop()}
	for _, o := range opts {
		o(p)
	}
	if p.kafkaMetrics == nil {
		p.kafkaMetrics = kafka.NewMetrics(nil)
	}
	if p.sqlMetrics == nil {
		p.sqlMetrics = sqlsink.NewMetrics(nil)
	}
	return p
}

// Source returns the pool's source for the URI, opening it on first use.
// The pool owns it: the returned value's Close does nothing, and Pool.Close
// closes it.
func (p *Pool) Source(ctx context.Context, uri string) (source.SpanSource, error) {
	s, err := scheme("source", uri)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open source %q: %w", uri, err)
	}
	switch s {
	case datagen.Scheme:
		cfg, err := datagen.ParseURI(uri)
		if err != nil {
			return nil, err
		}
		// Equivalent spellings of one configuration share an instance.
		return p.cached(cfg.URI(), func() (source.SpanSource, error) {
			src, err := datagen.New(cfg, p.datagenOpts...)
			if err != nil {
				return nil, err
			}
			return &legacySource{Source: src, uri: cfg.URI()}, nil
		})
	default:
		return nil, fmt.Errorf("source URI %q: unknown scheme %q (supported: %s)", redact.URI(uri), s, SourceSchemes)
	}
}

func (p *Pool) cached(key string, open func() (source.SpanSource, error)) (source.SpanSource, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("open source: connector pool is closed")
	}
	if src, ok := p.sources[key]; ok {
		return sharedSource{src}, nil
	}
	src, err := open()
	if err != nil {
		return nil, fmt.Errorf("open source %q: %w", key, err)
	}
	p.sources[key] = src
	return sharedSource{src}, nil
}

// OpenSink opens a new sink for the URI; the caller closes it. Sinks that
// route by the changefeed's configuration (Kafka's dispatchers) get the
// defaults; OpenChangefeedSink gives them the changefeed.
func (p *Pool) OpenSink(ctx context.Context, uri string) (sink.Sink, error) {
	return p.OpenChangefeedSink(ctx, "", uri, model.ChangefeedConfig{})
}

// OpenChangefeedSink opens a new sink for one changefeed: its ID labels
// the sink's metrics and logs, and its config carries the sink options
// that are not in the URI (Kafka's [sink] dispatchers).
func (p *Pool) OpenChangefeedSink(ctx context.Context, id model.ChangefeedID, uri string, cfg model.ChangefeedConfig) (sink.Sink, error) {
	s, err := scheme("sink", uri)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, errors.New("open sink: connector pool is closed")
	}
	switch s {
	case file.Scheme:
		fs, err := file.Open(ctx, uri)
		if err != nil {
			return nil, err
		}
		return legacySink{LegacySink: fs}, nil
	case blackhole.Scheme:
		return blackhole.Open(uri)
	case kafka.Scheme:
		if id == "" {
			id = "-"
		}
		return kafka.Open(ctx, uri, kafka.WithChangefeed(id), kafka.WithMetrics(p.kafkaMetrics), kafka.WithLogger(p.log),
			kafka.WithDispatchers(cfg.Dispatchers, cfg.Filter.CaseSensitive))
	case mysql.Scheme, mysql.TiDBScheme:
		snk, err := mysql.Open(ctx, uri, p.sqlOptions(id)...)
		if err != nil {
			return nil, err
		}
		return snk, nil
	default:
		return nil, fmt.Errorf("sink URI %q: unknown scheme %q (supported: %s)", redact.URI(uri), s, SinkSchemes)
	}
}

func (p *Pool) sqlOptions(changefeed model.ChangefeedID) []sqlsink.Option {
	return []sqlsink.Option{sqlsink.WithChangefeed(changefeed), sqlsink.WithMetrics(p.sqlMetrics),
		sqlsink.WithLogger(p.log.With().Str("changefeed", changefeed).Logger())}
}

// Close closes every source the pool opened.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for key, src := range p.sources {
		if err := src.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close source %q: %w", key, err))
		}
	}
	p.sources = nil
	return errors.Join(errs...)
}

// sharedSource hides Close so that one user cannot close the instance the
// others share.
type sharedSource struct{ source.SpanSource }

func (sharedSource) Close() error { return nil }
