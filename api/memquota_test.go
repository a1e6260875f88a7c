package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
)

// TestChangefeedCreatedWithoutAQuotaRunsWithOneGiB: a changefeed created
// through the API without a config, or with one that does not set
// memory_quota, is stored without a quota, and the quota in force for it —
// what every processor of it is built with — is 1 GiB, TiCDC's default.
// One that sets a quota keeps it; one below the 1 MiB minimum is refused
// with invalid_config naming memory-quota.
func TestChangefeedCreatedWithoutAQuotaRunsWithOneGiB(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fill(t, s)
	stored := func(id string) model.ChangefeedConfig {
		t.Helper()
		kv, ok, err := s.Store.FSM.Get(meta.ChangefeedInfoKey(id))
		if err != nil || !ok {
			t.Fatalf("changefeed %s is not stored (%v)", id, err)
		}
		v, err := meta.Decode(meta.ChangefeedInfoKey(id), kv.Value)
		if err != nil {
			t.Fatalf("decoding changefeed %s: %v", id, err)
		}
		return v.(*model.ChangefeedInfo).Config
	}
	for _, c := range []struct {
		id   string
		cfg  *model.ChangefeedConfig
		want int64
	}{
		{"no-config", nil, 1 << 30},
		{"filter-only", &model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"*.*"}}}, 1 << 30},
		{"quota-set", &model.ChangefeedConfig{MemoryQuota: 256 << 20}, 256 << 20},
	} {
		status, b := post(t, s, "/api/v1/changefeeds", api.ChangefeedRequest{ID: c.id, SourceURI: "datagen://", SinkURI: "blackhole://", Config: c.cfg})
		if status != http.StatusCreated {
			t.Fatalf("%s: create answered %d: %s", c.id, status, b)
		}
		if got := stored(c.id).MemoryQuotaBytes(); got != c.want {
			t.Errorf("%s: the quota in force is %d bytes, want %d", c.id, got, c.want)
		}
	}
	if model.DefaultMemoryQuota != 1<<30 {
		t.Errorf("DefaultMemoryQuota is %d, want 1 GiB", model.DefaultMemoryQuota)
	}

	status, b := post(t, s, "/api/v1/changefeeds", api.ChangefeedRequest{ID: "tiny", SourceURI: "datagen://", SinkURI: "blackhole://", Config: &model.ChangefeedConfig{MemoryQuota: 512 << 10}})
	if status != http.StatusBadRequest || !strings.Contains(string(b), api.CodeInvalidConfig) || !strings.Contains(string(b), "memory-quota 524288 is below the minimum") {
		t.Fatalf("a 512 KiB quota: answered %d %s, want 400 invalid_config naming memory-quota", status, b)
	}
	if _, ok, _ := s.Store.FSM.Get(meta.ChangefeedInfoKey("tiny")); ok {
		t.Fatal("the refused changefeed was stored")
	}
}
