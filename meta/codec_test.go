package meta

import (
	"errors"
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
