package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// lines decodes every JSON line written to buf.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]interface{} {
	t.Helper()
	var out []map[string]interface{}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestParseLevel(t *testing.T) {
	cases := []struct {
		in      string
		want    zerolog.Level
		wantErr bool
	}{
		{"trace", zerolog.TraceLevel, false},
		{"DEBUG", zerolog.DebugLevel, false},
		{"", zerolog.InfoLevel, false},
		{"info", zerolog.InfoLevel, false},
		{"warn", zerolog.WarnLevel, false},
		{"warning", zerolog.WarnLevel, false},
		{" error ", zerolog.ErrorLevel, false},
		{"fatal", zerolog.NoLevel, true},
		{"verbose", zerolog.NoLevel, true},
	}
	for _, c := range cases {
		got, err := ParseLevel(c.in)
		if c.wantErr {
			if err == nil || !strings.Contains(err.Error(), c.in) {
				t.Errorf("ParseLevel(%q) error = %v, want one naming the value", c.in, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestNewJSONFiltersByLevel(t *testing.T) {
	var buf bytes.Buffer
	zl, err := New("warn", "", &buf)
	if err != nil {
		t.Fatal(err)
	}
	zl.Info().Msg("hidden")
	zl.Warn().Str("node_id", "n1").Msg("shown")
	got := lines(t, &buf)
	if len(got) != 1 {
		t.Fatalf("got %d lines, want 1: %s", len(got), buf.String())
	}
	if got[0]["message"] != "shown" || got[0]["level"] != "warn" || got[0]["node_id"] != "n1" {
		t.Errorf("unexpected line %v", got[0])
	}
	// The time is UTC to the millisecond, and RFC 3339 still parses it.
	ts, _ := got[0]["time"].(string)
	at, err := time.Parse(time.RFC3339, ts)
	if err != nil || len(ts) != len("2006-01-02T15:04:05.000Z") || time.Since(at) > time.Minute || time.Since(at) < -time.Minute {
		t.Errorf("time field %q: want RFC 3339 UTC with milliseconds, near now (%v)", ts, err)
	}
}

func TestNewConsole(t *testing.T) {
	var buf bytes.Buffer
	zl, err := New("debug", "console", &buf)
	if err != nil {
		t.Fatal(err)
	}
	zl.Debug().Str("table", "t1").Msg("hello console")
	out := buf.String()
	if json.Valid([]byte(strings.TrimSpace(out))) {
		t.Fatalf("console output looks like JSON: %q", out)
	}
	for _, want := range []string{"hello console", "table=t1", "DBG"} {
		if !strings.Contains(out, want) {
			t.Errorf("console output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("console output to a buffer has colour codes: %q", out)
	}
}

func TestNewRejectsUnknown(t *testing.T) {
	if _, err := New("info", "xml", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "xml") {
		t.Errorf("format xml: err = %v", err)
	}
	if _, err := New("loud", "json", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "loud") {
		t.Errorf("level loud: err = %v", err)
	}
	if _, err := New("info", "json", nil); err == nil {
		t.Error("nil writer accepted")
	}
}

func TestHCLogLevelsAndFields(t *testing.T) {
	var buf bytes.Buffer
	zl, _ := New("info", "json", &buf)
	hl := HCLog(zl, "raft")

	if hl.IsDebug() || !hl.IsInfo() || !hl.IsError() {
		t.Fatalf("level guards wrong: debug=%v info=%v", hl.IsDebug(), hl.IsInfo())
	}
	hl.Debug("dropped", "a", 1)
	hl.Info("entering follower state", "follower", "node-1", "last-index", 42, "error", errors.New("boom"))
	hl.Warn("formatted", "addr", hclog.Fmt("%s:%d", "127.0.0.1", 7000))
	hl.Error("odd", "dangling")

	got := lines(t, &buf)
	if len(got) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(got), buf.String())
	}
	first := got[0]
	if first["level"] != "info" || first["message"] != "entering follower state" {
		t.Errorf("first line: %v", first)
	}
	if first["component"] != "raft" || first["follower"] != "node-1" || first["last_index"] != float64(42) || first["error"] != "boom" {
		t.Errorf("fields not kept as snake_case fields: %v", first)
	}
	if got[1]["level"] != "warn" || got[1]["addr"] != "127.0.0.1:7000" {
		t.Errorf("second line: %v", got[1])
	}
	if got[2]["level"] != "error" || got[2]["extra_value_at_end"] != "dangling" {
		t.Errorf("third line: %v", got[2])
	}
}

func TestHCLogWithNamedAndSetLevel(t *testing.T) {
	var buf bytes.Buffer
	zl, _ := New("info", "json", &buf)
	root := HCLog(zl, "raft")
	a := root.With("node_id", "n1")
	b := a.With("peer", "p1")
	c := a.With("peer", "p2") // must not overwrite b's implied args
	named := b.Named("net")

	if named.Name() != "raft.net" || root.ResetNamed("snap").Name() != "snap" {
		t.Fatalf("names: %q %q", named.Name(), root.ResetNamed("snap").Name())
	}
	if got := b.ImpliedArgs(); len(got) != 4 || got[3] != "p1" {
		t.Fatalf("implied args of b = %v", got)
	}

	// SetLevel on one logger affects the related ones.
	c.SetLevel(hclog.Debug)
	if !named.IsDebug() || root.GetLevel() != hclog.Debug {
		t.Fatal("SetLevel did not propagate to related loggers")
	}
	named.Debug("dial")
	c.Info("other")

	got := lines(t, &buf)
	if len(got) != 2 {
		t.Fatalf("got %d lines:\n%s", len(got), buf.String())
	}
	if got[0]["component"] != "raft.net" || got[0]["peer"] != "p1" || got[0]["node_id"] != "n1" || got[0]["level"] != "debug" {
		t.Errorf("named line: %v", got[0])
	}
	if got[1]["peer"] != "p2" {
		t.Errorf("sibling line: %v", got[1])
	}

	root.SetLevel(hclog.Off)
	root.Error("silenced")
	if n := len(lines(t, &buf)); n != 2 {
		t.Errorf("Off level still logged: %d lines", n)
	}
}

func TestHCLogStandardLogger(t *testing.T) {
	var buf bytes.Buffer
	zl, _ := New("debug", "json", &buf)
	hl := HCLog(zl, "raft")

	std := hl.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	std.Print("[WARN] disk slow")
	std.Print("plain line")
	forced := hl.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error})
	forced.Print("[DEBUG] forced up")

	got := lines(t, &buf)
	if len(got) != 3 {
		t.Fatalf("got %d lines:\n%s", len(got), buf.String())
	}
	want := []struct{ level, msg string }{
		{"warn", "disk slow"}, {"info", "plain line"}, {"error", "forced up"},
	}
	for i, w := range want {
		if got[i]["level"] != w.level || got[i]["message"] != w.msg || got[i]["component"] != "raft" {
			t.Errorf("line %d = %v, want level %s msg %q", i, got[i], w.level, w.msg)
		}
	}
}

func TestStdLoggerPrefixes(t *testing.T) {
	cases := []struct {
		in, level, msg string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", "debug", "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Marking n2 as failed", "info", "Marking n2 as failed"},
		{"[WARN] memberlist: Was able to connect to n2 over TCP", "warn", "Was able to connect to n2 over TCP"},
		{"[ERR] memberlist: Failed to send ping", "error", "Failed to send ping"},
		{"[ERROR] memberlist: boom", "error", "boom"},
		{"no prefix at all", "info", "no prefix at all"},
		{"[WEIRD] kept", "info", "[WEIRD] kept"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		zl, _ := New("trace", "json", &buf)
		StdLogger(zl, "memberlist").Println(c.in)
		got := lines(t, &buf)
		if len(got) != 1 {
			t.Fatalf("%q: got %d lines", c.in, len(got))
		}
		if got[0]["level"] != c.level || got[0]["message"] != c.msg || got[0]["component"] != "memberlist" {
			t.Errorf("%q: got %v, want level %s msg %q", c.in, got[0], c.level, c.msg)
		}
	}
}

func TestStdLoggerRespectsLevel(t *testing.T) {
	var buf bytes.Buffer
	zl, _ := New("warn", "json", &buf)
	l := StdLogger(zl, "memberlist")
	l.Print("[DEBUG] memberlist: noisy")
	l.Print("[ERR] memberlist: bad")
	got := lines(t, &buf)
	if len(got) != 1 || got[0]["level"] != "error" {
		t.Fatalf("got %v", got)
	}
}
