package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/fsm"
)

func TestDecodeStrict(t *testing.T) {
	type inner struct {
		Rules []string `json:"rules"`
	}
	type embedded struct {
		Extra string `json:"extra"`
	}
	type body struct {
		embedded
		ID     string            `json:"id"`
		Inner  *inner            `json:"inner,omitempty"`
		Labels map[string]string `json:"labels"`
		Ops    []fsm.Op          `json:"ops"`
		Skip   string            `json:"-"`
	}
	ok := []string{
		`{"id": "a"}`,
		` {"id": "a", "extra": "e"} ` + "\n",
		`{"inner": {"rules": ["x", "y"]}, "labels": {"A": "1", "a": "2"}}`,
		// A value is opaque data: its own keys are not ours to judge.
		`{"ops": [{"type": "put", "key": "k", "value": {"x": 1, "X": 2}}]}`,
	}
	for _, b := range ok {
		var v body
		if err := decodeStrict([]byte(b), &v); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
	bad := map[string]string{
		``:                                      "empty",
		`   `:                                   "empty",
		`{"id": "a"} x`:                         "after the JSON value",
		`{"id": "a"}{"id": "b"}`:                "after the JSON value",
		`{"id": "a"} null`:                      "after the JSON value",
		`{"id": "a", "id": "b"}`:                `field "id" appears twice`,
		`{"inner": {"rules": [], "rules": []}}`: `field "inner.rules" appears twice`,
		`{"labels": {"a": "1", "a": "2"}}`:      `field "labels.a" appears twice`,
		`{"ID": "a"}`:                           `did you mean "id"`,
		`{"Extra": "a"}`:                        `did you mean "extra"`,
		`{"inner": {"RULES": []}}`:              `field "inner.RULES": names are case-sensitive`,
		`{"ops": [{"Type": "put"}]}`:            `field "ops[0].Type"`,
		`{"ſd": "a"}`:                           `unknown field`, // not a fold of "id": unknown
		`{"Skip": "a"}`:                         `unknown field "Skip"`,
		`{"nope": 1}`:                           `unknown field "nope" (known: extra, id, inner, labels, ops)`,
		`{"id": "a"`:                            "too early",
		`{"id": 1}`:                             "cannot unmarshal",
	}
	for b, want := range bad {
		var v body
		err := decodeStrict([]byte(b), &v)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", b, err, want)
		}
	}
}

func TestReadBodyLimits(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, 2<<10+1)))
		if chunked {
			req.ContentLength = -1
		}
		_, err := ReadBody(req, 2<<10)
		e, ok := err.(*Error)
		if !ok || e.Status != http.StatusRequestEntityTooLarge || !strings.Contains(e.Message, "2 KiB") {
			t.Errorf("chunked %v: %v", chunked, err)
		}
		req = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, 2<<10)))
		if b, err := ReadBody(req, 2<<10); err != nil || len(b) != 2<<10 {
			t.Errorf("at the limit: %d bytes, %v", len(b), err)
		}
	}
}

func TestBoolParam(t *testing.T) {
	for q, want := range map[string]any{"": false, "all=true": true, "all=false": false, "x=1": false,
		"all=yes": "true or false", "all=": "true or false", "all": "true or false", "all=TRUE": "true or false", "all=true&all=true": "2 times"} {
		req := httptest.NewRequest(http.MethodGet, "/?"+q, nil)
		got, err := BoolParam(req, "all")
		switch w := want.(type) {
		case bool:
			if err != nil || got != w {
				t.Errorf("%q: %v, %v", q, got, err)
			}
		case string:
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%q: %v, want an error containing %q", q, err, w)
			}
		}
	}
}

func TestClip(t *testing.T) {
	if Clip("short") != "short" {
		t.Error("short input changed")
	}
	long := strings.Repeat("é", 1000)
	c := Clip(long)
	if len(c) > 100 || !strings.Contains(c, "(2000 bytes)") || !strings.HasPrefix(long, strings.Split(c, "…")[0]) {
		t.Errorf("Clip: %q", c)
	}
}

func TestWriteErrorBoundsTheMessage(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, Errorf(http.StatusBadRequest, CodeBadRequest, "bad %s", strings.Repeat("x", 1<<20)))
	if rec.Body.Len() > 2048 || !strings.Contains(rec.Body.String(), "message cut at") {
		t.Errorf("%d bytes: %.200s", rec.Body.Len(), rec.Body.String())
	}
}
