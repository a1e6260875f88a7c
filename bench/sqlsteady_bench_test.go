//go:build bench

package bench

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/integration"
	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
)

var (
	sqlSteadyRate    = flag.Int("sql-steady-rate", 10000, "sql steady: datagen v2 rows/s offered, over 10 tables")
	sqlSteadyServers = flag.String("sql-steady-servers", "mariadb,postgres", "sql steady: downstreams to measure, in turn")
)

// TestBenchSQLSteady samples the checkpoint lag of one node replicating
// datagen v2 at a steady rate (default 10,000 rows/s over 10 tables, ~40
// typed columns a row, inserts, updates and deletes) into MariaDB, then
// into PostgreSQL, and the rows/s the sink wrote meanwhile, which says
// whether it kept up. The tables are created downstream by the source's
// own CREATE TABLE DDLs: the history's epoch is a few seconds after the
// changefeed's start. One server runs at a time.
func TestBenchSQLSteady(t *testing.T) {
	bin := buildBinary(t)
	for _, server := range strings.Split(*sqlSteadyServers, ",") {
		t.Run(server, func(t *testing.T) {
			var sinkURI string
			switch server {
			case "mariadb":
				sinkURI = testserver.StartMariaDB(t).URI("root", "", "")
			case "postgres":
				p := testserver.StartPostgres(t)
				p.CreateDatabase(t, "steady")
				sinkURI = p.SuperConnString("steady")
			default:
				t.Fatalf("-sql-steady-servers: unknown server %q (mariadb, postgres)", server)
			}
			sqlSteady(t, bin, server, sinkURI)
		})
	}
}

func sqlSteady(t *testing.T, bin, server, sinkURI string) {
	c := integration.StartCluster(t, bin, 1, clusterOptions(t, bin, "--log-level", "warn"))
	c.WaitForLeader(30 * time.Second)
	const tables = 10
	epoch := time.Now().Add(5 * time.Second).UTC().Format(time.RFC3339)
	src := fmt.Sprintf("datagen://?tables=%d&rate=%d&epoch=%s", tables, *sqlSteadyRate/tables, epoch)
	createFeed(t, c, map[string]any{"id": "sqlsteady", "source_uri": src, "sink_uri": sinkURI})
	start := time.Now().Add(10 * time.Second)
	integration.WaitFor(t, 3*time.Minute, "rows replicating past the epoch", func() bool {
		d, err := anyFeed(c, "sqlsteady")
		return err == nil && cpOf(d) > model.TsFromTime(start)
	})
	time.Sleep(10 * time.Second) // let the sink reach its steady batch sizes before sampling
	d0, err := getFeed(c, 0, "sqlsteady")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	lags := lagOf(t, c, "sqlsteady", *steadyDuration)
	d1, err := getFeed(c, 0, "sqlsteady")
	if err != nil {
		t.Fatal(err)
	}
	written := float64(d1.Count-d0.Count) / time.Since(t0).Seconds()
	fmt.Printf("RESULT sql-steady %s offered=%d rows/s written=%.0f rows/s samples=%d lag_p50=%v lag_p99=%v lag_max=%v\n",
		server, *sqlSteadyRate, written, len(lags), percentile(lags, 0.5).Round(time.Millisecond), percentile(lags, 0.99).Round(time.Millisecond),
		percentile(lags, 1).Round(time.Millisecond))
}
