package jsonenc

import (
	"encoding/json"
	"testing"
)

func TestAppendStringIsValidJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\t\n\r", "ü€😀", "bad \xff\xfe utf8", "sep \u2028\u2029", "<&>"} {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, b, err)
		}
		// encoding/json's own rendering is the reference (each invalid
		// byte becomes U+FFFD).
		ref, _ := json.Marshal(s)
		var want string
		json.Unmarshal(ref, &want)
		if got != want {
			t.Errorf("%q round trips to %q", s, got)
		}
	}
}
