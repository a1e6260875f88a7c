//go:build bench

package bench

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/codec/avro/avrotest"
	"github.com/raftcdc/raftcdc/integration"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/kafka"
	"github.com/raftcdc/raftcdc/source/datagen"
)

var (
	kafkaSeconds   = flag.Int("kafka-seconds", 10, "kafka throughput: seconds of datagen history to send per round")
	kafkaRounds    = flag.Int("kafka-rounds", 3, "kafka throughput: measured rounds per protocol")
	kafkaProtocols = flag.String("kafka-protocols", "canal-json,open-protocol,debezium,simple,avro", "kafka throughput: protocols to measure")
)

// kafkaHistory is every transaction of datagen v2's first seconds, per
// table: the same input for every protocol and round.
func kafkaHistory(t *testing.T, uri string, seconds int) (map[model.TableName][]*model.Txn, int) {
	h, err := datagen.ParseHistory(uri)
	if err != nil {
		t.Fatal(err)
	}
	from := h.EpochTs()
	upto := model.TsFromTime(model.TsTime(from).Add(time.Duration(seconds) * time.Second))
	out := map[model.TableName][]*model.Txn{}
	rows := 0
	for _, tn := range h.TablesAt(upto) {
		h.Txns(tn.ID, from, upto, func(txn *model.Txn) bool {
			out[tn] = append(out[tn], txn)
			rows += len(txn.Rows)
			return true
		})
	}
	return out, rows
}

// sinkRound writes the history through the Kafka sink (a 3-partition topic
// per table) and returns the messages it produced and the wall time from
// the first Write to the last acknowledged Flush.
func sinkRound(t *testing.T, brokers, protocol, params string, hist map[model.TableName][]*model.Txn) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := kafka.Open(ctx, fmt.Sprintf("kafka://%s/default?protocol=%s&partition-num=3&%s", brokers, protocol, params),
		kafka.WithDispatchers([]model.DispatchRule{{Matcher: []string{"*.*"}, Topic: "{schema}_{table}", Partition: model.PartitionIndexValue}}, false))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	type open struct {
		ts   sink.TableSink
		txns []*model.Txn
	}
	var tables []open
	for tn, txns := range hist {
		ts, err := s.OpenTable(ctx, tn, sink.TableOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, open{ts, txns})
	}
	start := time.Now()
	// One goroutine per table, as the processor runs table pipelines;
	// each Write is followed by a Flush covering it, as the processor does,
	// with up to 4096 rows per write (a datagen subscription's batch).
	errs := make(chan error, len(tables))
	for _, tb := range tables {
		go func(tb open) {
			for i := 0; i < len(tb.txns); {
				j, n := i, 0
				for j < len(tb.txns) && n < 4096 {
					n += len(tb.txns[j].Rows)
					j++
				}
				if err := tb.ts.Write(ctx, tb.txns[i:j]); err != nil {
					errs <- err
					return
				}
				if err := tb.ts.Flush(ctx, tb.txns[j-1].CommitTs); err != nil {
					errs <- err
					return
				}
				i = j
			}
			errs <- nil
		}(tb)
	}
	for range tables {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(start)
}

// collect reads every record of the sink's topics (for the bare
// producer), up to the end offsets the topics have now.
func collect(t *testing.T, brokers string, topics []string) []*kgo.Record {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	ends.Each(func(o kadm.ListedOffset) { want += int(o.Offset) })
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("collected %d of %d records", len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, &kgo.Record{Topic: "bare_" + r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value})
		})
	}
	return out
}

// bareRound produces the same records with a plain franz-go producer
// (acks=all, idempotent, manual partitions, the same batch limit and no
// compression, as the sink's defaults), as fast as it acknowledges them.
func bareRound(t *testing.T, brokers string, recs []*kgo.Record) time.Duration {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(10<<20), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The same topics as the sink's (3 partitions, max.message.bytes 10
	// MiB), created before the clock starts, as the sink's are.
	mmb := "10485760"
	seen := map[string]bool{}
	for _, r := range recs {
		if !seen[r.Topic] {
			seen[r.Topic] = true
			if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, map[string]*string{"max.message.bytes": &mmb}, r.Topic); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	errc := make(chan error, 1)
	for _, r := range recs {
		r := *r
		cl.Produce(ctx, &r, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	return time.Since(start)
}

// newKfake starts an in-process broker; every measured round gets a fresh
// one, so that neither side writes into a log the other has grown.
func newKfake(t *testing.T) *kfake.Cluster {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBenchKafkaThroughput: datagen v2's history through the Kafka sink
// into kfake, per protocol, against a bare franz-go producer sending the
// same messages, interleaved in one run. The broker runs in this process,
// so each side's CPU time includes the broker's share; both are reported,
// and the ratios are the medians over the rounds (each round pairs one run
// of each side, in alternating order, each on a fresh broker).
func TestBenchKafkaThroughput(t *testing.T) {
	const uri = "datagen://?tables=8&rate=5000"
	hist, rows := kafkaHistory(t, uri, *kafkaSeconds)
	var topics []string
	for tn := range hist {
		topics = append(topics, tn.Schema+"_"+tn.Table)
	}
	for _, p := range []struct{ name, params string }{
		{"canal-json", "enable-tidb-extension=true"},
		{"open-protocol", "max-batch-size=16"},
		{"debezium", ""},
		{"simple", ""},
		{"avro", ""},
	} {
		if !strings.Contains(","+*kafkaProtocols+",", ","+p.name+",") {
			continue
		}
		params := func() string {
			if p.name == "avro" {
				return "schema-registry=" + avrotest.Start(t).URL
			}
			return p.params
		}
		// An unmeasured sink round gives the messages the bare producer
		// sends.
		c := newKfake(t)
		pprof.Do(context.Background(), pprof.Labels("side", "warmup"), func(context.Context) { sinkRound(t, c.ListenAddrs()[0], p.name, params(), hist) })
		recs := collect(t, c.ListenAddrs()[0], topics)
		c.Close()
		msgs := len(recs)
		var ratios, cpuRatios []float64
		for round := 0; round < *kafkaRounds; round++ {
			var sinkD, bareD, sinkCPU, bareCPU time.Duration
			measureSink := func() {
				c := newKfake(t)
				defer c.Close()
				par := params()
				runtime.GC() // the last round's broker is garbage now, not during the measure
				cpu0 := cpuSelf()
				sinkD = sinkRound(t, c.ListenAddrs()[0], p.name, par, hist)
				sinkCPU = cpuSelf() - cpu0
			}
			measureBare := func() {
				c := newKfake(t)
				defer c.Close()
				runtime.GC()
				cpu0 := cpuSelf()
				bareD = bareRound(t, c.ListenAddrs()[0], recs)
				bareCPU = cpuSelf() - cpu0
			}
			// The sides carry pprof labels (side=sink|bare; the unmeasured
			// first round warmup), inherited by the goroutines each starts,
			// so that a -cpuprofile splits by side (pprof -tagfocus
			// side=sink). Unlabelled samples are the runtime's (GC) and
			// franz-go's connection goroutines, which start elsewhere.
			labelled := func(side string, f func()) {
				pprof.Do(context.Background(), pprof.Labels("side", side), func(context.Context) { f() })
			}
			if round%2 == 0 {
				labelled("sink", measureSink)
				labelled("bare", measureBare)
			} else {
				labelled("bare", measureBare)
				labelled("sink", measureSink)
			}
			sinkRate, bareRate := float64(msgs)/sinkD.Seconds(), float64(msgs)/bareD.Seconds()
			ratios = append(ratios, sinkRate/bareRate)
			cpuRatios = append(cpuRatios, bareCPU.Seconds()/sinkCPU.Seconds())
			fmt.Printf("RESULT kafka protocol=%s round=%d rows=%d messages=%d sink_msgs/s=%.0f sink_rows/s=%.0f sink_cpu/msg=%v bare_msgs/s=%.0f bare_cpu/msg=%v ratio=%.2f cpu-ratio=%.2f\n",
				p.name, round, rows, msgs, sinkRate, float64(rows)/sinkD.Seconds(), sinkCPU/time.Duration(msgs), bareRate, bareCPU/time.Duration(msgs),
				sinkRate/bareRate, bareCPU.Seconds()/sinkCPU.Seconds())
		}
		fmt.Printf("RESULT kafka protocol=%s median-ratio=%.2f median-cpu-ratio=%.2f (target >= 0.8)\n", p.name, median(ratios), median(cpuRatios))
	}
}

// TestBenchKafkaSteady samples the checkpoint lag of a changefeed at
// 20,000 rows/s (datagen v2, 100 tables × 200 rows/s) over three nodes into
// kfake (in this process, on loopback) with canal-json.
func TestBenchKafkaSteady(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := integration.StartCluster(t, buildBinary(t), 3, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn"}})
	cl.WaitForLeader(30 * time.Second)
	createFeed(t, cl, map[string]any{"id": "ksteady", "source_uri": "datagen://?tables=100&rate=200",
		"sink_uri": "kafka://" + c.ListenAddrs()[0] + "/cdc?protocol=canal-json&enable-tidb-extension=true&partition-num=3"})
	start := time.Now()
	integration.WaitFor(t, 120*time.Second, "every table replicating", func() bool {
		d, err := anyFeed(cl, "ksteady")
		return err == nil && cpOf(d) > model.TsFromTime(start)
	})
	time.Sleep(10 * time.Second)
	var lags []time.Duration
	end := time.Now().Add(*steadyDuration)
	for time.Now().Before(end) {
		d, err := anyFeed(cl, "ksteady")
		if err == nil && cpOf(d) != 0 {
			lags = append(lags, time.Since(model.TsTime(cpOf(d))))
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("RESULT kafka-steady tables=100 rows/s=20000 samples=%d lag_p50=%v lag_p99=%v lag_max=%v\n", len(lags),
		percentile(lags, 0.5).Round(time.Millisecond), percentile(lags, 0.99).Round(time.Millisecond), percentile(lags, 1).Round(time.Millisecond))
}
