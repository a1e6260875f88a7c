package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/codec/avro/avrotest"
	"github.com/raftcdc/raftcdc/connector"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
	"github.com/raftcdc/raftcdc/source/datagen"
	"github.com/raftcdc/raftcdc/verify"
)

// TestKafkaEveryProtocolThroughFailures: three raftcdc processes replicate
// datagen v2 (every column type, multi-table transactions, a DDL every 5 s
// cycling through every kind) into Kafka — one changefeed per protocol,
// each to its own kfake broker on loopback, a 3-partition topic per table
// ({schema}_{table}, partitioned by the handle key). The leader is killed
// and a capture is frozen with SIGSTOP while they run. Then a consumer
// reads each broker's topics, rebuilds the tables, and the verifier finds
// them equal to datagen's state at the changefeed's checkpoint, with every
// DDL delivered and every key's versions in commit order in its partition
// (replays after the failures aside).
func TestKafkaEveryProtocolThroughFailures(t *testing.T) {
	epoch := time.Now().Add(-2 * time.Second).UTC().Format(time.RFC3339)
	src := "datagen://?tables=3&rate=30&keys=40&txn-rows=2&txn-tables=2&ddl-every=5s&row-size=16&epoch=" + epoch
	c := StartCluster(t, binPath, 3, ClusterOptions{ExtraArgs: []string{"--log-level", "info"}})
	c.WaitForOwner(30*time.Second, 0)
	start := model.TsFromTime(time.Now().Add(-time.Second))
	dispatch := []model.DispatchRule{{Matcher: []string{"*.*"}, Topic: "{schema}_{table}", Partition: model.PartitionIndexValue}}

	type feed struct {
		id, protocol, sinkURI string
	}
	var feeds []feed
	for _, p := range []struct{ protocol, params string }{
		{"canal-json", "enable-tidb-extension=true"},
		{"open-protocol", "max-batch-size=8"},
		{"debezium", "enable-tidb-extension=true"},
		{"simple", ""},
		{"avro", "enable-tidb-extension=true"},
	} {
		broker, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(broker.Close)
		params := p.params
		if p.protocol == "avro" {
			params += "&schema-registry=" + avrotest.Start(t).URL
		}
		f := feed{id: "kafka-" + strings.ReplaceAll(p.protocol, "-", ""), protocol: p.protocol,
			sinkURI: fmt.Sprintf("kafka://%s/cdc?protocol=%s&partition-num=3&%s", broker.ListenAddrs()[0], p.protocol, params)}
		c.CreateChangefeed(api.ChangefeedRequest{ID: f.id, SourceURI: src, SinkURI: f.sinkURI, StartTs: start,
			Config: &model.ChangefeedConfig{Dispatchers: dispatch}})
		feeds = append(feeds, f)
	}
	for _, f := range feeds {
		c.WaitCheckpointAbove(f.id, start, advanceBound)
	}

	// The leader (and owner) is killed; its tables move.
	o := c.WaitForOwner(ownerBound, 0)
	inc := c.Incarnation(o.ID)
	c.Kill(o.Index, syscall.SIGKILL)
	killed := time.Now()
	c.WaitForOwner(ownerBound, o.Epoch)
	for _, f := range feeds {
		c.WaitCheckpointAbove(f.id, model.TsFromTime(killed), advanceBound)
	}
	c.Restart(o.Index)
	c.WaitCaughtUp(rejoinBound)
	c.WaitCaptureAlive(o.ID, inc, rejoinBound)

	// A capture that is not the owner is frozen past the fence, then
	// continued: it must stop writing, and its tables run elsewhere.
	owner := c.WaitForOwner(ownerBound, 0)
	frozen := (owner.Index + 1) % len(c.Procs)
	c.Pause(frozen)
	paused := time.Now()
	time.Sleep(6 * time.Second)
	for _, f := range feeds {
		c.WaitCheckpointAbove(f.id, model.TsFromTime(paused), advanceBound)
	}
	c.Resume(frozen)

	// Let it run past a few more DDLs, then verify each changefeed at its
	// checkpoint.
	after := model.TsFromTime(time.Now().Add(6 * time.Second))
	hist := historyOf(t, src)
	for _, f := range feeds {
		// datagen's history has no table for 5 s in every 90 (all three
		// dropped in one round of DDLs, then created one by one): a
		// checkpoint there has nothing to compare, and a comparison costs
		// minutes under -race on a loaded machine, so the checkpoint is
		// taken past such a stretch, and compared again further on if its
		// tables still hold no row.
		for attempt := 1; ; attempt++ {
			cp := c.WaitCheckpointAbove(f.id, after, advanceBound)
			for len(hist.TablesAt(cp)) == 0 {
				cp = c.WaitCheckpointAbove(f.id, model.TsFromTime(model.TsTime(cp).Add(time.Second)), advanceBound)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			rep, err := verify.CompareState(ctx, verify.StateParams{SourceURI: src, Downstream: f.sinkURI, StartTs: start, CheckpointTs: cp})
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", f.protocol, err)
			}
			if rep.OK() && rep.Expected == 0 && attempt < 4 {
				t.Logf("%s: no table at checkpoint %d (%s); comparing again later", f.protocol, cp, rep)
				after = model.TsFromTime(time.Now().Add(5 * time.Second))
				continue
			}
			// Failovers replay rows (at least once), which may bring a
			// key's older versions after newer ones; a version first
			// delivered after a newer one would break per-key order.
			if !rep.OK() || rep.Expected == 0 || rep.Matched != rep.Expected || rep.DDLs == 0 || rep.DDLsFound != rep.DDLs || rep.Reordered != 0 {
				t.Errorf("%s: %s", f.protocol, rep)
				break
			}
			t.Logf("%s: %s", f.protocol, rep)
			break
		}
	}
}

// historyOf is the datagen history a datagen URI describes: what the
// verifier compares against.
func historyOf(t *testing.T, src string) *datagen.History {
	t.Helper()
	h, err := datagen.ParseHistory(src)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// requireDatagenV2 checks that the cluster's datagen source serves datagen
// v2's history (which the verifier compares against) rather than the first
// round's rows; the SQL scenarios call it. It skips, saying why, otherwise.
func requireDatagenV2(t *testing.T, src string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := connector.NewPool()
	defer p.Close()
	up, err := p.Source(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	h := historyOf(t, src)
	now := model.TsFromTime(time.Now())
	tn := h.TablesAt(now)[0]
	want, err := h.SchemaAt(tn.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	span, ok := up.(source.SpanSource)
	if !ok {
		t.Fatalf("the connector's datagen source %T is not a span source", up)
	}
	got, err := span.SchemaAt(ctx, tn, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Columns) != len(want.Columns) {
		t.Skipf("the cluster's datagen source serves the first round's rows (%d columns), not datagen v2's history (%d columns) that the verifier compares with: connector.SourceFor still wraps the legacy generator; this test runs once it serves datagen v2", len(got.Columns), len(want.Columns))
	}
}
