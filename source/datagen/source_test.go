package datagen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

func mustOpen(t *testing.T, uri string, opts ...Option) *Source {
	t.Helper()
	s, err := Open(uri, opts...)
	if err != nil {
		t.Fatalf("Open(%q): %v", uri, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func subscribe(t *testing.T, s *Source, id model.TableID, startTs model.Ts) source.TxnSubscription {
	t.Helper()
	tb := model.TableName{ID: id, Schema: s.hist.cfg.Schema, Table: fmt.Sprintf("t%04d", id)}
	sub, err := s.SubscribeTxns(context.Background(), tb, startTs)
	if err != nil {
		t.Fatalf("SubscribeTxns(%s, %d): %v", tb, startTs, err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

// drain reads until the resolved ts reaches upto, checking the subscription
// contract on every batch.
func drain(t *testing.T, sub source.TxnSubscription, startTs, upto model.Ts) []*model.Txn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var txns []*model.Txn
	resolved := startTs
	for resolved < upto {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(b.Txns) == 0 && b.ResolvedTs <= resolved {
			t.Fatalf("batch with no transactions and resolved ts %d not above %d", b.ResolvedTs, resolved)
		}
		if b.ResolvedTs < resolved {
			t.Fatalf("resolved ts went backwards: %d after %d", b.ResolvedTs, resolved)
		}
		rows := 0
		for _, txn := range b.Txns {
			if txn.CommitTs <= resolved {
				t.Fatalf("transaction at %d after resolved ts %d", txn.CommitTs, resolved)
			}
			if txn.CommitTs > b.ResolvedTs {
				t.Fatalf("transaction at %d above its batch's resolved ts %d", txn.CommitTs, b.ResolvedTs)
			}
			rows += len(txn.Rows)
		}
		// The cap is checked before each transaction is added.
		if len(b.Txns) > 0 && rows-len(b.Txns[len(b.Txns)-1].Rows) >= MaxBatchRows {
			t.Fatalf("batch of %d rows went on past the cap of %d", rows, MaxBatchRows)
		}
		txns = append(txns, b.Txns...)
		resolved = b.ResolvedTs
	}
	return txns
}

// sameTxns compares two streams transaction by transaction.
func sameTxns(a, b []*model.Txn) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameTxn(a[i], b[i]) {
			return false
		}
	}
	return true
}

// historyTxns is the pure history's stream of a table in (after, upto].
func historyTxns(s *Source, table model.TableID, after, upto model.Ts) []*model.Txn {
	var out []*model.Txn
	s.hist.Txns(table, after, upto, func(txn *model.Txn) bool { out = append(out, txn); return true })
	return out
}

func rowCount(txns []*model.Txn) int {
	n := 0
	for _, txn := range txns {
		n += len(txn.Rows)
	}
	return n
}

func TestSourceDeterministicAcrossInstances(t *testing.T) {
	now := time.Now()
	const uri = "datagen://?tables=3&rate=3000&seed=42"
	a := mustOpen(t, uri, WithClock(newFakeClock(now)))
	b := mustOpen(t, uri, WithClock(newFakeClock(now)))
	start := model.TsFromTime(now.Add(-5 * time.Second))
	nowTs := model.TsFromTime(now)
	ra := drain(t, subscribe(t, a, 2, start), start, nowTs)
	rb := drain(t, subscribe(t, b, 2, start), start, nowTs)
	if n := rowCount(ra); n < 14990 {
		t.Fatalf("%d rows for 5s at 3000/s", n)
	}
	if !sameTxns(ra, rb) {
		t.Fatal("two instances of the same URI produced different streams")
	}
	// And the subscription is exactly the pure history's output.
	if want := historyTxns(a, 2, start, nowTs); !sameTxns(ra, want) {
		t.Fatalf("subscription has %d transactions, history %d", len(ra), len(want))
	}
}

func TestSourceLiveResolvedTs(t *testing.T) {
	s := mustOpen(t, "datagen://?tables=1&rate=200&resolve-interval=5ms")
	start, err := s.CurrentTs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start -= ticksPerSecond / 2
	sub := subscribe(t, s, 1, start)
	// Run live for a while: rows keep arriving in order with resolved ts
	// following wall time.
	upto := model.TsFromTime(time.Now().Add(300 * time.Millisecond))
	txns := drain(t, sub, start, upto)
	want := historyTxns(s, 1, start, txns[len(txns)-1].CommitTs)
	if !sameTxns(txns, want) {
		t.Fatalf("live stream has %d transactions, history %d", len(txns), len(want))
	}
	if lag := time.Since(model.TsTime(upto)); lag > 5*time.Second {
		t.Fatalf("resolved ts lags wall time by %v", lag)
	}
}

func TestSourceGCSafepoint(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	clock := newFakeClock(t0)
	s := mustOpen(t, "datagen://?gc-life=10m", WithClock(clock))
	gc := func() model.Ts {
		t.Helper()
		v, err := s.GCSafepoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	update := func(id string, ttl time.Duration, sp model.Ts) model.Ts {
		t.Helper()
		v, err := s.UpdateServiceGCSafepoint(ctx, id, ttl, sp)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ts := model.TsFromTime

	if got, want := gc(), ts(t0.Add(-10*time.Minute)); got != want {
		t.Fatalf("initial GC safepoint %d, want now-gc-life %d", got, want)
	}
	clock.Advance(time.Minute)
	if got, want := gc(), ts(t0.Add(-9*time.Minute)); got != want {
		t.Fatalf("GC safepoint %d after a minute, want %d", got, want)
	}

	// A service safepoint holds GC back while its TTL lasts.
	hold := ts(t0.Add(-8*time.Minute - 30*time.Second))
	if got := update("cdc", 5*time.Minute, hold); got != ts(t0.Add(-9*time.Minute)) {
		t.Fatalf("update returned %d, want the GC safepoint in force", got)
	}
	clock.Advance(3 * time.Minute) // t0+4m: now-gc-life is t0-6m
	if got := gc(); got != hold {
		t.Fatalf("GC safepoint %d, want it held at the service safepoint %d", got, hold)
	}
	// Moving the service safepoint forward lets GC follow it.
	hold2 := ts(t0.Add(-7 * time.Minute))
	if got := update("cdc", 5*time.Minute, hold2); got != hold2 {
		t.Fatalf("update returned %d, want %d", got, hold2)
	}
	// A lower request does not lower GC and is answered with the safepoint in force.
	if got := update("other", time.Hour, hold); got != hold2 {
		t.Fatalf("update below the GC safepoint returned %d, want %d", got, hold2)
	}
	if got := gc(); got != hold2 {
		t.Fatalf("GC safepoint moved to %d after a lower request, want %d", got, hold2)
	}

	// The TTL expires: GC jumps to now-gc-life.
	clock.Advance(5*time.Minute + time.Second) // t0+9m1s
	if got, want := gc(), ts(t0.Add(-time.Minute+time.Second)); got != want {
		t.Fatalf("GC safepoint %d after the service TTL expired, want %d", got, want)
	}

	// Never backwards, even when the clock is.
	before := gc()
	clock.Set(t0)
	if got := gc(); got != before {
		t.Fatalf("GC safepoint went from %d to %d when the clock moved back", before, got)
	}
	clock.Set(t0.Add(9*time.Minute + time.Second))

	// ttl <= 0 removes the service.
	clock.Advance(time.Minute) // t0+10m1s
	held := gc()
	update("cdc", time.Hour, held)
	clock.Advance(2 * time.Minute)
	if got := gc(); got != held {
		t.Fatalf("GC safepoint %d, want it held at %d", got, held)
	}
	if got, want := update("cdc", 0, 0), ts(t0.Add(2*time.Minute+time.Second)); got != want {
		t.Fatalf("removing the service returned %d, want now-gc-life %d", got, want)
	}
	if _, err := s.UpdateServiceGCSafepoint(ctx, "", time.Minute, gc()); err == nil {
		t.Fatal("empty service ID accepted")
	}

	// Subscribing below the safepoint loses the snapshot; at it, it works.
	cur := gc()
	tables, err := s.TablesAt(ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	tb := tables[0]
	_, err = s.SubscribeTxns(ctx, tb, cur-1)
	if !errors.Is(err, source.ErrSnapshotLost) {
		t.Fatalf("Subscribe below the GC safepoint: %v, want ErrSnapshotLost", err)
	}
	for _, want := range []string{tb.String(), strconv.FormatUint(cur-1, 10), strconv.FormatUint(cur, 10)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	sub, err := s.SubscribeTxns(ctx, tb, cur)
	if err != nil {
		t.Fatalf("Subscribe at the GC safepoint: %v", err)
	}
	sub.Close()
}

func TestSubscriptionUnblocks(t *testing.T) {
	s := mustOpen(t, "datagen://?rate=0.001&resolve-interval=1m")
	now, _ := s.CurrentTs(context.Background())
	next := func(sub source.TxnSubscription, ctx context.Context) <-chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := sub.Next(ctx)
			ch <- err
		}()
		return ch
	}

	sub := subscribe(t, s, 1, now-1)
	// The first call hands out the resolved ts right away; the next one
	// waits a resolve interval.
	if err := <-next(sub, context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := next(sub, ctx)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}

	done = next(sub, context.Background())
	sub.Close()
	if err := <-done; err == nil {
		t.Fatal("Next after Close returned no error")
	}

	sub2 := subscribe(t, s, 2, now-1)
	if err := <-next(sub2, context.Background()); err != nil {
		t.Fatal(err)
	}
	done = next(sub2, context.Background())
	s.Close()
	if err := <-done; err == nil {
		t.Fatal("Next after the source closed returned no error")
	}
	if _, err := s.TablesAt(context.Background(), now); err == nil {
		t.Fatal("TablesAt on a closed source returned no error")
	}
}
