//go:build bench

package bench

import (
	"bufio"
	"context"
	"encoding/gob"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/codec/avro/avrotest"
	"github.com/raftcdc/raftcdc/integration"
	"github.com/raftcdc/raftcdc/internal/freeport"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/kafka"
	"github.com/raftcdc/raftcdc/source/datagen"
)

var (
	// Three seconds are 120,000 rows: the broker and the bare side hold
	// every message of a round in memory (debezium's are ~15 KB with
	// their schema), and six seconds of debezium came to 19 GB here.
	kafkaSeconds   = flag.Int("kafka-seconds", 3, "kafka throughput: seconds of datagen history to send per round")
	kafkaRounds    = flag.Int("kafka-rounds", 3, "kafka throughput: measured rounds per protocol")
	kafkaWarm      = flag.Bool("kafka-warm", true, "kafka throughput: each side makes one unmeasured pass before the measured one")
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

// openBenchSink opens the Kafka sink the throughput benchmark writes
// through: a 3-partition topic per table, keyed by the handle. The caller
// closes it.
func openBenchSink(t *testing.T, brokers, protocol, params string) *kafka.Sink {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := kafka.Open(ctx, fmt.Sprintf("kafka://%s/default?protocol=%s&partition-num=3&%s", brokers, protocol, params),
		kafka.WithDispatchers([]model.DispatchRule{{Matcher: []string{"*.*"}, Topic: "{schema}_{table}", Partition: model.PartitionIndexValue}}, false))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sinkRound writes the history through the sink's table sinks (opened for
// the round, closed after it) and returns the wall time from the first
// Write to the last acknowledged Flush.
func sinkRound(t *testing.T, s *kafka.Sink, hist map[model.TableName][]*model.Txn) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
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
		defer ts.Close()
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
// (acks=all, idempotent, manual partitions, the same batch and request
// limits and no compression, as the sink's defaults), as fast as it
// acknowledges them. Without the sink's request cap the bare producer
// pays for regrowing 100 MiB request buffers too, and ran at 6–38 µs a
// message from run to run.
func openBareProducer(t *testing.T, brokers string, recs []*kgo.Record) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(10<<20), kgo.BrokerMaxWriteBytes(2*(10<<20)+1<<20),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
	return cl
}

func bareRound(t *testing.T, cl *kgo.Client, recs []*kgo.Record) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
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
// same messages, interleaved in one run. Each measured side runs in a
// process of its own (this test binary again, TestBenchKafkaSide), against
// a broker in a process of its own (`raftcdc tools kafkafake`), fresh for
// every side of every round: run in one process, the side that ran second
// in a round was 2–3× cheaper than the first (fresh memory, the other
// side's garbage and the broker's heap were all one process's), which
// decided the ratio more than either side did. The ratios are medians over
// the rounds (each pairs one run of each side, in alternating order).
func TestBenchKafkaThroughput(t *testing.T) {
	const uri = "datagen://?tables=8&rate=5000"
	bin := buildBinary(t)
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
		params := p.params
		if p.name == "avro" {
			params = "schema-registry=" + avrotest.Start(t).URL
		}
		// An unmeasured sink round, here, gives the messages the bare
		// producer sends.
		c := newKfake(t)
		s := openBenchSink(t, c.ListenAddrs()[0], p.name, params)
		sinkRound(t, s, hist)
		s.Close()
		recs := collect(t, c.ListenAddrs()[0], topics)
		c.Close()
		recFile := filepath.Join(t.TempDir(), "records.gob")
		writeRecords(t, recFile, recs)
		msgs := len(recs)
		env := []string{kafkaSideProtocol + "=" + p.name, kafkaSideParams + "=" + params,
			kafkaSideSeconds + "=" + strconv.Itoa(*kafkaSeconds), kafkaSideRecords + "=" + recFile, kafkaSideURI + "=" + uri}
		if *kafkaWarm {
			env = append(env, kafkaSideWarm+"=1")
		}
		var ratios, cpuRatios []float64
		for round := 0; round < *kafkaRounds; round++ {
			order := []string{"sink", "bare"}
			if round%2 == 1 {
				order = []string{"bare", "sink"}
			}
			res := map[string]sideResult{}
			for _, side := range order {
				res[side] = runKafkaSide(t, bin, side, env)
			}
			sk, br := res["sink"], res["bare"]
			sinkRate, bareRate := float64(msgs)/sk.wall.Seconds(), float64(msgs)/br.wall.Seconds()
			ratios = append(ratios, sinkRate/bareRate)
			cpuRatios = append(cpuRatios, br.cpu.Seconds()/sk.cpu.Seconds())
			fmt.Printf("RESULT kafka protocol=%s round=%d rows=%d messages=%d sink_msgs/s=%.0f sink_rows/s=%.0f sink_cpu/msg=%v broker_cpu/msg=%v bare_msgs/s=%.0f bare_cpu/msg=%v broker_cpu/msg=%v ratio=%.2f cpu-ratio=%.2f (load %s)\n",
				p.name, round, rows, msgs, sinkRate, float64(rows)/sk.wall.Seconds(), sk.cpu/time.Duration(msgs), sk.brokerCPU/time.Duration(msgs),
				bareRate, br.cpu/time.Duration(msgs), br.brokerCPU/time.Duration(msgs), sinkRate/bareRate, br.cpu.Seconds()/sk.cpu.Seconds(), loadavg())
		}
		fmt.Printf("RESULT kafka protocol=%s median-ratio=%.2f median-cpu-ratio=%.2f (target >= 0.8)\n", p.name, median(ratios), median(cpuRatios))
	}
}

// The environment of a TestBenchKafkaSide process.
const (
	kafkaSide         = "RAFTCDC_BENCH_KAFKA_SIDE" // sink or bare
	kafkaSideBroker   = "RAFTCDC_BENCH_KAFKA_BROKER"
	kafkaSideProtocol = "RAFTCDC_BENCH_KAFKA_PROTOCOL"
	kafkaSideParams   = "RAFTCDC_BENCH_KAFKA_PARAMS"
	kafkaSideSeconds  = "RAFTCDC_BENCH_KAFKA_SECONDS"
	kafkaSideURI      = "RAFTCDC_BENCH_KAFKA_URI"
	kafkaSideRecords  = "RAFTCDC_BENCH_KAFKA_RECORDS"
	kafkaSideWarm     = "RAFTCDC_BENCH_KAFKA_WARM" // 1: one unmeasured pass first
)

type sideResult struct{ wall, cpu, brokerCPU time.Duration }

// runKafkaSide starts a fresh broker process and one side's process
// against it, and returns the side's wall and CPU time and the broker's
// CPU time over the side's run.
func runKafkaSide(t *testing.T, bin, side string, env []string) sideResult {
	addr, broker, stop := startKafkaFake(t, bin)
	defer stop()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchKafkaSide$", "-test.count=1", "-test.timeout=20m")
	cmd.Env = append(os.Environ(), append([]string{kafkaSide + "=" + side, kafkaSideBroker + "=" + addr}, env...)...)
	var out, errOut strings.Builder // written by two copying goroutines
	cmd.Stderr = &errOut
	var res sideResult
	// The broker's CPU from when the side begins measuring to when it
	// ends: the side prints a line at each point.
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(&out, pw)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		var b0 time.Duration
		var perr error
		defer func() {
			_, _ = io.Copy(io.Discard, pr) // never leave the child blocked on a write
			done <- perr
		}()
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "SIDE-START":
				b0 = integration.ProcCPU(broker.Process.Pid)
			case strings.HasPrefix(line, "SIDE-RESULT "):
				res.brokerCPU = integration.ProcCPU(broker.Process.Pid) - b0
				var wall, cpu int64
				if _, err := fmt.Sscanf(line, "SIDE-RESULT wall=%d cpu=%d", &wall, &cpu); err != nil {
					perr = fmt.Errorf("%q: %v", line, err)
					return
				}
				res.wall, res.cpu = time.Duration(wall), time.Duration(cpu)
			}
		}
	}()
	err := cmd.Run()
	pw.Close()
	if perr := <-done; perr != nil {
		t.Fatal(perr)
	}
	if err != nil || res.wall == 0 {
		t.Fatalf("%s side: %v\n%s%s", side, err, out.String(), errOut.String())
	}
	return res
}

// startKafkaFake starts `raftcdc tools kafkafake` (3 partitions a topic)
// on a free port and waits until it listens.
func startKafkaFake(t *testing.T, bin string) (addr string, broker *exec.Cmd, stop func()) {
	ports, err := freeport.Pick(1)
	if err != nil {
		t.Fatal(err)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	broker = exec.Command(bin, "tools", "kafkafake", "--port", strconv.Itoa(ports[0]), "--partitions", "3")
	broker.Stdout, broker.Stderr = io.Discard, os.Stderr
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	stop = func() {
		_ = broker.Process.Signal(syscall.SIGTERM)
		_ = broker.Wait()
	}
	integration.WaitFor(t, 30*time.Second, "the Kafka fake listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, broker, stop
}

// TestBenchKafkaSide is one measured side of TestBenchKafkaThroughput, run
// in its own process by it; alone it does nothing.
func TestBenchKafkaSide(t *testing.T) {
	side := os.Getenv(kafkaSide)
	if side == "" {
		t.Skip("run by TestBenchKafkaThroughput")
	}
	broker := os.Getenv(kafkaSideBroker)
	var measure func() time.Duration
	switch side {
	case "sink":
		seconds, err := strconv.Atoi(os.Getenv(kafkaSideSeconds))
		if err != nil {
			t.Fatal(err)
		}
		hist, _ := kafkaHistory(t, os.Getenv(kafkaSideURI), seconds)
		s := openBenchSink(t, broker, os.Getenv(kafkaSideProtocol), os.Getenv(kafkaSideParams))
		defer s.Close()
		measure = func() time.Duration { return sinkRound(t, s, hist) }
	case "bare":
		recs := readRecords(t, os.Getenv(kafkaSideRecords))
		cl := openBareProducer(t, broker, recs)
		measure = func() time.Duration { return bareRound(t, cl, recs) }
	default:
		t.Fatalf("%s=%q", kafkaSide, side)
	}
	if os.Getenv(kafkaSideWarm) == "1" {
		// A node's sink runs for hours: its buffers are grown and its
		// memory faulted in. One unmeasured pass, into the same broker,
		// gives each side that state.
		measure()
	}
	runtime.GC() // building the input is not measured, nor its garbage
	fmt.Println("SIDE-START")
	cpu0 := cpuSelf()
	wall := measure()
	fmt.Printf("SIDE-RESULT wall=%d cpu=%d\n", wall.Nanoseconds(), (cpuSelf() - cpu0).Nanoseconds())
}

type gobRecord struct {
	Topic      string
	Partition  int32
	Key, Value []byte
}

func writeRecords(t *testing.T, path string, recs []*kgo.Record) {
	out := make([]gobRecord, len(recs))
	for i, r := range recs {
		out[i] = gobRecord{r.Topic, r.Partition, r.Key, r.Value}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := gob.NewEncoder(f).Encode(out); err != nil {
		t.Fatal(err)
	}
}

func readRecords(t *testing.T, path string) []*kgo.Record {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var in []gobRecord
	if err := gob.NewDecoder(f).Decode(&in); err != nil {
		t.Fatal(err)
	}
	out := make([]*kgo.Record, len(in))
	for i, r := range in {
		out[i] = &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value}
	}
	return out
}

// TestBenchKafkaSteady samples the checkpoint lag of a changefeed at
// 20,000 rows/s (datagen v2, 100 tables × 200 rows/s) over three nodes into
// a Kafka fake in a process of its own (`raftcdc tools kafkafake`) with
// canal-json, and reports each process's share of the CPU over the
// window, and how fast the checkpoint advanced against the wall clock
// (1.00: keeping up).
func TestBenchKafkaSteady(t *testing.T) {
	bin := buildBinary(t)
	addr, broker, stop := startKafkaFake(t, bin)
	defer stop()
	cl := integration.StartCluster(t, bin, 3, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn"}})
	cl.WaitForLeader(30 * time.Second)
	createFeed(t, cl, map[string]any{"id": "ksteady", "source_uri": "datagen://?tables=100&rate=200",
		"sink_uri": "kafka://" + addr + "/cdc?protocol=canal-json&enable-tidb-extension=true&partition-num=3"})
	start := time.Now()
	integration.WaitFor(t, 120*time.Second, "every table replicating", func() bool {
		d, err := anyFeed(cl, "ksteady")
		return err == nil && cpOf(d) > model.TsFromTime(start)
	})
	time.Sleep(10 * time.Second)
	cpu := func() (nodes [3]time.Duration, b time.Duration) {
		for i := range nodes {
			nodes[i] = cl.CPUTime(i)
		}
		return nodes, integration.ProcCPU(broker.Process.Pid)
	}
	// Rows the Kafka sinks had acknowledged, over every node.
	written := func() float64 {
		var n float64
		for i := 0; i < 3; i++ {
			v, _, _ := cl.Metric(i, "raftcdc_kafka_rows_total")
			n += v
		}
		return n
	}
	var lags []time.Duration
	var cp0, cp1 model.Ts
	n0, b0 := cpu()
	r0 := written()
	w0 := time.Now()
	end := w0.Add(*steadyDuration)
	for time.Now().Before(end) {
		d, err := anyFeed(cl, "ksteady")
		if err == nil && cpOf(d) != 0 {
			lags = append(lags, time.Since(model.TsTime(cpOf(d))))
			if cp0 == 0 {
				cp0 = cpOf(d)
			}
			cp1 = cpOf(d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n1, b1 := cpu()
	wall := time.Since(w0)
	r1 := written()
	cores := func(d time.Duration) float64 { return d.Seconds() / wall.Seconds() }
	fmt.Printf("RESULT kafka-steady tables=100 rows/s=20000 samples=%d lag_p50=%v lag_p99=%v lag_max=%v checkpoint_rate=%.2f written_rows/s=%.0f cores: node1=%.2f node2=%.2f node3=%.2f broker=%.2f (load %s)\n", len(lags),
		percentile(lags, 0.5).Round(time.Millisecond), percentile(lags, 0.99).Round(time.Millisecond), percentile(lags, 1).Round(time.Millisecond),
		model.TsTime(cp1).Sub(model.TsTime(cp0)).Seconds()/wall.Seconds(), (r1-r0)/wall.Seconds(),
		cores(n1[0]-n0[0]), cores(n1[1]-n0[1]), cores(n1[2]-n0[2]), cores(b1-b0), loadavg())
}
