package causality

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

type write struct {
	key int
	val int // -1 deletes
}

type txn struct {
	id     int
	writes []write
}

func (t txn) keys() []uint64 {
	out := make([]uint64, len(t.writes))
	for i, w := range t.writes {
		out[i] = uint64(w.key)*0x9e3779b97f4a7c15 + 1
	}
	return out
}

// randomTxns makes n transactions over nkeys keys; each writes 1–4 keys
// (possibly the same key twice) with values unique per transaction.
func randomTxns(r *rand.Rand, n, nkeys int) []txn {
	out := make([]txn, n)
	for i := range out {
		ws := make([]write, 1+r.IntN(4))
		for j := range ws {
			v := i*10 + j
			if r.IntN(5) == 0 {
				v = -1
			}
			ws[j] = write{key: r.IntN(nkeys), val: v}
		}
		out[i] = txn{id: i, writes: ws}
	}
	return out
}

func applySerial(txns []txn) map[int]int {
	st := map[int]int{}
	for _, t := range txns {
		for _, w := range t.writes {
			if w.val < 0 {
				delete(st, w.key)
			} else {
				st[w.key] = w.val
			}
		}
	}
	return st
}

// runParallel adds every transaction (as a source would, in commit order,
// while workers already run) and applies them with the given number of
// workers that yield and sleep at random inside a transaction. It records,
// per key, the order in which transactions touched it.
func runParallel(t *testing.T, seed uint64, txns []txn, workers int) (map[int]int, map[int][]int) {
	t.Helper()
	d := New[txn](64) // hashes folded: collisions are part of what is tested
	var mu sync.Mutex
	st := map[int]int{}
	order := map[int][]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var finished sync.WaitGroup
	finished.Add(len(txns))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				// Batches of ready transactions of one group, as the SQL
				// sink's workers take them.
				batch, err := d.NextBatch(ctx, nil, func(txn) int { return 1 }, 1+r.IntN(4))
				if err != nil {
					return
				}
				for _, n := range batch {
					for _, wr := range n.Item.writes {
						if r.IntN(3) == 0 {
							runtime.Gosched()
						}
						if r.IntN(50) == 0 {
							time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
						}
						mu.Lock()
						if wr.val < 0 {
							delete(st, wr.key)
						} else {
							st[wr.key] = wr.val
						}
						if o := order[wr.key]; len(o) == 0 || o[len(o)-1] != n.Item.id {
							order[wr.key] = append(o, n.Item.id)
						}
						mu.Unlock()
					}
				}
				for _, n := range batch {
					d.Done(n)
					finished.Done()
				}
			}
		}(w)
	}
	for _, tx := range txns {
		d.Add(tx, uint64(tx.id%3), tx.keys())
	}
	waitDone := make(chan struct{})
	go func() { finished.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-ctx.Done():
		t.Fatalf("seed %d: transactions never all finished (a lost wake-up or a dependency cycle)", seed)
	}
	d.Close()
	wg.Wait()
	return st, order
}

// TestParallelExecutionEqualsSerial is the property: whatever the
// interleaving the workers produce, the final state equals applying the
// transactions one by one in commit order, and every key sees the
// transactions that touch it in commit order.
func TestParallelExecutionEqualsSerial(t *testing.T) {
	iterations := 200
	if testing.Short() {
		iterations = 40
	}
	for i := 0; i < iterations; i++ {
		seed := uint64(i) + 1
		r := rand.New(rand.NewPCG(seed, 7))
		nkeys := 1 + r.IntN(40) // from one hot key to a spread
		txns := randomTxns(r, 50+r.IntN(150), nkeys)
		workers := []int{1, 2, 4, 16}[r.IntN(4)]
		want := applySerial(txns)
		got, order := runParallel(t, seed, txns, workers)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("seed %d (%d txns, %d keys, %d workers): parallel state\n%v\nserial state\n%v", seed, len(txns), nkeys, workers, got, want)
		}
		for k, ids := range order {
			for j := 1; j < len(ids); j++ {
				if ids[j] < ids[j-1] {
					t.Fatalf("seed %d: key %d saw transaction %d after %d", seed, k, ids[j], ids[j-1])
				}
			}
		}
	}
}

func TestDisjointTransactionsAreReadyTogether(t *testing.T) {
	d := New[int](0)
	a := d.Add(1, 0, []uint64{10, 11})
	b := d.Add(2, 0, []uint64{12})
	c := d.Add(3, 0, []uint64{11, 13}) // conflicts with a
	if a.Waited || b.Waited || !c.Waited {
		t.Fatalf("waited: a=%v b=%v c=%v, want false false true", a.Waited, b.Waited, c.Waited)
	}
	if got := d.Pending(); got != 2 {
		t.Fatalf("%d ready before any finished, want 2 (a and b)", got)
	}
	ctx := context.Background()
	n1, _ := d.Next(ctx)
	n2, _ := d.Next(ctx)
	if n1 != a || n2 != b {
		t.Fatalf("ready order %d, %d; want 1, 2", n1.Item, n2.Item)
	}
	if d.Pending() != 0 {
		t.Fatal("c was ready before a finished")
	}
	d.Done(a)
	if n, _ := d.Next(ctx); n != c {
		t.Fatalf("after a finished, got %v, want c", n)
	}
}

func TestNextBatchTakesItsGroupOnly(t *testing.T) {
	d := New[string](0)
	for i, item := range []string{"a1", "b1", "a2", "b2", "a3"} {
		d.Add(item, uint64(item[0]), []uint64{uint64(i)})
	}
	ctx := context.Background()
	one := func(string) int { return 1 }
	batch, err := d.NextBatch(ctx, nil, one, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := items(batch); got != "[a1 a2 a3]" {
		t.Fatalf("batched %s, want [a1 a2 a3]", got)
	}
	if d.Pending() != 2 {
		t.Fatalf("%d left ready, want b1 and b2", d.Pending())
	}
	if batch, _ = d.NextBatch(ctx, nil, one, 10); items(batch) != "[b1 b2]" {
		t.Fatalf("left %s, want [b1 b2] in order", items(batch))
	}
	if d.Pending() != 0 {
		t.Fatal("something left")
	}
}

// The first transaction is taken whatever its size; the rest only while
// the total stays within max.
func TestNextBatchStopsAtItsSize(t *testing.T) {
	d := New[int](0)
	for i, size := range []int{300, 100, 100, 50, 7} {
		d.Add(size, 0, []uint64{uint64(i)})
	}
	ctx := context.Background()
	id := func(n int) int { return n }
	var got []string
	for d.Pending() > 0 {
		b, err := d.NextBatch(ctx, nil, id, 256)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, items(b))
	}
	if fmt.Sprint(got) != "[[300] [100 100 50] [7]]" {
		t.Fatalf("batches %v, want [[300] [100 100 50] [7]]", got)
	}
}

// Workers that wake together for one group's ready transactions each take
// a full batch; taking turns instead (one transaction each, then more)
// split 2,000 transactions into ~16 batches of ~125.
func TestWorkersWokenTogetherTakeFullBatches(t *testing.T) {
	for round := 0; round < 20; round++ {
		d := New[int](0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		sizes := make(chan int, 64)
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					b, err := d.NextBatch(ctx, nil, func(int) int { return 1 }, 256)
					if err != nil {
						return
					}
					sizes <- len(b)
				}
			}()
		}
		items := make([]int, 2000)
		d.AddAll(0, items, func(i int) []uint64 { return []uint64{uint64(i)} })
		var got []int
		for n := 0; n < 2000; {
			s := <-sizes
			got = append(got, s)
			n += s
		}
		cancel()
		wg.Wait()
		if len(got) != 8 {
			t.Fatalf("round %d: 2,000 ready transactions went out in %d batches %v; want 8 (7 of 256 and one of 208)", round, len(got), got)
		}
	}
}

func items[T any](b []*Node[T]) string {
	var out []T
	for _, n := range b {
		out = append(out, n.Item)
	}
	return fmt.Sprint(out)
}

func TestNextServesGroupsInTurn(t *testing.T) {
	d := New[string](0)
	for i, item := range []string{"a1", "a2", "a3", "b1", "c1"} {
		d.Add(item, uint64(item[0]), []uint64{uint64(i)})
	}
	var got []string
	for d.Pending() > 0 {
		n, _ := d.Next(context.Background())
		got = append(got, n.Item)
	}
	if fmt.Sprint(got) != "[a1 b1 c1 a2 a3]" {
		t.Fatalf("served %v, want the groups in turn: [a1 b1 c1 a2 a3]", got)
	}
}

func TestOneKeySerialisesInAddOrder(t *testing.T) {
	// A table without a usable key is hashed to one key: its transactions
	// run strictly one at a time, in order.
	d := New[int](0)
	nodes := make([]*Node[int], 5)
	for i := range nodes {
		nodes[i] = d.Add(i, 0, []uint64{42})
	}
	ctx := context.Background()
	for i := range nodes {
		n, err := d.Next(ctx)
		if err != nil || n.Item != i {
			t.Fatalf("step %d: got %v %v", i, n, err)
		}
		if d.Pending() != 0 {
			t.Fatalf("step %d: a later transaction is ready while %d runs", i, i)
		}
		d.Done(n)
	}
}

func TestNextEndsOnCloseAndContext(t *testing.T) {
	d := New[int](0)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { _, err := d.Next(ctx); errs <- err }()
	cancel()
	if err := <-errs; err != context.Canceled {
		t.Fatalf("cancelled Next returned %v", err)
	}
	go func() { _, err := d.Next(context.Background()); errs <- err }()
	d.Close()
	if err := <-errs; err != ErrClosed {
		t.Fatalf("Next after Close returned %v", err)
	}
}

// Done forgets the hashes of a finished transaction: the detector holds
// only what is in flight, and no finished transaction stays reachable.
func TestDoneForgetsTheKeys(t *testing.T) {
	d := New[int](0)
	a := d.Add(1, 0, []uint64{1, 2, 3})
	b := d.Add(2, 0, []uint64{3, 4})
	d.Done(a)
	if len(d.last) != 2 || d.last[3] != b || d.last[4] != b {
		t.Fatalf("after a finished, the detector holds %v; want keys 3 and 4 of b", d.last)
	}
	d.Done(b)
	if len(d.last) != 0 {
		t.Fatalf("after both finished, the detector holds %v", d.last)
	}
}

// Distinct hashes never wait for each other, however many are in flight
// (folded into slots, thousands in flight made one in ten wait).
func TestDistinctKeysNeverWait(t *testing.T) {
	d := New[int](0)
	for i := range 100_000 {
		if n := d.Add(i, uint64(i%4), []uint64{uint64(i) * 0x9E3779B97F4A7C15}); n.Waited {
			t.Fatalf("transaction %d waited with a key of its own", i)
		}
	}
	if d.Pending() != 100_000 {
		t.Fatalf("%d ready, want all 100,000", d.Pending())
	}
}
