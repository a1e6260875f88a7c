package main

import (
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/ctl/ctltest"
)

// A create over the cluster's table capacity fails with the server's
// numbers and a hint naming what shows the budgets; nothing is written.
func TestCtlCreateOverCapacity(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	s.CDC.Budget = 5 // two live nodes: a capacity of 10
	before := s.Store.Dump(t)
	r := ctlRun(t, s.Addr(), nil, "changefeed", "create", "-c", "big", "--source-uri", "datagen://?tables=12", "--sink-uri", "blackhole://", "--no-confirm")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stdout %s stderr %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"cannot create changefeed \"big\"", "it has 12 tables", "the cluster carries 10", "Hint: 'raftcdc ctl capture list' shows each live capture's table budget"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	if s.Store.Dump(t) != before {
		t.Error("a refused create changed the state")
	}
	// Within the capacity it passes.
	ctlRun(t, s.Addr(), nil, "changefeed", "create", "-c", "small", "--source-uri", "datagen://?tables=10", "--sink-uri", "blackhole://", "--no-confirm").mustOK(t)
}
