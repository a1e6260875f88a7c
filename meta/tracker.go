package meta

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/rs/zerolog"
)

// StateSource is the local replica of the state machine (*fsm.FSM).
type StateSource interface {
	View(fn func(r fsm.Reader, appliedIndex uint64) error) error
	Watch(prefix string, buffer int) (<-chan fsm.WatchBatch, func())
}

// Tracker is the one place that reports corrupt keys. Every other reader
// skips them silently; the tracker follows every change of the local
// replica and, for each key, logs once when it becomes undecodable (and
// once when it is repaired or removed), exports the count as
// raftcdc_metadata_corrupt_keys, and lists them for `cluster status`.
type Tracker struct {
	log   zerolog.Logger
	gauge prometheus.Gauge

	mu      sync.Mutex
	corrupt map[string]CorruptKey
}

// NewTracker builds a tracker; reg may be nil.
func NewTracker(log zerolog.Logger, reg prometheus.Registerer) (*Tracker, error) {
	t := &Tracker{
		log: log.With().Str("component", "meta").Logger(),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "raftcdc_metadata_corrupt_keys",
			Help: "Metadata keys in this node's replica that do not decode; every component skips them (see 'ctl cluster status').",
		}),
		corrupt: map[string]CorruptKey{},
	}
	if reg != nil {
		if err := reg.Register(t.gauge); err != nil {
			return nil, fmt.Errorf("registering the metadata tracker's metric: %w", err)
		}
	}
	return t, nil
}

// Corrupt lists the corrupt keys known now, in key order.
func (t *Tracker) Corrupt() []CorruptKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]CorruptKey, 0, len(t.corrupt))
	for _, c := range t.corrupt {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Run follows the replica until ctx ends.
func (t *Tracker) Run(ctx context.Context, st StateSource) error {
	// Subscribe before the first scan, so no change falls between the two.
	ch, cancel := st.Watch("/", 1024)
	defer cancel()
	if err := t.rescan(st); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case b, ok := <-ch:
			if !ok {
				return nil
			}
			if b.Resync {
				if err := t.rescan(st); err != nil {
					return err
				}
				continue
			}
			for _, e := range b.Events {
				if e.Deleted {
					t.set(e.Key, nil)
					continue
				}
				t.set(e.Key, t.check(fsm.KV{Key: e.Key, Value: e.Value, ModRev: e.ModRev}))
			}
		}
	}
}

func (t *Tracker) check(kv fsm.KV) *CorruptKey {
	if _, err := Decode(kv.Key, kv.Value); err != nil {
		c := corruptKey(kv, err)
		return &c
	}
	return nil
}

// Scan lists every corrupt key of r, in key order.
func Scan(r fsm.Reader) []CorruptKey {
	var out []CorruptKey
	r.Range("/", func(kv fsm.KV) bool {
		if _, err := Decode(kv.Key, kv.Value); err != nil {
			out = append(out, corruptKey(kv, err))
		}
		return true
	})
	return out
}

func (t *Tracker) rescan(st StateSource) error {
	found := map[string]*CorruptKey{}
	err := st.View(func(r fsm.Reader, _ uint64) error {
		for _, c := range Scan(r) {
			found[c.Key] = &c
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scanning the metadata for corrupt keys: %w", err)
	}
	t.mu.Lock()
	var gone []string
	for key := range t.corrupt {
		if found[key] == nil {
			gone = append(gone, key)
		}
	}
	t.mu.Unlock()
	for _, key := range gone {
		t.set(key, nil)
	}
	for key, c := range found {
		t.set(key, c)
	}
	return nil
}

// set records key's state, logging only transitions.
func (t *Tracker) set(key string, c *CorruptKey) {
	t.mu.Lock()
	old, was := t.corrupt[key]
	if c == nil {
		delete(t.corrupt, key)
	} else {
		t.corrupt[key] = *c
	}
	n := len(t.corrupt)
	t.mu.Unlock()
	t.gauge.Set(float64(n))
	switch {
	case c != nil && (!was || old.Reason != c.Reason):
		t.log.Error().Str("key", key).Uint64("mod_rev", c.ModRev).Str("reason", c.Reason).
			Msg("metadata key does not decode; every component skips it until it is repaired or removed")
	case c == nil && was:
		t.log.Info().Str("key", key).Msg("metadata key no longer corrupt (repaired or removed)")
	}
}

// IsCorrupt reports whether err is a decode failure of this package.
func IsCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }
