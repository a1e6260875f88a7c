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
	"github.com/raftcdc/raftcdc/sink/flushlog"
	"github.com/raftcdc/raftcdc/sink/kafka"
	"github.com/raftcdc/raftcdc/sink/mysql"
	pgsink "github.com/raftcdc/raftcdc/sink/postgres"
	"github.com/raftcdc/raftcdc/sink/sqlsink"
	"github.com/raftcdc/raftcdc/sink/storage"
	"github.com/raftcdc/raftcdc/sinkroot"
	"github.com/raftcdc/raftcdc/source"
	"github.com/raftcdc/raftcdc/source/datagen"
	"github.com/raftcdc/raftcdc/source/postgres"
	"github.com/raftcdc/raftcdc/source/tidb"
)

// Supported schemes, for error messages and help text.
const (
	SourceSchemes = "datagen, postgres, tidb"
	SinkSchemes   = "file, blackhole, kafka, mysql, tidb, postgres"
)

func scheme(kind, uri string) (string, error) {
	if uri == "" {
		return "", fmt.Errorf("%s URI is empty", kind)
	}
	u, err := url.Parse(uri)
	if err != nil {
		// url's error repeats the URI, password included: keep only its
		// reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("malformed %s URI: %v (a %% in a password must be written %%25)", kind, err)
	}
	if u.Scheme == "" {
		return "", fmt.Errorf("malformed %s URI %q: no scheme, write it as scheme://...", kind, redact.URI(uri))
	}
	return u.Scheme, nil
}

// upstreamProbeID names the changefeed a source is opened for when no
// changefeed is involved (GC, current ts, listing tables): a PostgreSQL
// source needs one to name its slot, which these calls never touch.
const upstreamProbeID = "upstream-probe"

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
	case postgres.Scheme, "postgresql":
		_, err := postgres.ParseURI(uri, upstreamProbeID)
		return err
	case tidb.Scheme:
		_, err := tidb.ParseURI(uri)
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
	case storage.Scheme:
		_, err := storage.ParseURI(uri)
		return err
	case blackhole.Scheme:
		return blackhole.ParseURI(uri)
	case kafka.Scheme:
		_, err := kafka.ParseURI(uri)
		return err
	case mysql.Scheme, mysql.TiDBScheme:
		_, err := mysql.ParseURI(uri)
		return err
	case pgsink.Scheme, "postgresql":
		_, err := pgsink.ParseURI(uri)
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
	case pgsink.Scheme, "postgresql":
		res, err := pgsink.Check(ctx, uri, databases)
		if err != nil {
			return nil, err
		}
		out.Server = res
	}
	return out, nil
}

// PoolOption configures a Pool.
type PoolOption func(*Pool)

// WithPostgresOptions passes options (such as a logger) to every
// PostgreSQL source the pool opens.
func WithPostgresOptions(opts ...postgres.Option) PoolOption {
	return func(p *Pool) { p.pgOpts = append(p.pgOpts, opts...) }
}

// WithDatagenOptions passes options (such as a test clock) to every datagen
// source the pool opens.
func WithDatagenOptions(opts ...datagen.Option) PoolOption {
	return func(p *Pool) { p.datagenOpts = append(p.datagenOpts, opts...) }
}

// WithTiDBOptions passes options (stall bounds, backoff) to every TiDB
// source the pool opens.
func WithTiDBOptions(opts ...tidb.Option) PoolOption {
	return func(p *Pool) { p.tidbOpts = append(p.tidbOpts, opts...) }
}

// WithMetricsRegistry registers the sinks' metrics (Kafka's messages,
// bytes, batch sizes, produce latency, large messages; the SQL sinks'
// statements, rows, transaction latency, conflicts waited, retries and
// DDL) with reg, once for the pool.
func WithMetricsRegistry(reg prometheus.Registerer) PoolOption {
	return func(p *Pool) {
		p.kafkaMetrics = kafka.NewMetrics(reg)
		p.sqlMetrics = sqlsink.NewMetrics(reg)
		p.tidbMetrics = tidb.NewMetrics(reg)
	}
}

// WithLogger gives the sinks a logger.
func WithLogger(l zerolog.Logger) PoolOption {
	return func(p *Pool) { p.log = l }
}

// WithSinkRoots confines sinks that write local files (any file:// sink
// URI) to the policy's roots: Pool.ValidateSinkURI refuses other
// directories at create, preview and update, and OpenSink refuses them
// again when a sink is opened, after symlinks are resolved. Without it every
// directory is allowed, which only tests and library users want.
func WithSinkRoots(p *sinkroot.Policy) PoolOption {
	return func(pool *Pool) { pool.sinkRoots = p }
}

// Pool opens sources and sinks. It keeps one source per URI for the life of
// the process, so that the owner and the processors on one node talk to the
// same upstream (for datagen: the same simulated GC state).
type Pool struct {
	datagenOpts  []datagen.Option
	kafkaMetrics *kafka.Metrics
	log          zerolog.Logger
	sqlMetrics   *sqlsink.Metrics
	pgOpts       []postgres.Option
	tidbOpts     []tidb.Option
	tidbMetrics  *tidb.Metrics
	// sinkRoots is applied to every sink URI in ValidateSinkURI and OpenSink,
	// whichever package implements the scheme: a new sink that writes local
	// files through a file:// URI is covered without doing anything.
	sinkRoots *sinkroot.Policy
	// flushLogDir, when set, makes every sink record its table flushes
	// there (sink/flushlog), named after flushLogNode().
	flushLogDir  string
	flushLogNode func() string

	mu       sync.Mutex
	closed   bool
	sources  map[string]source.Upstream
	flushLog *flushlog.Log
}

// WithFlushLog makes every sink the pool opens record its table flushes in
// a file of dir named after node() (a test instrument: see sink/flushlog).
func WithFlushLog(dir string, node func() string) PoolOption {
	return func(p *Pool) { p.flushLogDir, p.flushLogNode = dir, node }
}

// recordFlushes wraps s when the pool records flushes.
func (p *Pool) recordFlushes(id model.ChangefeedID, s sink.Sink) (sink.Sink, error) {
	if p.flushLogDir == "" {
		return s, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.flushLog == nil {
		l, err := flushlog.Open(p.flushLogDir, p.flushLogNode())
		if err != nil {
			s.Close()
			return nil, err
		}
		p.flushLog = l
	}
	return p.flushLog.Wrap(id, s), nil
}

// NewPool returns an empty pool.
func NewPool(opts ...PoolOption) *Pool {
	p := &Pool{sources: make(map[string]source.Upstream), log: zerolog.Nop()}
	for _, o := range opts {
		o(p)
	}
	if p.kafkaMetrics == nil {
		p.kafkaMetrics = kafka.NewMetrics(nil)
	}
	if p.sqlMetrics == nil {
		p.sqlMetrics = sqlsink.NewMetrics(nil)
	}
	if p.tidbMetrics == nil {
		p.tidbMetrics = tidb.NewMetrics(nil)
	}
	// PD's and TiKV's clients log through a process-wide logger to stdout;
	// the node's logger gets their warnings instead.
	tidb.RouteLibraryLogs(p.log)
	return p
}

// Source returns the pool's source for the URI, for what does not belong to
// one changefeed (GC safepoints, the current ts, listing tables). The pool
// owns it: the returned value's Close does nothing, and Pool.Close closes
// it.
func (p *Pool) Source(ctx context.Context, uri string) (source.Upstream, error) {
	return p.SourceFor(ctx, upstreamProbeID, uri)
}

// SourceFor returns the source a changefeed reads: the same shared instance
// as Source for span sources; for a single-stream source (PostgreSQL) one
// instance per changefeed, whose slot and publication are named after it.
// The result implements source.SpanSource or source.StreamSource.
func (p *Pool) SourceFor(ctx context.Context, changefeedID, uri string) (source.Upstream, error) {
	s, err := scheme("source", uri)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open source %q: %w", redact.URI(uri), err)
	}
	switch s {
	case datagen.Scheme:
		cfg, err := datagen.ParseURI(uri)
		if err != nil {
			return nil, err
		}
		// Equivalent spellings of one configuration share an instance.
		return p.cached(cfg.URI(), func() (source.Upstream, error) {
			return datagen.New(cfg, p.datagenOpts...)
		})
	case postgres.Scheme, "postgresql":
		cfg, err := postgres.ParseURI(uri, changefeedID)
		if err != nil {
			return nil, err
		}
		return p.cached("postgres\x00"+changefeedID+"\x00"+uri, func() (source.Upstream, error) {
			return &pgSource{Source: postgres.New(cfg, changefeedID, p.pgOpts...)}, nil
		})
	case tidb.Scheme:
		cfg, err := tidb.ParseURI(uri)
		if err != nil {
			return nil, err
		}
		// One TiDB connection (PD client, region cache, TiKV streams) per
		// cluster spelling, shared by every changefeed on this node.
		// Connecting to PD takes a moment, so it happens outside the
		// pool's lock.
		return p.cachedSlow(ctx, "tidb\x00"+cfg.URI(), func(ctx context.Context) (source.Upstream, error) {
			opts := append([]tidb.Option{tidb.WithLogger(p.log), tidb.WithMetrics(p.tidbMetrics)}, p.tidbOpts...)
			return tidb.Open(ctx, cfg, opts...)
		})
	default:
		return nil, fmt.Errorf("source URI %q: unknown scheme %q (supported: %s)", redact.URI(uri), s, SourceSchemes)
	}
}

func (p *Pool) cached(key string, open func() (source.Upstream, error)) (source.Upstream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("open source: connector pool is closed")
	}
	if src, ok := p.sources[key]; ok {
		return shared(src), nil
	}
	src, err := open()
	if err != nil {
		return nil, fmt.Errorf("open source %q: %w", redact.Text(key), err)
	}
	p.sources[key] = src
	return shared(src), nil
}

// cachedSlow is cached for sources whose opening does I/O: the pool's lock
// is not held while it runs, and of two racing opens the first one kept
// wins (the other is closed).
func (p *Pool) cachedSlow(ctx context.Context, key string, open func(context.Context) (source.Upstream, error)) (source.Upstream, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("open source: connector pool is closed")
	}
	if src, ok := p.sources[key]; ok {
		p.mu.Unlock()
		return shared(src), nil
	}
	p.mu.Unlock()
	src, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open source %q: %w", redact.Text(key), err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		src.Close()
		return nil, errors.New("open source: connector pool is closed")
	}
	if existing, ok := p.sources[key]; ok {
		src.Close()
		return shared(existing), nil
	}
	p.sources[key] = src
	return shared(src), nil
}

// ValidateSinkURI checks a sink URI as the package function does, and that a
// local directory is inside the sink roots.
func (p *Pool) ValidateSinkURI(uri string) error {
	if err := ValidateSinkURI(uri); err != nil {
		return err
	}
	return p.sinkRoots.CheckURI(uri)
}

// SinkRoots is the pool's sink-root policy (nil: no confinement), for sinks
// that derive further local paths from their URI.
func (p *Pool) SinkRoots() *sinkroot.Policy { return p.sinkRoots }

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
	s, err := p.openChangefeedSink(ctx, id, uri, cfg)
	if err != nil {
		return nil, err
	}
	return p.recordFlushes(id, s)
}

func (p *Pool) openChangefeedSink(ctx context.Context, id model.ChangefeedID, uri string, cfg model.ChangefeedConfig) (sink.Sink, error) {
	s, err := scheme("sink", uri)
	if err != nil {
		return nil, err
	}
	// Again at open, not only at create: the changefeed may predate the
	// roots, and the directory may have become a symlink since.
	if err := p.sinkRoots.CheckURI(uri); err != nil {
		return nil, fmt.Errorf("open sink: %w", err)
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, errors.New("open sink: connector pool is closed")
	}
	switch s {
	case storage.Scheme:
		snk, err := storage.Open(ctx, uri, storage.WithDirPolicy(p.sinkRoots), storage.WithLogger(p.log))
		if err != nil {
			return nil, err
		}
		return snk, nil
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
	case pgsink.Scheme, "postgresql":
		snk, err := pgsink.Open(ctx, uri, p.sqlOptions(id)...)
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
	if p.flushLog != nil {
		errs = append(errs, p.flushLog.Close())
	}
	return errors.Join(errs...)
}

// shared hides Close so that one user cannot close the instance the others
// share, keeping the source's kind visible to type assertions.
func shared(src source.Upstream) source.Upstream {
	switch s := src.(type) {
	case *pgSource:
		return sharedStream{s}
	case source.SpanSource:
		return sharedSpan{s}
	case source.StreamSource:
		return sharedStream{s}
	}
	return src
}

type sharedSpan struct{ source.SpanSource }

func (sharedSpan) Close() error { return nil }

type sharedStream struct{ source.StreamSource }

func (sharedStream) Close() error { return nil }

// UpstreamStatus passes through to sources that report upstream state.
func (s sharedStream) UpstreamStatus(ctx context.Context) (any, string, error) {
	if r, ok := s.StreamSource.(source.StatusReporter); ok {
		return r.UpstreamStatus(ctx)
	}
	return nil, "", nil
}

// RemoveUpstreamState passes through to sources that keep state upstream.
func (s sharedStream) RemoveUpstreamState(ctx context.Context) error {
	if r, ok := s.StreamSource.(source.UpstreamRemover); ok {
		return r.RemoveUpstreamState(ctx)
	}
	return nil
}

// pgSource is a PostgreSQL source that can also drop its slot and
// publication when its changefeed is removed.
type pgSource struct{ *postgres.Source }

func (s *pgSource) RemoveUpstreamState(ctx context.Context) error {
	return postgres.Remove(ctx, s.Config())
}

// UpstreamStatus shows the slot: retained WAL, confirmed position, and a
// warning above wal-warn-bytes or near invalidation.
func (s *pgSource) UpstreamStatus(ctx context.Context) (any, string, error) {
	st, err := postgres.Status(ctx, s.Config())
	if err != nil {
		return nil, "", err
	}
	return st, st.Warning, nil
}

// CheckSource runs a source's create-time checks for a changefeed whose
// filter selects tables with match: for PostgreSQL, wal_level, the
// replication privilege, free slots and WAL senders, and tables without a
// key; for TiDB, that PD answers. Sources with nothing to check return nil.
func CheckSource(ctx context.Context, changefeedID, uri string, match func(model.TableName) bool) error {
	s, err := scheme("source", uri)
	if err != nil {
		return err
	}
	switch s {
	case postgres.Scheme, "postgresql":
		cfg, err := postgres.ParseURI(uri, changefeedID)
		if err != nil {
			return err
		}
		return postgres.Check(ctx, cfg, match)
	case tidb.Scheme:
		// PD must answer with a cluster ID and a timestamp; an unreachable
		// PD fails the create with ErrPDUnreachable naming the addresses.
		cfg, err := tidb.ParseURI(uri)
		if err != nil {
			return err
		}
		_, err = tidb.Check(ctx, cfg)
		return err
	}
	return nil
}
