package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source/datagen"
)

func benchEncode(b *testing.B, proto string) {
	p, err := newProtocol(&Config{Protocol: proto, MaxBatchSize: 16, SchemaRegistry: "http://127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	sc := usersSchema("shop", "users")
	r := userRow(sc, model.OpUpdate, 100, 1, 1, "hello")
	for i := 0; i < b.N; i++ {
		p.encodeRow(context.Background(), "t", r, rowOpts{})
	}
}

func BenchmarkEncodeDebezium(b *testing.B) { benchEncode(b, ProtocolDebezium) }
func BenchmarkEncodeCanal(b *testing.B)    { benchEncode(b, ProtocolCanalJSON) }
func BenchmarkEncodeOpen(b *testing.B)     { benchEncode(b, ProtocolOpen) }
func BenchmarkEncodeSimple(b *testing.B)   { benchEncode(b, ProtocolSimple) }

// benchEncodeWide encodes datagen v2's rows (~40 typed columns, with
// before images), the rows the Kafka throughput benchmark sends, rather
// than the small test row above.
func benchEncodeWide(b *testing.B, proto string) {
	p, err := newProtocol(&Config{Protocol: proto, MaxBatchSize: 16, SchemaRegistry: "http://127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	rows := datagenRows(b, 1024)
	// As the table sink does: rows are encoded into reused buffers (the
	// copy into the arena is not counted).
	var k, v []byte
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if k, v, err = p.appendRow(context.Background(), "t", k[:0], v[:0], rows[i%len(rows)]); err != nil {
			b.Fatal(err)
		}
	}
}

// datagenRows reads n rows of datagen v2's history from a minute back.
func datagenRows(b *testing.B, n int) []*model.RowChange {
	src, err := datagen.Open("datagen://?tables=1&rate=2000")
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	start := model.TsFromTime(time.Now().Add(-time.Minute))
	tables, err := src.TablesAt(ctx, start)
	if err != nil || len(tables) == 0 {
		b.Fatalf("datagen tables: %v", err)
	}
	sub, err := src.SubscribeTxns(ctx, tables[0], start)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	var rows []*model.RowChange
	for len(rows) < n {
		batch, err := sub.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, txn := range batch.Txns {
			rows = append(rows, txn.Rows...)
		}
	}
	return rows[:n]
}

func BenchmarkEncodeWideDebezium(b *testing.B) { benchEncodeWide(b, ProtocolDebezium) }
func BenchmarkEncodeWideCanal(b *testing.B)    { benchEncodeWide(b, ProtocolCanalJSON) }
func BenchmarkEncodeWideOpen(b *testing.B)     { benchEncodeWide(b, ProtocolOpen) }
func BenchmarkEncodeWideSimple(b *testing.B)   { benchEncodeWide(b, ProtocolSimple) }
