package meta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
)

// Records are stored as JSON: inspectable with ordinary tools, and a field
// added by a newer build is ignored by an older one. Every read goes through
// Decode, so "what is this key's value, and is it valid?" has one answer on
// every node and in every component.

// Put is the operation that stores v under key.
func Put(key string, v any) (fsm.Op, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return fsm.Op{}, fmt.Errorf("encoding %s: %w", key, err)
	}
	return fsm.Op{Type: fsm.OpPut, Key: key, Value: b}, nil
}

// ErrCorrupt is wrapped by every decode failure: the key holds something
// that is not a record of its kind.
var ErrCorrupt = errors.New("metadata key does not decode")

// CorruptError says which key is corrupt and why.
type CorruptError struct {
	Key    string
	Reason error
}

func (e *CorruptError) Error() string { return fmt.Sprintf("%s: %v", e.Key, e.Reason) }
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corrupt(key string, format string, args ...any) error {
	return &CorruptError{Key: key, Reason: fmt.Errorf(format, args...)}
}

// Decode parses a stored value by its key's kind and checks what can be
// checked from the record alone. It returns a *model.CaptureInfo,
// *model.ChangefeedInfo, *model.ChangefeedStatus, *model.ChangefeedTables,
// *model.TaskStatus,
// *model.TaskPosition, model.TaskWorkload, *model.GCSafepoint,
// *model.OwnerInfo, *model.DrainRequest or, for user keys,
// json.RawMessage. Any failure is a
// *CorruptError.
func Decode(key string, value []byte) (any, error) {
	k, err := ParseKey(key)
	if err != nil {
		return nil, &CorruptError{Key: key, Reason: err}
	}
	return decodeKind(k, key, value)
}

// ungroup moves a per-table map written grouped (schema 3,
// model.GroupedTableTs) into the plain field readers use. A record with
// both is corrupt: which one holds the truth cannot be told.
func ungroup(key, field string, plain *model.TableTs, grouped *model.GroupedTableTs) error {
	if *grouped == nil {
		return nil
	}
	if len(*plain) > 0 {
		return corrupt(key, "record has both %s and %s_grouped", field, field)
	}
	*plain, *grouped = model.TableTs(*grouped), nil
	return nil
}

func decodeKind(k Key, key string, value []byte) (any, error) {
	switch k.Kind {
	case KindCapture:
		v, err := strict[model.CaptureInfo](key, value)
		if err != nil {
			return nil, err
		}
		if v.ID != k.Capture {
			return nil, corrupt(key, "capture record names capture %q", v.ID)
		}
		return v, nil
	case KindChangefeedInfo:
		v, err := strict[model.ChangefeedInfo](key, value)
		if err != nil {
			return nil, err
		}
		if v.ID != "" && v.ID != k.Changefeed {
			return nil, corrupt(key, "changefeed info names changefeed %q", v.ID)
		}
		return v, nil
	case KindChangefeedStatus:
		v, err := strict[model.ChangefeedStatus](key, value)
		if err != nil {
			return nil, err
		}
		if err := ungroup(key, "orphans", &v.Orphans, &v.OrphansGrouped); err != nil {
			return nil, err
		}
		return v, nil
	case KindChangefeedTables:
		return strict[model.ChangefeedTables](key, value)
	case KindTaskStatus:
		return strict[model.TaskStatus](key, value)
	case KindTaskPosition:
		v, err := strict[model.TaskPosition](key, value)
		if err != nil {
			return nil, err
		}
		if err := ungroup(key, "running", &v.Running, &v.RunningGrouped); err != nil {
			return nil, err
		}
		return v, nil
	case KindTaskWorkload:
		if string(bytes.TrimSpace(value)) == "null" {
			return model.TaskWorkload{}, nil // a nil map, as json.Marshal writes it
		}
		v, err := strict[model.TaskWorkload](key, value)
		if err != nil {
			return nil, err
		}
		if *v == nil {
			return model.TaskWorkload{}, nil
		}
		return *v, nil
	case KindGC:
		return strict[model.GCSafepoint](key, value)
	case KindDrain:
		return strict[model.DrainRequest](key, value)
	case KindOwner:
		return strict[model.OwnerInfo](key, value)
	case KindCluster:
		v, err := strict[model.ClusterInfo](key, value)
		if err != nil {
			return nil, err
		}
		if v.ID == "" || v.SchemaVersion < 1 {
			return nil, corrupt(key, "cluster record needs an id and a schema version of at least 1")
		}
		return v, nil
	default:
		return json.RawMessage(value), nil
	}
}

// RecordVersion is the newest record format this build reads. A record
// carries its format in "v" once a format changes meaning (absent is 1); a
// record written in a newer format is not guessed at but treated as a key
// that does not decode, with a reason that says so. Newer formats are
// written only once the cluster's schema version allows them (see
// ClusterInfo.SchemaVersion), so a build that cannot read them is never
// part of the cluster when they appear.
const RecordVersion = 1

// strict decodes a JSON object into T. null, arrays and scalars are
// corrupt: a record is always an object (a workload is a map, which is one).
func strict[T any](key string, value []byte) (*T, error) {
	trimmed := bytes.TrimSpace(value)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, corrupt(key, "value is not a JSON object")
	}
	if err := checkRecordVersion(key, trimmed); err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(trimmed, &v); err != nil {
		return nil, corrupt(key, "%v", err)
	}
	return &v, nil
}

// get reads and decodes one key of a known kind. ok is false when the key
// is absent; err is a *CorruptError when it does not decode.
func get[T any](r fsm.Reader, key string) (v T, rev uint64, ok bool, err error) {
	return getWith[T](r, key, func(kv fsm.KV) (any, error) { return Decode(key, kv.Value) })
}

// getWith is get with the decoding given (the Cache's keeps results).
func getWith[T any](r fsm.Reader, key string, decode func(fsm.KV) (any, error)) (v T, rev uint64, ok bool, err error) {
	kv, found := r.Get(key)
	if !found {
		return v, 0, false, nil
	}
	d, err := decode(kv)
	if err != nil {
		return v, kv.ModRev, false, err
	}
	v, isT := d.(T)
	if !isT {
		return v, kv.ModRev, false, corrupt(key, "key holds %T, not %T", d, v)
	}
	return v, kv.ModRev, true, nil
}

// The typed readers below return ok=false for an absent key and a
// *CorruptError for one that does not decode. Callers treat a corrupt key
// as absent and do not log it: the Tracker reports every corrupt key once.

// GetOwner reads the owner record; an absent one is the zero record.
func GetOwner(r fsm.Reader) (model.OwnerInfo, error) {
	v, _, ok, err := get[*model.OwnerInfo](r, KeyOwner)
	if err != nil || !ok {
		return model.OwnerInfo{}, err
	}
	return *v, nil
}

// GetCapture reads one capture record.
func GetCapture(r fsm.Reader, id model.CaptureID) (*model.CaptureInfo, uint64, bool, error) {
	return get[*model.CaptureInfo](r, CaptureKey(id))
}

// GetInfo reads one changefeed's info.
func GetInfo(r fsm.Reader, id model.ChangefeedID) (*model.ChangefeedInfo, uint64, bool, error) {
	return get[*model.ChangefeedInfo](r, ChangefeedInfoKey(id))
}

// GetStatus reads one changefeed's status, with its table set merged in
// from the table-set record when it has one (MergeTables). rev is the
// status key's; a table-set record that does not decode is the error.
func GetStatus(r fsm.Reader, id model.ChangefeedID) (*model.ChangefeedStatus, uint64, bool, error) {
	return getStatusWith(r, id, func(kv fsm.KV) (any, error) { return Decode(kv.Key, kv.Value) })
}

func getStatusWith(r fsm.Reader, id model.ChangefeedID, decode func(fsm.KV) (any, error)) (*model.ChangefeedStatus, uint64, bool, error) {
	st, rev, ok, err := getWith[*model.ChangefeedStatus](r, ChangefeedStatusKey(id), decode)
	if err != nil || !ok {
		return st, rev, ok, err
	}
	t, _, _, err := getWith[*model.ChangefeedTables](r, ChangefeedTablesKey(id), decode)
	if err != nil {
		return nil, rev, ok, err
	}
	return MergeTables(st, t), rev, ok, nil
}

// GetTaskStatus reads one capture's task status of one changefeed.
func GetTaskStatus(r fsm.Reader, cf model.ChangefeedID, c model.CaptureID) (*model.TaskStatus, uint64, bool, error) {
	return get[*model.TaskStatus](r, TaskStatusKey(cf, c))
}

// GetPosition reads one capture's position in one changefeed.
func GetPosition(r fsm.Reader, cf model.ChangefeedID, c model.CaptureID) (*model.TaskPosition, uint64, bool, error) {
	return get[*model.TaskPosition](r, TaskPositionKey(cf, c))
}

// Viewer is anything that reads a consistent view of the state (*fsm.FSM).
type Viewer interface {
	View(fn func(r fsm.Reader, appliedIndex uint64) error) error
}

// ReadOwner reads the owner record from its own view.
func ReadOwner(v Viewer) (o model.OwnerInfo, err error) {
	verr := v.View(func(r fsm.Reader, _ uint64) error {
		o, err = GetOwner(r)
		return nil
	})
	if verr != nil {
		return o, verr
	}
	return o, err
}

// checkRecordVersion refuses a record whose "v" is newer than this build
// reads. A workload map keyed by table IDs has no "v" key of its own.
func checkRecordVersion(key string, value []byte) error {
	if !bytes.Contains(value, []byte(`"v"`)) {
		return nil
	}
	var probe struct {
		V json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal(value, &probe); err != nil || probe.V == nil {
		return nil // the decode that follows reports a malformed record
	}
	var v int
	if err := json.Unmarshal(probe.V, &v); err != nil || v < 1 {
		return corrupt(key, "record version %s is not a positive number", probe.V)
	}
	if v > RecordVersion {
		return corrupt(key, "record format version %d was written by a newer build (this build reads up to %d); upgrade this node", v, RecordVersion)
	}
	return nil
}

// GetCluster reads the cluster record; ok is false while none was written
// (a cluster formed by a build before the record existed, until its leader
// records it).
func GetCluster(r fsm.Reader) (*model.ClusterInfo, uint64, bool, error) {
	return get[*model.ClusterInfo](r, KeyCluster)
}

// ReadCluster reads the cluster record from its own view.
func ReadCluster(v Viewer) (c *model.ClusterInfo, ok bool, err error) {
	verr := v.View(func(r fsm.Reader, _ uint64) error {
		c, _, ok, err = GetCluster(r)
		return nil
	})
	if verr != nil {
		return nil, false, verr
	}
	return c, ok, err
}

// ClusterSchemaVersion is the schema version the cluster runs at: 1 until a
// cluster record says otherwise. Rules that a newer schema adds apply only
// from the version that introduced them, so that every replica — whatever
// build it runs — judges every command the same way.
func ClusterSchemaVersion(r fsm.Reader) int {
	c, _, ok, err := GetCluster(r)
	if err != nil || !ok {
		return 1
	}
	return c.SchemaVersion
}
