//go:build bench

package bench

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/source"
	"github.com/raftcdc/raftcdc/source/postgres"
)

var pgTxnRows = flag.Int("pg-txn-rows", 2_000_000, "postgres: rows of the one large transaction")

func vmHWM(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

// TestPostgresLargeTransaction writes one transaction of -pg-txn-rows rows
// and drains it through the postgres stream (counting rows, as a
// blackhole) and, on a second slot over the same WAL, through
// pg_recvlogical with pgoutput: decode rate ratio and the test process's
// peak RSS.
func TestPostgresLargeTransaction(t *testing.T) {
	pg := testserver.StartPostgres(t, testserver.PostgresLogicalReplication(), testserver.PostgresSettings("max_wal_size=4GB"))
	pg.CreateDatabase(t, "big")
	pg.Exec(t, "big", "CREATE TABLE t (id int PRIMARY KEY, a int, b text)")
	uri := pg.SuperConnString("big")
	cfg, err := postgres.ParseURI(uri+"&snapshot=never&heartbeat-interval=1s", "bench")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	src := postgres.New(cfg, "bench")
	defer src.Close()
	st, err := src.OpenStream(ctx, source.StreamOptions{StartTs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pg.Exec(t, "big", "SELECT pg_create_logical_replication_slot('recv', 'pgoutput')")
	hwm0 := vmHWM(t)
	start := time.Now()
	pg.Exec(t, "big", "INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(1, "+strconv.Itoa(*pgTxnRows)+") g")
	end := *pg.Query(t, "big", "SELECT pg_current_wal_lsn()::text")[0][0]
	t.Logf("insert of %d rows took %v; WAL end %s", *pgTxnRows, time.Since(start), end)

	// pg_recvlogical first, alone on the machine.
	rstart := time.Now()
	cmd := exec.CommandContext(ctx, "/usr/lib/postgresql/15/bin/pg_recvlogical", "-d", uri, "--slot", "recv", "--start",
		"-o", "proto_version=1", "-o", "publication_names="+cfg.Publication, "--endpos", end, "-f", "/dev/null", "--no-loop")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_recvlogical: %v\n%s", err, out)
	}
	recv := time.Since(rstart)

	sstart := time.Now()
	rows := 0
	for rows < *pgTxnRows {
		b, err := st.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, txn := range b.Txns {
			rows += len(txn.Rows)
		}
	}
	ours := time.Since(sstart)
	t.Logf("pg_recvlogical: %v (%.0f rows/s); raftcdc stream: %v (%.0f rows/s); ratio %.2f",
		recv, float64(*pgTxnRows)/recv.Seconds(), ours, float64(*pgTxnRows)/ours.Seconds(), recv.Seconds()/ours.Seconds())
	t.Logf("peak RSS of the test process: %s before the transaction, %s after draining it", hwm0, vmHWM(t))
}
