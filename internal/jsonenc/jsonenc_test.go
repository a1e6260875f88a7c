package jsonenc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
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

// Random strings of the pieces that matter — plain ASCII runs of every
// length (the eight-byte fast path and its edges), quotes, backslashes,
// control bytes, multi-byte runes, U+2028/U+2029 and invalid bytes — must
// decode to what encoding/json's own encoding decodes to.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	pieces := []string{"a", "abcdefgh", "0123456789abcdefXYZ", `"`, `\`, "\x00", "\x1f", "\x7f", "\n", "\t", "é", "€", "😀",
		"\u2028", "\u2029", "\xe2\x80", "\xff", "\xc3", " ", "<>&", "~", "<", "&", "\b", "\f",
		"\xe0\x80\x80", "\xe0\xa0\x80", "\xed\xa0\x80", "\xed\x9f\xbf", "\xc0\x80", "\xc1\xbf", "\xef\xbf\xbf", "\xe2\x80\xa7", "\xe2\x80\xaa", "\xf0\x9f\x98\x80"}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		var s string
		for k := rng.IntN(12); k > 0; k-- {
			s += pieces[rng.IntN(len(pieces))]
		}
		b := AppendString([]byte("x"), s)
		if b[0] != 'x' {
			t.Fatal("AppendString overwrote dst")
		}
		var got string
		if err := json.Unmarshal(b[1:], &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, b[1:], err)
		}
		ref, _ := json.Marshal(s)
		var want string
		json.Unmarshal(ref, &want)
		if got != want {
			t.Fatalf("%q: decodes to %q, encoding/json's to %q", s, got, want)
		}
		if bytes.Contains(b, []byte("\u2028")) || bytes.Contains(b, []byte("\u2029")) {
			t.Fatalf("%q: U+2028/U+2029 left unescaped in %s", s, b)
		}
		// With HTML escaping the bytes are encoding/json's own, but for
		// \b and \f, which it writes short since Go 1.22.
		ref = bytes.ReplaceAll(bytes.ReplaceAll(ref, []byte(`\b`), []byte(`\u0008`)), []byte(`\f`), []byte(`\u000c`))
		if h := AppendStringHTML(nil, s); !bytes.Equal(h, ref) {
			t.Fatalf("%q: AppendStringHTML wrote %s, encoding/json %s", s, h, ref)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	for _, s := range []string{
		"a plain ASCII payload of some sixty-four characters, no escapes!",
		"une phrase accentuée, déjà vue — avec des guillemets « » et €uros",
	} {
		b.Run(fmt.Sprint(len(s)), func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			var dst []byte
			for b.Loop() {
				dst = AppendString(dst[:0], s)
			}
		})
	}
}
