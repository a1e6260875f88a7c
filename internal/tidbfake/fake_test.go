package tidbfake

import (
	"context"
	"testing"
	"time"

	"github.com/pingcap/kvproto/pkg/cdcpb"
	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func mustExec(t *testing.T, c *Cluster, db string, stmts ...string) {
	t.Helper()
	if err := c.Exec(db, stmts...); err != nil {
		t.Fatal(err)
	}
}

func TestDDLWritesTiDBMetaAndHistory(t *testing.T) {
	c := startCluster(t, Options{Stores: 1})
	before := c.Now()
	mustExec(t, c, "shop",
		"CREATE DATABASE shop",
		"CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, note VARCHAR(32) NOT NULL DEFAULT 'x', amount DECIMAL(10,2), at DATETIME(3), kind ENUM('a','b'), flags SET('p','q'), doc JSON, UNIQUE KEY uk_note (note))")
	info, err := c.TableInfoAt("shop", "orders", c.Now())
	if err != nil || info == nil {
		t.Fatalf("table info from meta: %v %v", info, err)
	}
	if !info.PKIsHandle || len(info.Columns) != 7 || len(info.Indices) != 1 || info.Columns[2].GetDecimal() != 2 {
		t.Fatalf("unexpected table info: pk handle %v, %d columns, %d indexes", info.PKIsHandle, len(info.Columns), len(info.Indices))
	}
	if info.Columns[1].GetCharset() != "utf8mb4" || !mysql.HasNotNullFlag(info.Columns[1].GetFlag()) || info.Columns[1].OriginDefaultValue != "x" {
		t.Fatalf("column note: %+v", info.Columns[1])
	}
	if old, _ := c.TableInfoAt("shop", "orders", before); old != nil {
		t.Fatal("the table exists before its CREATE TABLE")
	}
	job, err := c.ExecDDL("shop", "ALTER TABLE orders ADD COLUMN extra INT DEFAULT 7")
	if err != nil {
		t.Fatal(err)
	}
	if job.Type != model.ActionAddColumn || job.BinlogInfo.FinishedTS != job.StartTS || job.BinlogInfo.TableInfo.Columns[7].Name.O != "extra" {
		t.Fatalf("job: %+v", job)
	}
	// The history row is in mysql.tidb_ddl_history, readable with its own
	// table definition.
	_, rows, err := c.Rows("mysql", "tidb_ddl_history", c.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 { // CREATE DATABASE shop, CREATE TABLE, ALTER TABLE (mysql's own CREATE DATABASE predates the table)
		t.Fatalf("history rows: %d", len(rows))
	}
	var last model.Job
	if err := last.Decode(rows[len(rows)-1].Values[1].GetBytes()); err != nil {
		t.Fatal(err)
	}
	if last.ID != job.ID || last.Type != model.ActionAddColumn {
		t.Fatalf("last history job %d %s, want %d add column", last.ID, last.Type, job.ID)
	}
}

func TestRowsAtTs(t *testing.T) {
	c := startCluster(t, Options{Stores: 1})
	mustExec(t, c, "", "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10))")
	ts1, err := c.Begin().Insert("d", "t", 1, "a").Insert("d", "t", 2, "b").Commit()
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, c, "d", "ALTER TABLE t ADD COLUMN w INT DEFAULT 5")
	if _, err := c.Begin().Update("d", "t", 1, "a2", 9).Delete("d", "t", 2, nil, nil).Commit(); err != nil {
		t.Fatal(err)
	}
	if err := c.Begin().Insert("d", "t", 1, "dup", 1).Err(); err == nil {
		t.Fatal("duplicate insert accepted")
	}
	_, rows, err := c.Rows("d", "t", ts1)
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows at ts1: %v %v", rows, err)
	}
	cols, rows, err := c.Rows("d", "t", c.Now())
	if err != nil || len(rows) != 1 || len(cols) != 3 {
		t.Fatalf("rows now: %v %v", rows, err)
	}
	if v, _ := rows[0].Values[1].ToString(); v != "a2" || rows[0].Values[2].GetInt64() != 9 {
		t.Fatalf("row now: %v", rows[0].Values)
	}
}

// feedClient is a bare cdcpb client: what the benchmark compares the
// source against, and a check that the fake speaks the protocol.
type feedClient struct {
	stream cdcpb.ChangeData_EventFeedV2Client
	conn   *grpc.ClientConn
}

func dialFeed(t *testing.T, addr string) *feedClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "features", FeatureStreamMultiplexing)
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := cdcpb.NewChangeDataClient(conn).EventFeedV2(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &feedClient{stream: stream, conn: conn}
}

func TestEventFeedScanThenLive(t *testing.T) {
	c := startCluster(t, Options{Stores: 1, ResolvedTsInterval: 20 * time.Millisecond})
	mustExec(t, c, "", "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10))")
	start := c.Now()
	if _, err := c.Begin().Insert("d", "t", 1, "a").Commit(); err != nil {
		t.Fatal(err)
	}
	info, _ := c.TableInfo("d", "t")
	regions, _ := c.TableRegions("d", "t")
	if len(regions) != 1 {
		t.Fatalf("regions: %+v", regions)
	}
	r := regions[0]
	fc := dialFeed(t, c.StoreAddr(0))
	rs, re := tableRecordRange(info.ID)
	reg := c.regions.byID[r.ID]
	err := fc.stream.Send(&cdcpb.ChangeDataRequest{Header: &cdcpb.Header{ClusterId: c.ClusterID()}, RegionId: r.ID, RegionEpoch: reg.epoch(),
		CheckpointTs: start, StartKey: encodeKey(rs), EndKey: encodeKey(re), RequestId: 7, ExtraOp: kvrpcpb.ExtraOp_ReadOldValue,
		Request: &cdcpb.ChangeDataRequest_Register_{Register: &cdcpb.ChangeDataRequest_Register{}}})
	if err != nil {
		t.Fatal(err)
	}
	var types []cdcpb.Event_LogType
	deadline := time.Now().Add(10 * time.Second)
	wroteLive := false
	var resolved uint64
	for time.Now().Before(deadline) && (len(types) < 4 || resolved == 0) {
		ev, err := fc.stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.ResolvedTs != nil {
			if ev.ResolvedTs.RequestId != 7 || len(ev.ResolvedTs.Regions) != 1 {
				t.Fatalf("resolved: %+v", ev.ResolvedTs)
			}
			resolved = ev.ResolvedTs.Ts
		}
		for _, e := range ev.Events {
			if e.RequestId != 7 || e.RegionId != r.ID {
				t.Fatalf("event for %d/%d", e.RequestId, e.RegionId)
			}
			for _, row := range e.GetEntries().GetEntries() {
				types = append(types, row.Type)
			}
		}
		if len(types) >= 2 && !wroteLive {
			wroteLive = true
			if _, err := c.Begin().Update("d", "t", 1, "b").Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []cdcpb.Event_LogType{cdcpb.Event_COMMITTED, cdcpb.Event_INITIALIZED, cdcpb.Event_PREWRITE, cdcpb.Event_COMMIT}
	if len(types) < 4 {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
	if resolved <= start {
		t.Fatalf("resolved ts %d not past the start %d", resolved, start)
	}
}
