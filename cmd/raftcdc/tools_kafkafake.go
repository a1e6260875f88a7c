package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
)

// kafkaFakeOpts are the flags of `raftcdc tools kafkafake`.
type kafkaFakeOpts struct {
	port       int
	partitions int
	duration   time.Duration
}

func newKafkaFakeCmd() *cobra.Command {
	var o kafkaFakeOpts
	cmd := &cobra.Command{
		Use:   "kafkafake",
		Short: "Run a Kafka protocol fake (franz-go's kfake) to try the kafka:// sink",
		Long: `Starts franz-go's kfake, the broker raftcdc's Kafka tests write to: one
broker speaking Kafka's wire protocol on 127.0.0.1, holding everything in memory.
It is not Kafka: no replication, no retention, nothing on disk. Topics are
created on first use with --partitions partitions. Then, in another terminal:

  raftcdc ctl changefeed create --changefeed-id demo --source-uri 'datagen://?tables=4' \
    --sink-uri 'kafka://127.0.0.1:9092/cdc?protocol=canal-json&enable-tidb-extension=true'
  kcat -C -b 127.0.0.1:9092 -t cdc -e -o beginning

Everything is lost when it stops (Ctrl-C, SIGTERM or --duration).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			return runKafkaFake(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.port, "port", 9092, "port on 127.0.0.1 to listen on; 0 picks a free one")
	f.IntVar(&o.partitions, "partitions", 3, "partitions of topics created on first use, 1 to 1000")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	return cmd
}

func (o *kafkaFakeOpts) check() error {
	switch {
	case o.port < 0 || o.port > 65535:
		return usageError("--port must be 0 to 65535, got %d", o.port)
	case o.partitions < 1 || o.partitions > 1000:
		return usageError("--partitions must be 1 to 1000, got %d", o.partitions)
	case o.duration < 0:
		return usageError("--duration must not be negative, got %v", o.duration)
	}
	return nil
}

func runKafkaFake(ctx context.Context, o kafkaFakeOpts, out io.Writer) error {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(o.partitions)}
	if o.port != 0 {
		opts = append(opts, kfake.Ports(o.port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start the Kafka fake on 127.0.0.1:%d: %w", o.port, err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	fmt.Fprintf(out, "Kafka protocol fake (franz-go's kfake, in memory; not a Kafka broker) at %s; topics get %d partition(s).\n", addr, o.partitions)
	fmt.Fprintf(out, "Sink URI: kafka://%s/cdc?protocol=canal-json&enable-tidb-extension=true\n", addr)
	fmt.Fprintln(out, "Ctrl-C stops it.")
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	<-ctx.Done()
	fmt.Fprintln(out, "Stopped; the fake's topics are gone.")
	return nil
}
