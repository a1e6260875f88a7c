package tidb

import (
	"fmt"
	"testing"
	"time"

	"github.com/pingcap/tidb/pkg/kv"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/tablecodec"
	"github.com/pingcap/tidb/pkg/types"
	"github.com/pingcap/tidb/pkg/util/rowcodec"

	"github.com/raftcdc/raftcdc/internal/tidbfake"
)

// sbtestRows is a decoder of an sbtest-like table (the incremental scan
// benchmark's, bench/tidb_bench_test.go) and n of its rows in format v2.
func sbtestRows(tb testing.TB, n int) (*rowDecoder, []rawRow) {
	tb.Helper()
	c, err := tidbfake.Start(tidbfake.Options{Stores: 1})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Exec("", "CREATE DATABASE b",
		"CREATE TABLE b.sbtest (id BIGINT PRIMARY KEY, k INT NOT NULL, c VARCHAR(120) NOT NULL, pad VARCHAR(60) NOT NULL, amount DECIMAL(12,2), at DATETIME(3))"); err != nil {
		tb.Fatal(err)
	}
	info, err := c.TableInfo("b", "sbtest")
	if err != nil {
		tb.Fatal(err)
	}
	schema, err := tableSchema("b", info, info.ID)
	if err != nil {
		tb.Fatal(err)
	}
	dec, err := newRowDecoder(info, schema)
	if err != nil {
		tb.Fatal(err)
	}
	at, err := types.ParseDatetime(types.DefaultStmtNoWarningContext, "2026-01-02 03:04:05.678")
	if err != nil {
		tb.Fatal(err)
	}
	var ids []int64
	var vals []types.Datum
	for _, col := range info.Columns {
		if mysql.HasPriKeyFlag(col.GetFlag()) {
			continue
		}
		ids = append(ids, col.ID)
	}
	raws := make([]rawRow, n)
	var enc rowcodec.Encoder
	for i := range raws {
		vals = append(vals[:0], types.NewIntDatum(int64(i%1000)), types.NewStringDatum(fmt.Sprintf("%0110d", i)),
			types.NewStringDatum(fmt.Sprintf("pad-%050d", i)), types.NewDecimalDatum(types.NewDecFromStringForTest(fmt.Sprintf("%d.%02d", i, i%100))),
			types.NewTimeDatum(at))
		v, err := enc.Encode(time.UTC, ids, vals, nil, nil)
		if err != nil {
			tb.Fatal(err)
		}
		raws[i] = rawRow{key: tablecodec.EncodeRowKeyWithHandle(info.ID, kv.IntHandle(i)), value: v, startTs: 1, commitTs: 2}
	}
	return dec, raws
}

// BenchmarkDecodeRow is the per-row cost of decoding sbtestRows.
// `go test -run XXX -bench DecodeRow -benchmem ./source/tidb/`
func BenchmarkDecodeRow(b *testing.B) {
	const rows = 1024
	dec, raws := sbtestRows(b, rows)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc, err := dec.decodeRow(&raws[i%rows])
		if err != nil {
			b.Fatal(err)
		}
		if len(rc.After) != 6 {
			b.Fatal(rc.After)
		}
	}
}
