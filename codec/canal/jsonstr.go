package canal

const hexDigits = "0123456789abcdef"

// appendLatin1 appends bytes as a JSON string of the characters U+0000 to
// U+00FF that the bytes are in ISO-8859-1, which is how canal (and TiCDC)
// carry binary values in a text protocol: every byte survives the round
// trip, and printable ASCII stays readable.
func appendLatin1(dst []byte, b []byte) []byte {
	dst = append(dst, '"')
	for _, c := range b {
		switch {
		case c >= 0x80:
			// U+0080..U+00FF in UTF-8 is two bytes: 110000xx 10xxxxxx.
			dst = append(dst, 0xc0|c>>6, 0x80|c&0x3f)
		case c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&':
			dst = append(dst, c)
		case c == '"':
			dst = append(dst, '\\', '"')
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	return append(dst, '"')
}

// latin1Bytes reverses appendLatin1 after JSON decoding: every character
// must be at most U+00FF.
func latin1Bytes(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}
