// Package sinkroot confines the directories that sinks writing to the local
// file system may use (file://, and any other sink that takes a file://
// URI) to the sink roots an operator allowed with --sink-root. Without it,
// any API client could have a server — often running as root — write
// changefeed output into /etc/cron.d.
//
// One Policy is shared by the connector pool, which checks every sink URI
// when a changefeed is created, previewed or updated and again each time a
// sink is opened. Paths are compared after symlinks are resolved, so a link
// inside a root that points out of it does not get out; `..` never does.
//
// The check is against a hostile API client, not a hostile local user: a
// user who can create symlinks under a root between the check and the
// write can still redirect it. Roots should be directories only the server
// and its operators can write to.
package sinkroot

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Flag is the server flag that adds a root, named in every refusal.
const Flag = "--sink-root"

// Policy is a set of allowed roots. The nil Policy allows every directory
// (library use and tests that open sinks directly); a server always has one.
type Policy struct {
	roots    []string // as given, cleaned
	resolved []string // symlinks resolved
}

// New makes a policy of absolute roots. A root that does not exist yet is
// allowed (the default root is created at start): its existing part is
// resolved now, the rest taken as written.
func New(roots ...string) (*Policy, error) {
	if len(roots) == 0 {
		return nil, fmt.Errorf("a sink root policy needs at least one root (%s)", Flag)
	}
	p := &Policy{}
	for _, r := range roots {
		if !filepath.IsAbs(r) {
			return nil, fmt.Errorf("%s %q must be an absolute path", Flag, r)
		}
		clean := filepath.Clean(r)
		res, err := Resolve(clean)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", Flag, r, err)
		}
		p.roots = append(p.roots, clean)
		p.resolved = append(p.resolved, res)
	}
	return p, nil
}

// Roots are the allowed roots as configured.
func (p *Policy) Roots() []string {
	if p == nil {
		return nil
	}
	return append([]string(nil), p.roots...)
}

// Check allows dir (absolute) if, after symlinks are resolved, it is one of
// the roots or below one.
func (p *Policy) Check(dir string) error {
	if p == nil {
		return nil
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("sink directory %q is not an absolute path", dir)
	}
	res, err := Resolve(filepath.Clean(dir))
	if err != nil {
		return fmt.Errorf("sink directory %s: %w", dir, err)
	}
	for _, root := range p.resolved {
		if within(root, res) {
			return nil
		}
	}
	shown := dir
	if res != filepath.Clean(dir) {
		shown = fmt.Sprintf("%s (%s once symlinks are resolved)", dir, res)
	}
	return fmt.Errorf("sink directory %s is outside the sink roots %s; a server writes only below the directories given with %s (default <data-dir>/sinks)",
		shown, strings.Join(p.roots, ", "), Flag)
}

// CheckURI applies Check to the directory of a file:// URI and lets every
// other scheme through. It parses only what it needs — scheme and path —
// so that each sink keeps its own parameter validation.
func (p *Policy) CheckURI(uri string) error {
	if p == nil {
		return nil
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" {
		return nil // not a local directory, or the sink's own parser says what is wrong
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return nil // relative: the sink refuses it with its own message
	}
	return p.Check(u.Path)
}

func within(root, path string) bool {
	if root == path {
		return true
	}
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// Resolve returns path with every symlink in its existing part resolved and
// the part that does not exist yet appended as written. Cleaning first
// means no `..` is left to climb out of a resolved prefix.
func Resolve(path string) (string, error) {
	path = filepath.Clean(path)
	var rest []string
	cur := path
	for {
		res, err := filepath.EvalSymlinks(cur)
		if err == nil {
			parts := append([]string{res}, rest...)
			return filepath.Join(parts...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			// A component that is not a directory, a loop, no permission:
			// refuse rather than guess.
			return "", fmt.Errorf("resolving %s: %w", cur, err)
		}
		if fi, lerr := os.Lstat(cur); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			// A dangling link: where it leads is not known until something
			// creates the target, so it cannot be shown to stay inside.
			target, _ := os.Readlink(cur)
			return "", fmt.Errorf("%s is a symlink to %s, which does not exist", cur, target)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return path, nil
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// EnsureDir creates a root if it is missing (the default root).
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating sink root %s: %w", dir, err)
	}
	return nil
}

// Join puts one name under dir, refusing names that would leave it: a path
// separator, "." or "..", or a NUL. Sinks name per-table directories and
// files after upstream identifiers, and some upstreams (PostgreSQL's quoted
// identifiers) allow "../x" as a table name.
func Join(dir, name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return "", fmt.Errorf("%q cannot name a file or directory under %s: it is empty, a dot entry, or holds a path separator or NUL", name, dir)
	}
	return filepath.Join(dir, name), nil
}
