package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/internal/freeport"
)

func TestToolsKafkaFakeRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--port", "-1"}, "--port"},
		{[]string{"--port", "70000"}, "--port"},
		{[]string{"--partitions", "0"}, "--partitions"},
		{[]string{"--partitions", "1001"}, "--partitions"},
		{[]string{"--duration", "-1s"}, "--duration"},
	} {
		r := run(t, nil, append([]string{"tools", "kafkafake"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", c.args, r.code, r.stderr, c.want)
		}
		if strings.Contains(r.stdout, "Sink URI") {
			t.Errorf("%v: started anyway: %s", c.args, r.stdout)
		}
	}
}

// The command serves Kafka's protocol: a topic is created on first use
// with --partitions partitions, and what a producer writes a consumer
// reads back.
func TestToolsKafkaFakeServesTheProtocol(t *testing.T) {
	ports, err := freeport.Pick(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	done := make(chan result, 1)
	go func() {
		done <- run(t, nil, "tools", "kafkafake", "--port", fmt.Sprint(ports[0]), "--partitions", "2", "--duration", "8s")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics("demo"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for p := int32(0); p < 2; p++ {
		rec := &kgo.Record{Topic: "demo", Partition: p, Value: []byte(fmt.Sprintf("row-%d", p))}
		for {
			if err := cl.ProduceSync(ctx, rec).FirstErr(); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("producing to the fake at %s: %v", addr, err)
			}
			time.Sleep(100 * time.Millisecond) // the fake may not listen yet
		}
	}
	got := map[string]int32{}
	for len(got) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[string(r.Value)] = r.Partition })
	}
	if got["row-0"] != 0 || got["row-1"] != 1 || len(got) != 2 {
		t.Fatalf("read back %v", got)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.stdout, "kafka://"+addr+"/") || !strings.Contains(r.stdout, "Stopped") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
