package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

func call(t *testing.T, s *ctltest.Server, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.Addr()+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestRemoveForceRepairsACorruptChangefeed: a changefeed whose info does
// not decode answers 500 metadata_corrupt to a query and to a plain remove;
// a forced remove replaces the info with a removed changefeed's record,
// keeping a source URI it can still read (so the owner cleans the upstream),
// after which the changefeed reads as removed and its ID can be taken again.
func TestRemoveForceRepairsACorruptChangefeed(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	cases := []struct {
		id, value   string
		keepsSource bool
	}{
		{"garbage", `"garbage"`, false},
		{"not-an-object", `[1, 2, 3]`, false},
		// The right shape but naming another changefeed: corrupt, yet its
		// source URI is readable.
		{"other-id", `{"id": "someone-else", "source_uri": "datagen://?tables=2", "sink_uri": "blackhole://", "state": "normal"}`, true},
	}
	for _, c := range cases {
		s.Store.PutRaw(t, 0, meta.ChangefeedInfoKey(c.id), c.value)
		for _, req := range [][2]string{{"GET", "/api/v1/changefeeds/" + c.id}, {"DELETE", "/api/v1/changefeeds/" + c.id}, {"DELETE", "/api/v1/changefeeds/" + c.id + "?force=false"}} {
			code, body := call(t, s, req[0], req[1])
			if code != http.StatusInternalServerError || !strings.Contains(string(body), api.CodeMetadataCorrupt) || !strings.Contains(string(body), "remove --force") {
				t.Errorf("%s %s: %d %s", req[0], req[1], code, body)
			}
		}
		if code, body := call(t, s, "DELETE", "/api/v1/changefeeds/"+c.id+"?force=yes"); code != http.StatusBadRequest {
			t.Errorf("force=yes: %d %s", code, body)
		}
		code, body := call(t, s, "DELETE", "/api/v1/changefeeds/"+c.id+"?force=true")
		var res api.ForceRemoveResult
		if code != http.StatusAccepted || json.Unmarshal(body, &res) != nil || res.Replaced != meta.ChangefeedInfoKey(c.id) || res.State != model.StateRemoved {
			t.Fatalf("forced remove of %s: %d %s", c.id, code, body)
		}
		info, _, ok := s.Store.GetInfo(t, c.id)
		if !ok || info.ID != c.id || info.State != model.StateRemoved || info.UpstreamCleaned == c.keepsSource {
			t.Errorf("%s after the forced remove: %+v", c.id, info)
		}
		if c.keepsSource && (info.SourceURI != "datagen://?tables=2" || !strings.Contains(res.UpstreamCleanup, "by the owner")) {
			t.Errorf("%s: the readable source was not kept: %+v, %q", c.id, info, res.UpstreamCleanup)
		}
		if !c.keepsSource && !strings.Contains(res.UpstreamCleanup, "by hand") {
			t.Errorf("%s: upstream clean-up %q", c.id, res.UpstreamCleanup)
		}
		if code, body := call(t, s, "GET", "/api/v1/changefeeds/"+c.id); code != http.StatusOK || !strings.Contains(string(body), `"state": "removed"`) {
			t.Errorf("query after the forced remove: %d %s", code, body)
		}
	}
	// A healthy changefeed: force is an ordinary remove request.
	s.Store.PutInfo(t, model.ChangefeedInfo{ID: "healthy", SourceURI: "datagen://?tables=2", SinkURI: "blackhole://", State: model.StateNormal, CreateTime: time.Now()})
	code, body := call(t, s, "DELETE", "/api/v1/changefeeds/healthy?force=true")
	if code != http.StatusAccepted || !strings.Contains(string(body), `"admin_job": "remove"`) || strings.Contains(string(body), "replaced") {
		t.Errorf("forced remove of a healthy changefeed: %d %s", code, body)
	}
}
