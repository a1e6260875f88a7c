package owner

import (
	"testing"
	"time"
)

// TestTickGapKeepsTheOwnerUnderHalfACore: a slow tick (many tables) spaces
// the next by twice its cost; a fast one by the minimum that coalesces
// bursts.
func TestTickGapKeepsTheOwnerUnderHalfACore(t *testing.T) {
	for _, c := range []struct{ min, cost, want time.Duration }{
		{20 * time.Millisecond, 0, 20 * time.Millisecond},
		{20 * time.Millisecond, 3 * time.Millisecond, 20 * time.Millisecond},
		{20 * time.Millisecond, 112 * time.Millisecond, 224 * time.Millisecond},
	} {
		got := tickGap(c.min, c.cost)
		if got != c.want {
			t.Errorf("tickGap(%v, %v) = %v, want %v", c.min, c.cost, got, c.want)
		}
		if c.cost > 0 && float64(c.cost)/float64(got) > 0.5 {
			t.Errorf("a tick of %v every %v is more than half a core", c.cost, got)
		}
	}
}
