package integration

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
)

// TestLargeTransactionStaysWithinMemoryQuota: one PostgreSQL transaction of
// 2,000,000 rows (about 250 MB as rows in memory, far above the 64 MiB
// quota) meets a sink slowed to 1,000 rows/s. The stream's reader stops at
// the quota, and what one transaction needs beyond it is spilled to disk.
// Then the sink is let go at full speed, and the transaction arrives whole:
// exactly 2,000,000 more rows written, none lost, none twice. Every node's
// RSS is sampled over the transaction's whole life, from its commit until
// it is flushed — while the sink crawls and while the spill is drained at
// full speed — and no sample is above the quota plus 300 MiB. It takes one
// to two minutes, most of it PostgreSQL writing and decoding the
// transaction and the drain; it is in the default run.
func TestLargeTransactionStaysWithinMemoryQuota(t *testing.T) {
	const rows = 2_000_000
	const quota = 64 << 20
	const limit = quota + 300<<20
	pg := testserver.StartPostgres(t, testserver.PostgresLogicalReplication())
	pg.CreateDatabase(t, "big")
	pg.Exec(t, "big", `CREATE TABLE wide (id int PRIMARY KEY, v bigint NOT NULL, pad varchar(100))`)

	c := StartCluster(t, binPath, 3, ClusterOptions{})
	c.WaitForOwner(60*time.Second, 0)
	source := pg.SuperConnString("big")
	cfg := &model.ChangefeedConfig{MemoryQuota: quota}
	c.CreateChangefeed(api.ChangefeedRequest{ID: "big", SourceURI: source, SinkURI: "blackhole://?rate=1000", Config: cfg})
	c.WaitCheckpointAbove("big", model.TsFromTime(time.Now()), 2*time.Minute)

	pg.Exec(t, "big", fmt.Sprintf(`INSERT INTO wide SELECT g, g * 7, repeat('x', 60 + g %% 40) FROM generate_series(1, %d) g`, rows))
	committed := model.TsFromTime(time.Now())
	began := time.Now()

	// One sampler covers the transaction's whole life, so that no moment
	// between the phases goes unsampled; the phase it files a sample under
	// moves from throttled to drain when the changefeed is resumed at full
	// speed.
	s := &rssSampler{c: c}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.run(stop, 250*time.Millisecond)
	}()
	stopped := false
	stopSampler := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopSampler()

	// The throttled phase: from the commit until the server has decoded
	// the transaction and the stream has pressed on the quota (spilled),
	// and 20 s beyond, at the sink's pace.
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		if s.spilled() > 0 && time.Until(deadline) > 20*time.Second {
			deadline = time.Now().Add(20 * time.Second)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if s.spilled() == 0 {
		t.Fatal("nothing was spilled: the transaction never pressed on the quota, so the test proves nothing")
	}

	// Nothing of the transaction was flushed at 1,000 rows/s (it is flushed
	// whole or not at all). Full speed now: pause, unthrottle, resume.
	// Reads and requests are asked again while they fail: the nodes are
	// busy decoding and spilling the transaction, and a consistent read or
	// a request can outlast the client's timeout. A pause or resume whose
	// answer was lost may have been applied, which feedAction allows for.
	d := c.DetailEventually("big", time.Minute)
	before := d.Count
	feedAction(t, c, http.MethodPost, "/api/v1/changefeeds/big/pause", nil)
	// The owner carries the pause out later; the update needs it done.
	c.WaitPaused("big", time.Minute)
	feedAction(t, c, http.MethodPut, "/api/v1/changefeeds/big", api.ChangefeedRequest{SinkURI: "blackhole://"})
	feedAction(t, c, http.MethodPost, "/api/v1/changefeeds/big/resume", nil)
	resumed := time.Now()
	s.drain()
	spilledThrottled := s.spilled()
	c.WaitCheckpointAbove("big", committed, 10*time.Minute)
	stopSampler()

	throttled, drained := s.peaks()
	// The resumed changefeed reads the transaction again from its
	// checkpoint, so it is spilled again on the way to the sink.
	t.Logf("peak RSS with a %d MiB quota: %s while throttled (%v from the commit), %s while draining at full speed (%v from the resume until flushed); %d MiB spilled by the resume, %d MiB in all; %d samples",
		quota>>20, throttled, resumed.Sub(began).Round(time.Second), drained, time.Since(resumed).Round(time.Second), int64(spilledThrottled)>>20, int64(s.spilled())>>20, s.samples())
	if throttled.rss == 0 || drained.rss == 0 {
		t.Fatalf("a phase has no RSS sample: throttled %s, drain %s", throttled, drained)
	}
	for _, p := range []struct {
		phase string
		peak  rssPeak
	}{{"throttled", throttled}, {"drain", drained}} {
		if p.peak.rss > limit {
			t.Errorf("%s phase: peak RSS %s is above the quota + 300 MiB (%d MiB)", p.phase, p.peak, limit>>20)
		}
	}

	d = c.DetailEventually("big", time.Minute)
	t.Logf("rows written %d before the resume, %d after", before, d.Count)
	if got := d.Count - before; got != rows {
		t.Fatalf("the resumed changefeed wrote %d rows, want exactly the %d of the transaction", got, rows)
	}
}

// rssPeak is the highest RSS sample of a phase and the node it came from.
type rssPeak struct {
	rss  int64
	node int
	at   time.Duration // since the sampler started
}

func (p rssPeak) String() string {
	if p.rss == 0 {
		return "no sample"
	}
	return fmt.Sprintf("%d MiB (node %d, %v in)", p.rss>>20, p.node, p.at.Round(time.Second))
}

// rssSampler reads every node's RSS and spilled bytes at an interval and
// keeps the peaks of two phases: throttled, then drain once drain is called.
type rssSampler struct {
	c *Cluster

	mu       sync.Mutex
	draining bool
	peak     [2]rssPeak // throttled, drain
	spill    float64
	n        int
}

func (s *rssSampler) run(stop <-chan struct{}, every time.Duration) {
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s.sample(time.Since(start))
		select {
		case <-stop:
			// A last sample, at the moment the transaction is known flushed.
			s.sample(time.Since(start))
			return
		case <-tick.C:
		}
	}
}

func (s *rssSampler) sample(at time.Duration) {
	// The phase is the one at the round's start, so that a round begun
	// before the resume is not filed under the drain.
	s.mu.Lock()
	phase := 0
	if s.draining {
		phase = 1
	}
	s.mu.Unlock()
	for i := range s.c.Procs {
		rss := s.c.RSS(i)
		spilled, ok, err := s.c.Metric(i, "raftcdc_processor_spilled_bytes_total")
		s.mu.Lock()
		if rss > s.peak[phase].rss {
			s.peak[phase] = rssPeak{rss: rss, node: i, at: at}
		}
		if rss > 0 {
			s.n++
		}
		if err == nil && ok && spilled > s.spill {
			s.spill = spilled
		}
		s.mu.Unlock()
	}
}

func (s *rssSampler) drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

func (s *rssSampler) spilled() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spill
}

func (s *rssSampler) samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *rssSampler) peaks() (throttled, drain rssPeak) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[0], s.peak[1]
}
