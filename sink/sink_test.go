package sink

import (
	"errors"
	"fmt"
	"testing"
)

// TestUnretryableSurvivesWrappingAndKeepsTheMessage: the mark is found
// through the wrapping the processor adds, and it adds nothing to the
// message the operator reads.
func TestUnretryableSurvivesWrappingAndKeepsTheMessage(t *testing.T) {
	base := errors.New("table shop.blobs: a row encodes to 9000 bytes, over max-message-bytes=4096")
	err := fmt.Errorf("table 7: %w", Unretryable(base))
	if !IsUnretryable(err) {
		t.Fatalf("%v: the mark is lost through %%w", err)
	}
	if !errors.Is(err, base) {
		t.Fatalf("%v: the marked error no longer unwraps to its cause", err)
	}
	if got, want := err.Error(), "table 7: "+base.Error(); got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	if IsUnretryable(fmt.Errorf("table 7: %w", base)) || IsUnretryable(nil) {
		t.Fatal("an unmarked error reads as unretryable")
	}
	if Unretryable(nil) != nil {
		t.Fatal("Unretryable(nil) is not nil")
	}
}
