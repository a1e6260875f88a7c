package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftcdc/raftcdc/internal/tidbfake"
)

// tidbFakeOpts are the flags of `raftcdc tools tidbfake`.
type tidbFakeOpts struct {
	pdAddr   string
	stores   int
	tables   int
	regions  int
	rate     float64
	duration time.Duration
}

func newTiDBFakeCmd() *cobra.Command {
	var o tidbFakeOpts
	cmd := &cobra.Command{
		Use:   "tidbfake",
		Short: "Run the protocol fakes of a TiDB cluster (PD and TiKV) to try the tidb:// source",
		Long: `Starts the fake PD and fake TiKV stores that raftcdc's tests replicate from:
PD's and TiKV's gRPC protocols (kvproto's pdpb, cdcpb and the kvrpcpb reads),
data encoded with TiDB's own codec, held in memory. It is not TiDB: there is no
SQL port. It creates the database demo with --tables tables
(id BIGINT PRIMARY KEY, name VARCHAR(64), amount DECIMAL(10,2),
updated_at DATETIME(3)), each split into --regions-per-table regions, and
writes --rate rows per second into them (inserts, updates and deletes in
transactions of 1 to 10 rows) until Ctrl-C or --duration. Then, in another
terminal:

  raftcdc ctl changefeed create --changefeed-id demo \
    --source-uri 'tidb://127.0.0.1:2379/' --sink-uri 'blackhole://'
  raftcdc ctl changefeed query --changefeed-id demo

Everything is lost when it stops; start a new changefeed against a new fake.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			return runTiDBFake(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.pdAddr, "pd-addr", "127.0.0.1:2379", "host:port PD listens on (the stores take free ports on the same host); port 0 picks a free one")
	f.IntVar(&o.stores, "stores", 1, "TiKV stores, 1 to 3 (every region has a peer on each)")
	f.IntVar(&o.tables, "tables", 4, "tables in the demo database, 1 to 1000")
	f.IntVar(&o.regions, "regions-per-table", 1, "regions each table's rows are split into, 1 to 1000")
	f.Float64Var(&o.rate, "rate", 100, "rows written per second, 0 to 100000 (0: none)")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	return cmd
}

func (o *tidbFakeOpts) check() error {
	host, port, err := net.SplitHostPort(o.pdAddr)
	if err != nil || host == "" {
		return usageError("--pd-addr %q is not host:port", o.pdAddr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return usageError("--pd-addr %q: port %q is not a number from 0 to 65535", o.pdAddr, port)
	}
	switch {
	case o.stores < 1 || o.stores > 3:
		return usageError("--stores must be 1 to 3, got %d", o.stores)
	case o.tables < 1 || o.tables > 1000:
		return usageError("--tables must be 1 to 1000, got %d", o.tables)
	case o.regions < 1 || o.regions > 1000:
		return usageError("--regions-per-table must be 1 to 1000, got %d", o.regions)
	case !(o.rate >= 0 && o.rate <= 100000):
		return usageError("--rate must be 0 to 100000 rows per second, got %v", o.rate)
	case o.duration < 0:
		return usageError("--duration must not be negative, got %v", o.duration)
	}
	return nil
}

func runTiDBFake(ctx context.Context, o tidbFakeOpts, out io.Writer) error {
	host, portStr, _ := net.SplitHostPort(o.pdAddr)
	port, _ := strconv.Atoi(portStr)
	c, err := tidbfake.Start(tidbfake.Options{Stores: o.stores, Addr: host, PDPort: port})
	if err != nil {
		return fmt.Errorf("start the fake TiDB cluster on %s: %w", o.pdAddr, err)
	}
	defer c.Close()
	names := make([]string, o.tables)
	stmts := []string{"CREATE DATABASE demo"}
	for i := range names {
		names[i] = fmt.Sprintf("t%d", i+1)
		stmts = append(stmts, "CREATE TABLE demo."+names[i]+" (id BIGINT PRIMARY KEY, name VARCHAR(64), amount DECIMAL(10,2), updated_at DATETIME(3))")
	}
	if err := c.Exec("", stmts...); err != nil {
		return fmt.Errorf("create the demo tables: %w", err)
	}
	for _, name := range names {
		// Rows get ids counting up from 1, so the split points cover the
		// first million of them.
		if err := c.SplitTable("demo", name, 0, 1_000_000, o.regions); err != nil {
			return fmt.Errorf("split demo.%s: %w", name, err)
		}
	}
	fmt.Fprintf(out, "Fake TiDB cluster (protocol fakes, in memory; not a database): PD at %s, %d TiKV store(s), cluster ID %d.\n",
		c.PDAddr(), o.stores, c.ClusterID())
	fmt.Fprintf(out, "Source URI: tidb://%s/\n", c.PDAddr())
	fmt.Fprintf(out, "Tables demo.t1 to demo.t%d, %d region(s) each; writing %v rows/s. Ctrl-C stops it.\n", o.tables, o.regions, o.rate)

	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	w := &demoWriter{c: c, names: names, rng: rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano()))),
		next: make([]int64, len(names)), live: make([][]int64, len(names))}
	began := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	written := 0
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(out, "Stopped after %d rows; the fake's data is gone.\n", written)
			return nil
		case now := <-tick.C:
			due := int(o.rate*now.Sub(began).Seconds()) - written
			for due > 0 {
				n := min(due, 1+w.rng.IntN(10))
				got, err := w.txn(n)
				if err != nil {
					return fmt.Errorf("write to the fake: %w", err)
				}
				written += got
				due -= n
			}
		}
	}
}

// demoWriter writes transactions into the demo tables: mostly inserts of
// new ids, some updates and deletes of live ones.
type demoWriter struct {
	c     *tidbfake.Cluster
	names []string
	rng   *rand.Rand
	next  []int64   // last id inserted, per table
	live  [][]int64 // ids present, per table
}

func (w *demoWriter) txn(rows int) (int, error) {
	t := w.rng.IntN(len(w.names))
	name := w.names[t]
	txn := w.c.Begin()
	touched := map[int64]bool{}
	at := time.Now().UTC().Format("2006-01-02 15:04:05.000")
	var inserted, deleted []int64
	changed := 0
	for i := 0; i < rows; i++ {
		op := w.rng.IntN(10)
		switch {
		case op >= 3 || len(w.live[t]) == 0:
			w.next[t]++
			id := w.next[t]
			txn.Insert("demo", name, id, fmt.Sprintf("name-%d", id), fmt.Sprintf("%d.%02d", w.rng.IntN(100000), w.rng.IntN(100)), at)
			inserted = append(inserted, id)
			touched[id] = true
			changed++
		default:
			id := w.live[t][w.rng.IntN(len(w.live[t]))]
			if touched[id] {
				continue // one change per row and transaction keeps the bookkeeping simple
			}
			touched[id] = true
			if op == 0 {
				txn.Delete("demo", name, id, nil, nil, nil)
				deleted = append(deleted, id)
			} else {
				txn.Update("demo", name, id, fmt.Sprintf("name-%d-updated", id), fmt.Sprintf("%d.%02d", w.rng.IntN(100000), w.rng.IntN(100)), at)
			}
			changed++
		}
	}
	if _, err := txn.Commit(); err != nil {
		return 0, err
	}
	w.live[t] = append(w.live[t], inserted...)
	for _, id := range deleted {
		for j, v := range w.live[t] {
			if v == id {
				w.live[t][j] = w.live[t][len(w.live[t])-1]
				w.live[t] = w.live[t][:len(w.live[t])-1]
				break
			}
		}
	}
	return changed, nil
}
