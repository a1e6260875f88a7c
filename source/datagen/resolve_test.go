package datagen

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

func subscribeAll(t *testing.T, s *Source, n int) []*txnSubscription {
	t.Helper()
	tables, err := s.TablesAt(context.Background(), model.TsFromTime(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var subs []*txnSubscription
	for _, tn := range tables[:n] {
		sub, err := s.SubscribeTxns(context.Background(), tn, model.TsFromTime(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub.(*txnSubscription))
		t.Cleanup(func() { _ = sub.Close() })
	}
	return subs
}

// Quiet tables waiting for their next resolved ts share the source's
// timers: 300 subscriptions keep resolving while at most two boundaries per
// phase (the one being waited for, and the next one right after it fires)
// hold a timer.
func TestQuietTablesShareOneResolveTimer(t *testing.T) {
	s, err := Open("datagen://?tables=300&rate=0.001&resolve-interval=50ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	subs := subscribeAll(t, s, 300)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	resolves := make([]atomic.Int64, len(subs))
	last := make([]atomic.Uint64, len(subs))
	for i, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b, err := sub.Next(ctx)
				if err != nil {
					return
				}
				resolves[i].Add(1)
				last[i].Store(b.ResolvedTs)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	maxPending := 0
	for {
		maxPending = max(maxPending, s.pendingBoundaries())
		done := true
		for i := range resolves {
			done = done && resolves[i].Load() >= 5
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not every subscription resolved 5 times within 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if maxPending > 2*resolvePhases {
		t.Errorf("%d resolve timers pending at once for 300 quiet tables, want at most %d", maxPending, 2*resolvePhases)
	}
	// Resolved ts are on shared boundaries: tables that resolved in the
	// same round carry the same physical millisecond more often than not.
	seen := map[int64]int{}
	for i := range last {
		seen[model.TsTime(last[i].Load()).UnixMilli()]++
	}
	if len(seen) > len(subs)/2 {
		t.Errorf("300 tables' last resolved ts fall on %d distinct milliseconds; shared boundaries should bunch them", len(seen))
	}
}

// The interval grows once the subscriptions would hand out more than
// MaxResolvedPerSecond resolved ts, and shrinks back when they close.
func TestResolveIntervalGrowsWithSubscriptions(t *testing.T) {
	s, err := Open("datagen://?tables=4000&rate=0.001&resolve-interval=50ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if got := s.resolveInterval(); got != 50*time.Millisecond {
		t.Fatalf("interval with no subscription %v, want the configured 50ms", got)
	}
	subs := subscribeAll(t, s, 4000)
	// 4,000 subscriptions at 20,000 a second: one every 200 ms each.
	if got := s.resolveInterval(); got != 200*time.Millisecond {
		t.Fatalf("interval with 4,000 subscriptions %v, want 200ms", got)
	}
	for _, sub := range subs[:3500] {
		_ = sub.Close()
		_ = sub.Close() // closing twice counts once
	}
	if got := s.resolveInterval(); got != 50*time.Millisecond {
		t.Fatalf("interval with 500 subscriptions left %v, want 50ms", got)
	}
}
