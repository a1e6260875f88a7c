package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/backup"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

const secretSink = "mysql://cdc:hunter2-secret@10.0.0.7:3306/?ssl-key=/k"

func fillWithSecret(t *testing.T, s *ctltest.Server) {
	t.Helper()
	fill(t, s)
	s.Store.PutInfo(t, model.ChangefeedInfo{ID: "secret", SourceURI: "datagen://", SinkURI: secretSink, StartTs: 1, State: model.StateStopped,
		Error: &model.RunningError{Code: "x", Message: "connecting to " + secretSink + ": refused"}})
	s.Store.PutRaw(t, 0, "/kv/broken", `[1,2]`)
}

// TestSnapshotStreamsTheWholeState: the backup stream holds every key of
// the state machine with its revisions, as the FSM has them, and passes the
// format's whole-file check; on a follower without a leader it is refused.
func TestSnapshotStreamsTheWholeState(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fillWithSecret(t, s)
	resp, err := http.Post(s.HTTP.URL+"/api/v1/cluster/snapshot", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != api.BackupContentType {
		t.Fatalf("%s %s: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	var got []fsm.KV
	h, tr, err := backup.Read(bytes.NewReader(body), func(kv fsm.KV) error { got = append(got, kv); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.Store.FSM.List("/")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || tr.Keys != len(want) {
		t.Fatalf("%d keys in the backup (trailer %d), %d in the FSM", len(got), tr.Keys, len(want))
	}
	for i := range want {
		if got[i].Key != want[i].Key || got[i].ModRev != want[i].ModRev || got[i].CreateRev != want[i].CreateRev || !jsonEqual(got[i].Value, want[i].Value) {
			t.Errorf("key %d: %s rev %d/%d, want %s rev %d/%d", i, got[i].Key, got[i].CreateRev, got[i].ModRev, want[i].Key, want[i].CreateRev, want[i].ModRev)
		}
	}
	if h.AppliedIndex == 0 || h.NodeID == "" {
		t.Errorf("header %+v", h)
	}
	// A backup must restore working changefeeds: the credentials are in it.
	if !bytes.Contains(body, []byte("hunter2-secret")) {
		t.Error("the backup lost the sink URI's password")
	}

	s.Store.SetLeader(false)
	resp, err = http.Post(s.HTTP.URL+"/api/v1/cluster/snapshot", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("without a leader: %s", resp.Status)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && strings.EqualFold(mustJSON(x), mustJSON(y))
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestSnapshotNeedsTheToken: a backup holds every credential, so with an
// API token it needs the token even when reads are open.
func TestSnapshotNeedsTheToken(t *testing.T) {
	s := ctltest.NewServer(t, func(h *api.Handler) { h.RequireToken("tok", false, nil) })
	fill(t, s)
	resp, err := http.Post(s.HTTP.URL+"/api/v1/cluster/snapshot", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %s", resp.Status)
	}
}

// TestMetadataDecodesAndHidesSecrets: every key comes back decoded by the
// metadata schema, a key that does not decode comes back as stored with
// the reason, and no password appears anywhere.
func TestMetadataDecodesAndHidesSecrets(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fillWithSecret(t, s)
	s.Store.PutRaw(t, 0, meta.ChangefeedInfoKey("mangled"), `{"id":"mangled","sink_uri":"`+secretSink+`","start_ts":"yesterday"}`)
	resp, err := http.Get(s.HTTP.URL + "/api/v1/cluster/metadata")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", resp.Status, body)
	}
	if bytes.Contains(body, []byte("hunter2")) {
		t.Fatalf("a password is in the metadata dump:\n%s", body)
	}
	var m api.Metadata
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	byKey := map[string]api.MetadataKey{}
	for _, k := range m.Keys {
		byKey[k.Key] = k
	}
	all, _ := s.Store.FSM.List("/")
	if len(m.Keys) != len(all) {
		t.Errorf("%d keys shown, the FSM has %d", len(m.Keys), len(all))
	}
	info := byKey[meta.ChangefeedInfoKey("secret")]
	var ci model.ChangefeedInfo
	if err := json.Unmarshal(info.Value, &ci); err != nil || info.Kind != "changefeed_info" || info.Error != "" {
		t.Fatalf("decoded info %s: %v (%+v)", info.Value, err, info)
	}
	if !strings.HasPrefix(ci.SinkURI, "mysql://cdc:") || ci.Error == nil || !strings.Contains(ci.Error.Message, "refused") {
		t.Errorf("info %+v", ci)
	}
	mangled := byKey[meta.ChangefeedInfoKey("mangled")]
	if mangled.Error == "" || !json.Valid(mangled.Value) {
		t.Errorf("a corrupt key: %+v", mangled)
	}
	if k := byKey["/kv/broken"]; !jsonEqual(k.Value, []byte("[1,2]")) || k.Kind != "user" {
		t.Errorf("a user key: %+v", k)
	}
	// prefix narrows the dump.
	resp, err = http.Get(s.HTTP.URL + "/api/v1/cluster/metadata?prefix=/capture/")
	if err != nil {
		t.Fatal(err)
	}
	var caps api.Metadata
	err = json.NewDecoder(resp.Body).Decode(&caps)
	resp.Body.Close()
	if err != nil || len(caps.Keys) != 2 {
		t.Errorf("captures only: %+v %v", caps, err)
	}
}
