package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/raftcdc/raftcdc/sink"
)

// errExists is returned by Create for a name that is taken.
var errExists = errors.New("object exists")

// Store is what the sink needs from object storage: whole objects written
// in one call, never appended to and never renamed. Data files are created
// once and never replaced; only the index and metadata files are
// overwritten, each by a single whole write, as an object store's PUT does.
// Names are slash-separated paths relative to the sink root.
type Store interface {
	// Create writes a new object; errors.Is(err, errExists) if the name is
	// taken, and then nothing changed.
	Create(ctx context.Context, name string, data []byte) error
	// Put writes an object, replacing any object of that name.
	Put(ctx context.Context, name string, data []byte) error
	// Get reads an object; errors.Is(err, fs.ErrNotExist) if there is none.
	Get(ctx context.Context, name string) ([]byte, error)
	// List returns the names of the objects whose names start with prefix
	// (a "directory" when it ends in '/'), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Fenced returns the store as one writer of the directory dir sees it:
	// its writes (to names under dir) are revoked by a later Fence(dir)
	// unless they were visible before it.
	Fenced(dir string) Store
	// Fence revokes every write in flight through Fenced(dir): when it
	// returns, such a write either became visible before, or fails with
	// sink.ErrFenced and leaves nothing. A table's new writer calls it
	// before its first write; see DESIGN.md, "Fenced writers".
	Fence(ctx context.Context, dir string) error
}

// localStore is a Store on a local or mounted directory. An object appears
// whole or not at all: it is written to a hidden temporary file, synced,
// and then linked to its name (which fails if the name is taken, so a data
// file is never overwritten) or renamed over it (for the overwritable index
// and metadata files). Temporary names start with ".tmp-", which readers
// skip. A fenced writer's temporary files live in its directory's staging
// directory, dir/.tmp-staging, and Fence removes them: the link or rename
// of a removed file fails in the kernel, whatever the writer's process
// believes about its lease.
type localStore struct {
	root string
	// fenced is the directory whose staging directory holds the temporary
	// files ("" for unfenced writes, which stage beside the object).
	fenced string
}

const (
	tempPrefix = ".tmp-"
	stagingDir = tempPrefix + "staging"
)

func (s *localStore) path(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" || clean != "/"+name || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("object name %q is not a clean relative path", name)
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

// staging is where the temporary file of the object at full goes.
func (s *localStore) staging(name, full string) (string, error) {
	if s.fenced == "" {
		return filepath.Dir(full), nil
	}
	if !strings.HasPrefix(name, s.fenced+"/") {
		return "", fmt.Errorf("object %s is outside the fenced directory %s", name, s.fenced)
	}
	dir, err := s.path(s.fenced)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, stagingDir), nil
}

// writeTemp writes data to a new temporary file for the object name and
// returns its path and the still open file: through it, committed reads
// the file's ctime after the link or rename, which the kernel sets at that
// instant, even once another name or none refers to the file.
func (s *localStore) writeTemp(ctx context.Context, name, full string, data []byte) (string, *os.File, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	dir, err := s.staging(name, full)
	if err != nil {
		return "", nil, err
	}
	// The object's directory must exist for the link or rename; a fenced
	// writer's staging directory is another one.
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return "", nil, err
	}
	if dir != filepath.Dir(full) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, err
		}
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", nil, err
	}
	tmp := filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", nil, err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if werr != nil {
		f.Close()
		os.Remove(tmp)
		return "", nil, werr
	}
	return tmp, f, nil
}

// revoked maps the error of the link or rename that was to make a write
// visible: for a fenced writer, a temporary file that is gone was removed
// by a fence.
func (s *localStore) revoked(err error) error {
	if s.fenced != "" && errors.Is(err, fs.ErrNotExist) {
		return sink.ErrFenced
	}
	return err
}

// committed reports the instant f became visible: its ctime, which the
// link or rename set (a fence's removal afterwards can only move it later).
func committed(ctx context.Context, f *os.File) {
	at := time.Now()
	if fi, err := f.Stat(); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			at = time.Unix(st.Ctim.Unix())
		}
	}
	sink.CommittedAt(ctx, at)
}

func (s *localStore) Create(ctx context.Context, name string, data []byte) error {
	full, err := s.path(name)
	if err != nil {
		return err
	}
	tmp, f, err := s.writeTemp(ctx, name, full, data)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	// The link makes the file visible: the writer must still hold its lease
	// right before it (sink.LeaseValid, processor/DESIGN.md), and a fence
	// since it began makes the link fail.
	if err := sink.LeaseValid(ctx); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if err := os.Link(tmp, full); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", name, errExists)
		}
		return fmt.Errorf("create %s: %w", name, s.revoked(err))
	}
	committed(ctx, f)
	return syncDir(filepath.Dir(full))
}

func (s *localStore) Put(ctx context.Context, name string, data []byte) error {
	full, err := s.path(name)
	if err != nil {
		return err
	}
	tmp, f, err := s.writeTemp(ctx, name, full, data)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	// After a rename the name is gone and the removal a no-op.
	defer os.Remove(tmp)
	defer f.Close()
	if err := sink.LeaseValid(ctx); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, full); err != nil {
		return fmt.Errorf("write %s: %w", name, s.revoked(err))
	}
	committed(ctx, f)
	return syncDir(filepath.Dir(full))
}

func (s *localStore) Fenced(dir string) Store {
	return &localStore{root: s.root, fenced: strings.TrimSuffix(dir, "/")}
}

func (s *localStore) Fence(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	full, err := s.path(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	staging := filepath.Join(full, stagingDir)
	ents, err := os.ReadDir(staging)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fence %s: %w", dir, err)
	}
	// A writer that created its temporary file after this listing checked
	// its lease after the owner gave the table away, and failed that check.
	for _, e := range ents {
		if err := os.Remove(filepath.Join(staging, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("fence %s: %w", dir, err)
		}
	}
	return nil
}

func (s *localStore) Get(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	full, err := s.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(full)
}

func (s *localStore) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Walk the deepest directory the prefix names.
	dir := prefix
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = prefix[:i]
	} else {
		dir = ""
	}
	start := filepath.Join(s.root, filepath.FromSlash(dir))
	var out []string
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, prefix) {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Strings(out)
	return out, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
