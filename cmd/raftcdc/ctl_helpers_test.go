package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/model"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// result is one in-process run of the command line.
type result struct {
	stdout, stderr string
	code           int
}

// run calls runCLI exactly as main does, with captured streams.
func run(t testing.TB, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	code := runCLI(args, stdin, &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ctlRun runs `raftcdc ctl --server addr args...`.
func ctlRun(t testing.TB, addr string, stdin io.Reader, args ...string) result {
	t.Helper()
	return run(t, stdin, append([]string{"ctl", "--server", addr}, args...)...)
}

// mustOK fails the test unless the run exited 0.
func (r result) mustOK(t testing.TB) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// tty is a stdin that says it is a terminal, with the operator's typed
// answers.
type tty struct{ io.Reader }

func (tty) IsTerminal() bool { return true }

func typed(s string) io.Reader { return tty{strings.NewReader(s)} }

// normalisers replace what differs between runs with fixed placeholders:
// live timestamps, wall times, lags, addresses and generated IDs. Fixture
// data uses fixed times, so normaliseFixture leaves its timestamps alone.
var (
	reLagJSON = regexp.MustCompile(`"(checkpoint_lag_seconds|resolved_lag_seconds|rows_per_second)": [0-9.e+-]+`)
	reAddr    = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	reGenID   = regexp.MustCompile(`cf-[0-9a-f]{8}`)
	reTSO     = regexp.MustCompile(`\b\d{18,19}\b`)
	reTime    = regexp.MustCompile(`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?( UTC|Z)`)
	reLag     = regexp.MustCompile(`\b\d+\.\d\b`)
	reLag9    = regexp.MustCompile(`\b\d{9}\.\d`)
	reTerm    = regexp.MustCompile(`(term|"term": |Term: +)\d+`)
	reIndex   = regexp.MustCompile(`("(applied_index|commit_index|last_index|index|owner_epoch)": )\d+|(Applied/commit index: +)\d+/\d+|(epoch )\d+`)
)

// normaliseFixture keeps the fixture's fixed timestamps but hides what
// depends on when the test runs: lags (against the real clock) and ports.
func normaliseFixture(s string) string {
	s = reLagJSON.ReplaceAllString(s, `"$1": <LAG>`)
	// Same width, so that aligned columns stay aligned.
	s = reLag9.ReplaceAllStringFunc(s, func(m string) string { return "<LAG>" + strings.Repeat(" ", len(m)-len("<LAG>")) })
	s = reAddr.ReplaceAllStringFunc(s, func(a string) string {
		// Fixture addresses are on 8xxx; test servers get random ports.
		if strings.HasPrefix(a, "127.0.0.1:8") && len(a) == len("127.0.0.1:8300") {
			return a
		}
		return "<ADDR>"
	})
	return reGenID.ReplaceAllString(s, "<ID>")
}

// normaliseLive also hides live timestamps, times and indexes, for output
// taken from a real cluster or from requests that use "now".
func normaliseLive(s string) string {
	s = normaliseFixture(s)
	s = reTSO.ReplaceAllString(s, "<TSO>")
	s = reTime.ReplaceAllString(s, "<TIME>")
	s = reTerm.ReplaceAllString(s, "${1}<N>")
	s = reIndex.ReplaceAllString(s, "${1}${3}${4}<N>")
	return s
}

// lagFree hides table lags too: they move with the real clock and with the
// column widths, so the aligned spacing is collapsed as well.
func lagFree(s string) string {
	s = reLag.ReplaceAllString(s, "<LAG>")
	return regexp.MustCompile(` {2,}`).ReplaceAllString(s, "  ")
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (run with -update after checking):\n--- want\n%s\n--- got\n%s", name, want, got)
	}
}

// Fixture times are fixed in the past, so every timestamp they produce is
// the same on every run and the lags always have nine integer digits.
var fixtureT0 = time.Date(2020, 3, 4, 5, 6, 7, 0, time.UTC)

func at(d time.Duration) model.Ts { return model.TsFromTime(fixtureT0.Add(d)) }

// fixture fills a stub server with a realistic cluster state: an owner,
// three captures (one dead), a running changefeed with tables on two
// captures, a paused one, a failed one and a removed one.
func fixture(t testing.TB, s *ctltest.Server) {
	t.Helper()
	st := s.Store
	epoch := st.ClaimOwner(t, "node1", fixtureT0)
	for i, id := range []string{"node1", "node2", "node3"} {
		st.RegisterCapture(t, model.CaptureInfo{ID: id, AdvertiseAddr: "127.0.0.1:830" + string(rune('0'+i)), Version: "v0.1.0", StartTime: fixtureT0.Add(time.Duration(i) * time.Second)})
	}
	st.PutInfo(t, model.ChangefeedInfo{
		ID: "orders", SourceURI: "datagen://?tables=4", SinkURI: "file:///var/lib/raftcdc/orders", StartTs: at(0), State: model.StateNormal, CreateTime: fixtureT0,
		Config: model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"datagen.*", "!datagen.t0004"}}, Sink: map[string]string{"flush-interval": "1s"}},
	})
	tables := []model.TableName{{ID: 1, Schema: "datagen", Table: "t0001"}, {ID: 2, Schema: "datagen", Table: "t0002"}, {ID: 3, Schema: "datagen", Table: "t0003"}}
	st.PutStatus(t, epoch, "orders", model.ChangefeedStatus{CheckpointTs: at(60 * time.Second), ResolvedTs: at(61 * time.Second), Tables: tables, Initialized: true})
	st.PutTask(t, epoch, "orders", "node1", model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{1: {StartTs: at(0)}, 2: {StartTs: at(0)}}})
	st.PutTask(t, epoch, "orders", "node2", model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{3: {StartTs: at(0)}},
		Operations: map[model.TableID]*model.TableOperation{3: {BoundaryTs: at(0), Status: model.OperFinished}}})
	st.PutPosition(t, "orders", "node1", model.TaskPosition{CheckpointTs: at(60 * time.Second), ResolvedTs: at(61 * time.Second),
		Running: map[model.TableID]model.Ts{1: at(60 * time.Second), 2: at(62 * time.Second)}, Count: 1200},
		model.TaskWorkload{1: {Workload: 10}, 2: {Workload: 12}})
	st.PutPosition(t, "orders", "node2", model.TaskPosition{CheckpointTs: at(63 * time.Second), ResolvedTs: at(64 * time.Second),
		Running: map[model.TableID]model.Ts{3: at(63 * time.Second)}, Count: 34}, nil)

	st.PutInfo(t, model.ChangefeedInfo{ID: "paused", SourceURI: "datagen://?tables=2", SinkURI: "blackhole://", StartTs: at(0), State: model.StateStopped, CreateTime: fixtureT0})
	st.PutStatus(t, epoch, "paused", model.ChangefeedStatus{CheckpointTs: at(30 * time.Second), ResolvedTs: at(30 * time.Second), Tables: tables[:2], Initialized: true})
	st.PutInfo(t, model.ChangefeedInfo{ID: "broken", SourceURI: "datagen://?tables=2", SinkURI: "file:///full/disk", StartTs: at(0), State: model.StateFailed, CreateTime: fixtureT0,
		Error: &model.RunningError{Addr: "127.0.0.1:8301", Code: "sink_write", Message: "writing /full/disk/t0001: no space left on device", Time: fixtureT0.Add(90 * time.Second)}})
	st.PutInfo(t, model.ChangefeedInfo{ID: "gone", SourceURI: "datagen://", SinkURI: "blackhole://", StartTs: at(0), State: model.StateRemoved, CreateTime: fixtureT0})
}
