package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const lockFile = "LOCK"

// DirLock is an exclusive flock on dataDir/LOCK, held for the life of the
// process (the kernel drops it if the process dies, so there is no stale
// lock to clean up after a crash).
type DirLock struct {
	f    *os.File
	path string
}

// Lock takes the data directory's lock without waiting. It fails with an
// error naming the directory (and the holder's pid, when known) if another
// process, or another Lock call in this one, already holds it.
func Lock(dataDir string) (*DirLock, error) {
	if dataDir == "" {
		return nil, errors.New("lock data dir: empty path")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("lock data dir: create %s: %w", dataDir, err)
	}
	path := filepath.Join(dataDir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if raw, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(raw))); perr == nil {
				holder = fmt.Sprintf(" (held by pid %d)", pid)
			}
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another raftcdc process%s", dataDir, holder)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dataDir, err)
	}
	// The pid is only a hint for the error message above; failing to write
	// it must not fail the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f, path: path}, nil
}

// Unlock releases the lock. Calling it more than once is harmless.
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Closing the descriptor releases the flock; unlock explicitly anyway
	// so an error is reported rather than hidden.
	uerr := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	cerr := f.Close()
	if uerr != nil {
		return fmt.Errorf("unlock %s: %w", l.path, uerr)
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", l.path, cerr)
	}
	return nil
}
