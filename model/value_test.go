package model

import (
	"math"
	"testing"
	"unsafe"
)

// Ints, uints and floats share one word; each reads back exactly, at the
// edges of its range, and equality follows the kind.
func TestNumbersShareOneWordAndReadBackExactly(t *testing.T) {
	if n := unsafe.Sizeof(Value{}); n != 56 {
		t.Fatalf("a Value is %d bytes; every column of every held image pays it", n)
	}
	for _, u := range []uint64{0, 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
		if v := UintValue(u); v.Uint() != u || v.Text() != UintValue(u).Text() {
			t.Errorf("uint %d read back as %d", u, v.Uint())
		}
	}
	for _, i := range []int64{math.MinInt64, -1, 0, math.MaxInt64} {
		if v := IntValue(i); v.I != i {
			t.Errorf("int %d read back as %d", i, v.I)
		}
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 1.5, -math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1)} {
		if v := FloatValue(f); v.Float() != f || math.Signbit(v.Float()) != math.Signbit(f) {
			t.Errorf("float %v read back as %v", f, v.Float())
		}
	}
	if !FloatValue(math.NaN()).Equal(FloatValue(math.NaN())) {
		t.Error("NaN does not equal NaN")
	}
	if !FloatValue(0).Equal(FloatValue(math.Copysign(0, -1))) {
		t.Error("0 does not equal -0")
	}
	// Same bits, different kinds.
	if UintValue(math.MaxUint64).Equal(IntValue(-1)) || IntValue(int64(math.Float64bits(1))).Equal(FloatValue(1)) {
		t.Error("values of different kinds with the same bits are equal")
	}
	if FloatValue(1).Equal(FloatValue(2)) || UintValue(1).Equal(UintValue(2)) {
		t.Error("different numbers are equal")
	}
	if got := FloatValue(0.1).Text(); got != "0.1" {
		t.Errorf("text of 0.1: %q", got)
	}
}
