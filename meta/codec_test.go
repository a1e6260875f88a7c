package meta

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/model"
)

func TestParseKey(t *testing.T) {
	good := map[string]Key{
		"/owner":                 {Kind: KindOwner},
		"/capture/n1":            {Kind: KindCapture, Capture: "n1"},
		"/changefeed/info/cf":    {Kind: KindChangefeedInfo, Changefeed: "cf"},
		"/changefeed/status/cf":  {Kind: KindChangefeedStatus, Changefeed: "cf"},
		"/task/status/cf/n1":     {Kind: KindTaskStatus, Changefeed: "cf", Capture: "n1"},
		"/task/position/cf/n1":   {Kind: KindTaskPosition, Changefeed: "cf", Capture: "n1"},
		"/task/workload/cf/n1":   {Kind: KindTaskWorkload, Changefeed: "cf", Capture: "n1"},
		"/gc/abc":                {Kind: KindGC, Name: "abc"},
		"/kv/any/thing":          {Kind: KindUser, Name: "any/thing"},
		TaskStatusKey("a", "b"):  {Kind: KindTaskStatus, Changefeed: "a", Capture: "b"},
		ChangefeedInfoKey("x-1"): {Kind: KindChangefeedInfo, Changefeed: "x-1"},
	}
	for key, want := range good {
		got, err := ParseKey(key)
		if err != nil || got != want {
			t.Errorf("ParseKey(%q) = %+v, %v; want %+v", key, got, err, want)
		}
	}
	for _, key := range []string{"/", "/etc/passwd", "/task/status/cf", "/task/status/cf/", "/task/status//n1", "/task/status/cf/n1/x",
		"/capture/", "/capture/a/b", "/changefeed/info/", "/gc/", "/owner/x"} {
		if k, err := ParseKey(key); err == nil {
			t.Errorf("ParseKey(%q) = %+v, want an error", key, k)
		}
	}
}

func TestDecodePolicy(t *testing.T) {
	ok := map[string]string{
		CaptureKey("n1"):            `{"id":"n1","incarnation":3}`,
		ChangefeedInfoKey("cf"):     `{"id":"cf","start_ts":5,"a_field_from_a_newer_build":1}`,
		ChangefeedStatusKey("cf"):   `{"checkpoint_ts":1}`,
		TaskStatusKey("cf", "n1"):   `{"tables":{"1":{"start_ts":2}}}`,
		TaskPositionKey("cf", "n1"): `{"checkpoint_ts":1}`,
		TaskWorkloadKey("cf", "n1"): `{"1":{"workload":3}}`,
		"/task/workload/cf/n2":      `null`,
		GCKey("x"):                  `{"safepoint":1}`,
		KeyOwner:                    `{"epoch":4}`,
		"/kv/free":                  `[1,2]`,
	}
	for key, v := range ok {
		if _, err := Decode(key, []byte(v)); err != nil {
			t.Errorf("Decode(%s, %s): %v", key, v, err)
		}
	}
	corrupt := map[string]string{
		CaptureKey("n1"):            `{"id":"n2","incarnation":3}`, // names another capture
		ChangefeedInfoKey("cf"):     `{"id":"other"}`,
		ChangefeedStatusKey("cf"):   `{"checkpoint_ts":"soon"}`,
		TaskStatusKey("cf", "n1"):   `{"tables":{"x":{}}}`,
		TaskPositionKey("cf", "n1"): `[]`,
		GCKey("x"):                  `null`,
		KeyOwner:                    `7`,
		"/task/status/cf":           `{}`,
		"/nowhere":                  `{}`,
	}
	for key, v := range corrupt {
		_, err := Decode(key, []byte(v))
		var ce *CorruptError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Key != key {
			t.Errorf("Decode(%s, %s) = %v, want a CorruptError naming the key", key, v, err)
		}
	}
	v, _ := Decode(TaskWorkloadKey("cf", "n1"), []byte(`null`))
	if w, isW := v.(model.TaskWorkload); !isW || w == nil {
		t.Fatalf("a null workload decodes to %#v, want an empty map", v)
	}
}

func TestClusterRecord(t *testing.T) {
	if k, err := ParseKey(KeyCluster); err != nil || k.Kind != KindCluster {
		t.Fatalf("ParseKey(%s) = %+v, %v", KeyCluster, k, err)
	}
	v, err := Decode(KeyCluster, []byte(`{"id":"c0ffee","schema_version":2,"created":"2026-12-01T00:00:00Z","from_a_newer_build":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if c := v.(*model.ClusterInfo); c.ID != "c0ffee" || c.SchemaVersion != 2 {
		t.Fatalf("decoded %+v", c)
	}
	for _, bad := range []string{`{"schema_version":2}`, `{"id":"x"}`, `{"id":"x","schema_version":0}`, `[]`} {
		if _, err := Decode(KeyCluster, []byte(bad)); !IsCorrupt(err) {
			t.Errorf("Decode(/cluster, %s) = %v, want corrupt", bad, err)
		}
	}
}

// TestNewerRecordFormatIsNotGuessedAt: a record written in a format newer
// than this build reads is refused with a reason that says so, rather than
// decoded field by field into the old meaning.
func TestNewerRecordFormatIsNotGuessedAt(t *testing.T) {
	_, err := Decode(TaskStatusKey("cf", "n1"), []byte(`{"v":2,"tables":{"1":{"start_ts":2}}}`))
	if !IsCorrupt(err) || !strings.Contains(err.Error(), "record format version 2 was written by a newer build") {
		t.Fatalf("a v2 task status: %v", err)
	}
	if _, err := Decode(TaskStatusKey("cf", "n1"), []byte(`{"v":1,"tables":{"1":{"start_ts":2}}}`)); err != nil {
		t.Errorf("an explicit v1 record: %v", err)
	}
	if _, err := Decode(ChangefeedStatusKey("cf"), []byte(`{"v":"two","checkpoint_ts":1}`)); !IsCorrupt(err) {
		t.Errorf("a non-numeric version: %v", err)
	}
	// A "v" deeper in a record is just data.
	if _, err := Decode(ChangefeedInfoKey("cf"), []byte(`{"id":"cf","config":{"sink":{"protocol":"v"}}}`)); err != nil {
		t.Errorf("a nested \"v\": %v", err)
	}
}

// Grouped per-table maps (schema 3) decode into the maps readers use; a
// record that has both forms is corrupt rather than silently merged.
func TestGroupedMapsDecodeIntoTheirMaps(t *testing.T) {
	pos, err := Decode(TaskPositionKey("cf", "c1"), []byte(`{"epoch":2,"checkpoint_ts":5,"resolved_ts":6,"count":0,"running_grouped":[{"ts":5,"ids":"1..7:3"},{"ts":6,"ids":"9"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := pos.(*model.TaskPosition)
	if want := (model.TableTs{1: 5, 4: 5, 7: 5, 9: 6}); !reflect.DeepEqual(p.Running, want) || p.RunningGrouped != nil {
		t.Fatalf("running %v grouped %v, want %v and nothing grouped", p.Running, p.RunningGrouped, want)
	}
	st, err := Decode(ChangefeedStatusKey("cf"), []byte(`{"resolved_ts":1,"checkpoint_ts":1,"orphans_grouped":[{"ts":1,"ids":"1..3"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s := st.(*model.ChangefeedStatus); !reflect.DeepEqual(s.Orphans, model.TableTs{1: 1, 2: 1, 3: 1}) || s.OrphansGrouped != nil {
		t.Fatalf("orphans %v grouped %v", s.Orphans, s.OrphansGrouped)
	}
	for key, doc := range map[string]string{
		TaskPositionKey("cf", "c1"): `{"checkpoint_ts":5,"resolved_ts":6,"count":0,"running":{"1":5},"running_grouped":[{"ts":5,"ids":"2"}]}`,
		ChangefeedStatusKey("cf"):   `{"resolved_ts":1,"checkpoint_ts":1,"orphans":{"1":1},"orphans_grouped":[{"ts":1,"ids":"2"}]}`,
		TaskPositionKey("cf", "c2"): `{"checkpoint_ts":5,"resolved_ts":6,"count":0,"running_grouped":[{"ts":5,"ids":"1..4:2"}]}`,
	} {
		if _, err := Decode(key, []byte(doc)); err == nil {
			t.Errorf("%s %s decoded", key, doc)
		}
	}
}
