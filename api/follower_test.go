package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/model"
)

// TestOperatorRequestsReadPastALaggingReplica: the owner settled a pause
// and another node already showed it, but this replica has not applied the
// entry yet. An update and a resume sent here must decide on the cluster's
// state, not refuse with "a pending pause request".
func TestOperatorRequestsReadPastALaggingReplica(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	info := model.ChangefeedInfo{ID: "shop", SourceURI: "datagen://?tables=3", SinkURI: "blackhole://", StartTs: model.TsFromTime(time.Now()), State: model.StateNormal, AdminJob: model.AdminPause, CreateTime: time.Now()}
	s.Store.PutInfo(t, info)
	info.State, info.AdminJob = model.StateStopped, model.AdminNone
	s.Store.PutInfoBehind(info)

	req, _ := http.NewRequest("PUT", "http://"+s.Addr()+"/api/v1/changefeeds/shop", strings.NewReader(`{"target_ts": 0, "sink_uri": "blackhole://?rate=100"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("update on a lagging replica: %d %s", resp.StatusCode, body)
	}
	got, _, _ := s.Store.GetInfo(t, "shop")
	if got.State != model.StateStopped || got.SinkURI != "blackhole://?rate=100" {
		t.Fatalf("after the update: %+v", got)
	}

	// Resume: the same lag, now behind the update.
	s.Store.PutInfo(t, func() model.ChangefeedInfo { i := got; i.AdminJob = model.AdminPause; return i }())
	s.Store.PutInfoBehind(got)
	if code, body := call(t, s, "POST", "/api/v1/changefeeds/shop/resume"); code != http.StatusAccepted {
		t.Fatalf("resume on a lagging replica: %d %s", code, body)
	}
	if got, _, _ := s.Store.GetInfo(t, "shop"); got.AdminJob != model.AdminResume {
		t.Fatalf("after the resume: %+v", got)
	}
}
