package owner

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
	"github.com/rs/zerolog"
)

// worldProposer applies commands straight to the world's FSM at increasing
// indexes, as a single-node Raft would.
type worldProposer struct{ w *world }

func (p worldProposer) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	p.w.mu.Lock()
	p.w.index++
	idx := p.w.index
	p.w.mu.Unlock()
	return p.w.f.Apply(rawLog(idx, b)).(*fsm.Result), nil
}

type fakeMembers struct {
	mu   sync.Mutex
	live map[model.CaptureID]CaptureLiveness
}

func (m *fakeMembers) Liveness() map[model.CaptureID]CaptureLiveness {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[model.CaptureID]CaptureLiveness{}
	for k, v := range m.live {
		out[k] = v
	}
	return out
}

func (m *fakeMembers) set(id model.CaptureID, l CaptureLiveness) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live[id] = l
}

// fakeSource is an upstream with a fixed table list and PD-like service
// safepoints.
type fakeSource struct {
	mu       sync.Mutex
	tables   []model.TableName
	services map[string]model.Ts
	calls    int
	gcErr    error // every service safepoint update fails with it
}

func (s *fakeSource) TablesAt(context.Context, model.Ts) ([]model.TableName, error) {
	return s.tables, nil
}
func (s *fakeSource) UpstreamID(context.Context) (string, error) { return "fake", nil }
func (s *fakeSource) SchemaAt(context.Context, model.TableName, model.Ts) (*model.TableSchema, error) {
	return nil, errors.New("not implemented")
}
func (s *fakeSource) SubscribeTxns(context.Context, model.TableName, model.Ts) (source.TxnSubscription, error) {
	return nil, errors.New("not implemented")
}
func (s *fakeSource) SubscribeDDL(_ context.Context, startTs model.Ts) (source.DDLSubscription, error) {
	return &quietDDL{ts: startTs}, nil
}

// quietDDL is a DDL stream with no DDL whose resolved ts keeps moving.
type quietDDL struct{ ts model.Ts }

func (q *quietDDL) Next(ctx context.Context) (source.DDLBatch, error) {
	select {
	case <-ctx.Done():
		return source.DDLBatch{}, ctx.Err()
	case <-time.After(10 * time.Millisecond):
	}
	q.ts = max(q.ts, model.TsFromTime(time.Now()))
	return source.DDLBatch{ResolvedTs: q.ts}, nil
}
func (q *quietDDL) Close() error                                    { return nil }
func (s *fakeSource) CurrentTs(context.Context) (model.Ts, error)   { return 0, nil }
func (s *fakeSource) GCSafepoint(context.Context) (model.Ts, error) { return 0, nil }
func (s *fakeSource) Close() error                                  { return nil }
func (s *fakeSource) UpdateServiceGCSafepoint(_ context.Context, id string, ttl time.Duration, sp model.Ts) (model.Ts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.gcErr != nil {
		return 0, s.gcErr
	}
	if ttl <= 0 {
		delete(s.services, id)
	} else {
		s.services[id] = sp
	}
	return 0, nil
}

func (s *fakeSource) service(id string) (model.Ts, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.services[id]
	return v, ok
}

type fakeUpstreams struct{ src *fakeSource }

func (u fakeUpstreams) Source(context.Context, string) (source.Upstream, error) { return u.src, nil }
func (u fakeUpstreams) SourceFor(context.Context, string, string) (source.Upstream, error) {
	return u.src, nil
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type runFixture struct {
	w       *world
	members *fakeMembers
	src     *fakeSource
	pokes   chan struct{}
	metrics *Metrics
	cancel  context.CancelFunc
	done    chan error
}

func startOwner(t *testing.T) *runFixture {
	t.Helper()
	w := newWorld(t)
	w.capture("a", "").capture("b", "")
	w.info(model.ChangefeedInfo{ID: cf, SourceURI: "fake://u", StartTs: 100})
	fx := &runFixture{
		w:       w,
		members: &fakeMembers{live: map[model.CaptureID]CaptureLiveness{"a": LivenessAlive, "b": LivenessAlive}},
		src:     &fakeSource{tables: tableNames(1, 2, 3, 4), services: map[string]model.Ts{}},
		pokes:   make(chan struct{}, 1),
		done:    make(chan error, 1),
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	fx.metrics = m
	ctx, cancel := context.WithCancel(context.Background())
	fx.cancel = cancel
	t.Cleanup(cancel)
	go func() {
		fx.done <- Run(ctx, Deps{
			NodeID:       "n1",
			Proposer:     worldProposer{w},
			State:        w.f,
			Members:      fx.members,
			Upstreams:    fakeUpstreams{fx.src},
			Config:       Config{ClusterID: "c1", TickInterval: 50 * time.Millisecond},
			Logger:       zerolog.Nop(),
			Metrics:      m,
			MemberEvents: fx.pokes,
		})
	}()
	return fx
}

func (fx *runFixture) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-fx.done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func TestRunEstablishesDispatchesAndIsDeposed(t *testing.T) {
	fx := startOwner(t)
	w := fx.w
	waitFor(t, "all tables dispatched two per capture", func() bool {
		l := loads(w.state(), cf)
		return len(assignment(w.state(), cf)) == 4 && l["a"] == 2 && l["b"] == 2
	})
	o, err := meta.ReadOwner(w.f)
	if err != nil || o.NodeID != "n1" {
		t.Fatalf("owner = %+v, %v", o, err)
	}
	if got := gaugeValue(t, fx.metrics.epoch); got != float64(o.Epoch) {
		t.Fatalf("epoch metric %v, want %d", got, o.Epoch)
	}
	waitFor(t, "the GC safepoint pushed and recorded", func() bool {
		sp, ok := fx.src.service("raftcdc-c1")
		rec := w.state().GC[GCKeyFor("fake")]
		return ok && sp == 100 && rec != nil && rec.Record.Safepoint == 100
	})

	// A processor reports progress: the watch wakes the owner.
	progress := map[model.CaptureID]model.Ts{"a": 200, "b": 250}
	running := map[model.CaptureID]map[model.TableID]model.Ts{"a": {}, "b": {}}
	for table, where := range assignment(w.state(), cf) {
		c := where[:1]
		running[c][table] = progress[c]
	}
	w.position(cf, "a", model.TaskPosition{ResolvedTs: 300, Running: running["a"]})
	w.position(cf, "b", model.TaskPosition{ResolvedTs: 300, Running: running["b"]})
	waitFor(t, "the checkpoint to follow the processors", func() bool {
		st := w.state().Changefeeds[cf].Status
		return st.CheckpointTs == 200 && st.ResolvedTs == 300
	})

	// Another node claims ownership: this one must notice and stop.
	w.mustApply(fsm.Command{Kind: fsm.KindClaimOwner, NodeID: "n2", UnixMilli: 1})
	if err := fx.wait(t); !errors.Is(err, ErrDeposed) {
		t.Fatalf("Run returned %v, want ErrDeposed", err)
	}
	if got := gaugeValue(t, fx.metrics.epoch); got != 0 {
		t.Fatalf("epoch metric %v after deposition, want 0", got)
	}
}

func TestRunEvictsOnMembershipChange(t *testing.T) {
	fx := startOwner(t)
	w := fx.w
	waitFor(t, "dispatch", func() bool { return len(assignment(w.state(), cf)) == 4 })
	running := map[model.TableID]model.Ts{}
	for table, where := range assignment(w.state(), cf) {
		if where[:1] == "b" {
			running[table] = 170
		}
	}
	w.position(cf, "b", model.TaskPosition{Running: running})
	fx.members.set("b", LivenessDead)
	fx.pokes <- struct{}{}
	waitFor(t, "b evicted and its tables moved to a", func() bool {
		s := w.state()
		return s.Captures["b"] == nil && loads(s, cf)["a"] == 4
	})
	got := assignment(w.state(), cf)
	for table := range running {
		if got[table] != "a@170" {
			t.Fatalf("table %d of the dead capture on %s, want a@170", table, got[table])
		}
	}
	fx.cancel()
	if err := fx.wait(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}

func TestRunStopsPromptlyOnCancel(t *testing.T) {
	fx := startOwner(t)
	waitFor(t, "establish", func() bool { return len(assignment(fx.w.state(), cf)) == 4 })
	start := time.Now()
	fx.cancel()
	if err := fx.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil on cancel", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Run took %s to stop", d)
	}
}

func TestRunValidatesDeps(t *testing.T) {
	if err := Run(context.Background(), Deps{}); err == nil {
		t.Fatal("Run without dependencies succeeded")
	}
}

// TestRunFailsChangefeedWhenGCUpdatesKeepFailing: the upstream refuses
// every service safepoint update; once that has lasted longer than the
// changefeed's gc-ttl, the changefeed fails with the upstream's error.
func TestRunFailsChangefeedWhenGCUpdatesKeepFailing(t *testing.T) {
	fx := startOwner(t)
	w := fx.w
	waitFor(t, "dispatch", func() bool { return len(assignment(w.state(), cf)) == 4 })
	// The clock starts before the upstream starts failing: the owner may
	// push (and so start counting the failure) as soon as the new gc-ttl
	// is written, before this goroutine runs again; taken after the write,
	// a loaded machine could put it later than the failure's start.
	began := time.Now()
	fx.src.mu.Lock()
	fx.src.gcErr = errors.New("pd: service unavailable")
	fx.src.mu.Unlock()
	info := *w.state().Changefeeds[cf].Info
	info.Config.GCTTL = "1s"
	w.info(info)
	waitFor(t, "the changefeed failed with the upstream's error", func() bool {
		i := w.state().Changefeeds[cf].Info
		return i.State == model.StateFailed && i.Error != nil && i.Error.Code == CodeGCUpdateFailed && strings.Contains(i.Error.Message, "pd: service unavailable")
	})
	if d := time.Since(began); d < time.Second {
		t.Fatalf("failed after %v, before its gc-ttl of 1s had passed", d)
	}
}

// TestResignAfterUpstreamFailures: an owner whose every upstream call
// fails, tick after tick, hands leadership to another voter; one success
// in between starts the count again.
func TestResignAfterUpstreamFailures(t *testing.T) {
	w := newWorld(t)
	w.capture("a", "")
	w.info(model.ChangefeedInfo{ID: cf, SourceURI: "fake://u", StartTs: 100})
	src := &fakeSource{tables: tableNames(1), services: map[string]model.Ts{}, gcErr: errors.New("connection refused")}
	resigned := make(chan time.Time, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	began := time.Now()
	go func() {
		done <- Run(ctx, Deps{
			NodeID: "n1", Proposer: worldProposer{w}, State: w.f,
			Members:   &fakeMembers{live: map[model.CaptureID]CaptureLiveness{"a": LivenessAlive}},
			Upstreams: fakeUpstreams{src},
			Config:    Config{ClusterID: "c1", TickInterval: 20 * time.Millisecond, ResignAfter: 3, GCRefreshInterval: 10 * time.Millisecond},
			Logger:    zerolog.Nop(),
			Resign: func(context.Context) error {
				resigned <- time.Now()
				return nil
			},
		})
	}()
	select {
	case at := <-resigned:
		// Failed pushes are retried once a second: three failing ticks take
		// at least two seconds.
		if d := at.Sub(began); d < 2*time.Second {
			t.Fatalf("resigned after %v, before three failing ticks could pass", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the owner did not resign while every upstream call failed")
	}
	// The upstream works again: no more resignations.
	src.mu.Lock()
	src.gcErr = nil
	src.mu.Unlock()
	select {
	case <-resigned: // at most one more, from a tick already counted
	case <-time.After(1500 * time.Millisecond):
	}
	select {
	case <-resigned:
		t.Fatal("resigned again with a working upstream")
	case <-time.After(4 * time.Second):
	}
	cancel()
	<-done
}
