package fsm

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// snapshotVersion is the stream format: a header line, then one JSON line per
// key. JSON lines keep snapshots inspectable with ordinary tools.
const snapshotVersion = 1

type snapshotHeader struct {
	Version      int    `json:"version"`
	AppliedIndex uint64 `json:"applied_index"`
	Keys         int    `json:"keys"`
}

type snapshotEntry struct {
	Key       string          `json:"k"`
	Value     json.RawMessage `json:"v"`
	CreateRev uint64          `json:"c"`
	ModRev    uint64          `json:"m"`
}

type fsmSnapshot struct {
	tx      *bolt.Tx
	done    func()
	release sync.Once
}

// Snapshot implements raft.FSM. It opens a read transaction, which is a
// consistent view that Apply can keep writing past while Persist streams it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	tx, err := f.db.Begin(false)
	if err != nil {
		f.mu.RUnlock()
		return nil, fmt.Errorf("starting snapshot transaction: %w", err)
	}
	return &fsmSnapshot{tx: tx, done: f.mu.RUnlock}, nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	// Written: the read transaction is not needed any more. Releasing it
	// here, not only in Release, matters for callers that never call
	// Release (raft.RecoverCluster): the transaction would hold the FSM's
	// lock, and Close would wait for it forever.
	defer s.Release()
	if err := writeSnapshot(s.tx, sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {
	s.release.Do(func() {
		s.tx.Rollback()
		s.done()
	})
}

func writeSnapshot(tx *bolt.Tx, w io.Writer) error {
	var applied uint64
	if b := tx.Bucket(bucketMeta).Get(keyApplied); len(b) == 8 {
		applied = binary.BigEndian.Uint64(b)
	}
	kv := tx.Bucket(bucketKV)
	return WriteSnapshot(w, applied, kv.Stats().KeyN, func(yield func(KV) error) error {
		return kv.ForEach(func(k, v []byte) error { return yield(decodeValue(k, v)) })
	})
}

// WriteSnapshot writes a state in the snapshot stream format that Restore
// reads: the state at appliedIndex, with keys entries that each calls yield
// for, in key order. The restore tool uses it to seed a new node from a
// backup.
func WriteSnapshot(w io.Writer, appliedIndex uint64, keys int, each func(yield func(KV) error) error) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapshotHeader{Version: snapshotVersion, AppliedIndex: appliedIndex, Keys: keys}); err != nil {
		return err
	}
	// Encoding a json.RawMessage checks that it is valid JSON.
	err := each(func(kv KV) error {
		return enc.Encode(snapshotEntry{Key: kv.Key, Value: kv.Value, CreateRev: kv.CreateRev, ModRev: kv.ModRev})
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// Restore implements raft.FSM: it loads the stream into a new file and swaps
// it in, so a failed restore leaves the old state in place.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	_ = os.Remove(tmp)
	db, err := openDB(tmp)
	if err != nil {
		return err
	}
	applied, err := loadSnapshot(db, rc)
	if err != nil {
		db.Close()
		os.Remove(tmp)
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("closing restored FSM file: %w", err)
	}
	f.mu.Lock()
	if err := f.db.Close(); err != nil {
		f.mu.Unlock()
		return fmt.Errorf("closing FSM file for restore: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		f.mu.Unlock()
		return fmt.Errorf("installing restored FSM file: %w", err)
	}
	f.db, err = openDB(f.path)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	f.setApplied(applied)
	f.notify(WatchBatch{Index: applied, Resync: true})
	return nil
}

func loadSnapshot(db *bolt.DB, r io.Reader) (uint64, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return 0, fmt.Errorf("reading header: %w", err)
	}
	if h.Version != snapshotVersion {
		return 0, fmt.Errorf("snapshot format version %d is not known to this build", h.Version)
	}
	const batch = 10000
	done := false
	for !done {
		err := db.Update(func(tx *bolt.Tx) error {
			kv := tx.Bucket(bucketKV)
			for i := 0; i < batch; i++ {
				var e snapshotEntry
				if err := dec.Decode(&e); err != nil {
					if errors.Is(err, io.EOF) {
						done = true
						return putApplied(tx, h.AppliedIndex)
					}
					return fmt.Errorf("reading entry: %w", err)
				}
				if err := kv.Put([]byte(e.Key), encodeValue(e.CreateRev, e.ModRev, e.Value)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return h.AppliedIndex, nil
}
