// Package fsm is raftcdc's replicated state machine: an ordered key space in
// bbolt where every key carries the Raft index of its creation and of its last
// change, changed only by typed commands that apply atomically or not at all.
package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	keyApplied = []byte("applied_index")
)

// KV is one key as stored.
type KV struct {
	Key       string `json:"key"`
	Value     []byte `json:"value"`
	CreateRev uint64 `json:"create_rev"`
	ModRev    uint64 `json:"mod_rev"`
}

// Options tune an FSM.
type Options struct {
	// Rules is the schema every command is checked against (required; for
	// raftcdc's metadata, meta.Rules).
	Rules  Rules
	Logger zerolog.Logger
	// ObserveApply, if set, is told how long each command took to apply.
	ObserveApply func(time.Duration, *Result)
	// OnUnknownCommand, if set, is called before the FSM panics on an entry
	// in a command format newer than this build (tests observe it).
	OnUnknownCommand func(index uint64, err error)
}

// FSM implements raft.FSM over a bbolt file.
type FSM struct {
	path string
	opts Options

	mu sync.RWMutex // guards db swaps on Restore; bbolt guards the rest
	db *bolt.DB

	watchMu  sync.Mutex
	watchers map[*watcher]struct{}

	appliedMu   sync.Mutex
	applied     uint64
	appliedCond chan struct{} // closed and replaced on every apply
}

// Open creates the state machine's file afresh. The FSM is always rebuilt
// from the Raft snapshot and log on start, so a leftover file from an earlier
// run is removed rather than trusted.
func Open(path string, opts Options) (*FSM, error) {
	if opts.Rules == nil {
		return nil, errors.New("opening FSM: Options.Rules is required: the state machine enforces a schema's fences and invariants (raftcdc's is meta.Rules)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating FSM directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale FSM file %s: %w", path, err)
	}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	return &FSM{path: path, opts: opts, db: db, watchers: map[*watcher]struct{}{}, appliedCond: make(chan struct{})}, nil
}

func openDB(path string) (*bolt.DB, error) {
	// A large initial mmap keeps writers from waiting on a remap while a
	// snapshot's long read transaction is open.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, InitialMmapSize: 256 << 20})
	if err != nil {
		return nil, fmt.Errorf("opening FSM file %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKV, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("creating FSM buckets: %w", err)
	}
	return db, nil
}

// Close releases the file.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchMu.Lock()
	for w := range f.watchers {
		w.close()
	}
	f.watchers = map[*watcher]struct{}{}
	f.watchMu.Unlock()
	return f.db.Close()
}

// value layout: create rev (8 bytes) | mod rev (8 bytes) | value.
func encodeValue(createRev, modRev uint64, v []byte) []byte {
	b := make([]byte, 16+len(v))
	binary.BigEndian.PutUint64(b, createRev)
	binary.BigEndian.PutUint64(b[8:], modRev)
	copy(b[16:], v)
	return b
}

func decodeValue(key, raw []byte) KV {
	kv := KV{Key: string(key)}
	if len(raw) >= 16 {
		kv.CreateRev = binary.BigEndian.Uint64(raw)
		kv.ModRev = binary.BigEndian.Uint64(raw[8:])
		kv.Value = append([]byte(nil), raw[16:]...)
	}
	return kv
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	start := time.Now()
	res := f.applyCommand(l.Index, l.Data)
	if f.opts.ObserveApply != nil {
		f.opts.ObserveApply(time.Since(start), res)
	}
	return res
}

// ApplyBatch implements raft.BatchingFSM. A burst of entries is applied in
// one bbolt transaction when every command in it is accepted: a commit per
// entry (bbolt writes its dirty pages and meta page at every commit, even
// without fsync) was a large part of every replica's CPU under 64 concurrent
// writers. A command that is refused must roll back alone, so a batch with
// a refusal (or an entry this build cannot decode) is applied again one
// entry at a time; the outcome is the same either way, only the cost
// differs.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if f.applyTogether(logs, out) {
		return out
	}
	for i, l := range logs {
		out[i] = f.Apply(l)
	}
	return out
}

// applyTogether applies the commands of logs in one transaction and
// reports true, or changes nothing and reports false when one of them needs
// the entry-at-a-time path.
func (f *FSM) applyTogether(logs []*raft.Log, out []any) bool {
	commands := 0
	for _, l := range logs {
		if l.Type == raft.LogCommand {
			commands++
		}
	}
	if commands < 2 {
		return false
	}
	type applied struct {
		i      int
		res    *Result
		events []Event
		took   time.Duration
	}
	done := make([]applied, 0, commands)
	f.mu.RLock()
	err := f.db.Update(func(tx *bolt.Tx) error {
		var last uint64
		for i, l := range logs {
			if l.Type != raft.LogCommand {
				continue
			}
			start := time.Now()
			cmd, err := Decode(l.Data)
			if err != nil {
				return errRefused
			}
			events, refused := f.applyIn(tx, l.Index, cmd)
			if refused != nil {
				return errRefused
			}
			done = append(done, applied{i: i, res: &Result{Index: l.Index}, events: events, took: time.Since(start)})
			last = l.Index
		}
		return putApplied(tx, last)
	})
	f.mu.RUnlock()
	if errors.Is(err, errRefused) {
		return false
	}
	if err != nil {
		f.storageFailure(logs[len(logs)-1].Index, err)
	}
	for _, a := range done {
		out[a.i] = a.res
		if f.opts.ObserveApply != nil {
			f.opts.ObserveApply(a.took, a.res)
		}
		f.publish(a.res.Index, a.events)
	}
	return true
}

func (f *FSM) applyCommand(index uint64, data []byte) *Result {
	res := &Result{Index: index}
	var events []Event
	f.mu.RLock()
	cmd, decodeErr := Decode(data)
	var err error
	var newer *VersionError
	if errors.As(decodeErr, &newer) {
		f.mu.RUnlock()
		f.haltOnUnknown(index, newer)
	}
	if decodeErr != nil {
		res.Err = newErr(CodeInvalid, "", "%v", decodeErr)
	} else {
		err = f.db.Update(func(tx *bolt.Tx) error {
			var refused *Error
			if events, refused = f.applyIn(tx, index, cmd); refused != nil {
				res.Err = refused
				return errRefused // rolls back every change the command made
			}
			return putApplied(tx, index)
		})
		if errors.Is(err, errRefused) {
			err = nil
		}
	}
	if err == nil && res.Err != nil {
		// The applied index moves even for refused commands, so that reads
		// can wait for "everything up to index N".
		err = f.db.Update(func(tx *bolt.Tx) error { return putApplied(tx, index) })
	}
	f.mu.RUnlock()
	if err != nil {
		f.storageFailure(index, err)
	}
	if res.Err != nil {
		f.opts.Logger.Debug().Uint64("index", index).Str("code", string(res.Err.Code)).Str("key", res.Err.Key).Msg(res.Err.Message)
	}
	f.publish(index, events)
	return res
}

// applyIn applies one command inside tx: its changes, or a refusal (the
// caller rolls tx back).
func (f *FSM) applyIn(tx *bolt.Tx, index uint64, cmd Command) ([]Event, *Error) {
	t := &txn{tx: tx, kv: tx.Bucket(bucketKV), index: index, rules: f.opts.Rules}
	if e := t.apply(cmd); e != nil {
		return nil, e
	}
	return t.events, nil
}

// publish makes index the applied index and tells the watchers its events.
func (f *FSM) publish(index uint64, events []Event) {
	f.setApplied(index)
	if len(events) > 0 {
		f.notify(WatchBatch{Index: index, Events: events})
	}
}

// storageFailure stops the replica: a storage failure is not a
// deterministic refusal, so this replica can no longer be trusted to match
// the others.
func (f *FSM) storageFailure(index uint64, err error) {
	f.opts.Logger.Error().Err(err).Uint64("index", index).Msg("FSM storage failure")
	panic(fmt.Sprintf("fsm: applying index %d: %v", index, err))
}

// haltOnUnknown stops this replica at an entry it cannot understand. The
// entry is committed, so the replicas of newer builds apply it; applying a
// guess here, or refusing it, would make this replica's state differ from
// theirs for good. Stopping keeps the state as it was, and the node comes
// back in step after an upgrade, replaying the entry then. The log line
// says which entry and what to do.
func (f *FSM) haltOnUnknown(index uint64, err *VersionError) {
	msg := fmt.Sprintf("fsm: cannot apply Raft entry %d: %v; this node stops rather than apply it wrongly", index, err)
	f.opts.Logger.Error().Uint64("index", index).Int("command_version", err.Version).Int("known_command_version", CommandVersion).Msg(msg)
	if f.opts.OnUnknownCommand != nil {
		f.opts.OnUnknownCommand(index, err)
	}
	panic(msg)
}

func putApplied(tx *bolt.Tx, index uint64) error {
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], index)
	return tx.Bucket(bucketMeta).Put(keyApplied, idx[:])
}

var errRefused = errors.New("command refused")

func (f *FSM) setApplied(index uint64) {
	f.appliedMu.Lock()
	f.applied = index
	close(f.appliedCond)
	f.appliedCond = make(chan struct{})
	f.appliedMu.Unlock()
}

// AppliedIndex is the Raft index of the last entry applied here.
func (f *FSM) AppliedIndex() uint64 {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.applied
}

// WaitApplied blocks until the entry at index has been applied here.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.appliedMu.Lock()
		applied, ch := f.applied, f.appliedCond
		f.appliedMu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d to be applied (at %d): %w", index, applied, ctx.Err())
		}
	}
}

// Reader reads one consistent view of the state.
type Reader struct{ kv *bolt.Bucket }

// Get returns a key, or ok=false.
func (r Reader) Get(key string) (KV, bool) {
	raw := r.kv.Get([]byte(key))
	if raw == nil {
		return KV{}, false
	}
	return decodeValue([]byte(key), raw), true
}

// List returns every key under prefix in key order.
func (r Reader) List(prefix string) []KV {
	var out []KV
	r.Range(prefix, func(kv KV) bool { out = append(out, kv); return true })
	return out
}

// Range calls fn for each key under prefix in key order until fn returns false.
func (r Reader) Range(prefix string, fn func(KV) bool) {
	c := r.kv.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if !fn(decodeValue(k, v)) {
			return
		}
	}
}

// View runs fn over a consistent snapshot of the state; it also reports the
// applied index that snapshot corresponds to.
func (f *FSM) View(fn func(r Reader, appliedIndex uint64) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.db.View(func(tx *bolt.Tx) error {
		var applied uint64
		if b := tx.Bucket(bucketMeta).Get(keyApplied); len(b) == 8 {
			applied = binary.BigEndian.Uint64(b)
		}
		return fn(Reader{kv: tx.Bucket(bucketKV)}, applied)
	})
}

// Get reads one key.
func (f *FSM) Get(key string) (kv KV, ok bool, err error) {
	err = f.View(func(r Reader, _ uint64) error {
		kv, ok = r.Get(key)
		return nil
	})
	return kv, ok, err
}

// List reads every key under prefix.
func (f *FSM) List(prefix string) (kvs []KV, err error) {
	err = f.View(func(r Reader, _ uint64) error {
		kvs = r.List(prefix)
		return nil
	})
	return kvs, err
}
