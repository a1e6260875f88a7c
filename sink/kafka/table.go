package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// tableSink encodes a table's rows and hands them to the shared producer as
// they are written; Flush waits for the broker's acknowledgements. Sending
// early costs nothing in correctness (rows above the checkpoint may reach
// the topic; consumers see them again after a failover either way) and
// keeps the producer's pipeline full.
type tableSink struct {
	s     *Sink
	table model.TableName
	topic string
	info  *topicInfo
	part  *partitioner

	// ctx lives until Close: records in flight are tied to it, not to the
	// Write call's context, so that a short-lived Write context does not
	// fail records that were already handed over.
	ctx    context.Context
	cancel context.CancelFunc

	// scratch holds a row's key and value between encoding and the copy
	// into the write's arena chunks, and frame a batched message between
	// framing and its copy; only Write uses them.
	scratch, frame struct{ key, value []byte }

	// groups are the writes not yet known acknowledged, in order.
	mu     sync.Mutex
	groups []*ackGroup
	failed error
}

var _ sink.TableSink = (*tableSink)(nil)

// ackGroup tracks the messages of one Write call.
type ackGroup struct {
	firstTs model.Ts
	pending atomic.Int64
	done    chan struct{}
	errOnce sync.Once
	err     error
	// values holds the group's messages until every one has completed.
	values groupValues
}

func (g *ackGroup) finish(err error) {
	if err != nil {
		g.errOnce.Do(func() { g.err = err })
	}
	if g.pending.Add(-1) == 0 {
		// No record of the group is in franz-go's hands any more.
		g.values.release()
		close(g.done)
	}
}

// pendingBatch collects consecutive row events bound for one partition.
type pendingBatch struct {
	keys, values [][]byte
	size, rows   int
}

func (t *tableSink) Write(ctx context.Context, txns []*model.Txn) error {
	if err := t.err(); err != nil {
		return err
	}
	if len(txns) == 0 {
		return nil
	}
	g := &ackGroup{firstTs: txns[0].CommitTs, done: make(chan struct{}), values: groupValues{arena: &t.s.values}}
	// One extra count held until every message of the call is handed
	// over, so the group cannot complete early.
	g.pending.Store(1)
	t.mu.Lock()
	t.groups = append(t.groups, g)
	t.mu.Unlock()
	defer g.finish(nil)

	batches := map[int32]*pendingBatch{}
	maxBatch := t.s.proto.batch()
	fr, framed := t.s.proto.(framer)
	var order []int32
	send := func(p int32) error {
		b := batches[p]
		if b == nil || len(b.keys) == 0 {
			return nil
		}
		k, v := b.keys[0], b.values[0]
		if framed {
			// Framed into reused buffers and copied into the arena: the
			// events' own copies there are released with the group.
			k, v = fr.frame(t.frame.key[:0], t.frame.value[:0], b.keys, b.values)
			t.frame.key, t.frame.value = reusable(k), reusable(v)
			k, v = g.values.copyOf(k), g.values.copyOf(v)
		}
		delete(batches, p)
		return t.produce(ctx, g, p, k, v, b.rows)
	}
	for _, txn := range txns {
		for _, row := range txn.Rows {
			if err := ctx.Err(); err != nil {
				return err
			}
			if row.Schema == nil {
				return t.fail(fmt.Errorf("kafka sink: table %s: a row at commit ts %d has no schema", t.table, row.CommitTs))
			}
			if n := row.Schema.Table; n.Schema != t.table.Schema || n.Table != t.table.Table {
				// A rename keeps the table sink; rows after it carry the
				// new name, which may route to another topic. Earlier
				// messages of the call go out first, in order.
				for _, p := range order {
					if err := send(p); err != nil {
						return err
					}
				}
				order = order[:0]
				if err := t.rename(ctx, n); err != nil {
					return t.fail(err)
				}
			}
			p, err := t.part.partition(row, t.info.partitions)
			if err != nil {
				return t.fail(err)
			}
			limit := t.info.maxMessageBytes
			k, v, err := t.encode(ctx, &g.values, row, limit)
			if err != nil {
				return t.fail(err)
			}
			b := batches[p]
			if b != nil && (len(b.keys) >= maxBatch || b.size+len(k)+len(v)+t.s.proto.overhead(len(b.keys)+1)+recordOverhead > limit) {
				if err := send(p); err != nil {
					return err
				}
				b = nil
			}
			if b == nil {
				b = &pendingBatch{}
				batches[p] = b
				order = append(order, p)
			}
			b.keys = append(b.keys, k)
			b.values = append(b.values, v)
			b.size += len(k) + len(v)
			b.rows++
			if maxBatch <= 1 {
				if err := send(p); err != nil {
					return err
				}
			}
		}
	}
	for _, p := range order {
		if err := send(p); err != nil {
			return err
		}
	}
	return nil
}

// rename routes the table's rows by its new name from here on.
func (t *tableSink) rename(ctx context.Context, n model.TableName) error {
	rt := t.s.route.route(n)
	ti, err := t.s.ensureTopic(ctx, rt.topic)
	if err != nil {
		return fmt.Errorf("table %s renamed to %s: %w", t.table, n, err)
	}
	t.s.mu.Lock()
	t.s.watermarkTopics[rt.topic] = true
	t.s.mu.Unlock()
	t.s.log.Info().Str("table", t.table.String()).Str("new_name", n.String()).Str("topic", rt.topic).Msg("table renamed; routing by the new name")
	t.table, t.topic, t.info, t.part = n, rt.topic, ti, newPartitioner(rt, n)
	return nil
}

// encode encodes a row into memory that stays valid until the write's
// group ends (gv's arena chunks, or an allocation of its own for a large
// row), applying large-message-handle-option when the message would be
// over the limit.
// A row that stays over the limit is an unretryable error: the row
// encodes the same on every attempt, so restarting the table from its
// checkpoint would only meet it again, forever.
func (t *tableSink) encode(ctx context.Context, gv *groupValues, row *model.RowChange, limit int) (k, v []byte, err error) {
	k, v, err = t.s.proto.appendRow(ctx, t.topic, t.scratch.key[:0], t.scratch.value[:0], row)
	// The next row reuses what this one grew.
	if k != nil {
		t.scratch.key = reusable(k)
	}
	if v != nil {
		t.scratch.value = reusable(v)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kafka sink: encoding a row of table %s at commit ts %d: %w", t.table, row.CommitTs, err)
	}
	// size is the message a consumer would get (framing included);
	// Kafka's record framing must fit under the limit as well.
	size := len(k) + len(v) + t.s.proto.overhead(1)
	if size+recordOverhead <= limit {
		return gv.copyOf(k), gv.copyOf(v), nil
	}
	cfg := t.s.cfg
	switch cfg.LargeMessageHandle {
	case LargeMessageHandleKeyOnly:
		k2, v2, err := t.s.proto.encodeRow(ctx, t.topic, row, rowOpts{onlyHandleKey: true})
		if err != nil {
			return nil, nil, fmt.Errorf("kafka sink: encoding the handle key of a large row of table %s at commit ts %d: %w", t.table, row.CommitTs, err)
		}
		if len(k2)+len(v2)+t.s.proto.overhead(1)+recordOverhead > limit {
			t.s.fm.large(LargeMessageNone).Inc()
			return nil, nil, sink.Unretryable(fmt.Errorf("kafka sink: table %s: a row at commit ts %d is %d bytes even with only its handle key, over %s", t.table, row.CommitTs, len(k2)+len(v2), t.info.limitName))
		}
		t.s.fm.large(LargeMessageHandleKeyOnly).Inc()
		t.s.log.Warn().Str("table", t.table.String()).Uint64("commit_ts", row.CommitTs).Int("bytes", size).Msg("row over max-message-bytes sent with only its handle key")
		return k2, v2, nil
	case LargeMessageClaimCheck:
		loc, err := t.s.claims.Put(ctx, row, v)
		if err != nil {
			return nil, nil, fmt.Errorf("kafka sink: table %s: storing a large row at commit ts %d: %w", t.table, row.CommitTs, err)
		}
		k2, v2, err := t.s.proto.encodeRow(ctx, t.topic, row, rowOpts{onlyHandleKey: true, claimCheck: loc})
		if err != nil {
			return nil, nil, fmt.Errorf("kafka sink: encoding the claim check of a large row of table %s at commit ts %d: %w", t.table, row.CommitTs, err)
		}
		if len(k2)+len(v2)+t.s.proto.overhead(1)+recordOverhead > limit {
			return nil, nil, sink.Unretryable(fmt.Errorf("kafka sink: table %s: the claim-check message of a row at commit ts %d is %d bytes, over %s", t.table, row.CommitTs, len(k2)+len(v2), t.info.limitName))
		}
		t.s.fm.large(LargeMessageClaimCheck).Inc()
		t.s.log.Info().Str("table", t.table.String()).Uint64("commit_ts", row.CommitTs).Int("bytes", size).Str("location", loc).Msg("row over max-message-bytes stored for claim check")
		return k2, v2, nil
	default:
		t.s.fm.large(LargeMessageNone).Inc()
		return nil, nil, sink.Unretryable(fmt.Errorf("kafka sink: table %s: a row at commit ts %d encodes to a message of %d bytes (%d with Kafka's record framing), over %s (set large-message-handle-option=handle-key-only or claim-check to send such rows)",
			t.table, row.CommitTs, size, size+recordOverhead, t.info.limitName))
	}
}

func (t *tableSink) produce(ctx context.Context, g *ackGroup, p int32, k, v []byte, rows int) error {
	g.pending.Add(1)
	start := time.Now()
	rec := &kgo.Record{Topic: t.topic, Partition: p, Key: k, Value: v}
	fm := t.s.fm
	t.s.client.Produce(t.ctx, rec, func(r *kgo.Record, err error) {
		if err == nil {
			fm.latency.Observe(time.Since(start).Seconds())
			fm.messages.Inc()
			fm.bytes.Add(float64(len(r.Key) + len(r.Value)))
			fm.rows.Add(float64(rows))
		} else {
			err = fmt.Errorf("kafka sink: table %s: producing to %s partition %d: %w", t.table, t.topic, p, t.s.withACLHint(err, t.topic))
		}
		g.finish(err)
	})
	return ctx.Err()
}

// Flush waits until every message of writes that hold a transaction at or
// below upto is acknowledged with the required acks.
func (t *tableSink) Flush(ctx context.Context, upto model.Ts) error {
	for {
		if err := t.err(); err != nil {
			return err
		}
		t.mu.Lock()
		if len(t.groups) == 0 || t.groups[0].firstTs > upto {
			t.mu.Unlock()
			return nil
		}
		g := t.groups[0]
		t.mu.Unlock()
		select {
		case <-g.done:
		case <-ctx.Done():
			return fmt.Errorf("kafka sink: table %s: waiting for acknowledgements: %w", t.table, ctx.Err())
		}
		if g.err != nil {
			return t.fail(g.err)
		}
		t.mu.Lock()
		if len(t.groups) > 0 && t.groups[0] == g {
			t.groups = t.groups[1:]
		}
		t.mu.Unlock()
	}
}

func (t *tableSink) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// fail makes the error sticky: a table sink that lost a message cannot
// go on writing later ones, or a consumer would see a gap.
func (t *tableSink) fail(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == nil {
		t.failed = err
	}
	return t.failed
}

func (t *tableSink) Close() error {
	t.cancel()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == nil {
		t.failed = errors.New("kafka sink: table sink is closed")
	}
	return nil
}

// reusable is b emptied for the next encoding, unless it grew past what
// the arena takes: one very large row should not stay allocated for the
// table sink's life.
func reusable(b []byte) []byte {
	if cap(b) > maxArenaValue {
		return nil
	}
	return b[:0]
}
