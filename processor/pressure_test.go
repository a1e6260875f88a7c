package processor

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Lateness past the limit on consecutive probes turns the pressure on and
// readers wait; it stays on until the probe has been on time for the hold,
// then every waiter goes.
func TestPressureHoldsReadersWhileTheNodeIsLate(t *testing.T) {
	p := newPressure(zerolog.Nop())
	t0 := time.Now()
	p.observe(t0, lateLimit/2)
	if p.active() {
		t.Fatal("pressure on after a wake-up within the limit")
	}
	// One late wake-up between on-time ones is a blip, not starvation.
	for i := 0; i < 3; i++ {
		p.observe(t0, lateLimit+time.Millisecond)
		if p.active() {
			t.Fatal("pressure on after a single late wake-up")
		}
		p.observe(t0, 0)
	}
	for i := 0; i < lateStart; i++ {
		p.observe(t0, lateLimit+time.Millisecond)
	}
	if !p.active() {
		t.Fatalf("pressure off after %d wake-ups in a row past the limit", lateStart)
	}
	released := make(chan error, 1)
	go func() { released <- p.wait(context.Background()) }()
	select {
	case <-released:
		t.Fatal("a reader went on under pressure")
	case <-time.After(50 * time.Millisecond):
	}
	p.observe(t0.Add(holdFor-time.Millisecond), 0)
	if !p.active() {
		t.Fatal("pressure off before the hold passed")
	}
	p.observe(t0.Add(holdFor), 0)
	select {
	case err := <-released:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reader was not released when the pressure ended")
	}
	// Pressure that never ends holds a reader at most maxHold.
	p.observe(t0.Add(2*holdFor), time.Second)
	p.observe(t0.Add(2*holdFor), time.Second)
	start := time.Now()
	if err := p.wait(context.Background()); err != nil || time.Since(start) < maxHold/2 {
		t.Fatalf("wait under lasting pressure returned %v after %v, want nil after about %v", err, time.Since(start), maxHold)
	}
	// A waiter also leaves when its context ends.
	p.observe(t0.Add(2*holdFor), time.Second)
	if !p.active() {
		t.Fatal("pressure off while wake-ups stay late")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx); err == nil {
		t.Fatal("wait under pressure with a cancelled context returned nil")
	}
}

// The probe itself measures real scheduling delay: a goroutine that hogs
// nothing leaves it calm.
func TestPressureProbeIsCalmOnAnIdleNode(t *testing.T) {
	p := newPressure(zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(3 * probeEvery)
	// On a loaded CI machine a late wake-up is possible; then the pressure
	// must end within the hold once wake-ups are on time again.
	deadline := time.Now().Add(20 * time.Second)
	for p.active() {
		if time.Now().After(deadline) {
			t.Fatal("pressure stayed on for 20 s on an idle node")
		}
		time.Sleep(probeEvery)
	}
}
