package ctl

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
)

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig("c.toml", `
# a comment
case-sensitive = true
[filter]
rules = ['Shop.*', '!Shop.tmp_*']
[sink]
max-file-size = "64MiB"
`)
	if err != nil {
		t.Fatal(err)
	}
	want := model.ChangefeedConfig{
		Filter: model.FilterConfig{Rules: []string{"Shop.*", "!Shop.tmp_*"}, CaseSensitive: true},
		Sink:   map[string]string{"max-file-size": "64MiB"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v, want %+v", cfg, want)
	}
	withDispatchers, err := ParseConfig("d.toml", `
[sink]
protocol = "canal-json"
dispatchers = [
  {matcher = ['shop.*'], topic = "{schema}_{table}", partition = "index-value", index = "uk_email"},
  {matcher = ['log.*', '!log.tmp'], partition = "columns", columns = ["host", "day"]},
  {matcher = ['*.*'], partition = "ts"},
]
`)
	if err != nil {
		t.Fatal(err)
	}
	wantD := model.ChangefeedConfig{
		Sink: map[string]string{"protocol": "canal-json"},
		Dispatchers: []model.DispatchRule{
			{Matcher: []string{"shop.*"}, Topic: "{schema}_{table}", Partition: "index-value", Index: "uk_email"},
			{Matcher: []string{"log.*", "!log.tmp"}, Partition: "columns", Columns: []string{"host", "day"}},
			{Matcher: []string{"*.*"}, Partition: "ts"},
		},
	}
	if !reflect.DeepEqual(withDispatchers, wantD) {
		t.Errorf("dispatchers: got %+v, want %+v", withDispatchers, wantD)
	}
	quota, err := ParseConfig("q.toml", "memory-quota = 67108864\n")
	if err != nil || quota.MemoryQuota != 64<<20 {
		t.Errorf("memory-quota = 67108864: got %+v, %v; want a 64 MiB quota", quota, err)
	}
	empty, err := ParseConfig("e.toml", "")
	if err != nil || len(empty.Filter.Rules) != 0 || empty.Filter.CaseSensitive {
		t.Errorf("empty config: %+v %v", empty, err)
	}
	for _, c := range []struct{ in, want string }{
		{"case_sensitive = true", `config file x: unknown key "case_sensitive"`},
		{"[filter]\ncase-sensitive = true", `config file x: unknown key "filter.case-sensitive"`},
		{"[sink]\nsize = 3", `config file x: [sink] size must be a string, as in size = "value": toml: line 2 (last key "sink.size"): incompatible types: TOML value has type int64`},
		{"[sink]\ndispatchers = [{matcher = ['a.*'], partiton = 'ts'}]", `config file x: unknown key "sink.dispatchers.partiton"`},
		{"[sink]\ndispatchers = [{matcher = ['a.*'], partition = 'rowid'}]", `config file x: dispatcher 1 (matcher ["a.*"]): unknown partition rule "rowid" (known: default, ts, index-value, table, columns)`},
		{"[sink]\ndispatchers = [{matcher = ['a'], partition = 'ts'}]", `config file x: dispatcher 1: matcher pattern 1 "a": no dot`},
		{"[sink]\ndispatchers = [{matcher = ['a.*'], topic = '{db}_x'}]", `config file x: dispatcher 1 (matcher ["a.*"]): topic expression "{db}_x": unknown placeholder "{db}"`},
		{"[sink]\ndispatchers = [{matcher = ['a.*'], topic = 'a b'}]", `config file x: dispatcher 1 (matcher ["a.*"]): topic expression "a b": character ' ' is not allowed`},
		{"[sink]\ndispatchers = [{matcher = ['a.*'], partition = 'columns'}]", `config file x: dispatcher 1 (matcher ["a.*"]): partition = "columns" needs columns = [...]`},
		{"[sink]\ndispatchers = [{matcher = ['a.*'], partition = 'ts', index = 'k'}]", `config file x: dispatcher 1 (matcher ["a.*"]): index "k" is only used with partition = "index-value", not "ts"`},
		{"[sink]\ndispatchers = [{partition = 'ts'}]", `config file x: dispatcher 1 (matcher []): matcher is empty`},
		{"[sink]\ndispatchers = 'x'", `config file x: [sink] dispatchers: toml: line 2 (last key "sink.dispatchers"): incompatible types`},
		{"[filter]\nrules = 'a.*'", `config file x: toml: line 2 (last key "filter.rules"): incompatible types: TOML value has type string; destination has type slice`},
		{"memory-quota = 1000", `config file x: memory-quota 1000 is below the minimum of 1048576 bytes (1 MiB)`},
		{"memory-quota = '64MiB'", `config file x: toml: line 1 (last key "memory-quota"): incompatible types`},
		{"[filter]\nrules = ['*']", `config file x: filter rule 1 "*": no dot: write schema.table, for example db.* or *.orders`},
		{"[filter]\nrules = ['']", `config file x: filter rule 1 "": rule is empty; write schema.table, for example db.*`},
	} {
		_, err := ParseConfig("x", c.in)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: got %v, want prefix %q", c.in, err, c.want)
		}
	}
}

func TestDiffInfo(t *testing.T) {
	a := model.ChangefeedInfo{SourceURI: "datagen://", SinkURI: "blackhole://", Config: model.ChangefeedConfig{Sink: map[string]string{"a": "1", "b": "2"}}}
	b := a
	b.SinkURI = "file:///x"
	b.TargetTs = model.TsFromTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	b.Config = model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"x.*"}}, Sink: map[string]string{"b": "3", "c": "4"},
		Dispatchers: []model.DispatchRule{{Matcher: []string{"x.*"}, Topic: "{schema}_{table}", Partition: "index-value"}, {Matcher: []string{"y.*"}, Partition: "columns", Columns: []string{"a", "b"}}}}
	got := DiffInfo(a, b)
	want := [][3]string{
		{"sink-uri", "blackhole://", "file:///x"},
		{"target-ts", "-", "496358129664000000 (2030-01-01 00:00:00.000 UTC)"},
		{"filter rules", "all tables", "x.*"},
		{"sink.a", "1", "(unset)"},
		{"sink.b", "2", "3"},
		{"sink.c", "(unset)", "4"},
		{"sink.dispatchers", "(none)", "x.* → topic {schema}_{table} partition index-value; y.* → partition columns(a,b)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diff\n got %v\nwant %v", got, want)
	}
	if d := DiffInfo(a, a); len(d) != 0 {
		t.Errorf("no change gave %v", d)
	}
}

func TestNewSample(t *testing.T) {
	ti := &api.TimeInfo{TSO: 1}
	prev := &api.ChangefeedDetail{Count: 100}
	cur := &api.ChangefeedDetail{ChangefeedSummary: api.ChangefeedSummary{ID: "a", Resolved: ti, CheckpointLagSecs: 2.5}, Count: 400}
	s := NewSample(prev, cur, 2*time.Second, time.Unix(0, 0))
	if !s.RateKnown || s.RowsPerSecond != 150 || s.RowsWritten != 400 || s.CheckpointLagSecs != 2.5 {
		t.Errorf("sample %+v", s)
	}
	// A processor restart resets its count: no rate rather than a huge one.
	s = NewSample(cur, prev, time.Second, time.Unix(0, 0))
	if s.RateKnown || s.RowsPerSecond != 0 {
		t.Errorf("count went down but rate %v known %v", s.RowsPerSecond, s.RateKnown)
	}
	var b strings.Builder
	w := NewStatsWriter(&b, false)
	_ = w.Write(s)
	_ = w.Write(NewSample(prev, cur, 2*time.Second, time.Unix(0, 0)))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "  -  ") || !strings.Contains(lines[2], "150.0") {
		t.Errorf("stats output:\n%s", b.String())
	}
}

func TestParseServer(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8300":          "http://127.0.0.1:8300",
		"https://node1:8300":      "https://node1:8300",
		"http://[::1]:8300/":      "http://[::1]:8300",
		"localhost:8300":          "http://localhost:8300",
		"https://10.0.0.1:443":    "https://10.0.0.1:443",
		"HTTP://127.0.0.1:1":      "http://127.0.0.1:1",
		"127.0.0.1:8300 ":         "",
		"127.0.0.1":               "",
		"ftp://127.0.0.1:21":      "",
		"http://127.0.0.1:1/api":  "",
		"http://127.0.0.1:1?x=1":  "",
		"http://user@127.0.0.1:1": "http://user@127.0.0.1:1",
	} {
		u, err := parseServer(in, "http")
		switch {
		case want == "" && err == nil:
			t.Errorf("%q accepted as %s", in, u)
		case want != "" && (err != nil || u.String() != want):
			t.Errorf("%q: got %v %v, want %s", in, u, err, want)
		}
	}
	if got := SplitServers(" a:1, ,b:2,"); !reflect.DeepEqual(got, []string{"a:1", "b:2"}) {
		t.Errorf("split %v", got)
	}
}

func TestHint(t *testing.T) {
	if h := Hint(&APIError{Code: api.CodeUnauthorized}); !strings.Contains(h, "--token") {
		t.Errorf("unauthorized hint %q", h)
	}
	if h := Hint(&APIError{Code: api.CodeChangefeedNotFound, Message: "x; 'ctl changefeed list --all' shows"}); h != "" {
		t.Errorf("hint repeats the message: %q", h)
	}
	if h := Hint(errors.New("plain")); h != "" {
		t.Errorf("hint for a plain error: %q", h)
	}
	if h := Hint(&ConnError{Errs: []error{errors.New("refused")}}); !strings.Contains(h, "--server") {
		t.Errorf("connection hint %q", h)
	}
}
