package adversarial

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/server"
)

// TestFileSinkEscapesAreRefusedAtCreate asks a node for file sinks outside
// its sink root — system directories, the root of the file system, `..` in
// every spelling, a symlink inside the root that points out of it — and
// checks that preview and create both refuse each with a message naming
// --sink-root, that nothing is written to the state machine and that no
// directory appears. A directory inside the root is the control.
func TestFileSinkEscapesAreRefusedAtCreate(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "etc-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(base, filepath.Join(root, "up-link")); err != nil {
		t.Fatal(err)
	}
	s := startCluster(t, clusterOpts{nodes: 1, cdc: true, configure: func(_ int, c *server.Config) {
		c.SinkRoots = []string{root}
	}})
	s.WaitForLeader(10 * time.Second)
	escapes := []string{
		"file:///etc/cron.d",
		"file:///proc/sys/kernel",
		"file:///",
		"file:///tmp",
		"file://" + root + "/..",
		"file://" + root + "/../escape",
		"file://" + root + "/a/../../escape",
		"file://" + root + "/%2e%2e/escape",
		"file://" + root + "/etc-link",
		"file://" + root + "/etc-link/cron.d",
		"file://" + root + "/up-link/escape",
		"file://" + filepath.Dir(root) + "/root-sibling",
	}
	for k, uri := range escapes {
		body := map[string]any{"id": "escape-" + string(rune('a'+k)), "source_uri": "datagen://?tables=2&rate=10", "sink_uri": uri}
		for _, path := range []string{"/api/v1/changefeeds/preview", "/api/v1/changefeeds"} {
			r := do(t, s.client, http.MethodPost, s.url(0, path), apiToken, jsonBody(t, body))
			if r.status != http.StatusBadRequest {
				t.Errorf("POST %s with sink %s: %s, want 400", path, uri, r)
				// A create that went through would have the server write
				// there: stop at the preview.
				break
			}
			if _, msg := r.jsonError(t); !strings.Contains(msg, "--sink-root") {
				t.Errorf("POST %s with sink %s: the message does not name --sink-root: %s", path, uri, msg)
			}
		}
	}
	for _, dir := range []string{filepath.Join(base, "escape"), filepath.Join(base, "root-sibling")} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s was created", dir)
		}
	}
	kvs, err := s.Node(0).FSM().List(meta.PrefixChangefeedInfo)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 0 {
		t.Errorf("refused creates left changefeeds behind: %v", kvs)
	}

	// The control: below the root is fine.
	ok := map[string]any{"id": "inside", "source_uri": "datagen://?tables=2&rate=10", "sink_uri": "file://" + root + "/inside"}
	if r := do(t, s.client, http.MethodPost, s.url(0, "/api/v1/changefeeds"), apiToken, jsonBody(t, ok)); r.status != http.StatusCreated {
		t.Fatalf("create inside the sink root: %s", r)
	}
}

func jsonBody(t *testing.T, v any) *strings.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReader(string(b))
}
