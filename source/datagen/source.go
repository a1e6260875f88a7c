package datagen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// MaxBatchRows caps the rows of one TxnBatch while a subscription replays
// history, so that a consumer far behind still sees steady resolved-ts
// progress and bounded memory.
const MaxBatchRows = 4096

// maxServiceTTL bounds service TTLs so that now+ttl cannot overflow.
const maxServiceTTL = 100 * 365 * 24 * time.Hour

// Clock tells the time. Tests inject one to drive GC expiry.
type Clock interface {
	Now() time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Option configures a Source.
type Option func(*Source)

// WithClock replaces the wall clock, for tests.
func WithClock(c Clock) Option {
	return func(s *Source) { s.clock = c }
}

type serviceSafepoint struct {
	safepoint model.Ts
	expires   time.Time
}

// Source is a span source backed by the pure History. Events exist only
// up to the clock's current time; the simulated GC state is per instance.
type Source struct {
	hist  *History
	clock Clock

	closeOnce sync.Once
	closed    chan struct{}

	mu       sync.Mutex
	gc       model.Ts
	services map[string]serviceSafepoint

	// rc paces the resolved ts of table subscriptions (resolve.go).
	rc resolveClock
}

var _ source.SpanSource = (*Source)(nil)

// Open parses a datagen URI and creates a Source.
func Open(uri string, opts ...Option) (*Source, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts...)
}

// New creates a Source from a configuration.
func New(cfg Config, opts ...Option) (*Source, error) {
	hist, err := NewHistory(cfg)
	if err != nil {
		return nil, err
	}
	s := &Source{
		hist:     hist,
		clock:    wallClock{},
		closed:   make(chan struct{}),
		services: make(map[string]serviceSafepoint),
	}
	for _, o := range opts {
		o(s)
	}
	s.gc = s.gcCandidate(s.clock.Now())
	return s, nil
}

func (s *Source) checkOpen() error {
	select {
	case <-s.closed:
		return errors.New("datagen source is closed")
	default:
		return nil
	}
}

// CurrentTs is the clock's time in TSO form.
func (s *Source) CurrentTs(ctx context.Context) (model.Ts, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("get datagen current ts: %w", err)
	}
	return model.TsFromTime(s.clock.Now()), nil
}

// GCSafepoint is now − gc-life, held back by unexpired service safepoints,
// never moving backwards.
func (s *Source) GCSafepoint(ctx context.Context) (model.Ts, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("get datagen GC safepoint: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.advanceGCLocked(s.clock.Now()), nil
}

// UpdateServiceGCSafepoint follows PD: a safepoint below the one in force is
// not recorded, and the one in force is returned so the caller can tell its
// data is gone.
func (s *Source) UpdateServiceGCSafepoint(ctx context.Context, serviceID string, ttl time.Duration, safepoint model.Ts) (model.Ts, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if serviceID == "" {
		return 0, errors.New("update datagen service GC safepoint: service ID is empty")
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("update datagen service GC safepoint of %q: %w", serviceID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	gc := s.advanceGCLocked(now)
	if ttl <= 0 {
		delete(s.services, serviceID)
		return s.advanceGCLocked(now), nil
	}
	if safepoint < gc {
		return gc, nil
	}
	s.services[serviceID] = serviceSafepoint{safepoint: safepoint, expires: now.Add(min(ttl, maxServiceTTL))}
	return s.advanceGCLocked(now), nil
}

func (s *Source) gcCandidate(now time.Time) model.Ts {
	return model.TsFromTime(now.Add(-s.hist.cfg.GCLife))
}

// advanceGCLocked moves the GC safepoint to where it would be at now. GC is
// computed lazily: an observer cannot tell it apart from a background worker
// because the result only depends on the clock and the service entries.
func (s *Source) advanceGCLocked(now time.Time) model.Ts {
	cand := s.gcCandidate(now)
	for id, svc := range s.services {
		if !now.Before(svc.expires) {
			delete(s.services, id)
			continue
		}
		cand = min(cand, svc.safepoint)
	}
	s.gc = max(s.gc, cand)
	return s.gc
}

// Close ends every subscription of this source.
func (s *Source) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}
