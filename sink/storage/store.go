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
}

// localStore is a Store on a local or mounted directory. An object appears
// whole or not at all: it is written to a hidden temporary file, synced,
// and then linked to its name (which fails if the name is taken, so a data
// file is never overwritten) or renamed over it (for the overwritable index
// and metadata files). Temporary names start with ".tmp-", which readers
// skip.
type localStore struct {
	root string
}

const tempPrefix = ".tmp-"

func (s *localStore) path(name string) (string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" || clean != "/"+name || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("object name %q is not a clean relative path", name)
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

func (s *localStore) writeTemp(ctx context.Context, full string, data []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	dir := filepath.Dir(full)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return "", werr
	}
	return tmp, nil
}

func (s *localStore) Create(ctx context.Context, name string, data []byte) error {
	full, err := s.path(name)
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(ctx, full, data)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	defer os.Remove(tmp)
	// The link makes the file visible: the writer must still hold its lease
	// right before it (sink.LeaseValid, processor/DESIGN.md).
	if err := sink.LeaseValid(ctx); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if err := os.Link(tmp, full); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", name, errExists)
		}
		return fmt.Errorf("create %s: %w", name, err)
	}
	sink.Committed(ctx)
	return syncDir(filepath.Dir(full))
}

func (s *localStore) Put(ctx context.Context, name string, data []byte) error {
	full, err := s.path(name)
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(ctx, full, data)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := sink.LeaseValid(ctx); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, full); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	sink.Committed(ctx)
	return syncDir(filepath.Dir(full))
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
		if d.IsDir() || strings.HasPrefix(d.Name(), tempPrefix) {
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
