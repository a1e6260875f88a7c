package connector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/source"
)

// The bridge between the first round's untyped rows (model.LegacyRow, the
// legacy datagen generator and the JSON-lines file sink) and the typed v2
// contracts that the processor and owner speak. It exists only while those
// two connectors are being rewritten, and is deleted with them. A legacy row
// maps to a fixed schema and back without loss, so the file sink writes
// byte for byte what it wrote before and the verifier is unchanged.

const (
	legacyColID      = "id"
	legacyColSeq     = "seq"
	legacyColPayload = "payload"
)

// legacySchemas caches one immutable schema per table.
type legacySchemas struct {
	mu sync.Mutex
	m  map[model.TableID]*model.TableSchema
}

func (s *legacySchemas) get(t model.TableName) *model.TableSchema {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc, ok := s.m[t.ID]; ok && sc.Table == t {
		return sc
	}
	if s.m == nil {
		s.m = map[model.TableID]*model.TableSchema{}
	}
	sc := &model.TableSchema{
		Table:   t,
		Version: 1,
		Columns: []model.Column{
			{Name: legacyColID, Type: model.ColumnType{Kind: model.TypeBigInt}},
			{Name: legacyColSeq, Type: model.ColumnType{Kind: model.TypeBigInt, Unsigned: true}},
			{Name: legacyColPayload, Type: model.ColumnType{Kind: model.TypeLongText}, Nullable: true},
		},
		Indexes: []model.Index{{Name: "PRIMARY", Columns: []string{legacyColID}, Primary: true}},
	}
	s.m[t.ID] = sc
	return sc
}

func legacyToTxn(schemas *legacySchemas, r model.LegacyRow) *model.Txn {
	img := make([]model.Value, 3)
	if v, ok := r.Columns[legacyColID].(int64); ok {
		img[0] = model.IntValue(v)
	}
	if v, ok := r.Columns[legacyColSeq].(uint64); ok {
		img[1] = model.UintValue(v)
	}
	if v, ok := r.Columns[legacyColPayload].(string); ok {
		img[2] = model.StringValue(v)
	}
	row := &model.RowChange{Schema: schemas.get(r.Table), StartTs: r.CommitTs, CommitTs: r.CommitTs, Op: r.Op}
	if r.Op == model.OpDelete {
		row.Before = img
	} else {
		row.After = img
	}
	return &model.Txn{StartTs: r.CommitTs, CommitTs: r.CommitTs, Rows: []*model.RowChange{row}}
}

func legacyFromRow(r *model.RowChange) model.LegacyRow {
	img := r.Image()
	cols := make(map[string]any, 3)
	var key string
	if len(img) == 3 {
		if img[0].Kind == model.ValueInt {
			cols[legacyColID] = img[0].I
			key = strconv.FormatInt(img[0].I, 10)
		}
		if img[1].Kind == model.ValueUint {
			cols[legacyColSeq] = img[1].U
		}
		if img[2].Kind == model.ValueString {
			cols[legacyColPayload] = img[2].S
		}
	}
	return model.LegacyRow{Table: r.Schema.Table, Key: key, Op: r.Op, CommitTs: r.CommitTs, Columns: cols}
}

// legacySource presents a legacy source as a span source with no DDL.
type legacySource struct {
	source.Source
	uri     string
	schemas legacySchemas
}

var _ source.SpanSource = (*legacySource)(nil)

func (s *legacySource) UpstreamID(ctx context.Context) (string, error) {
	if u, ok := s.Source.(interface {
		UpstreamID(context.Context) (string, error)
	}); ok {
		return u.UpstreamID(ctx)
	}
	h := sha256.Sum256([]byte(s.uri))
	return "uri-" + hex.EncodeToString(h[:8]), nil
}

func (s *legacySource) TablesAt(ctx context.Context, _ model.Ts) ([]model.TableName, error) {
	return s.Source.Tables(ctx)
}

func (s *legacySource) SchemaAt(ctx context.Context, table model.TableName, _ model.Ts) (*model.TableSchema, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.schemas.get(table), nil
}

func (s *legacySource) SubscribeTxns(ctx context.Context, table model.TableName, startTs model.Ts) (source.TxnSubscription, error) {
	sub, err := s.Source.Subscribe(ctx, table, startTs)
	if err != nil {
		return nil, err
	}
	return &legacySub{sub: sub, schemas: &s.schemas}, nil
}

// SubscribeDDL has no DDL to give: it only says, now and then, that none
// happened up to the upstream's current ts.
func (s *legacySource) SubscribeDDL(ctx context.Context, startTs model.Ts) (source.DDLSubscription, error) {
	return &noDDL{src: s.Source, last: startTs}, nil
}

type legacySub struct {
	sub     source.Subscription
	schemas *legacySchemas
}

func (l *legacySub) Next(ctx context.Context) (source.TxnBatch, error) {
	b, err := l.sub.Next(ctx)
	if err != nil {
		return source.TxnBatch{}, err
	}
	out := source.TxnBatch{ResolvedTs: b.ResolvedTs, Txns: make([]*model.Txn, len(b.Rows))}
	for i, r := range b.Rows {
		out.Txns[i] = legacyToTxn(l.schemas, r)
	}
	return out, nil
}

func (l *legacySub) Close() error { return l.sub.Close() }

type noDDL struct {
	src  source.Source
	last model.Ts
}

func (n *noDDL) Next(ctx context.Context) (source.DDLBatch, error) {
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return source.DDLBatch{}, ctx.Err()
	case <-t.C:
	}
	now, err := n.src.CurrentTs(ctx)
	if err != nil {
		return source.DDLBatch{}, fmt.Errorf("reading the upstream's current ts for the DDL stream: %w", err)
	}
	n.last = max(n.last, now)
	return source.DDLBatch{ResolvedTs: n.last}, nil
}

func (n *noDDL) Close() error { return nil }

// legacySink presents a legacy sink through the v2 contract.
type legacySink struct {
	sink.LegacySink
	sink.NopDDL
	sink.NopCheckpoint
}

var _ sink.Sink = legacySink{}

func (s legacySink) OpenTable(ctx context.Context, table model.TableName, _ sink.TableOptions) (sink.TableSink, error) {
	ts, err := s.LegacySink.OpenTable(ctx, table)
	if err != nil {
		return nil, err
	}
	return legacyTable{ts}, nil
}

type legacyTable struct{ sink.LegacyTableSink }

func (t legacyTable) Write(ctx context.Context, txns []*model.Txn) error {
	n := 0
	for _, txn := range txns {
		n += len(txn.Rows)
	}
	rows := make([]model.LegacyRow, 0, n)
	for _, txn := range txns {
		for _, r := range txn.Rows {
			rows = append(rows, legacyFromRow(r))
		}
	}
	return t.LegacyTableSink.Write(ctx, rows)
}
