//go:build bench

package bench

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// How late a goroutine runs after what wakes it, on a saturated process:
// woken by its own timer, or by the network poller (a pipe, a loopback TCP
// connection — how Raft's heartbeats arrive). The processor's CPU-pressure
// probe times its own ticker, which this shows to be blind to the delay
// Raft meets (NOTES.md). The load is wakeGoroutines goroutines woken
// together every 50 ms, each working 20 µs: 2 processors cannot keep up,
// as a node opening or running tens of thousands of tables cannot.

var (
	wakeGoroutines = flag.Int("wake-goroutines", 30000, "wake-up benchmark: goroutines of the load")
	wakeFor        = flag.Duration("wake-for", 10*time.Second, "wake-up benchmark: how long it samples")
)

func TestBenchWakeups(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	var mu sync.Mutex
	round := make(chan struct{})
	var sink atomic.Int64
	for i := 0; i < *wakeGoroutines; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				c := round
				mu.Unlock()
				select {
				case <-c:
				case <-stop:
					return
				}
				x, end := int64(0), time.Now().Add(20*time.Microsecond)
				for time.Now().Before(end) {
					x++
				}
				sink.Add(x)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
			case <-stop:
				return
			}
			mu.Lock()
			close(round)
			round = make(chan struct{})
			mu.Unlock()
		}
	}()

	// One probe byte in flight per channel: the next goes only once the
	// last was read, so a starved reader's whole delay is measured.
	type echo struct {
		sent atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
	}
	reader := func(e *echo, read func([]byte) error) {
		buf := make([]byte, 8)
		for read(buf) == nil {
			d := time.Since(time.Unix(0, e.sent.Load()))
			e.mu.Lock()
			e.lat = append(e.lat, d)
			e.mu.Unlock()
			e.sent.Store(0)
		}
	}
	var pipe, tcp echo
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	go reader(&pipe, func(b []byte) error { _, err := pr.Read(b); return err })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		reader(&tcp, func(b []byte) error { _, err := c.Read(b); return err })
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	send := func(e *echo, write func() error) {
		if e.sent.Load() != 0 {
			return
		}
		e.sent.Store(time.Now().UnixNano())
		if write() != nil {
			e.sent.Store(0)
		}
	}
	var ticks []time.Duration
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	last := time.Now()
	for end := time.Now().Add(*wakeFor); time.Now().Before(end); {
		<-tk.C
		now := time.Now()
		ticks = append(ticks, now.Sub(last)-50*time.Millisecond)
		last = now
		send(&pipe, func() error { _, err := pw.Write([]byte{1}); return err })
		send(&tcp, func() error { _, err := cc.Write([]byte{1}); return err })
	}
	report := func(what string, d []time.Duration) {
		fmt.Printf("RESULT wakeups goroutines=%d %s n=%d p50=%v p99=%v max=%v\n", *wakeGoroutines, what, len(d), pct(d, 0.5), pct(d, 0.99), pct(d, 1))
	}
	report("timer", ticks)
	pipe.mu.Lock()
	report("pipe", pipe.lat)
	pipe.mu.Unlock()
	tcp.mu.Lock()
	report("tcp", tcp.lat)
	tcp.mu.Unlock()
}
