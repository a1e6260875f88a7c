package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// LeaderSync says how a leader writes its own entries.
type LeaderSync string

const (
	// LeaderSyncParallel: the leader writes its new entries to its log and
	// hands them to replication at once, and syncs them to disk while they
	// replicate (Raft thesis §10.2.1, what etcd's leader does). A command
	// is acknowledged only once the leader's own sync is done too
	// (Stores.WaitDurable). It applies to the wal store; boltdb commits
	// with its own syncs, so a boltdb data dir writes serially.
	LeaderSyncParallel LeaderSync = "parallel"
	// LeaderSyncSerial: the leader writes and syncs its entries before
	// replicating them, as hashicorp/raft does by itself.
	LeaderSyncSerial LeaderSync = "serial"
)

// DefaultLeaderSync is parallel: it takes one fsync off every write's path
// (bench/RESULTS.md, "Metadata writes").
const DefaultLeaderSync = LeaderSyncParallel

// ParseLeaderSync checks a --raft-leader-sync value; "" is the default.
func ParseLeaderSync(s string) (LeaderSync, error) {
	switch LeaderSync(s) {
	case "":
		return DefaultLeaderSync, nil
	case LeaderSyncParallel, LeaderSyncSerial:
		return LeaderSync(s), nil
	}
	return "", fmt.Errorf("--raft-leader-sync %q is not a mode: use parallel or serial", s)
}

// deferVFS is raft-wal's file system with one difference: while a leader's
// append runs (deferring), an ordinary fsync of a segment is not done but
// recorded, for leaderLog's syncer to do. Everything else syncs as raft-wal
// asked: a file's first sync (it also makes the file's directory entry
// durable) and the sync that seals a segment (its writes run past the size
// the segment was created with: the index block), because raft-wal records
// a sealed segment in its metadata right after, and that record must never
// point at an index the disk does not hold.
type deferVFS struct {
	types.VFS
	deferring atomic.Bool
	mu        sync.Mutex
	pending   map[*deferFile]uint64 // file → its write generation to sync
	// beforeSync, when set (tests), runs before each deferred sync the
	// syncer does; an error fails that sync. onCreate (tests) sees every
	// segment file opened for writing.
	beforeSync func() error
	onCreate   func(*deferFile)
}

func newDeferVFS() *deferVFS {
	return &deferVFS{VFS: walfs.New(), pending: map[*deferFile]uint64{}}
}

func (v *deferVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := v.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return v.opened(&deferFile{WritableFile: f, vfs: v, size: int64(size)}), nil
}

func (v *deferVFS) opened(f *deferFile) *deferFile {
	if v.onCreate != nil {
		v.onCreate(f)
	}
	return f
}

func (v *deferVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	// A recovered tail: its preallocated size is the segment's size.
	st, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		f.Close()
		return nil, err
	}
	return v.opened(&deferFile{WritableFile: f, vfs: v, size: st.Size()}), nil
}

// take returns the syncs recorded since the last take.
func (v *deferVFS) take() map[*deferFile]uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.pending) == 0 {
		return nil
	}
	p := v.pending
	v.pending = map[*deferFile]uint64{}
	return p
}

type deferFile struct {
	types.WritableFile
	vfs  *deferVFS
	size int64 // created (preallocated) size

	// closeMu keeps Close from closing the file under a sync in flight
	// (the syncer's runs beside raft-wal's own writes and seals).
	closeMu  sync.RWMutex
	mu       sync.Mutex
	end      int64  // end of the furthest write
	gen      uint64 // writes so far
	synced   uint64 // gen at the last completed sync
	didFirst bool   // the first sync (with the directory's) is done
	closed   bool
}

func (f *deferFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.WritableFile.WriteAt(p, off)
	f.mu.Lock()
	f.gen++
	f.end = max(f.end, off+int64(n))
	f.mu.Unlock()
	return n, err
}

func (f *deferFile) Sync() error {
	f.mu.Lock()
	if f.vfs.deferring.Load() && f.didFirst && f.end <= f.size {
		gen := f.gen
		f.mu.Unlock()
		f.vfs.mu.Lock()
		f.vfs.pending[f] = max(f.vfs.pending[f], gen)
		f.vfs.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	return f.syncNow(0)
}

// syncNow syncs the file unless a sync since generation gen already
// covered it (gen 0: sync anyway). A file closed after such a sync needs
// none; one closed before is an error.
//
// The file's lock is not held during the fsync, so raft-wal's next write
// never waits for the syncer's fsync: that wait is what the deferral
// removes.
func (f *deferFile) syncNow(gen uint64) error {
	f.closeMu.RLock()
	defer f.closeMu.RUnlock()
	f.mu.Lock()
	if gen != 0 && f.synced >= gen {
		f.mu.Unlock()
		return nil
	}
	if f.closed {
		f.mu.Unlock()
		return fmt.Errorf("segment closed before its writes were synced")
	}
	want := f.gen // every write that has returned is in what fsync covers
	f.mu.Unlock()
	if err := f.WritableFile.Sync(); err != nil {
		return err
	}
	f.mu.Lock()
	f.synced, f.didFirst = max(f.synced, want), true
	f.mu.Unlock()
	return nil
}

func (f *deferFile) Close() error {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return f.WritableFile.Close()
}

// leaderLog is the wal log store with the leader's syncs moved off the
// path of replication. On the leader StoreLogs writes the entries to the
// segment (they are in the page cache, so a crash of the process loses
// nothing, as with the serial write) and returns without the fsync; a
// syncer goroutine does that fsync, one for everything written since the
// previous one. hashicorp/raft then replicates at once and counts the
// leader's copy; an entry can commit on a follower's sync before the
// leader's is done, which is why Node.Apply answers only after
// WaitDurable. A follower's StoreLogs (any call while the node does not
// lead) waits for outstanding syncs and syncs its own entries before it
// returns: a follower's acknowledgement says its disk has them. See
// storage/DESIGN.md for what is weaker than the serial write.
type leaderLog struct {
	*walStore
	vfs      *deferVFS
	leader   atomic.Pointer[func() bool]
	onFailed func(error)

	mu      sync.Mutex
	durable uint64 // every entry up to here is synced
	queue   []syncRequest
	busy    bool  // the syncer is syncing
	err     error // a failed sync: nothing is accepted after it
	closed  bool
	changed chan struct{} // closed when durable, the queue or err change
	kick    chan struct{}
	done    chan struct{}
}

type syncRequest struct {
	last  uint64
	files map[*deferFile]uint64
}

func newLeaderLog(w *walStore, vfs *deferVFS, onFailed func(error)) (*leaderLog, error) {
	last, err := w.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read the last index of the Raft log: %w", err)
	}
	if onFailed == nil {
		onFailed = func(err error) {
			// Raft already counted these entries as synced on the leader; a
			// node that could not sync them must not go on answering.
			panic(fmt.Sprintf("raft log: %v; the node stops so that it never acknowledges what its disk may not hold", err))
		}
	}
	l := &leaderLog{walStore: w, vfs: vfs, onFailed: onFailed, durable: last,
		changed: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// setLeader tells the log how to know the node leads. Until it is set the
// log syncs every write.
func (l *leaderLog) setLeader(f func() bool) { l.leader.Store(&f) }

func (l *leaderLog) isLeader() bool {
	f := l.leader.Load()
	return f != nil && (*f)()
}

// notifyLocked wakes everyone waiting for a change. l.mu is held.
func (l *leaderLog) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *leaderLog) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

func (l *leaderLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	last := logs[len(logs)-1].Index
	if !l.isLeader() {
		if err := l.drain(context.Background()); err != nil {
			return err
		}
		l.mu.Lock()
		l.forgetFromLocked(logs[0].Index)
		l.mu.Unlock()
		if err := l.walStore.StoreLogs(logs); err != nil {
			return err
		}
		l.mu.Lock()
		l.durable = max(l.durable, last)
		l.notifyLocked()
		l.mu.Unlock()
		return nil
	}
	l.mu.Lock()
	err := l.err
	if l.closed {
		err = errLogClosed
	}
	l.forgetFromLocked(logs[0].Index)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	// Only Raft's goroutine appends, so the flag covers exactly this call.
	l.vfs.deferring.Store(true)
	err = l.walStore.StoreLogs(logs)
	l.vfs.deferring.Store(false)
	files := l.vfs.take()
	if err != nil {
		return err
	}
	l.mu.Lock()
	if len(files) == 0 {
		// Everything this write needed was synced on the way (a new
		// segment's first sync, or a seal). Earlier entries with syncs
		// still queued are covered too: they can only be in the segment a
		// seal just synced whole, or in the one before a new segment,
		// which was sealed (synced) to make way for it.
		l.durable = max(l.durable, last)
	} else {
		l.queue = append(l.queue, syncRequest{last: last, files: files})
	}
	l.notifyLocked()
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return nil
}

// errLogClosed: an entry handed to the log after Close.
var errLogClosed = errors.New("the Raft log is closed")

// run does the leader's deferred syncs, all requests queued so far with
// one sync per file.
func (l *leaderLog) run() {
	defer close(l.done)
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			stop := l.closed || l.err != nil
			l.mu.Unlock()
			if stop {
				return
			}
			<-l.kick
			continue
		}
		batch := l.queue
		l.queue, l.busy = nil, true
		l.mu.Unlock()

		files := map[*deferFile]uint64{}
		var last uint64
		for _, r := range batch {
			last = max(last, r.last)
			for f, gen := range r.files {
				files[f] = max(files[f], gen)
			}
		}
		var err error
		for f, gen := range files {
			if hook := l.vfs.beforeSync; hook != nil {
				if err = hook(); err != nil {
					break
				}
			}
			if err = f.syncNow(gen); err != nil {
				break
			}
		}

		if err != nil {
			err = fmt.Errorf("syncing the leader's entries up to %d failed: %w", last, err)
			// Reported before anyone waiting hears of it: the report is
			// what stops the node.
			l.onFailed(err)
			l.mu.Lock()
			l.busy, l.err, l.queue = false, err, nil
			l.notifyLocked()
			l.mu.Unlock()
			return
		}
		l.mu.Lock()
		l.busy = false
		l.durable = max(l.durable, last)
		l.notifyLocked()
		l.mu.Unlock()
	}
}

// drain waits until no deferred sync is outstanding.
func (l *leaderLog) drain(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.err != nil {
			l.mu.Unlock()
			return l.err
		}
		if len(l.queue) == 0 && !l.busy {
			l.mu.Unlock()
			return nil
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the Raft log's outstanding syncs: %w", ctx.Err())
		}
	}
}

// WaitDurable returns once entry idx is synced in this node's log.
func (l *leaderLog) WaitDurable(ctx context.Context, idx uint64) error {
	for {
		l.mu.Lock()
		if l.durable >= idx {
			l.mu.Unlock()
			return nil
		}
		if l.err != nil {
			l.mu.Unlock()
			return l.err
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for entry %d to be synced in this node's Raft log: %w", idx, ctx.Err())
		}
	}
}

// DeleteRange waits for outstanding syncs first, so that raft-wal never
// closes or drops a segment a deferred sync still has to reach. What is
// durable does not change: a head compaction drops entries a snapshot
// holds, and indexes a tail truncation frees are forgotten when they are
// written again (forgetFromLocked).
func (l *leaderLog) DeleteRange(min, max uint64) error {
	if err := l.drain(context.Background()); err != nil {
		return err
	}
	return l.walStore.DeleteRange(min, max)
}

// forgetFromLocked: entries from idx on are being written (again), so they
// are not durable until this write's sync, whatever the same indexes were
// before a new leader's log replaced them. (raft-wal starts a new segment
// after a tail truncation, so today a rewrite's first sync is inline; this
// keeps the watermark right without relying on that.) l.mu is held.
func (l *leaderLog) forgetFromLocked(idx uint64) {
	if idx <= l.durable {
		l.durable = idx - 1
		l.notifyLocked()
	}
}

// Close does the outstanding syncs, stops the syncer and closes the WAL.
func (l *leaderLog) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-l.done
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	return errors.Join(err, l.walStore.Close())
}
