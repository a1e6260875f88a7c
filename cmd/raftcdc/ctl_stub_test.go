package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// The tests in this file run ctl against the real API handler over a real
// state machine filled with fixed fixture data (ctltest), so the output is
// deterministic and can be compared with golden files byte for byte, apart
// from lags and ports.

func TestCtlGoldenReads(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	cases := []struct {
		name string
		args []string
	}{
		{"changefeed-list", []string{"changefeed", "list"}},
		{"changefeed-list-all", []string{"changefeed", "list", "--all"}},
		{"changefeed-query", []string{"changefeed", "query", "-c", "orders"}},
		{"changefeed-query-simple", []string{"changefeed", "query", "-c", "orders", "--simple"}},
		{"changefeed-query-failed", []string{"changefeed", "query", "-c", "broken"}},
		{"capture-list", []string{"capture", "list"}},
		{"processor-list", []string{"processor", "list"}},
		{"processor-query", []string{"processor", "query", "-c", "orders", "-p", "node2"}},
		{"cluster-status", []string{"cluster", "status"}},
		{"cluster-members", []string{"cluster", "members"}},
	}
	for _, c := range cases {
		for _, format := range []string{"table", "json"} {
			t.Run(c.name+"."+format, func(t *testing.T) {
				before := s.Store.Dump(t)
				r := ctlRun(t, s.Addr(), nil, append([]string{"-o", format}, c.args...)...).mustOK(t)
				if r.stderr != "" {
					t.Errorf("stderr: %s", r.stderr)
				}
				if format == "json" && !json.Valid([]byte(r.stdout)) {
					t.Fatalf("-o json printed invalid JSON:\n%s", r.stdout)
				}
				golden(t, c.name+"."+format, normaliseFixture(r.stdout))
				if s.Store.Dump(t) != before {
					t.Error("a read changed the state")
				}
			})
		}
	}
}

// TestCtlJSONIsTheAPISchema checks that -o json prints the API's own
// objects: decoding it strictly into the API types loses nothing.
func TestCtlJSONIsTheAPISchema(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	r := ctlRun(t, s.Addr(), nil, "-o", "json", "changefeed", "query", "-c", "orders").mustOK(t)
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	var d api.ChangefeedDetail
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("changefeed query -o json is not an api.ChangefeedDetail: %v", err)
	}
	if d.ID != "orders" || d.Count != 1234 || d.Checkpoint == nil || d.Checkpoint.TSO != at(60*time.Second) {
		t.Errorf("decoded %+v", d.ChangefeedSummary)
	}
	if len(d.Tasks) != 2 || len(d.Positions) != 2 {
		t.Errorf("tasks %v positions %v", d.Tasks, d.Positions)
	}
}

func TestCtlWrites(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	addr := s.Addr()
	state := func(id string) model.ChangefeedInfo {
		info, _, ok := s.Store.GetInfo(t, id)
		if !ok {
			t.Fatalf("changefeed %s is gone", id)
		}
		return info
	}

	t.Run("pause", func(t *testing.T) {
		r := ctlRun(t, addr, nil, "changefeed", "pause", "-c", "orders").mustOK(t)
		golden(t, "changefeed-pause.table", normaliseFixture(r.stdout))
		if got := state("orders").AdminJob; got != model.AdminPause {
			t.Errorf("admin job %q, want pause", got)
		}
		// A second request while the owner has not acted is refused.
		r = ctlRun(t, addr, nil, "changefeed", "pause", "-c", "orders")
		want := "Error: pausing changefeed orders: changefeed \"orders\" already has a pending pause request; retry when the owner has carried it out\n" +
			"Hint: 'raftcdc ctl changefeed query -c ID' shows when the owner has carried it out.\n"
		if r.code != 1 || r.stderr != want {
			t.Errorf("exit %d stderr %q, want 1 %q", r.code, r.stderr, want)
		}
	})

	t.Run("resume", func(t *testing.T) {
		r := ctlRun(t, addr, nil, "-o", "json", "changefeed", "resume", "-c", "paused").mustOK(t)
		golden(t, "changefeed-resume.json", normaliseFixture(r.stdout))
		if got := state("paused"); got.AdminJob != model.AdminResume || got.OverwriteCheckpointTs != 0 {
			t.Errorf("admin job %q overwrite %d", got.AdminJob, got.OverwriteCheckpointTs)
		}
	})

	t.Run("update shows the diff", func(t *testing.T) {
		cfg := writeFile(t, "cf.toml", "case-sensitive = true\n[filter]\nrules = ['datagen.t0001']\n[sink]\nmax-file-size = '64MiB'\n")
		r := ctlRun(t, addr, nil, "changefeed", "update", "-c", "broken", "--sink-uri", "blackhole://", "--config", cfg, "--target-ts", "2030-01-01T00:00:00Z").mustOK(t)
		golden(t, "changefeed-update.table", normaliseFixture(r.stdout))
		got := state("broken")
		if got.SinkURI != "blackhole://" || !got.Config.Filter.CaseSensitive || got.Config.Filter.Rules[0] != "datagen.t0001" ||
			got.Config.Sink["max-file-size"] != "64MiB" || got.TargetTs != model.TsFromTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("after update: %+v", got)
		}
		r = ctlRun(t, addr, nil, "-o", "json", "changefeed", "update", "-c", "broken", "--sink-uri", "file:///again").mustOK(t)
		var u api.UpdateChangefeedResponse
		if err := json.Unmarshal([]byte(r.stdout), &u); err != nil || u.Before.SinkURI != "blackhole://" || u.After.SinkURI != "file:///again" {
			t.Errorf("update -o json: %v %+v", err, u)
		}
	})

	t.Run("move-table and rebalance", func(t *testing.T) {
		// orders has a pending pause from above; use a fresh running one.
		info := state("orders")
		info.ID, info.AdminJob = "orders2", model.AdminNone
		s.Store.PutInfo(t, info)
		epoch := s.Store.Status().OwnerEpoch
		s.Store.PutStatus(t, epoch, "orders2", model.ChangefeedStatus{CheckpointTs: at(time.Minute), Tables: []model.TableName{{ID: 1, Schema: "datagen", Table: "t0001"}}, Initialized: true})
		r := ctlRun(t, addr, nil, "changefeed", "move-table", "-c", "orders2", "--table-id", "1", "--target-capture", "node2").mustOK(t)
		golden(t, "changefeed-move-table.table", r.stdout)
		if moves := state("orders2").PendingMoves; len(moves) != 1 || moves[0].TableID != 1 || moves[0].TargetCapture != "node2" {
			t.Errorf("pending moves %+v", moves)
		}
		r = ctlRun(t, addr, nil, "changefeed", "rebalance", "-c", "orders2").mustOK(t)
		golden(t, "changefeed-rebalance.table", r.stdout)
		if !state("orders2").RebalanceRequested {
			t.Error("rebalance not recorded")
		}
	})

	t.Run("remove", func(t *testing.T) {
		r := ctlRun(t, addr, nil, "changefeed", "remove", "-c", "paused", "--force")
		// paused has a pending resume from above.
		if r.code != 1 || !strings.Contains(r.stderr, "already has a pending resume request") {
			t.Fatalf("exit %d %s", r.code, r.stderr)
		}
		r = ctlRun(t, addr, nil, "-o", "json", "changefeed", "remove", "-c", "broken").mustOK(t)
		golden(t, "changefeed-remove.json", r.stdout)
		if state("broken").AdminJob != model.AdminRemove {
			t.Error("remove not recorded")
		}
	})

	t.Run("create", func(t *testing.T) {
		cfg := writeFile(t, "new.toml", "[filter]\nrules = ['datagen.t000?', '!datagen.t0002']\n")
		r := ctlRun(t, addr, nil, "changefeed", "create", "-c", "fresh", "--source-uri", "datagen://?tables=12", "--sink-uri", "blackhole://", "--config", cfg).mustOK(t)
		golden(t, "changefeed-create.table", normaliseLive(r.stdout))
		got := state("fresh")
		if got.State != model.StateNormal || got.SourceURI != "datagen://?tables=12" || len(got.Config.Filter.Rules) != 2 {
			t.Errorf("created %+v", got)
		}
		if lag := time.Since(model.TsTime(got.StartTs)); lag < 0 || lag > time.Minute {
			t.Errorf("start ts %d is not now", got.StartTs)
		}
		// Without an ID the server generates one; -o json says which.
		r = ctlRun(t, addr, nil, "-o", "json", "changefeed", "create", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--start-ts", "now").mustOK(t)
		var cr api.CreateChangefeedResponse
		if err := json.Unmarshal([]byte(r.stdout), &cr); err != nil || !strings.HasPrefix(cr.ID, "cf-") || cr.StartTs == nil {
			t.Fatalf("create -o json: %v %s", err, r.stdout)
		}
		state(cr.ID)
		golden(t, "changefeed-create.json", normaliseLive(r.stdout))
		// An explicit start ts is kept exactly.
		start := model.TsFromTime(time.Now().Add(-time.Minute))
		ctlRun(t, addr, nil, "changefeed", "create", "-c", "explicit", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--start-ts", itoa(start), "--no-confirm").mustOK(t)
		if got := state("explicit").StartTs; got != start {
			t.Errorf("start ts %d, want %d", got, start)
		}
	})

	t.Run("cluster", func(t *testing.T) {
		r := ctlRun(t, addr, nil, "cluster", "transfer-leader", "--to", "node2").mustOK(t)
		golden(t, "cluster-transfer-leader.table", r.stdout)
		r = ctlRun(t, addr, nil, "-o", "json", "cluster", "remove-node", "node2").mustOK(t)
		golden(t, "cluster-remove-node.json", r.stdout)
		if len(s.Store.Transfers) != 1 || s.Store.Transfers[0] != "node2" || len(s.Store.Removals) != 1 {
			t.Errorf("transfers %v removals %v", s.Store.Transfers, s.Store.Removals)
		}
	})

	t.Run("tso", func(t *testing.T) {
		r := ctlRun(t, addr, nil, "tso").mustOK(t)
		golden(t, "tso.table", normaliseLive(r.stdout))
		r = ctlRun(t, addr, nil, "-o", "json", "tso").mustOK(t)
		golden(t, "tso.json", normaliseLive(r.stdout))
		var out struct {
			TSO  model.Ts  `json:"tso"`
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err)
		}
		if !model.TsTime(out.TSO).Equal(out.Time) || time.Since(out.Time).Abs() > time.Minute {
			t.Errorf("tso %d and time %v disagree or are not now", out.TSO, out.Time)
		}
	})
}

func itoa(ts model.Ts) string { return strconv.FormatUint(ts, 10) }

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCtlConfirmations(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	addr := s.Addr()

	t.Run("create shows the tables and stops on no", func(t *testing.T) {
		before := s.Store.Dump(t)
		cfg := writeFile(t, "c.toml", "[filter]\nrules = ['*.*', '!datagen.t0002']\n")
		r := ctlRun(t, addr, typed("n\n"), "changefeed", "create", "-c", "asked", "--source-uri", "datagen://?tables=3", "--sink-uri", "blackhole://", "--config", cfg)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1", r.code)
		}
		// The start is the server's now, as its preview resolved it.
		golden(t, "changefeed-create-confirm.stderr", normaliseLive(r.stderr))
		if s.Store.Dump(t) != before {
			t.Error("declining changed the state")
		}
	})
	t.Run("create does not ask what the server refuses", func(t *testing.T) {
		before := s.Store.Dump(t)
		r := ctlRun(t, addr, typed("y\n"), "changefeed", "create", "-c", "orders", "--source-uri", "datagen://?tables=3", "--sink-uri", "blackhole://")
		want := "Error: creating the changefeed: changefeed \"orders\" already exists (state normal); pick another ID or remove it first\n"
		if r.code != 1 || r.stderr != want {
			t.Errorf("exit %d\n got %q\nwant %q", r.code, r.stderr, want)
		}
		if s.Store.Dump(t) != before {
			t.Error("a refused create changed the state")
		}
	})
	t.Run("update shows the tables it adds and removes and asks", func(t *testing.T) {
		// paused replicates datagen.t0001 and t0002 of a two-table source.
		cfg := writeFile(t, "u.toml", "[filter]\nrules = ['datagen.t0002', 'datagen.t0003']\n")
		args := []string{"changefeed", "update", "-c", "paused", "--source-uri", "datagen://?tables=3", "--config", cfg}
		before := s.Store.Dump(t)
		r := ctlRun(t, addr, typed("n\n"), args...)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
		}
		golden(t, "changefeed-update-confirm.stderr", normaliseFixture(r.stderr))
		if s.Store.Dump(t) != before {
			t.Error("declining changed the state")
		}
		dry := ctlRun(t, addr, nil, append([]string{"changefeed", "update", "--dry-run"}, args[2:]...)...).mustOK(t)
		if !strings.Contains(dry.stdout, "(not applied)") || !strings.Contains(dry.stdout, "  + datagen.t0003\n  - datagen.t0001\n") {
			t.Errorf("--dry-run output:\n%s", dry.stdout)
		}
		if s.Store.Dump(t) != before {
			t.Error("--dry-run changed the state")
		}
		r = ctlRun(t, addr, typed("y\n"), args...).mustOK(t)
		if !strings.Contains(r.stdout, "Updated changefeed paused:") || !strings.Contains(r.stdout, "  + datagen.t0003\n  - datagen.t0001\n") {
			t.Errorf("update output:\n%s", r.stdout)
		}
		if got, _, _ := s.Store.GetInfo(t, "paused"); got.SourceURI != "datagen://?tables=3" || len(got.Config.Filter.Rules) != 2 {
			t.Errorf("after the update: %+v", got)
		}
	})
	t.Run("create goes on with yes", func(t *testing.T) {
		r := ctlRun(t, addr, typed("yes\n"), "changefeed", "create", "-c", "asked", "--source-uri", "datagen://?tables=3", "--sink-uri", "blackhole://").mustOK(t)
		if !strings.Contains(r.stderr, "3 of the source's 3 tables will be replicated:\n  datagen.t0001\n") {
			t.Errorf("preview: %s", r.stderr)
		}
		if _, _, ok := s.Store.GetInfo(t, "asked"); !ok {
			t.Error("not created")
		}
	})
	t.Run("no-confirm does not ask", func(t *testing.T) {
		r := ctlRun(t, addr, typed(""), "changefeed", "create", "-c", "unasked", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--no-confirm").mustOK(t)
		if r.stderr != "" {
			t.Errorf("stderr %q", r.stderr)
		}
	})
	t.Run("resume says what is skipped", func(t *testing.T) {
		before := s.Store.Dump(t)
		r := ctlRun(t, addr, typed("n\n"), "changefeed", "resume", "-c", "paused", "--overwrite-checkpoint-ts", itoa(at(45*time.Second)))
		want := "Resuming changefeed paused from " + ctl.FormatTs(at(45*time.Second)) + " SKIPS every change committed after its checkpoint " +
			ctl.FormatTs(at(30*time.Second)) + " and up to that ts (15.0s of changes): they will never reach the sink. Resume? [y/N] Error: aborted: nothing was changed\n"
		if r.code != 1 || r.stderr != want {
			t.Errorf("exit %d\n got %q\nwant %q", r.code, r.stderr, want)
		}
		r = ctlRun(t, addr, typed("n\n"), "changefeed", "resume", "-c", "paused", "--overwrite-checkpoint-ts", itoa(at(10*time.Second)))
		if r.code != 1 || !strings.Contains(r.stderr, " REPLAYS every change committed after that ts and up to its checkpoint "+ctl.FormatTs(at(30*time.Second))+" (20.0s of changes): the sink receives them again.") {
			t.Errorf("exit %d %q", r.code, r.stderr)
		}
		if s.Store.Dump(t) != before {
			t.Error("declining changed the state")
		}
	})
	t.Run("resume from now asks the server for now", func(t *testing.T) {
		// The fixture's GC safepoint is far above its checkpoint, so now is
		// the one overwrite the server accepts.
		r := ctlRun(t, addr, typed("y\n"), "changefeed", "resume", "-c", "paused", "--overwrite-checkpoint-ts", "now").mustOK(t)
		if !strings.Contains(r.stderr, "SKIPS every change") {
			t.Errorf("stderr %q", r.stderr)
		}
		info, _, _ := s.Store.GetInfo(t, "paused")
		if d := time.Since(model.TsTime(info.OverwriteCheckpointTs)); info.AdminJob != model.AdminResume || d < 0 || d > time.Minute {
			t.Errorf("overwrite %d job %q", info.OverwriteCheckpointTs, info.AdminJob)
		}
	})
	t.Run("remove asks unless forced", func(t *testing.T) {
		before := s.Store.Dump(t)
		r := ctlRun(t, addr, typed("\n"), "changefeed", "remove", "-c", "orders")
		want := "Remove changefeed orders (state normal, checkpoint " + ctl.FormatTs(at(60*time.Second)) + ")? Its progress is deleted and it cannot be resumed. [y/N] Error: aborted: nothing was changed\n"
		if r.code != 1 || r.stderr != want {
			t.Errorf("exit %d\n got %q\nwant %q", r.code, r.stderr, want)
		}
		if s.Store.Dump(t) != before {
			t.Error("declining changed the state")
		}
		ctlRun(t, addr, typed(""), "changefeed", "remove", "-c", "orders", "--force").mustOK(t)
		if info, _, _ := s.Store.GetInfo(t, "orders"); info.AdminJob != model.AdminRemove {
			t.Error("forced remove not recorded")
		}
	})
	t.Run("remove from a script with stdin /dev/null does not ask", func(t *testing.T) {
		// /dev/null is a character device but no terminal: a script, a cron
		// job or CI has nobody to answer, and the help promises a question
		// only at a terminal.
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer devnull.Close()
		r := ctlRun(t, addr, devnull, "changefeed", "remove", "-c", "broken").mustOK(t)
		if strings.Contains(r.stderr, "[y/N]") {
			t.Errorf("asked with stdin %s: %q", os.DevNull, r.stderr)
		}
		if info, _, _ := s.Store.GetInfo(t, "broken"); info.AdminJob != model.AdminRemove {
			t.Errorf("remove with stdin %s not recorded (admin job %q)", os.DevNull, info.AdminJob)
		}
	})
}

// TestCtlDryRun: create --dry-run has the server run a create's checks and
// prints what would be created, and creates nothing.
func TestCtlDryRun(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	addr := s.Addr()
	create := func(extra ...string) []string {
		return append([]string{"changefeed", "create", "--dry-run"}, extra...)
	}
	// unchanged runs args, which must leave the state as it was.
	unchanged := func(t *testing.T, stdin io.Reader, args ...string) result {
		t.Helper()
		before := s.Store.Dump(t)
		r := ctlRun(t, addr, stdin, args...)
		if s.Store.Dump(t) != before {
			t.Errorf("%v changed the state", args)
		}
		return r
	}

	t.Run("prints the tables and creates nothing", func(t *testing.T) {
		cfg := writeFile(t, "dry.toml", "[filter]\nrules = ['*.*', '!datagen.t0002']\n")
		r := unchanged(t, nil, create("-c", "dry", "--source-uri", "datagen://?tables=25", "--sink-uri", "blackhole://", "--config", cfg)...).mustOK(t)
		if r.stderr != "" {
			t.Errorf("stderr %q", r.stderr)
		}
		golden(t, "changefeed-create-dry-run.table", normaliseLive(r.stdout))
		// 24 tables: the first 20 are listed, then a count of the rest.
		for _, want := range []string{"Changefeed:  dry\n", "24 of the source's 25 tables will be replicated:\n  datagen.t0001\n  datagen.t0003\n", "  datagen.t0021\n  ... and 4 more\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
		if !strings.HasSuffix(r.stdout, "Dry run: nothing was created.\n") || strings.Contains(r.stdout, "datagen.t0022") {
			t.Errorf("stdout:\n%s", r.stdout)
		}
		q := ctlRun(t, addr, nil, "changefeed", "query", "-c", "dry")
		if q.code != 1 || !strings.Contains(q.stderr, `changefeed "dry" does not exist`) {
			t.Errorf("query after the dry run: exit %d %q", q.code, q.stderr)
		}
	})

	t.Run("-o json prints the preview", func(t *testing.T) {
		start := model.TsFromTime(time.Now().Add(-time.Minute))
		target := model.TsFromTime(time.Now().Add(time.Hour))
		r := unchanged(t, nil, append([]string{"-o", "json"}, create("-c", "dry", "--source-uri", "datagen://?tables=3", "--sink-uri", "blackhole://",
			"--start-ts", itoa(start), "--target-ts", itoa(target))...)...).mustOK(t)
		if !json.Valid([]byte(r.stdout)) {
			t.Fatalf("invalid JSON:\n%s", r.stdout)
		}
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		dec.DisallowUnknownFields()
		var p api.ChangefeedPreview
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("not an api.ChangefeedPreview: %v\n%s", err, r.stdout)
		}
		if p.ID != "dry" || p.TotalTables != 3 || strings.Join(p.Tables, ",") != "datagen.t0001,datagen.t0002,datagen.t0003" ||
			p.StartTs == nil || p.StartTs.TSO != start || p.TargetTs == nil || p.TargetTs.TSO != target {
			t.Errorf("preview %s", r.stdout)
		}
		// Without an ID the server would generate one; the preview has none.
		r = unchanged(t, nil, "-o", "json", "changefeed", "create", "--dry-run", "--source-uri", "datagen://", "--sink-uri", "blackhole://").mustOK(t)
		var raw map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil || raw["id"] != "" || raw["total_tables"] != float64(8) {
			t.Errorf("preview without an ID: %v\n%s", err, r.stdout)
		}
	})

	t.Run("a removed changefeed's ID may be reused", func(t *testing.T) {
		r := unchanged(t, nil, create("-c", "gone", "--source-uri", "datagen://", "--sink-uri", "blackhole://")...).mustOK(t)
		if !strings.Contains(r.stdout, "Changefeed:  gone\n") || !strings.Contains(r.stdout, "8 of the source's 8 tables") {
			t.Errorf("stdout:\n%s", r.stdout)
		}
	})

	t.Run("never asks and never creates at a terminal", func(t *testing.T) {
		r := unchanged(t, typed("y\n"), create("-c", "dry", "--source-uri", "datagen://", "--sink-uri", "blackhole://")...).mustOK(t)
		if r.stderr != "" || !strings.HasSuffix(r.stdout, "Dry run: nothing was created.\n") {
			t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
		}
		if _, _, ok := s.Store.GetInfo(t, "dry"); ok {
			t.Error("a dry run created the changefeed")
		}
	})

	noMatch := writeFile(t, "no-match.toml", "[filter]\nrules = ['nope.*']\n")
	for _, c := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"filter that selects no table", create("-c", "dry", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--config", noMatch),
			`Error: checking the changefeed: the filter rules ["nope.*"] match none of the 8 upstream tables` + "\n"},
		{"ID taken", create("-c", "orders", "--source-uri", "datagen://", "--sink-uri", "blackhole://"),
			`Error: checking the changefeed: changefeed "orders" already exists (state normal); pick another ID or remove it first` + "\n"},
		{"unknown source scheme", create("-c", "dry", "--source-uri", "mysql://db:3306", "--sink-uri", "blackhole://"),
			`Error: checking the changefeed: source URI "mysql://db:3306": unknown scheme "mysql" (supported: datagen, postgres, tidb)` + "\n"},
		{"start ts below the GC safepoint", create("-c", "dry", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--start-ts", "2020-03-04T05:06:07Z"),
			"Error: checking the changefeed: start_ts <TSO> (<TIME>) is below the upstream GC safepoint <TSO> (<TIME>): that data is gone; choose a later start ts\n" +
				"Hint: 'raftcdc ctl tso' shows the current TSO; a start ts within the upstream's GC life is kept.\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := unchanged(t, nil, c.args...)
			if got := normaliseLive(r.stderr); r.code != 1 || got != c.stderr || r.stdout != "" {
				t.Errorf("exit %d stdout %q\n got %q\nwant %q", r.code, r.stdout, got, c.stderr)
			}
		})
	}
}

// TestCtlCreateWithoutServerPreview runs create against a server from
// before the preview route. Its router has GET, PUT and DELETE on
// /api/v1/changefeeds/{id} but no POST, so it answers the preview with
// ServeMux's plain 405; the real handler answers everything else.
func TestCtlCreateWithoutServerPreview(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/api/v1/changefeeds/preview" {
			w.Header().Set("Allow", "DELETE, GET, HEAD, PUT")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		s.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(old.Close)
	addr := old.Listener.Addr().String()

	// At a terminal create still asks, without the table list, and creates.
	r := ctlRun(t, addr, typed("y\n"), "changefeed", "create", "-c", "asked", "--source-uri", "datagen://?tables=3", "--sink-uri", "blackhole://").mustOK(t)
	if !strings.Contains(r.stderr, "Filter:      all tables (case sensitive: false)\nThe server cannot list the tables beforehand (") ||
		!strings.HasSuffix(r.stderr, "it checks them at create.\nCreate this changefeed? [y/N] ") {
		t.Errorf("stderr %q", r.stderr)
	}
	if _, _, ok := s.Store.GetInfo(t, "asked"); !ok {
		t.Error("not created")
	}
	// A dry run cannot be done there, and says why.
	r = ctlRun(t, addr, nil, "changefeed", "create", "--dry-run", "-c", "dry", "--source-uri", "datagen://", "--sink-uri", "blackhole://")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: checking the changefeed: this server cannot check a changefeed without creating it (it predates --dry-run): ") ||
		!strings.Contains(r.stderr, "405 Method Not Allowed") {
		t.Errorf("exit %d %q", r.code, r.stderr)
	}
}

func TestCtlStatistics(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	r := ctlRun(t, s.Addr(), nil, "changefeed", "statistics", "-c", "orders", "--interval", "20ms", "--count", "3").mustOK(t)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME ") || !strings.Contains(lines[0], "ROWS/S") {
		t.Fatalf("want a header and 3 samples:\n%s", r.stdout)
	}
	for _, l := range lines[1:] {
		// Nothing is written in the fixture, so the rate is exactly 0.
		if f := strings.Fields(l); len(f) < 8 || f[4] != "0.0" || f[5] != "1234" {
			t.Errorf("sample %q", l)
		}
	}
	r = ctlRun(t, s.Addr(), nil, "-o", "json", "changefeed", "statistics", "-c", "orders", "--interval", "20ms", "--count", "2").mustOK(t)
	lines = strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 JSON lines:\n%s", r.stdout)
	}
	for _, l := range lines {
		var sm ctl.Sample
		if err := json.Unmarshal([]byte(l), &sm); err != nil || sm.Changefeed != "orders" || sm.RowsWritten != 1234 || !sm.RateKnown || sm.CheckpointLagSecs < 1e8 {
			t.Errorf("sample %s: %v", l, err)
		}
	}
	if r := ctlRun(t, s.Addr(), nil, "changefeed", "statistics", "-c", "orders", "--interval", "0s"); r.code != 2 {
		t.Errorf("--interval 0s: exit %d", r.code)
	}
}

// TestCtlStatisticsStopsOnInterrupt runs statistics without --count and
// cancels its context, as Ctrl-C does: it must stop and exit 0.
func TestCtlStatisticsStopsOnInterrupt(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	root := newRootCmd()
	pr, pw := io.Pipe()
	root.SetArgs([]string{"ctl", "--server", s.Addr(), "changefeed", "statistics", "-c", "orders", "--interval", "10ms"})
	root.SetOut(pw)
	root.SetErr(pw)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); pw.Close() }()
	// Wait for the first sample, then interrupt.
	buf := make([]byte, 4096)
	var got string
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(got, "\n") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no sample within 10s: %q", got)
		}
		n, err := pr.Read(buf)
		got += string(buf[:n])
		if err != nil {
			t.Fatalf("reading output: %v (%q)", err, got)
		}
	}
	cancel()
	go func() {
		for {
			if _, err := pr.Read(buf); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("interrupted statistics returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("statistics did not stop on interrupt")
	}
}

func TestCtlServerFailoverAndEnv(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	dead := closedAddr(t)
	r := ctlRun(t, dead+","+s.Addr(), nil, "changefeed", "list").mustOK(t)
	if !strings.Contains(r.stdout, "orders") {
		t.Errorf("stdout %s", r.stdout)
	}
	// A write also moves on when the first server cannot be reached: it
	// never arrived there, so it cannot apply twice.
	ctlRun(t, dead+","+s.Addr(), nil, "changefeed", "pause", "-c", "orders").mustOK(t)

	t.Setenv(envServer, dead+","+s.Addr())
	r = run(t, nil, "ctl", "capture", "list").mustOK(t)
	if !strings.Contains(r.stdout, "node3") {
		t.Errorf("stdout %s", r.stdout)
	}
	r = run(t, nil, "ctl", "tso")
	r.mustOK(t)

	t.Setenv(envServer, dead)
	r = run(t, nil, "ctl", "tso")
	want := "Error: reading the TSO: cannot reach any server: " + dead + ": dial tcp " + dead + ": connect: connection refused\n" +
		"Hint: is a raftcdc server running there? Give the API address of any node with --server host:port[,host:port] or RAFTCDC_SERVER.\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d\n got %q\nwant %q", r.code, r.stderr, want)
	}
	// The flag wins over the environment.
	run(t, nil, "ctl", "--server", s.Addr(), "tso").mustOK(t)
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCtlTLS(t *testing.T) {
	st := ctltest.NewStore(t)
	h := api.New(st)
	h.EnableCDC(ctltest.NewCDC(t, nil))
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	ca := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))

	r := ctlRun(t, addr, nil, "--ca", ca, "tso").mustOK(t)
	if !strings.HasPrefix(r.stdout, "TSO:") {
		t.Errorf("stdout %q", r.stdout)
	}
	r = ctlRun(t, "https://"+addr, nil, "tso")
	if r.code != 1 || !strings.Contains(r.stderr, "certificate signed by unknown authority") || !strings.Contains(r.stderr, "Hint: pass the CA that signed the server's certificate with --ca FILE.") {
		t.Errorf("without --ca: exit %d %s", r.code, r.stderr)
	}
	notPEM := writeFile(t, "bad.pem", "not a certificate")
	r = ctlRun(t, addr, nil, "--ca", notPEM, "tso")
	if r.code != 2 || r.stderr != "Error: the CA file "+notPEM+" holds no PEM certificate\n" {
		t.Errorf("bad CA: exit %d %q", r.code, r.stderr)
	}
}

// TestCtlCorruptMetadata: a key that does not decode is skipped by every
// read and listed by `cluster status`; asking for a changefeed whose own
// info does not decode is an error that names the key. (Before package
// meta, one corrupt position made `changefeed query` of its changefeed fail.)
func TestCtlCorruptMetadata(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	epoch := s.Store.ClaimOwner(t, "node1", fixtureT0)
	s.Store.PutRaw(t, 0, meta.ChangefeedInfoKey("mangled"), `{"id":"mangled","start_ts":"yesterday"}`)
	s.Store.PutRaw(t, epoch, meta.TaskStatusKey("orders", "node3"), `{"tables":[3]}`)
	s.Store.PutRawPosition(t, "orders", "node2", `{"running":{"3":"soon"}}`)

	r := ctlRun(t, s.Addr(), nil, "cluster", "status").mustOK(t)
	golden(t, "cluster-status-corrupt.table", normaliseFixture(r.stdout))
	var st api.Status
	if err := json.Unmarshal([]byte(ctlRun(t, s.Addr(), nil, "-o", "json", "cluster", "status").mustOK(t).stdout), &struct{ Status *api.Status }{&st}); err != nil {
		t.Fatal(err)
	}
	if len(st.CorruptKeys) != 3 || st.CorruptKeys[0].Key != meta.ChangefeedInfoKey("mangled") || st.CorruptKeys[1].Key != meta.TaskPositionKey("orders", "node2") {
		t.Fatalf("corrupt_keys = %+v", st.CorruptKeys)
	}

	// The list skips the mangled changefeed; orders still reads, with its
	// corrupt task key shown and skipped.
	list := ctlRun(t, s.Addr(), nil, "changefeed", "list").mustOK(t).stdout
	if strings.Contains(list, "mangled") || !strings.Contains(list, "orders") {
		t.Fatalf("changefeed list:\n%s", list)
	}
	var d api.ChangefeedDetail
	if err := json.Unmarshal([]byte(ctlRun(t, s.Addr(), nil, "-o", "json", "changefeed", "query", "-c", "orders").mustOK(t).stdout), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.CorruptKeys) != 2 || len(d.Tasks) != 2 || d.Tasks["node3"] != nil || len(d.Positions) != 1 {
		t.Fatalf("orders: corrupt %+v, tasks %v, positions %v", d.CorruptKeys, d.Tasks, d.Positions)
	}
	q := ctlRun(t, s.Addr(), nil, "changefeed", "query", "-c", "mangled")
	if q.code == 0 || !strings.Contains(q.stderr, "does not decode") || !strings.Contains(q.stderr, meta.ChangefeedInfoKey("mangled")) {
		t.Fatalf("query of a corrupt changefeed: exit %d\n%s", q.code, q.stderr)
	}
}
