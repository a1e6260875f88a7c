package owner

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
)

// State is the part of the FSM the owner decides from, decoded from one
// consistent snapshot. Every value keeps the revision it was read at, so the
// commands built from it can be guarded with compare-and-set.
type State struct {
	// OwnerEpoch is the epoch in /owner; every owner command carries it.
	OwnerEpoch uint64
	Owner      model.OwnerInfo
	// AppliedIndex is the Raft index the snapshot corresponds to.
	AppliedIndex uint64
	Captures     map[model.CaptureID]*Capture
	Changefeeds  map[model.ChangefeedID]*Feed
	// GC maps a /gc/ key to the record stored there.
	GC map[string]*GCRecord
	// Problems are keys that did not decode. They are treated as absent,
	// except where noted on Feed, and the worker logs them.
	Problems []Problem
}

// Capture is one registered capture.
type Capture struct {
	Info model.CaptureInfo
	Rev  uint64
}

// Feed is everything stored about one changefeed.
type Feed struct {
	ID model.ChangefeedID
	// Info is nil when the changefeed has no info key (left-over status or
	// tasks) or when the info key does not decode (then InfoCorrupt is set
	// and the owner leaves the changefeed alone rather than deleting it).
	Info        *model.ChangefeedInfo
	InfoRev     uint64
	InfoCorrupt bool
	Status      *model.ChangefeedStatus
	StatusRev   uint64
	// StatusCorrupt makes the owner leave the changefeed alone: rewriting
	// an unreadable status could move its checkpoint backwards.
	StatusCorrupt bool
	Tasks         map[model.CaptureID]*Task
	// CorruptTaskKeys are task keys that did not decode, with their
	// revisions; the owner deletes them (only it can, and their tables are
	// then re-derived as orphans at the checkpoint).
	CorruptTaskKeys map[string]uint64
}

// Task is one capture's share of one changefeed.
type Task struct {
	Status      *model.TaskStatus
	StatusRev   uint64
	Position    *model.TaskPosition
	PositionRev uint64
	Workload    model.TaskWorkload
	WorkloadRev uint64
}

// GCRecord is one /gc/ key.
type GCRecord struct {
	Record model.GCSafepoint
	Rev    uint64
}

// Problem is a key that could not be decoded.
type Problem struct {
	Key string
	Err error
}

func (p Problem) String() string { return fmt.Sprintf("%s: %v", p.Key, p.Err) }

// LoadState decodes the owner's view of r. It fails only when the owner
// record itself is unreadable, since without it no command can be fenced;
// any other bad key is reported in Problems and treated as absent.
func LoadState(r fsm.Reader) (*State, error) {
	s := &State{
		Captures:    map[model.CaptureID]*Capture{},
		Changefeeds: map[model.ChangefeedID]*Feed{},
		GC:          map[string]*GCRecord{},
	}
	if kv, ok := r.Get(model.KeyOwner); ok {
		if err := json.Unmarshal(kv.Value, &s.Owner); err != nil {
			return nil, fmt.Errorf("decoding owner record: %w", err)
		}
		s.OwnerEpoch = s.Owner.Epoch
	}
	problem := func(key string, err error) { s.Problems = append(s.Problems, Problem{Key: key, Err: err}) }

	r.Range(model.PrefixCapture, func(kv fsm.KV) bool {
		var info model.CaptureInfo
		if err := json.Unmarshal(kv.Value, &info); err != nil {
			problem(kv.Key, err)
			return true
		}
		id := strings.TrimPrefix(kv.Key, model.PrefixCapture)
		if info.ID != id {
			problem(kv.Key, fmt.Errorf("capture record names %q", info.ID))
			return true
		}
		s.Captures[id] = &Capture{Info: info, Rev: kv.ModRev}
		return true
	})
	r.Range(model.PrefixChangefeedInfo, func(kv fsm.KV) bool {
		f := s.feed(strings.TrimPrefix(kv.Key, model.PrefixChangefeedInfo))
		f.InfoRev = kv.ModRev
		var info model.ChangefeedInfo
		if err := json.Unmarshal(kv.Value, &info); err != nil {
			f.InfoCorrupt = true
			problem(kv.Key, err)
			return true
		}
		f.Info = &info
		return true
	})
	r.Range(model.PrefixChangefeedStatus, func(kv fsm.KV) bool {
		f := s.feed(strings.TrimPrefix(kv.Key, model.PrefixChangefeedStatus))
		f.StatusRev = kv.ModRev
		var st model.ChangefeedStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			f.StatusCorrupt = true
			problem(kv.Key, err)
			return true
		}
		f.Status = &st
		return true
	})
	loadTasks := func(prefix string, set func(t *Task, kv fsm.KV) error) {
		r.Range(prefix, func(kv fsm.KV) bool {
			cf, capture, err := model.SplitTaskKey(prefix, kv.Key)
			if err != nil {
				problem(kv.Key, err)
				return true
			}
			f := s.feed(cf)
			t := f.Tasks[capture]
			if t == nil {
				t = &Task{}
			}
			if err := set(t, kv); err != nil {
				if f.CorruptTaskKeys == nil {
					f.CorruptTaskKeys = map[string]uint64{}
				}
				f.CorruptTaskKeys[kv.Key] = kv.ModRev
				problem(kv.Key, err)
				if t.Status == nil && t.Position == nil && t.Workload == nil {
					return true
				}
			}
			f.Tasks[capture] = t
			return true
		})
	}
	loadTasks(model.PrefixTaskStatus, func(t *Task, kv fsm.KV) error {
		var ts model.TaskStatus
		if err := json.Unmarshal(kv.Value, &ts); err != nil {
			return err
		}
		t.Status, t.StatusRev = &ts, kv.ModRev
		return nil
	})
	loadTasks(model.PrefixTaskPosition, func(t *Task, kv fsm.KV) error {
		var p model.TaskPosition
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return err
		}
		t.Position, t.PositionRev = &p, kv.ModRev
		return nil
	})
	loadTasks(model.PrefixTaskWorkload, func(t *Task, kv fsm.KV) error {
		var w model.TaskWorkload
		if err := json.Unmarshal(kv.Value, &w); err != nil {
			return err
		}
		if w == nil {
			w = model.TaskWorkload{}
		}
		t.Workload, t.WorkloadRev = w, kv.ModRev
		return nil
	})
	r.Range(model.PrefixGC, func(kv fsm.KV) bool {
		var rec model.GCSafepoint
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			// Kept with its revision so the owner can overwrite it.
			problem(kv.Key, err)
			s.GC[kv.Key] = &GCRecord{Rev: kv.ModRev}
			return true
		}
		s.GC[kv.Key] = &GCRecord{Record: rec, Rev: kv.ModRev}
		return true
	})
	return s, nil
}

func (s *State) feed(id model.ChangefeedID) *Feed {
	f := s.Changefeeds[id]
	if f == nil {
		f = &Feed{ID: id, Tasks: map[model.CaptureID]*Task{}}
		s.Changefeeds[id] = f
	}
	return f
}

// FeedIDs are the changefeed IDs in order, so that ticks are deterministic.
func (s *State) FeedIDs() []model.ChangefeedID { return sortedKeys(s.Changefeeds) }

func sortedKeys[K ~string | ~int64, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// The clone helpers copy exactly what the reactor mutates, so a Tick never
// changes the State it was given.

func cloneInfo(in *model.ChangefeedInfo) *model.ChangefeedInfo {
	out := *in
	out.ErrorHistory = append([]time.Time(nil), in.ErrorHistory...)
	out.PendingMoves = append([]model.MoveTableRequest(nil), in.PendingMoves...)
	if in.Error != nil {
		e := *in.Error
		out.Error = &e
	}
	return &out
}

func cloneStatus(in *model.ChangefeedStatus) *model.ChangefeedStatus {
	if in == nil {
		return nil
	}
	out := *in
	out.Tables = append([]model.TableName(nil), in.Tables...)
	out.Orphans = make(map[model.TableID]model.Ts, len(in.Orphans))
	for k, v := range in.Orphans {
		out.Orphans[k] = v
	}
	return &out
}

func cloneTaskStatus(in *model.TaskStatus) *model.TaskStatus {
	out := &model.TaskStatus{AdminJob: in.AdminJob}
	out.Tables = make(map[model.TableID]model.TableReplicaInfo, len(in.Tables))
	for k, v := range in.Tables {
		out.Tables[k] = v
	}
	if len(in.Operations) > 0 {
		out.Operations = make(map[model.TableID]*model.TableOperation, len(in.Operations))
		for k, v := range in.Operations {
			if v == nil {
				continue // a null operation means nothing; dropping it keeps callers nil-safe
			}
			op := *v
			out.Operations[k] = &op
		}
	}
	return out
}
