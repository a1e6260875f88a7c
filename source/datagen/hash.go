package datagen

import (
	"math"
	"math/bits"
	"slices"
)

// epochUnixMilli (2020-01-01T00:00:00Z) is the default wall time at which
// every table's event 0 (give or take the table's offset) happens (the
// epoch parameter moves it). It is fixed rather than "process start" so that
// separate processes agree on the stream without sharing any state.
const epochUnixMilli = 1577836800000

// ticksPerSecond is the number of TSO units in one second: milliseconds
// shifted past the 18 logical bits. Placing events on this fine grid lets
// several events share a millisecond, distinguished by the logical part.
const ticksPerSecond = 1000 << 18

// payloadAlphabet holds 64 characters that need no escaping in JSON, so that
// a payload's encoded form is predictable.
const payloadAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// appendPayload appends n characters of payloadAlphabet drawn from h.
func appendPayload(dst []byte, n int, h uint64) []byte {
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	buf := dst[start:]
	for i := 0; i < len(buf); {
		h = mix64(h + 0x9e3779b97f4a7c15)
		for j := 0; j < 10 && i < len(buf); j, i = j+1, i+1 {
			buf[i] = payloadAlphabet[h&63]
			h >>= 6
		}
	}
	return dst
}

// mix64 is the splitmix64 finaliser: a cheap bijection with good avalanche,
// enough to make keys and ops look random while staying reproducible.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// mulDiv is floor(a*b/c) with a 128-bit intermediate; ok is false when the
// result does not fit in 64 bits.
func mulDiv(a, b, c uint64) (uint64, bool) {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, c)
	return q, true
}

// mulDivCeil is ceil(a*b/c) with a 128-bit intermediate.
func mulDivCeil(a, b, c uint64) (uint64, bool) {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return 0, false
	}
	q, r := bits.Div64(hi, lo, c)
	if r != 0 {
		if q == math.MaxUint64 {
			return 0, false
		}
		q++
	}
	return q, true
}
