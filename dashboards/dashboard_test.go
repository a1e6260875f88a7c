package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/testcluster"
)

// exported is what a node exports: every registered metric with its label
// names, and which families are histograms (so that _bucket, _sum and
// _count are names too).
type exported struct {
	labels     map[string]map[string]bool
	histograms map[string]bool
	exposition []byte
}

var descRe = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", help: "(?:[^"\\]|\\.)*", unit: "[^"]*", constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)

// scrapeNode starts a one-node cluster running a changefeed, waits until its
// data-plane metrics have samples, and returns what it exports: the names and
// labels of every registered collector (from their descriptors, so that
// vectors with no series yet count too) and the exposition of /metrics.
func scrapeNode(t *testing.T) exported {
	t.Helper()
	c := testcluster.MakeCluster(t, 1, testcluster.Options{})
	c.WaitForLeader(15 * time.Second)
	body, _ := json.Marshal(api.ChangefeedRequest{ID: "dash", SourceURI: "datagen://?tables=2&rate=200", SinkURI: "blackhole://"})
	resp, err := http.Post("http://"+c.APIAddr(0)+"/api/v1/changefeeds", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("creating a changefeed: %s %s", resp.Status, b)
	}
	var ex exported
	testcluster.WaitFor(t, 60*time.Second, "rows flushed and the owner's changefeed metrics", func() bool {
		r, err := http.Get("http://" + c.APIAddr(0) + "/metrics")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		ex.exposition, _ = io.ReadAll(r.Body)
		s := string(ex.exposition)
		return strings.Contains(s, "raftcdc_processor_rows_flushed_total{changefeed=\"dash\"}") &&
			strings.Contains(s, "raftcdc_owner_changefeed_checkpoint_lag_seconds{changefeed=\"dash\"}")
	})

	ex.labels = map[string]map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Node(0).Registry().Describe(ch); close(ch) }()
	for d := range ch {
		m := descRe.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the descriptor %s (did client_golang change its format?)", d)
		}
		ls := map[string]bool{}
		for _, part := range []string{m[2], m[3]} {
			for _, l := range strings.Split(part, ",") {
				l = strings.TrimSpace(l)
				l, _, _ = strings.Cut(l, "=")
				l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")")
				if l != "" {
					ls[l] = true
				}
			}
		}
		ex.labels[m[1]] = ls
	}
	if len(ex.labels) < 20 {
		t.Fatalf("only %d metrics registered; the descriptor parsing is broken", len(ex.labels))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(ex.exposition))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	ex.histograms = map[string]bool{}
	for name, f := range fams {
		if f.GetType().String() == "HISTOGRAM" {
			ex.histograms[name] = true
		}
	}
	return ex
}

// labelsOf returns the label names of a referenced series name and whether
// it exists; histogram series have their suffix stripped and gain le.
func (ex exported) labelsOf(name string) (map[string]bool, bool) {
	if ls, ok := ex.labels[name]; ok {
		return ls, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		if ls, ok := ex.labels[base]; ok && ex.histograms[base] {
			out := map[string]bool{}
			for l := range ls {
				out[l] = true
			}
			if suf == "_bucket" {
				out["le"] = true
			}
			return out, true
		}
	}
	return nil, false
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true, "__name__": true}

// checkExpr says what is wrong with one expression, or nil.
func (ex exported) checkExpr(expr string) []string {
	sels, grouping, err := references(expr)
	if err != nil {
		return []string{err.Error()}
	}
	if len(sels) == 0 {
		return []string{"names no metric"}
	}
	var problems []string
	union := map[string]bool{}
	for _, s := range sels {
		ls, ok := ex.labelsOf(s.metric)
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not exported", s.metric))
			continue
		}
		for l := range ls {
			union[l] = true
		}
		for _, l := range s.labels {
			if !ls[l] && !targetLabels[l] {
				problems = append(problems, fmt.Sprintf("metric %s has no label %q", s.metric, l))
			}
		}
	}
	for _, l := range grouping {
		if !union[l] && !targetLabels[l] {
			problems = append(problems, fmt.Sprintf("grouping label %q is on none of its metrics", l))
		}
	}
	return problems
}

type dashboard struct {
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

var labelValuesRe = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// TestDashboardNamesExportedMetrics: every expression of every panel, and
// every templating query, refers only to metrics and labels a running node
// exports. A renamed metric or label fails here, not silently in Grafana.
func TestDashboardNamesExportedMetrics(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(Grafana, &d); err != nil {
		t.Fatalf("raftcdc.json: %v", err)
	}
	ex := scrapeNode(t)
	exprs := 0
	covered := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			for _, problem := range ex.checkExpr(tg.Expr) {
				t.Errorf("panel %q: %s\n  in %s", p.Title, problem, tg.Expr)
			}
			sels, _, _ := references(tg.Expr)
			for _, s := range sels {
				covered[s.metric] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesRe.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		for _, problem := range ex.checkExpr(m[1]) {
			t.Errorf("variable %s: %s", v.Name, problem)
		}
		sels, _, _ := references(m[1])
		for _, s := range sels {
			if ls, ok := ex.labelsOf(s.metric); ok && !ls[m[2]] && !targetLabels[m[2]] {
				t.Errorf("variable %s: metric %s has no label %q", v.Name, s.metric, m[2])
			}
		}
	}
	if exprs < 20 {
		t.Errorf("only %d expressions; the dashboard should cover lag, rows/s, Raft, owner, captures and memory", exprs)
	}
	// The areas the dashboard promises, by one metric each.
	for _, must := range []string{
		"raftcdc_owner_changefeed_checkpoint_lag_seconds", "raftcdc_processor_rows_flushed_total", "raftcdc_raft_state",
		"raftcdc_owner_epoch", "raftcdc_gossip_members", "raftcdc_processor_memory_quota_used_bytes",
	} {
		if !covered[must] {
			t.Errorf("no panel uses %s", must)
		}
	}
}

// TestCheckExprCatchesMistakes: the checker itself fails on what it is for.
func TestCheckExprCatchesMistakes(t *testing.T) {
	ex := exported{
		labels:     map[string]map[string]bool{"a_total": {"changefeed": true}, "h_seconds": {"result": true}},
		histograms: map[string]bool{"h_seconds": true},
	}
	good := []string{
		`sum by (changefeed) (rate(a_total{job=~"$job", changefeed=~"$changefeed"}[$__rate_interval]))`,
		`histogram_quantile(0.99, sum by (le) (rate(h_seconds_bucket[5m])))`,
		`h_seconds_count{result!="ok"} / ignoring(result) group_left h_seconds_sum`,
	}
	for _, e := range good {
		if p := ex.checkExpr(e); len(p) > 0 {
			t.Errorf("%s: %v", e, p)
		}
	}
	bad := map[string]string{
		`rate(b_total[1m])`:                     "metric b_total is not exported",
		`a_total{capture="x"}`:                  `has no label "capture"`,
		`sum by (capture) (a_total)`:            `grouping label "capture"`,
		`h_seconds_bucket_x`:                    "not exported",
		`a_total_bucket`:                        "not exported",
		`{__name__="a_total"}`:                  "without a metric name",
		`sum(rate(a_total{changefeed="x}[1m]))`: "unterminated",
		`1 + 2`:                                 "names no metric",
	}
	for e, want := range bad {
		p := ex.checkExpr(e)
		if !strings.Contains(strings.Join(p, "; "), want) {
			t.Errorf("%s: problems %v, want one containing %q", e, p, want)
		}
	}
}

// TestMetricsPassPromlint: the exposition of a running node passes the lint
// that `promtool check metrics` runs (client_golang's promlint, which
// promtool is built on). When promtool itself is installed it is run on the
// same exposition too. (Debian's prometheus package takes over a minute to
// install here, too slow to add to every test run.)
func TestMetricsPassPromlint(t *testing.T) {
	ex := scrapeNode(t)
	problems, err := promlint.New(bytes.NewReader(ex.exposition)).Lint()
	if err != nil {
		t.Fatalf("linting: %v", err)
	}
	sort.Slice(problems, func(i, j int) bool { return problems[i].Metric < problems[j].Metric })
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("promtool is not installed (apt-get install -y prometheus); promlint above is the check it runs")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(ex.exposition)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
