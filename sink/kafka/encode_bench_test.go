package kafka

import (
	"context"
	"testing"

	"github.com/raftcdc/raftcdc/model"
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
