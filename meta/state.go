package meta

import (
	"errors"
	"sort"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
)

// State is the CDC metadata decoded from one consistent view of the FSM.
// Every value keeps the revision it was read at, so that commands built
// from it can be guarded with compare-and-set.
type State struct {
	// OwnerEpoch is the epoch in /owner; every owner command carries it.
	OwnerEpoch uint64
	Owner      model.OwnerInfo
	// AppliedIndex is the Raft index the view corresponds to.
	AppliedIndex uint64
	// SchemaVersion is the metadata schema the cluster runs at
	// (ClusterSchemaVersion): what the owner may write.
	SchemaVersion int
	Captures      map[model.CaptureID]*Capture
	Changefeeds   map[model.ChangefeedID]*Feed
	// GC maps a /gc/ key to the record stored there.
	GC map[string]*GCRecord
	// Drains are the drain requests, by capture, with their revisions.
	Drains map[model.CaptureID]*Drain
	// Corrupt are the keys that did not decode, in key order. They are
	// treated as absent, with the exceptions noted on Feed and GCRecord.
	Corrupt []CorruptKey
}

// CorruptKey is a key that does not decode.
type CorruptKey struct {
	Key    string `json:"key"`
	ModRev uint64 `json:"mod_rev"`
	Reason string `json:"reason"`
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
	// tasks) or when the info key does not decode (then InfoCorrupt is set:
	// the changefeed is skipped by everyone rather than treated as gone).
	Info        *model.ChangefeedInfo
	InfoRev     uint64
	InfoCorrupt bool
	Status      *model.ChangefeedStatus
	StatusRev   uint64
	// StatusCorrupt makes the changefeed skipped too: rewriting an
	// unreadable status could move its checkpoint backwards.
	StatusCorrupt bool
	// Tables is the changefeed's own table-set record (schema 3), nil
	// when it has none. Status already shows its lists: the loaders merge
	// the two (see MergeTables), so readers look only at Status.
	Tables    *model.ChangefeedTables
	TablesRev uint64
	// TablesCorrupt skips the changefeed like a corrupt status: its table
	// set is unknown.
	TablesCorrupt bool
	Tasks         map[model.CaptureID]*Task
	// CorruptTaskKeys are task keys that did not decode, with their
	// revisions. Unlike the info and status they hold nothing that cannot
	// be derived again, so the owner deletes them.
	CorruptTaskKeys map[string]uint64
}

// Skipped reports whether the changefeed's own records are unreadable, in
// which case no component acts on it until an operator repairs or removes it.
func (f *Feed) Skipped() bool { return f.InfoCorrupt || f.StatusCorrupt || f.TablesCorrupt }

// Task is one capture's share of one changefeed.
type Task struct {
	Status      *model.TaskStatus
	StatusRev   uint64
	Position    *model.TaskPosition
	PositionRev uint64
	Workload    model.TaskWorkload
	WorkloadRev uint64
}

// Drain is one /drain/ key.
type Drain struct {
	Request model.DrainRequest
	Rev     uint64
}

// GCRecord is one /gc/ key. A corrupt one is kept with its revision (and a
// zero Record) so that the owner can overwrite it.
type GCRecord struct {
	Record model.GCSafepoint
	Rev    uint64
}

// Load decodes the whole CDC metadata of r. It fails only when the owner
// record is unreadable, since without it no owner command can be fenced;
// every other bad key is listed in Corrupt and treated as described there.
func Load(r fsm.Reader) (*State, error) { return LoadCached(r, nil) }

// LoadCached is Load decoding through c (nil: no cache). The State's
// records are then shared with later loads and must not be modified.
func LoadCached(r fsm.Reader, c *Cache) (*State, error) {
	s := &State{
		Captures:    map[model.CaptureID]*Capture{},
		Changefeeds: map[model.ChangefeedID]*Feed{},
		GC:          map[string]*GCRecord{},
		Drains:      map[model.CaptureID]*Drain{},
	}
	o, err := GetOwner(r)
	if err != nil {
		return nil, err
	}
	s.Owner, s.OwnerEpoch = o, o.Epoch
	s.SchemaVersion = ClusterSchemaVersion(r)
	bad := func(kv fsm.KV, err error) {
		s.Corrupt = append(s.Corrupt, corruptKey(kv, err))
	}
	r.Range(PrefixCapture, func(kv fsm.KV) bool {
		v, err := c.decodeKV(kv)
		if err != nil {
			bad(kv, err)
			return true
		}
		info := v.(*model.CaptureInfo)
		s.Captures[info.ID] = &Capture{Info: *info, Rev: kv.ModRev}
		return true
	})
	for _, prefix := range []string{PrefixChangefeedInfo, PrefixChangefeedStatus, PrefixChangefeedTables, PrefixTaskStatus, PrefixTaskPosition, PrefixTaskWorkload} {
		r.Range(prefix, func(kv fsm.KV) bool {
			k, err := ParseKey(kv.Key)
			if err != nil {
				bad(kv, &CorruptError{Key: kv.Key, Reason: err})
				return true
			}
			if err := s.feed(k.Changefeed).add(c, k, kv); err != nil {
				bad(kv, err)
			}
			return true
		})
	}
	for _, f := range s.Changefeeds {
		f.mergeTables()
	}
	r.Range(PrefixGC, func(kv fsm.KV) bool {
		v, err := c.decodeKV(kv)
		if err != nil {
			bad(kv, err)
			s.GC[kv.Key] = &GCRecord{Rev: kv.ModRev}
			return true
		}
		s.GC[kv.Key] = &GCRecord{Record: *v.(*model.GCSafepoint), Rev: kv.ModRev}
		return true
	})
	r.Range(PrefixDrain, func(kv fsm.KV) bool {
		v, err := c.decodeKV(kv)
		if err != nil {
			bad(kv, err)
			return true
		}
		k, _ := ParseKey(kv.Key)
		s.Drains[k.Capture] = &Drain{Request: *v.(*model.DrainRequest), Rev: kv.ModRev}
		return true
	})
	sort.Slice(s.Corrupt, func(i, j int) bool { return s.Corrupt[i].Key < s.Corrupt[j].Key })
	return s, nil
}

// LoadFeed decodes one changefeed's keys; found is false when it has no
// key at all. Its corrupt keys are returned beside it.
func LoadFeed(r fsm.Reader, id model.ChangefeedID) (f *Feed, found bool, corrupt []CorruptKey) {
	return LoadFeedCached(r, id, nil, true)
}

// LoadFeedCached is LoadFeed decoding through c (nil: no cache), and with
// tasks false only the changefeed's own keys (info, status, table set):
// what a list of changefeeds shows. Records decoded through c are shared
// and must not be modified.
func LoadFeedCached(r fsm.Reader, id model.ChangefeedID, c *Cache, tasks bool) (f *Feed, found bool, corrupt []CorruptKey) {
	f = newFeed(id)
	for _, key := range []string{ChangefeedInfoKey(id), ChangefeedStatusKey(id), ChangefeedTablesKey(id)} {
		if kv, ok := r.Get(key); ok {
			found = true
			k, _ := ParseKey(key)
			if err := f.add(c, k, kv); err != nil {
				corrupt = append(corrupt, corruptKey(kv, err))
			}
		}
	}
	defer f.mergeTables()
	if !tasks {
		return f, found, corrupt
	}
	for _, prefix := range []string{TaskStatusPrefix(id), TaskPositionPrefix(id), TaskWorkloadPrefix(id)} {
		r.Range(prefix, func(kv fsm.KV) bool {
			found = true
			k, err := ParseKey(kv.Key)
			if err != nil {
				corrupt = append(corrupt, corruptKey(kv, &CorruptError{Key: kv.Key, Reason: err}))
				return true
			}
			if err := f.add(c, k, kv); err != nil {
				corrupt = append(corrupt, corruptKey(kv, err))
			}
			return true
		})
	}
	return f, found, corrupt
}

func corruptKey(kv fsm.KV, err error) CorruptKey {
	reason := err.Error()
	var ce *CorruptError
	if errors.As(err, &ce) {
		reason = ce.Reason.Error()
	}
	return CorruptKey{Key: kv.Key, ModRev: kv.ModRev, Reason: reason}
}

func newFeed(id model.ChangefeedID) *Feed {
	return &Feed{ID: id, Tasks: map[model.CaptureID]*Task{}}
}

func (s *State) feed(id model.ChangefeedID) *Feed {
	f := s.Changefeeds[id]
	if f == nil {
		f = newFeed(id)
		s.Changefeeds[id] = f
	}
	return f
}

// add decodes one of the changefeed's keys into f.
func (f *Feed) add(c *Cache, k Key, kv fsm.KV) error {
	v, err := c.decode(k, kv)
	switch k.Kind {
	case KindChangefeedInfo:
		f.InfoRev = kv.ModRev
		if err != nil {
			f.InfoCorrupt = true
			return err
		}
		f.Info = v.(*model.ChangefeedInfo)
		return nil
	case KindChangefeedStatus:
		f.StatusRev = kv.ModRev
		if err != nil {
			f.StatusCorrupt = true
			return err
		}
		f.Status = v.(*model.ChangefeedStatus)
		return nil
	case KindChangefeedTables:
		f.TablesRev = kv.ModRev
		if err != nil {
			f.TablesCorrupt = true
			return err
		}
		f.Tables = v.(*model.ChangefeedTables)
		return nil
	}
	if err != nil {
		if f.CorruptTaskKeys == nil {
			f.CorruptTaskKeys = map[string]uint64{}
		}
		f.CorruptTaskKeys[kv.Key] = kv.ModRev
		return err
	}
	t := f.Tasks[k.Capture]
	if t == nil {
		t = &Task{}
		f.Tasks[k.Capture] = t
	}
	switch k.Kind {
	case KindTaskStatus:
		t.Status, t.StatusRev = v.(*model.TaskStatus), kv.ModRev
	case KindTaskPosition:
		t.Position, t.PositionRev = v.(*model.TaskPosition), kv.ModRev
	case KindTaskWorkload:
		t.Workload, t.WorkloadRev = v.(model.TaskWorkload), kv.ModRev
	}
	return nil
}

// FeedIDs are the changefeed IDs in order, so that ticks are deterministic.
func (s *State) FeedIDs() []model.ChangefeedID {
	out := make([]model.ChangefeedID, 0, len(s.Changefeeds))
	for id := range s.Changefeeds {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// mergeTables shows the table-set record through the status (a copy: the
// decoded status may be shared through a Cache).
func (f *Feed) mergeTables() {
	f.Status = MergeTables(f.Status, f.Tables)
}

// MergeTables is the status as readers see it: with the lists of the
// changefeed's table-set record when it has one (schema 3), otherwise as
// stored. st is not modified; the result shares the record's slices, which
// nobody modifies either.
func MergeTables(st *model.ChangefeedStatus, t *model.ChangefeedTables) *model.ChangefeedStatus {
	if st == nil || t == nil {
		return st
	}
	out := *st
	out.Tables, out.StreamTables = t.Tables, t.StreamTables
	return &out
}
