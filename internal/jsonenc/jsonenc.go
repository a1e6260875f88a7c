// Package jsonenc holds the JSON appenders the hand-written encoders
// (codec/debezium, codec/open, codec/simple, codec/canal) share: writing a
// message with appends costs a fraction of encoding/json on maps of raw
// values.
package jsonenc

import "unicode/utf8"

const hex = "0123456789abcdef"

// AppendString writes s as a JSON string, escaping as encoding/json does
// (without its HTML escaping); invalid UTF-8 becomes U+FFFD.
//
// Row values are most of what a JSON sink writes, and most of their bytes
// need no escaping: eight bytes at a time are skipped while they are plain
// ASCII; the rest goes byte by byte, rune by rune past ASCII.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s, false) }

// AppendStringHTML is AppendString with encoding/json's default HTML
// escaping: '<', '>' and '&' become \u003c, \u003e and \u0026, as canal-json
// consumers (and TiCDC's writer) expect.
func AppendStringHTML(dst []byte, s string) []byte { return appendString(dst, s, true) }

func appendString(dst []byte, s string, html bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// A block of eight: skipped whole when plain, else walked (a rune
		// may run past its end; the next block starts after it).
		end := len(s)
		if i+8 <= len(s) {
			if plainASCII8(load64(s, i), html) {
				i += 8
				continue
			}
			end = i + 8
		}
		for i < end {
			c := s[i]
			if c < utf8.RuneSelf {
				if c >= 0x20 && c != '"' && c != '\\' && !(html && (c == '<' || c == '>' || c == '&')) {
					i++
					continue
				}
				dst = append(dst, s[start:i]...)
				dst = appendEscapedASCII(dst, c)
				i++
				start = i
				continue
			}
			// Two- and three-byte runes, nearly all text past ASCII, are
			// checked inline: a call to the decoder for each cost more than
			// the rest of the loop. Anything else (four bytes, overlong
			// forms, surrogates, invalid bytes) goes to the decoder.
			if c >= 0xc2 && c <= 0xdf && i+1 < len(s) && s[i+1]&0xc0 == 0x80 {
				i += 2
				continue
			}
			if c >= 0xe0 && c <= 0xef && i+2 < len(s) && s[i+1]&0xc0 == 0x80 && s[i+2]&0xc0 == 0x80 &&
				(c != 0xe0 || s[i+1] >= 0xa0) && (c != 0xed || s[i+1] < 0xa0) &&
				(c != 0xe2 || s[i+1] != 0x80 || s[i+2]&^1 != 0xa8) { // U+2028/9 are escaped below
				i += 3
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
			case r == '\u2028' || r == '\u2029':
				// JavaScript takes these for line ends.
				dst = append(dst, s[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			default:
				i += size
				continue
			}
			i += size
			start = i
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// plainASCII8 reports whether all eight bytes of x are ASCII that a JSON
// string carries unescaped: none with the high bit, none below 0x20, no
// quote and no backslash (and with html none of '<', '>', '&'). Bit
// tricks: (v-0x01..)&^v&0x80.. is non-zero exactly when some byte of v is
// zero, and (x-0x20..)&^x&0x80.. when some byte of x is below 0x20.
func plainASCII8(x uint64, html bool) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(v uint64) uint64 { return (v - ones) &^ v & highs }
	below20 := (x - 0x20*ones) &^ x & highs
	if (x&highs)|below20|hasZero(x^('"'*ones))|hasZero(x^('\\'*ones)) != 0 {
		return false
	}
	return !html || hasZero(x^('<'*ones))|hasZero(x^('>'*ones))|hasZero(x^('&'*ones)) == 0
}

// load64 is the eight bytes of s at i, little-endian (the compiler makes
// this one load).
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

func appendEscapedASCII(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
}
