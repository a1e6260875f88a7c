package kafka

import (
	"context"
	"fmt"
	"net/http"

	"github.com/raftcdc/raftcdc/codec/avro"
	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/codec/debezium"
	"github.com/raftcdc/raftcdc/codec/open"
	"github.com/raftcdc/raftcdc/codec/simple"
	"github.com/raftcdc/raftcdc/model"
)

// rowOpts are the large-message variants of a row's encoding.
type rowOpts struct {
	onlyHandleKey bool
	claimCheck    string // where the full value was stored
}

// protocol is what the sink needs from a message format. Each codec
// package has its own API; the adapters below fit them to this.
type protocol interface {
	encodeRow(ctx context.Context, topic string, r *model.RowChange, opt rowOpts) (key, value []byte, err error)
	// appendRow is encodeRow for the common case (no large-message
	// variant), appending the key to keyDst and the value to valueDst:
	// the table sink encodes into buffers it reuses and copies each
	// message into the write's arena chunks (see valueArena). A nil key or
	// value stays nil (avro's tombstone is a nil value).
	appendRow(ctx context.Context, topic string, keyDst, valueDst []byte, r *model.RowChange) (key, value []byte, err error)
	encodeDDL(ctx context.Context, d *model.DDLEvent) (key, value []byte, err error)
	// encodeWatermark returns ok=false when the protocol, as configured,
	// publishes no watermark.
	encodeWatermark(ts model.Ts) (key, value []byte, ok bool)
	// batch is how many row events one message may hold (1: no batching);
	// overhead is what framing n events adds.
	batch() int
	overhead(n int) int
}

// framer is implemented by protocols whose messages frame their events
// (open-protocol), even a message of one event; the others send each
// event as its own message. frame appends the message's key to keyDst and
// its value to valueDst.
type framer interface {
	frame(keyDst, valueDst []byte, keys, values [][]byte) (key, value []byte)
}

func newProtocol(cfg *Config) (protocol, error) {
	switch cfg.Protocol {
	case ProtocolOpen:
		return openProtocol{maxBatch: cfg.MaxBatchSize}, nil
	case ProtocolDebezium:
		return debeziumProtocol{enc: debezium.NewEncoder(debezium.Options{DisableSchema: cfg.DebeziumDisableSchema, EnableTiDBExtension: cfg.EnableTiDBExtension})}, nil
	case ProtocolAvro:
		opts := avro.Options{DecimalString: cfg.AvroDecimalHandlingMode == "string", BigintUnsignedString: cfg.AvroBigintUnsignedHandling == "string",
			EnableTiDBExtension: cfg.EnableTiDBExtension}
		reg := avro.NewRegistry(cfg.SchemaRegistry, &http.Client{Timeout: cfg.WriteTimeout})
		return avroProtocol{enc: avro.NewEncoder(opts, reg)}, nil
	case ProtocolSimple:
		return simpleProtocol{enc: simple.NewEncoder(nil)}, nil
	case ProtocolCanalJSON:
		return canalProtocol{enc: canal.NewEncoder(canal.Options{EnableTiDBExtension: cfg.EnableTiDBExtension})}, nil
	}
	return nil, fmt.Errorf("protocol %s is not available in this build yet", cfg.Protocol)
}

// single is the framing of protocols with one event per message.
type single struct{}

func (single) batch() int       { return 1 }
func (single) overhead(int) int { return 0 }

type openProtocol struct{ maxBatch int }

func (p openProtocol) encodeRow(_ context.Context, _ string, r *model.RowChange, o rowOpts) ([]byte, []byte, error) {
	return open.EncodeRow(r, open.RowOptions{OnlyHandleKey: o.onlyHandleKey, ClaimCheck: o.claimCheck})
}

func (p openProtocol) appendRow(_ context.Context, _ string, kd, vd []byte, r *model.RowChange) ([]byte, []byte, error) {
	return open.AppendRow(kd, vd, r, open.RowOptions{})
}

func (p openProtocol) encodeDDL(_ context.Context, d *model.DDLEvent) ([]byte, []byte, error) {
	k, v, err := open.EncodeDDL(d)
	if err != nil {
		return nil, nil, err
	}
	k, v = open.Frame([][]byte{k}, [][]byte{v})
	return k, v, nil
}

func (p openProtocol) encodeWatermark(ts model.Ts) ([]byte, []byte, bool) {
	k, v := open.EncodeResolved(ts)
	k, v = open.Frame([][]byte{k}, [][]byte{v})
	return k, v, true
}

func (p openProtocol) batch() int { return p.maxBatch }
func (p openProtocol) frame(kd, vd []byte, keys, values [][]byte) ([]byte, []byte) {
	return open.AppendFrame(kd, vd, keys, values)
}
func (p openProtocol) overhead(n int) int { return open.FrameOverhead(n) }

// canalProtocol is canal-json through the shared codec/canal encoder (the
// storage sink uses the same one). Messages have no key: canal-json
// consumers key on the message's database, table and pkNames, and TiCDC
// sends none either.
type canalProtocol struct {
	single
	enc *canal.Encoder
}

func (p canalProtocol) appendRow(_ context.Context, _ string, _, vd []byte, r *model.RowChange) ([]byte, []byte, error) {
	v, err := p.enc.AppendRow(vd, r)
	return nil, v, err
}

func (p canalProtocol) encodeRow(_ context.Context, _ string, r *model.RowChange, o rowOpts) ([]byte, []byte, error) {
	if o.onlyHandleKey || o.claimCheck != "" {
		v, err := p.enc.AppendLargeRow(nil, r, canal.LargeMessage{OnlyHandleKey: true, ClaimCheckLocation: o.claimCheck})
		return nil, v, err
	}
	v, err := p.enc.EncodeRow(r)
	return nil, v, err
}

func (p canalProtocol) encodeDDL(_ context.Context, d *model.DDLEvent) ([]byte, []byte, error) {
	v, err := p.enc.EncodeDDL(d)
	return nil, v, err
}

func (p canalProtocol) encodeWatermark(ts model.Ts) ([]byte, []byte, bool) {
	v := p.enc.EncodeCheckpoint(ts)
	return nil, v, v != nil
}

// debeziumProtocol is Debezium's JSON envelope (codec/debezium).
type debeziumProtocol struct {
	single
	enc *debezium.Encoder
}

func (p debeziumProtocol) encodeRow(_ context.Context, _ string, r *model.RowChange, o rowOpts) ([]byte, []byte, error) {
	return p.enc.EncodeRow(r, debezium.RowOptions{OnlyHandleKey: o.onlyHandleKey, ClaimCheck: o.claimCheck})
}

func (p debeziumProtocol) appendRow(_ context.Context, _ string, kd, vd []byte, r *model.RowChange) ([]byte, []byte, error) {
	return p.enc.AppendRow(kd, vd, r, debezium.RowOptions{})
}

func (p debeziumProtocol) encodeDDL(_ context.Context, d *model.DDLEvent) ([]byte, []byte, error) {
	return p.enc.EncodeDDL(d)
}

func (p debeziumProtocol) encodeWatermark(ts model.Ts) ([]byte, []byte, bool) {
	return p.enc.EncodeWatermark(ts)
}

// simpleProtocol is TiCDC's simple protocol (codec/simple); it always
// publishes watermarks.
type simpleProtocol struct {
	single
	enc *simple.Encoder
}

func (p simpleProtocol) encodeRow(_ context.Context, _ string, r *model.RowChange, o rowOpts) ([]byte, []byte, error) {
	v, err := p.enc.EncodeRow(r, simple.RowOptions{OnlyHandleKey: o.onlyHandleKey, ClaimCheck: o.claimCheck})
	return nil, v, err
}

func (p simpleProtocol) appendRow(_ context.Context, _ string, _, vd []byte, r *model.RowChange) ([]byte, []byte, error) {
	v, err := p.enc.AppendRow(vd, r, simple.RowOptions{})
	return nil, v, err
}

func (p simpleProtocol) encodeDDL(_ context.Context, d *model.DDLEvent) ([]byte, []byte, error) {
	v, err := p.enc.EncodeDDL(d)
	return nil, v, err
}

func (p simpleProtocol) encodeWatermark(ts model.Ts) ([]byte, []byte, bool) {
	return nil, p.enc.EncodeWatermark(ts), true
}

// avroProtocol is Avro records with a schema registry (codec/avro);
// schemas are registered under the topic's subjects.
type avroProtocol struct {
	single
	enc *avro.Encoder
}

func (p avroProtocol) encodeRow(ctx context.Context, topic string, r *model.RowChange, o rowOpts) ([]byte, []byte, error) {
	return p.enc.EncodeRow(ctx, topic, r, o.onlyHandleKey)
}

func (p avroProtocol) appendRow(ctx context.Context, topic string, kd, vd []byte, r *model.RowChange) ([]byte, []byte, error) {
	return p.enc.AppendRow(ctx, kd, vd, topic, r, false)
}

func (p avroProtocol) encodeDDL(_ context.Context, d *model.DDLEvent) ([]byte, []byte, error) {
	v, err := p.enc.EncodeDDL(d)
	return nil, v, err
}

func (p avroProtocol) encodeWatermark(ts model.Ts) ([]byte, []byte, bool) {
	v, ok := p.enc.EncodeWatermark(ts)
	return nil, v, ok
}
