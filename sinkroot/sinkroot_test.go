package sinkroot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/sinkroot"
)

func TestCheck(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	other := filepath.Join(base, "other")
	for _, d := range []string{root, other, filepath.Join(root, "real")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{"out": other, "etc": "/etc", "in": filepath.Join(root, "real"), "dangling": filepath.Join(base, "missing"), "rel-up": "../other"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A root reached through a symlink is the same root.
	viaLink := filepath.Join(base, "root-link")
	if err := os.Symlink(root, viaLink); err != nil {
		t.Fatal(err)
	}
	p, err := sinkroot.New(root)
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{root, root + "/", root + "/a", root + "/a/b/c", root + "/in", root + "/in/x", root + "/a/../b", viaLink + "/x", root + "/..root"}
	for _, d := range allowed {
		if err := p.Check(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	refused := []string{"/", "/etc", "/etc/cron.d", "/proc/sys/kernel", base, other, root + "/..", root + "/../other", root + "/a/../../other",
		root + "/out", root + "/out/x", root + "/etc/cron.d", root + "/dangling/x", root + "/rel-up/x", root + "x", filepath.Dir(base), "relative/dir"}
	for _, d := range refused {
		err := p.Check(d)
		if err == nil {
			t.Errorf("%s: allowed", d)
			continue
		}
		if !strings.Contains(err.Error(), "absolute") && !strings.Contains(err.Error(), sinkroot.Flag) && !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%s: the message names neither %s nor the problem: %v", d, sinkroot.Flag, err)
		}
	}
	if err := p.Check(root + "/etc/cron.d"); err == nil || !strings.Contains(err.Error(), "/etc/cron.d once symlinks are resolved") {
		t.Errorf("a link out is not explained: %v", err)
	}
}

func TestCheckURI(t *testing.T) {
	root := t.TempDir()
	p, err := sinkroot.New(root)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{
		"file://" + root + "/x":             true,
		"file://" + root + "/x?format=csv":  true,
		"file:///etc":                       false,
		"file://" + root + "/%2e%2e/escape": false,
		"file://" + root + "/../escape":     false,
		"blackhole://":                      true,
		"kafka://broker/topic":              true,
		"file://relative":                   true, // the sink's parser refuses it
	}
	for uri, ok := range cases {
		if err := p.CheckURI(uri); (err == nil) != ok {
			t.Errorf("%s: %v", uri, err)
		}
	}
	var none *sinkroot.Policy
	if none.CheckURI("file:///etc") != nil || none.Check("/") != nil {
		t.Error("the nil policy refuses")
	}
}

func TestNew(t *testing.T) {
	if _, err := sinkroot.New(); err == nil {
		t.Error("no roots accepted")
	}
	if _, err := sinkroot.New("rel"); err == nil || !strings.Contains(err.Error(), sinkroot.Flag) {
		t.Errorf("relative root: %v", err)
	}
	// A root that does not exist yet (the default one before start).
	missing := filepath.Join(t.TempDir(), "sinks")
	p, err := sinkroot.New(missing)
	if err != nil {
		t.Fatal(err)
	}
	if err := sinkroot.EnsureDir(missing); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(filepath.Join(missing, "feed")); err != nil {
		t.Error(err)
	}
}

func TestJoin(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "../etc", "a/b", `a\b`, "a\x00b"} {
		if _, err := sinkroot.Join("/r", bad); err == nil {
			t.Errorf("%q: joined", bad)
		}
	}
	for _, good := range []string{"db.table", "..x", "a b", "表"} {
		if p, err := sinkroot.Join("/r", good); err != nil || filepath.Dir(p) != "/r" {
			t.Errorf("%q: %s, %v", good, p, err)
		}
	}
}
