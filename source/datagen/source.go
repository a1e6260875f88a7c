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

// MaxBatchRows caps the rows of one Batch while a subscription replays
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

// Source is a source.Source backed by the pure Generator. Events exist only
// up to the clock's current time; the simulated GC state is per instance.
type Source struct {
	gen   *Generator
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

var _ source.Source = (*Source)(nil)

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
	gen, err := NewGenerator(cfg)
	if err != nil {
		return nil, err
	}
	hist, err := NewHistory(cfg)
	if err != nil {
		return nil, err
	}
	s := &Source{
		gen:      gen,
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

// Generator is the pure generator behind the source.
func (s *Source) Generator() *Generator { return s.gen }

func (s *Source) checkOpen() error {
	select {
	case <-s.closed:
		return errors.New("datagen source is closed")
	default:
		return nil
	}
}

// Tables lists tables t0001..tNNNN.
func (s *Source) Tables(ctx context.Context) ([]model.TableName, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list datagen tables: %w", err)
	}
	return s.gen.Tables(), nil
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
	return model.TsFromTime(now.Add(-s.gen.cfg.GCLife))
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

// Subscribe streams the changes of one table with commit ts > startTs.
func (s *Source) Subscribe(ctx context.Context, table model.TableName, startTs model.Ts) (source.Subscription, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("subscribe datagen table %s: %w", table, err)
	}
	known, ok := s.gen.Table(table.ID)
	if !ok || known != table {
		return nil, fmt.Errorf("subscribe datagen table %s (id %d): no such table; datagen has %s.t0001..t%04d with IDs 1..%d",
			table, table.ID, s.gen.cfg.Schema, s.gen.cfg.Tables, s.gen.cfg.Tables)
	}
	s.mu.Lock()
	gc := s.advanceGCLocked(s.clock.Now())
	s.mu.Unlock()
	if startTs < gc {
		return nil, fmt.Errorf("subscribe datagen table %s from ts %d: below GC safepoint %d: %w", table, startTs, gc, source.ErrSnapshotLost)
	}
	return &subscription{
		src:      s,
		table:    table.ID,
		next:     s.gen.FirstAfter(table.ID, startTs),
		resolved: startTs,
		closed:   make(chan struct{}),
	}, nil
}

type subscription struct {
	src   *Source
	table model.TableID

	closeOnce sync.Once
	closed    chan struct{}

	// Next is not meant to be called concurrently; mu only keeps a misuse
	// from corrupting the position.
	mu            sync.Mutex
	next          uint64   // index of the next event to emit
	resolved      model.Ts // last resolved ts handed out
	lastResolveAt time.Time
}

func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() { close(sub.closed) })
	return nil
}

func (sub *subscription) Next(ctx context.Context) (source.Batch, error) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	gen := sub.src.gen
	interval := gen.cfg.ResolveInterval
	for {
		select {
		case <-sub.closed:
			return source.Batch{}, errors.New("datagen subscription is closed")
		case <-sub.src.closed:
			return source.Batch{}, errors.New("datagen source is closed")
		default:
		}
		if err := ctx.Err(); err != nil {
			return source.Batch{}, fmt.Errorf("wait for datagen table %d changes: %w", sub.table, err)
		}
		now := sub.src.clock.Now()
		nowTs := model.TsFromTime(now)

		var rows []model.LegacyRow
		for len(rows) < MaxBatchRows && gen.CommitTs(sub.table, sub.next) <= nowTs {
			if rows == nil {
				rows = make([]model.LegacyRow, 0, min(MaxBatchRows, gen.Count(sub.table, sub.resolved, nowTs)))
			}
			rows = append(rows, gen.Event(sub.table, sub.next))
			sub.next++
		}
		caughtUp := gen.CommitTs(sub.table, sub.next) > nowTs
		if len(rows) > 0 {
			// Everything up to just before the next event is settled; once
			// caught up that is everything up to now.
			resolved := gen.CommitTs(sub.table, sub.next) - 1
			if caughtUp {
				resolved = nowTs
				sub.lastResolveAt = now
			}
			sub.resolved = max(sub.resolved, resolved)
			return source.Batch{Rows: rows, ResolvedTs: sub.resolved}, nil
		}
		if nowTs > sub.resolved && now.Sub(sub.lastResolveAt) >= interval {
			sub.resolved = nowTs
			sub.lastResolveAt = now
			return source.Batch{ResolvedTs: nowTs}, nil
		}

		// Sleep until the next event becomes visible (the millisecond after
		// its physical time, since now's logical part is zero) or the next
		// resolved ts is due, whichever comes first.
		visible := model.TsTime(gen.CommitTs(sub.table, sub.next)).Add(time.Millisecond)
		wait := min(visible.Sub(now), sub.lastResolveAt.Add(interval).Sub(now))
		wait = max(wait, time.Millisecond)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return source.Batch{}, fmt.Errorf("wait for datagen table %d changes: %w", sub.table, ctx.Err())
		case <-sub.closed:
			timer.Stop()
		case <-sub.src.closed:
			timer.Stop()
		case <-timer.C:
		}
	}
}
