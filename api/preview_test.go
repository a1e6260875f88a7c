package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/model"
)

// post sends body to path and answers the status and the raw answer.
func post(t *testing.T, s *ctltest.Server, path string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(s.HTTP.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func previewOK(t *testing.T, s *ctltest.Server, req api.ChangefeedRequest) api.ChangefeedPreview {
	t.Helper()
	status, b := post(t, s, "/api/v1/changefeeds/preview", req)
	if status != http.StatusOK {
		t.Fatalf("preview: status %d: %s", status, b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p api.ChangefeedPreview
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("preview answer %s: %v", b, err)
	}
	return p
}

// TestPreviewChangefeed: the preview answers the tables a create would
// replicate and the start it would use, and writes nothing.
func TestPreviewChangefeed(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fill(t, s)
	before := s.Store.Dump(t)

	target := model.TsFromTime(time.Now().Add(time.Hour))
	p := previewOK(t, s, api.ChangefeedRequest{ID: "peek", SourceURI: "datagen://?tables=5", SinkURI: "blackhole://", TargetTs: target,
		Config: &model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"*.*", "!*.t0003"}}}})
	want := []string{"datagen.t0001", "datagen.t0002", "datagen.t0004", "datagen.t0005"}
	if p.ID != "peek" || !reflect.DeepEqual(p.Tables, want) || p.TotalTables != 5 {
		t.Errorf("preview %+v, want id peek, tables %v of 5", p, want)
	}
	if p.StartTs == nil || time.Since(model.TsTime(p.StartTs.TSO)).Abs() > time.Minute || !model.TsTime(p.StartTs.TSO).Equal(p.StartTs.Time) {
		t.Errorf("start ts %+v is not now", p.StartTs)
	}
	if p.TargetTs == nil || p.TargetTs.TSO != target {
		t.Errorf("target ts %+v, want %d", p.TargetTs, target)
	}

	// Without an ID the preview leaves it empty; an explicit start is kept
	// exactly and no target is answered as none.
	start := model.TsFromTime(time.Now().Add(-time.Minute))
	p = previewOK(t, s, api.ChangefeedRequest{SourceURI: "datagen://?tables=2", SinkURI: "blackhole://", StartTs: start})
	if p.ID != "" || p.StartTs == nil || p.StartTs.TSO != start || p.TargetTs != nil || p.TotalTables != 2 || len(p.Tables) != 2 {
		t.Errorf("preview without an ID: %+v", p)
	}

	// A removed changefeed's ID may be reused, by create and so by preview.
	s.Store.PutInfo(t, model.ChangefeedInfo{ID: "gone", SourceURI: "datagen://", SinkURI: "blackhole://", StartTs: start, State: model.StateRemoved})
	before = s.Store.Dump(t)
	if p = previewOK(t, s, api.ChangefeedRequest{ID: "gone", SourceURI: "datagen://", SinkURI: "blackhole://"}); p.ID != "gone" {
		t.Errorf("preview of a removed ID: %+v", p)
	}

	if s.Store.Dump(t) != before {
		t.Error("a preview changed the state")
	}
	resp, err := http.Get(s.HTTP.URL + "/api/v1/changefeeds/peek")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("after a preview, GET peek answered %d, want 404", resp.StatusCode)
	}
}

// TestPreviewRefusesWhatCreateRefuses sends the same bad requests to
// preview and to create: both must refuse each with the same status, code
// and message, and neither may write.
func TestPreviewRefusesWhatCreateRefuses(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fill(t, s)
	start := model.TsFromTime(time.Now().Add(-time.Minute))
	noMatch := &model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"nope.*"}}}
	badRule := &model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"a.b.c"}}}
	cases := []struct {
		name string
		req  api.ChangefeedRequest
		code string
		// moving marks a message that quotes the source's GC safepoint,
		// which moves between the two requests.
		moving bool
	}{
		{"bad ID", api.ChangefeedRequest{ID: "bad_id", SourceURI: "datagen://", SinkURI: "blackhole://"}, api.CodeBadRequest, false},
		{"no source", api.ChangefeedRequest{ID: "x", SinkURI: "blackhole://"}, api.CodeInvalidURI, false},
		{"no sink", api.ChangefeedRequest{ID: "x", SourceURI: "datagen://"}, api.CodeInvalidURI, false},
		{"unknown source scheme", api.ChangefeedRequest{ID: "x", SourceURI: "mysql://db:3306", SinkURI: "blackhole://"}, api.CodeInvalidURI, false},
		{"unknown sink scheme", api.ChangefeedRequest{ID: "x", SourceURI: "datagen://", SinkURI: "kafka://b/t"}, api.CodeInvalidURI, false},
		{"bad filter rule", api.ChangefeedRequest{ID: "x", SourceURI: "datagen://", SinkURI: "blackhole://", Config: badRule}, api.CodeInvalidConfig, false},
		{"start in the future", api.ChangefeedRequest{ID: "x", SourceURI: "datagen://", SinkURI: "blackhole://", StartTs: model.TsFromTime(time.Now().Add(time.Hour))}, api.CodeInvalidTs, false},
		{"target before start", api.ChangefeedRequest{ID: "x", SourceURI: "datagen://", SinkURI: "blackhole://", StartTs: start, TargetTs: start - 1}, api.CodeInvalidTs, false},
		{"start below the GC safepoint", api.ChangefeedRequest{ID: "x", SourceURI: "datagen://", SinkURI: "blackhole://", StartTs: model.TsFromTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))}, api.CodeSnapshotLost, true},
		{"filter selects nothing", api.ChangefeedRequest{ID: "x", SourceURI: "datagen://", SinkURI: "blackhole://", Config: noMatch}, api.CodeInvalidConfig, false},
		{"ID taken", api.ChangefeedRequest{ID: "orders", SourceURI: "datagen://", SinkURI: "blackhole://"}, api.CodeChangefeedExists, false},
		{"ID taken by a paused changefeed", api.ChangefeedRequest{ID: "paused", SourceURI: "datagen://", SinkURI: "blackhole://"}, api.CodeChangefeedExists, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.Store.Dump(t)
			var answers [2]api.Error
			for i, path := range []string{"/api/v1/changefeeds/preview", "/api/v1/changefeeds"} {
				status, b := post(t, s, path, c.req)
				if err := json.Unmarshal(b, &answers[i]); err != nil {
					t.Fatalf("%s: %s: %v", path, b, err)
				}
				answers[i].Status = status
			}
			if answers[0].Code != c.code || answers[0].Status < 400 {
				t.Errorf("preview answered %d %s (%s), want code %s", answers[0].Status, answers[0].Code, answers[0].Message, c.code)
			}
			if c.moving {
				answers[0].Message, answers[1].Message = "", ""
			}
			if answers[0] != answers[1] {
				t.Errorf("preview and create differ\npreview %+v\ncreate  %+v", answers[0], answers[1])
			}
			if s.Store.Dump(t) != before {
				t.Error("a refused request changed the state")
			}
		})
	}
}
