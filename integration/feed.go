package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink/flushlog"
	"github.com/raftcdc/raftcdc/verify"
)

// CreateChangefeed creates a changefeed through any serving node, retrying
// while the cluster has no leader to forward to. A 409 changefeed_exists
// after an attempt whose outcome was unknown is that attempt's create when
// the changefeed there starts where this request asked (every test creates
// each ID once).
func (c *Cluster) CreateChangefeed(req api.ChangefeedRequest) {
	c.t.Helper()
	c.Request(http.MethodPost, "/api/v1/changefeeds", req, func(code int, body []byte) (bool, error) {
		if code != http.StatusConflict || !strings.Contains(string(body), api.CodeChangefeedExists) {
			return false, nil
		}
		d, err := c.Detail(req.ID)
		if err != nil {
			return false, err
		}
		if req.StartTs != 0 && d.Info.StartTs != req.StartTs {
			c.t.Fatalf("create %s: %d %s, and the changefeed there starts at %d, not %d", req.ID, code, body, d.Info.StartTs, req.StartTs)
		}
		return true, nil
	})
}

// Request sends an admin request through any serving node, again while
// none takes it (a 503, no answer). An attempt whose answer was lost (the
// client's timeout on a loaded machine) or that got a 503 may still have
// been applied, and the retry then meets its effect: applied says whether
// such an answer means the request is done (an error: ask again). Any
// other answer over 299 fails the test.
func (c *Cluster) Request(method, path string, body any, applied func(code int, body []byte) (bool, error)) {
	c.t.Helper()
	unsure := false
	Eventually(c.t, 30*time.Second, method+" "+path, func() (bool, string) {
		last := "no serving node"
		for _, i := range c.Up() {
			code, b, err := c.Do(i, method, path, body)
			switch {
			case err != nil:
				last, unsure = err.Error(), true
				continue
			case code < 300:
				return true, ""
			case code == http.StatusServiceUnavailable:
				last, unsure = string(b), true
				continue
			}
			if unsure {
				done, err := applied(code, b)
				if err != nil {
					last = err.Error()
					continue
				}
				if done {
					c.t.Logf("%s %s: %d %s after an attempt whose outcome was unknown; taking it as applied", method, path, code, b)
					return true, ""
				}
			}
			c.t.Fatalf("%s %s: %d %s", method, path, code, b)
		}
		return false, last
	})
}

// Changefeed reads a changefeed from process i; consistent makes it a
// linearizable read through the leader.
func (c *Cluster) Changefeed(ctx context.Context, i int, id string, consistent bool) (api.ChangefeedDetail, error) {
	var d api.ChangefeedDetail
	path := "/api/v1/changefeeds/" + id
	if consistent {
		path += "?consistent=true"
	}
	err := c.GetJSONCtx(ctx, i, path, &d)
	return d, err
}

// Detail reads a changefeed consistently from the first serving node that
// answers.
func (c *Cluster) Detail(id string) (api.ChangefeedDetail, error) {
	err := errNoNode
	for _, i := range c.Up() {
		ctx, cancel := Ctx(5 * time.Second)
		var d api.ChangefeedDetail
		d, err = c.Changefeed(ctx, i, id, true)
		cancel()
		if err == nil {
			return d, nil
		}
	}
	return api.ChangefeedDetail{}, err
}

// DetailEventually is Detail asked again while it fails: right after an
// election, or on a loaded machine, a consistent read can get a 503 or
// outlast the client's timeout, which says nothing about the changefeed.
func (c *Cluster) DetailEventually(id string, timeout time.Duration) api.ChangefeedDetail {
	c.t.Helper()
	var d api.ChangefeedDetail
	Eventually(c.t, timeout, "a consistent read of "+id, func() (bool, string) {
		var err error
		if d, err = c.Detail(id); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return d
}

// WaitPaused waits until the owner has carried out a pause: the state is
// stopped and no admin job is pending. A pause request only records the
// job; from here on the checkpoint holds and the changefeed can be updated.
func (c *Cluster) WaitPaused(id string, timeout time.Duration) {
	c.t.Helper()
	Eventually(c.t, timeout, id+" paused by the owner", func() (bool, string) {
		d, err := c.Detail(id)
		if err != nil {
			return false, err.Error()
		}
		return d.Info.State == model.StateStopped && d.Info.AdminJob == model.AdminNone, fmt.Sprintf("state %s, admin job %q", d.Info.State, d.Info.AdminJob)
	})
}

// WaitCheckpointAbove waits until a consistent read shows the checkpoint
// above ts and returns it.
func (c *Cluster) WaitCheckpointAbove(id string, ts model.Ts, timeout time.Duration) model.Ts {
	c.t.Helper()
	var cp model.Ts
	WaitFor(c.t, timeout, fmt.Sprintf("checkpoint of %s above %d", id, ts), func() bool {
		d, err := c.Detail(id)
		if err != nil {
			return false
		}
		cp = d.CheckpointTs()
		return cp > ts
	})
	return cp
}

// DoubleAssigned lists tables held by more than one capture.
func DoubleAssigned(d api.ChangefeedDetail) []string {
	var out []string
	for table, cs := range d.Assignments() {
		if len(cs) > 1 {
			out = append(out, fmt.Sprintf("table %d on %v", table, cs))
		}
	}
	sort.Strings(out)
	return out
}

// WaitAllAssignedOnce waits until each of the changefeed's tables is held
// by exactly one of the given captures (any capture when none are given) and
// none is an orphan, and returns the per-capture counts.
func (c *Cluster) WaitAllAssignedOnce(id string, tables int, captures []string, timeout time.Duration) map[string]int {
	c.t.Helper()
	allowed := map[string]bool{}
	for _, cp := range captures {
		allowed[cp] = true
	}
	var counts map[string]int
	Eventually(c.t, timeout, fmt.Sprintf("every table of %s on exactly one capture of %v", id, captures), func() (bool, string) {
		d, err := c.Detail(id)
		if err != nil {
			return false, err.Error()
		}
		a := d.Assignments()
		counts = map[string]int{}
		for _, cs := range a {
			if len(cs) != 1 || (len(allowed) > 0 && !allowed[cs[0]]) {
				return false, fmt.Sprintf("assignments %v", a)
			}
			counts[cs[0]]++
		}
		if d.Status == nil || len(a) != tables || len(d.Status.Orphans) > 0 {
			return false, fmt.Sprintf("%d of %d tables assigned (%v), status %+v", len(a), tables, counts, d.Status)
		}
		return true, ""
	})
	return counts
}

// StorageSinkURI is the storage sink the scenarios write to: canal-json
// with commit ts in every message (what the verifier reads), flushed often
// so that checkpoints follow closely.
func StorageSinkURI(dir string) string {
	return "file://" + dir + "?protocol=canal-json&enable-tidb-extension=true&flush-interval=200ms"
}

// Verify compares the storage sink in dir with datagen's state at cp and
// fails the test unless every row is there with the right values, every
// DDL up to cp is there once, and the schemas agree.
func Verify(t testing.TB, src, dir string, start, cp model.Ts) verify.StateReport {
	t.Helper()
	return VerifyDownstream(t, src, StorageSinkURI(dir), start, cp)
}

// VerifyDownstream is Verify for any downstream URI the verifier reads.
func VerifyDownstream(t testing.TB, src, downstream string, start, cp model.Ts) verify.StateReport {
	t.Helper()
	// A 30-minute chaos run leaves tens of thousands of files; reading them
	// on a loaded machine took longer than 5 minutes once.
	ctx, cancel := Ctx(20 * time.Minute)
	defer cancel()
	rep, err := verify.CompareState(ctx, verify.StateParams{SourceURI: src, Downstream: downstream, StartTs: start, CheckpointTs: cp})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("verification failed:\n%s", rep.String())
	}
	if rep.Expected == 0 {
		t.Fatal("verification covered no rows")
	}
	t.Logf("verified %d rows at %d (since %d): %d change events, %d duplicates, %d DDLs", rep.Expected, cp, start, rep.Events, rep.Duplicates, rep.DDLs)
	return rep
}

// Sample is one checkpoint read from one node.
type Sample struct {
	At         time.Time
	Node       int
	Generation int
	Checkpoint model.Ts
}

// Sampler reads a changefeed's checkpoint from every serving node at a fixed
// interval, each node on its own goroutine so that a paused node cannot
// delay the others.
type Sampler struct {
	c      *Cluster
	id     string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// last is the latest sample per (node, process generation); a node that
	// restarts rebuilds its state from the log and starts a new sequence.
	last       map[[2]int]Sample
	decreases  []string
	reads      int
	max        model.Ts
	maxAt      time.Time
	longest    time.Duration
	longestEnd time.Time
	started    time.Time
	// stalls are the gaps between increases of the highest checkpoint seen
	// that were longer than stallThreshold.
	stalls durations
}

// stallThreshold is the gap between checkpoint increases that counts as a
// stall: several owner ticks and flush intervals with no progress.
const stallThreshold = time.Second

// SampleCheckpoints starts a sampler; stop it with Stop.
func (c *Cluster) SampleCheckpoints(id string, every time.Duration) *Sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{c: c, id: id, cancel: cancel, last: map[[2]int]Sample{}, started: time.Now()}
	for i := range c.Procs {
		s.wg.Add(1)
		go s.run(ctx, i, every)
	}
	c.t.Cleanup(s.Stop)
	return s
}

func (s *Sampler) run(ctx context.Context, i int, every time.Duration) {
	defer s.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !s.c.Serving(i) {
			continue
		}
		gen := s.c.Generation(i)
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		d, err := s.c.Changefeed(rctx, i, s.id, false)
		cancel()
		if err != nil || d.Status == nil || !d.Status.Initialized {
			continue
		}
		s.observe(Sample{At: time.Now(), Node: i, Generation: gen, Checkpoint: d.Status.CheckpointTs})
	}
}

func (s *Sampler) observe(x Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	key := [2]int{x.Node, x.Generation}
	if prev, ok := s.last[key]; ok && x.Checkpoint < prev.Checkpoint {
		s.decreases = append(s.decreases, fmt.Sprintf("%s (start %d): checkpoint %d at %s, then %d at %s",
			s.c.Procs[x.Node].ID, x.Generation, prev.Checkpoint, prev.At.Format("15:04:05.000"), x.Checkpoint, x.At.Format("15:04:05.000")))
	}
	s.last[key] = x
	if x.Checkpoint > s.max {
		if !s.maxAt.IsZero() {
			gap := x.At.Sub(s.maxAt)
			if gap > s.longest {
				s.longest, s.longestEnd = gap, x.At
			}
			if gap > stallThreshold {
				s.stalls = append(s.stalls, gap)
			}
		}
		s.max, s.maxAt = x.Checkpoint, x.At
	}
}

// SamplerReport is what a sampler saw.
type SamplerReport struct {
	Reads     int
	Decreases []string
	// Max is the highest checkpoint any node showed.
	Max model.Ts
	// LongestStall is the longest time the highest checkpoint seen did not
	// move, including the stretch still open at the time of the report.
	LongestStall time.Duration
	StallEnd     time.Time
	// Stalls lists every gap longer than a second between increases.
	Stalls durations
}

// Report returns what the sampler has seen so far.
func (s *Sampler) Report() SamplerReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := SamplerReport{Reads: s.reads, Decreases: append([]string(nil), s.decreases...), Max: s.max, LongestStall: s.longest, StallEnd: s.longestEnd,
		Stalls: append(durations(nil), s.stalls...)}
	if !s.maxAt.IsZero() {
		if open := time.Since(s.maxAt); open > r.LongestStall {
			r.LongestStall, r.StallEnd = open, time.Now()
		}
	}
	return r
}

// ResetStall forgets the stalls seen so far (for a phase that allows one).
func (s *Sampler) ResetStall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.longest = 0
	s.stalls = nil
	s.maxAt = time.Now()
}

// Stop ends sampling; safe to call more than once.
func (s *Sampler) Stop() {
	s.cancel()
	s.wg.Wait()
}

// Check fails the test if any node's checkpoint went down, or if no sample
// was taken at all (a sampler that reads nothing proves nothing).
func (r SamplerReport) Check(t testing.TB) {
	t.Helper()
	if r.Reads == 0 {
		t.Fatal("checkpoint sampler read nothing")
	}
	if len(r.Decreases) > 0 {
		t.Fatalf("checkpoint decreased %d times:\n%s", len(r.Decreases), strings.Join(r.Decreases, "\n"))
	}
}

// durations summarises a list of durations.
type durations []time.Duration

func (d durations) percentile(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append(durations(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(p*float64(len(s)-1) + 0.5)
	return s[k]
}

func (d durations) max() time.Duration { return d.percentile(1) }

func (d durations) String() string {
	if len(d) == 0 {
		return "none"
	}
	return fmt.Sprintf("n=%d p50=%v max=%v", len(d), d.percentile(0.5).Round(time.Millisecond), d.max().Round(time.Millisecond))
}

// Captures lists the captures from the first serving node.
func (c *Cluster) Captures() ([]api.CaptureView, error) {
	var out struct {
		Captures []api.CaptureView `json:"captures"`
	}
	err := errNoNode
	for _, i := range c.Up() {
		if err = c.GetJSON(i, "/api/v1/captures?consistent=true", &out); err == nil {
			return out.Captures, nil
		}
	}
	return nil, err
}

// WaitCaptureAlive waits until capture id is registered with an
// incarnation other than notInc (0 for any) and gossip calls it alive, and
// returns its incarnation.
func (c *Cluster) WaitCaptureAlive(id string, notInc uint64, timeout time.Duration) uint64 {
	c.t.Helper()
	var inc uint64
	Eventually(c.t, timeout, "capture "+id+" registered and alive", func() (bool, string) {
		cs, err := c.Captures()
		if err != nil {
			return false, err.Error()
		}
		for _, cv := range cs {
			if cv.ID == id {
				inc = cv.Incarnation
				return cv.Liveness == "alive" && cv.Incarnation != notInc, fmt.Sprintf("%+v", cv)
			}
		}
		return false, fmt.Sprintf("not among %+v", cs)
	})
	return inc
}

// Incarnation is capture id's registered incarnation, 0 if none.
func (c *Cluster) Incarnation(id string) uint64 {
	cs, err := c.Captures()
	if err != nil {
		return 0
	}
	for _, cv := range cs {
		if cv.ID == id {
			return cv.Incarnation
		}
	}
	return 0
}

// CheckWriters reads the flush logs of every node (FlushDir) and fails the
// test if any table was flushed by two captures (or two incarnations of
// one) at the same time; it returns what it found. A cluster that does not
// record flushes fails the test too: the check must not pass by default.
func (c *Cluster) CheckWriters() flushlog.Report {
	c.t.Helper()
	if c.FlushDir == "" {
		c.t.Fatal("the cluster does not record flushes: start its nodes with --record-flushes and set FlushDir")
	}
	rep, err := flushlog.Check(c.FlushDir)
	if err != nil {
		c.t.Fatalf("reading the flush logs: %v", err)
	}
	if rep.Flushes == 0 {
		c.t.Fatalf("the flush logs hold no flush: %s", rep)
	}
	if len(rep.Overlaps) > 0 {
		c.t.Fatalf("two writers on one table: %s", rep)
	}
	return rep
}

// DrainCapture asks the owner to drain capture id (POST
// /api/v1/captures/{id}/drain) and waits until the capture holds no table.
func (c *Cluster) DrainCapture(id string, timeout time.Duration) {
	c.t.Helper()
	Eventually(c.t, timeout, "capture "+id+" drained", func() (bool, string) {
		var res api.DrainCaptureResponse
		for _, i := range c.Up() {
			code, body, err := c.Do(i, http.MethodPost, "/api/v1/captures/"+id+"/drain", nil)
			if err != nil || code != http.StatusAccepted {
				continue
			}
			if err := json.Unmarshal(body, &res); err != nil {
				return false, err.Error()
			}
			return res.TablesRemaining == 0, fmt.Sprintf("%d tables remaining", res.TablesRemaining)
		}
		return false, "no node accepted the drain request"
	})
}
