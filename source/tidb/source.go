// Package tidb is the TiDB upstream, read the way TiCDC reads it: PD (via
// github.com/tikv/pd/client) for the cluster ID, timestamps, regions and
// the GC service safepoint; TiKV's change data protocol (kvproto cdcpb)
// for changes, through a kv client that subscribes every region of a
// table's record range; TiDB's own codec (tablecodec, rowcodec) and meta
// model for rows, schemas and DDL jobs. See DESIGN.md.
package tidb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	timodel "github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/tablecodec"
	"github.com/rs/zerolog"
	"github.com/tikv/client-go/v2/config"
	"github.com/tikv/client-go/v2/oracle"
	"github.com/tikv/client-go/v2/tikv"
	pd "github.com/tikv/pd/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// ErrPDUnreachable reports that no PD address answered.
var ErrPDUnreachable = errors.New("PD unreachable")

// version is what the client tells TiKV about itself (cdcpb Header).
const version = "8.5.0"

// Option configures a source.
type Option func(*options)

type options struct {
	log              zerolog.Logger
	metrics          *Metrics
	stallBound       time.Duration
	resolveLockEvery time.Duration
	backoffBase      time.Duration
	backoffMax       time.Duration
	pdRetries        int
}

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics sets the Prometheus series (NewMetrics).
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// WithStallBound sets how long a region's resolved ts may stand still
// before it is reported and its locks are resolved (default 20 s), and how
// often at most a region's locks are resolved (default 10 s).
func WithStallBound(stall, resolveEvery time.Duration) Option {
	return func(o *options) { o.stallBound, o.resolveLockEvery = stall, resolveEvery }
}

// WithBackoff sets the retry backoff of a region (default 50 ms doubling
// to 5 s).
func WithBackoff(base, max time.Duration) Option {
	return func(o *options) { o.backoffBase, o.backoffMax = base, max }
}

// Source is one TiDB cluster. It implements source.SpanSource.
type Source struct {
	cfg       *Config
	opts      options
	log       zerolog.Logger
	pd        pd.Client
	kv        *tikv.KVStore
	client    *kvClient
	clusterID uint64
	metrics   *upstreamMetrics

	mu       sync.Mutex
	trackers []*schemaTracker
	closed   bool
}

var _ source.SpanSource = (*Source)(nil)

func newOptions(opts []Option) options {
	o := options{log: zerolog.Nop(), stallBound: 20 * time.Second, resolveLockEvery: 10 * time.Second,
		backoffBase: 50 * time.Millisecond, backoffMax: 5 * time.Second, pdRetries: 5}
	for _, f := range opts {
		f(&o)
	}
	if o.metrics == nil {
		o.metrics = NewMetrics(nil)
	}
	return o
}

// connectPD opens a PD client. The client lives until it is closed; ctx
// only bounds the connection attempt.
func connectPD(ctx context.Context, cfg *Config, retries int) (pd.Client, error) {
	cctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	cli, err := pd.NewClientWithContext(cctx, cfg.PDAddrs,
		pd.SecurityOption{CAPath: cfg.CA, CertPath: cfg.Cert, KeyPath: cfg.Key},
		pd.WithMaxErrorRetry(retries), pd.WithCustomTimeoutOption(5*time.Second))
	stop()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connect to PD at %v: %w (%v)", cfg.PDAddrs, ErrPDUnreachable, err)
	}
	if ctx.Err() != nil {
		cli.Close()
		cancel()
		return nil, fmt.Errorf("connect to PD at %v: %w", cfg.PDAddrs, ctx.Err())
	}
	return cli, nil
}

// Check is the create-time check of a tidb:// source: PD answers, with a
// cluster ID and a timestamp. It changes nothing.
func Check(ctx context.Context, cfg *Config) (clusterID uint64, err error) {
	cli, err := connectPD(ctx, cfg, 2)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	if _, _, err := cli.GetTS(ctx); err != nil {
		return 0, fmt.Errorf("PD at %v gives no timestamp: %w", cfg.PDAddrs, err)
	}
	return cli.GetClusterID(ctx), nil
}

// Open connects to PD and prepares the kv client; regions are subscribed
// when tables are.
func Open(ctx context.Context, cfg *Config, opts ...Option) (*Source, error) {
	o := newOptions(opts)
	pdCli, err := connectPD(ctx, cfg, o.pdRetries)
	if err != nil {
		return nil, err
	}
	clusterID := pdCli.GetClusterID(ctx)
	sec := config.Security{ClusterSSLCA: cfg.CA, ClusterSSLCert: cfg.Cert, ClusterSSLKey: cfg.Key}
	rpc := tikv.NewRPCClient(tikv.WithSecurity(sec))
	store, err := tikv.NewKVStore("raftcdc-"+strconv.FormatUint(clusterID, 10), tikv.NewCodecPDClient(tikv.ModeTxn, pdCli), tikv.NewMockSafePointKV(), rpc)
	if err != nil {
		pdCli.Close()
		return nil, fmt.Errorf("open TiKV client for cluster %d: %w", clusterID, err)
	}
	dial := []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20)),
		grpc.WithInitialWindowSize(1 << 23), grpc.WithInitialConnWindowSize(1 << 24),
	}
	if cfg.TLS() {
		tc, err := sec.ToTLSConfig()
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("TLS files for TiKV: %w", err)
		}
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(tc.Clone())))
	} else {
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	id := strconv.FormatUint(clusterID, 10)
	log := o.log.With().Str("upstream", id).Logger()
	s := &Source{cfg: cfg, opts: o, log: log, pd: pdCli, kv: store, clusterID: clusterID, metrics: o.metrics.forUpstream(id)}
	s.client = newKVClient(store, kvClientConfig{clusterID: clusterID, workers: cfg.KVClientWorkers, stallBound: o.stallBound,
		resolveLockEvery: o.resolveLockEvery, backoffBase: o.backoffBase, backoffMax: o.backoffMax, dial: dial, version: version}, log, s.metrics)
	log.Info().Strs("pd", cfg.PDAddrs).Msg("connected to TiDB")
	return s, nil
}

// Close stops every subscription and the clients.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	trackers := s.trackers
	s.trackers = nil
	s.mu.Unlock()
	for _, t := range trackers {
		t.close()
	}
	s.client.close()
	return s.kv.Close()
}

// UpstreamID is PD's cluster ID.
func (s *Source) UpstreamID(context.Context) (string, error) {
	return strconv.FormatUint(s.clusterID, 10), nil
}

// CurrentTs is a fresh timestamp from PD's TSO.
func (s *Source) CurrentTs(ctx context.Context) (model.Ts, error) {
	p, l, err := s.pd.GetTS(ctx)
	if err != nil {
		return 0, fmt.Errorf("get a timestamp from PD: %w", err)
	}
	return oracle.ComposeTS(p, l), nil
}

// GCSafepoint is PD's GC safepoint. PD's client has no plain read of it;
// UpdateGCSafePoint only ever raises the safepoint, so asking it to set 0
// returns the one in force and changes nothing.
func (s *Source) GCSafepoint(ctx context.Context) (model.Ts, error) {
	sp, err := s.pd.UpdateGCSafePoint(ctx, 0)
	if err != nil {
		return 0, fmt.Errorf("read PD's GC safepoint: %w", err)
	}
	return sp, nil
}

// UpdateServiceGCSafepoint sets the service safepoint with a TTL (PD keeps
// seconds; a positive TTL under a second counts as one); ttl <= 0 removes
// the service. It returns the minimum service safepoint in force, which
// is above safepoint when PD refused it (that history is gone).
func (s *Source) UpdateServiceGCSafepoint(ctx context.Context, serviceID string, ttl time.Duration, safepoint model.Ts) (model.Ts, error) {
	secs := int64(ttl / time.Second)
	if ttl > 0 && secs == 0 {
		secs = 1
	}
	if ttl <= 0 {
		secs, safepoint = 0, math.MaxUint64
	}
	min, err := s.pd.UpdateServiceGCSafePoint(ctx, serviceID, secs, safepoint)
	if err != nil {
		return 0, fmt.Errorf("update PD service GC safepoint %q: %w", serviceID, err)
	}
	return min, nil
}

// checkGC refuses a start below the GC safepoint.
func (s *Source) checkGC(ctx context.Context, ts model.Ts, what string) error {
	gc, err := s.GCSafepoint(ctx)
	if err != nil {
		return err
	}
	if ts < gc {
		return fmt.Errorf("%s from ts %d: below TiDB's GC safepoint %d: %w", what, ts, gc, source.ErrSnapshotLost)
	}
	return nil
}

// TablesAt lists the user tables that exist at ts, read from TiDB's meta
// keys in a snapshot at ts (TiDB's own databases left out).
func (s *Source) TablesAt(ctx context.Context, ts model.Ts) ([]model.TableName, error) {
	if err := s.checkGC(ctx, ts, "list tables"); err != nil {
		return nil, err
	}
	cat, err := readCatalog(ctx, snapshot{s.kv.GetSnapshot(ts)})
	if err != nil {
		return nil, fmt.Errorf("list TiDB tables at ts %d: %w", ts, err)
	}
	var out []model.TableName
	for id := range cat.tables {
		tn := cat.name(id)
		if !systemSchema(tn.Schema) {
			out = append(out, tn)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SchemaAt is a table's schema in force at ts: the version the rows
// committed right after ts are decoded with. It comes from a schema
// tracker (TiDB's meta keys read at its base, then the DDL history), not
// from a plain snapshot read at ts: a DDL's version starts at its
// FinishedTS, before the transaction that writes it commits, and a table
// created at ts (the owner starts it there) must exist at ts.
func (s *Source) SchemaAt(ctx context.Context, table model.TableName, ts model.Ts) (*model.TableSchema, error) {
	if err := s.checkGC(ctx, ts, "read schema of "+table.String()); err != nil {
		return nil, err
	}
	tr, err := s.acquireTracker(ctx, ts)
	if err != nil {
		return nil, fmt.Errorf("read schema of %s at ts %d: %w", table, ts, err)
	}
	defer s.releaseTracker(tr)
	if err := tr.waitResolved(ctx, ts); err != nil {
		return nil, fmt.Errorf("read schema of %s at ts %d: %w", table, ts, err)
	}
	v := tr.versionAt(table.ID, ts)
	if v == nil || v.info == nil {
		return nil, fmt.Errorf("read schema of %s at ts %d: %w (table ID %d)", table, ts, errNoTable, table.ID)
	}
	return tr.schemaOf(v)
}

// SubscribeTxns streams one table's transactions with commit ts > startTs:
// every physical table (partition) of it is subscribed through the kv
// client, and each row is decoded against the table's version at commit
// ts − 1. A rename does not end the subscription (rows carry the new
// name); a dropped or truncated table gets only resolved ts afterwards.
func (s *Source) SubscribeTxns(ctx context.Context, table model.TableName, startTs model.Ts) (source.TxnSubscription, error) {
	if err := s.checkGC(ctx, startTs, "subscribe to "+table.String()); err != nil {
		return nil, err
	}
	tr, err := s.acquireTracker(ctx, startTs)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", table, err)
	}
	if err := tr.waitResolved(ctx, startTs); err != nil {
		s.releaseTracker(tr)
		return nil, fmt.Errorf("subscribe to %s: %w", table, err)
	}
	v := tr.versionAt(table.ID, startTs)
	if v == nil || v.info == nil {
		s.releaseTracker(tr)
		return nil, fmt.Errorf("subscribe to %s at ts %d: %w (table ID %d)", table, startTs, errNoTable, table.ID)
	}
	sub := &txnSubscription{src: s, tr: tr, id: table.ID, startTs: startTs, label: label(v.db, v.info.Name.O),
		q: newEventQueue(), spans: map[*spanSub]*physSpan{}, byPhys: map[int64]*physSpan{}, resolved: startTs,
		pools: map[*tableVersion]*sync.Pool{}, closed: make(chan struct{})}
	sub.syncPartitions(v.info, startTs)
	return sub, nil
}

// SubscribeDDL streams the DDL events with commit ts > startTs.
func (s *Source) SubscribeDDL(ctx context.Context, startTs model.Ts) (source.DDLSubscription, error) {
	if err := s.checkGC(ctx, startTs, "subscribe to DDL"); err != nil {
		return nil, err
	}
	tr, err := s.acquireTracker(ctx, startTs)
	if err != nil {
		return nil, fmt.Errorf("subscribe to DDL: %w", err)
	}
	return &ddlSubscription{src: s, tr: tr, startTs: startTs, resolved: startTs, closed: make(chan struct{})}, nil
}

// ---- table subscription ----

type physSpan struct {
	id       int64
	sub      *spanSub
	resolved uint64
}

type txnSubscription struct {
	src      *Source
	tr       *schemaTracker
	id       int64
	startTs  uint64
	label    string
	q        *eventQueue
	spans    map[*spanSub]*physSpan
	byPhys   map[int64]*physSpan
	pending  []pendingRow
	resolved uint64

	// Decoders per table version, pooled: rows are decoded by the kv
	// client's workers as they arrive (in parallel across regions) when
	// their schema is already known, and by Next otherwise.
	poolMu sync.Mutex
	pools  map[*tableVersion]*sync.Pool

	mu        sync.Mutex
	closeOnce sync.Once
	closed    chan struct{}
}

// syncPartitions subscribes physical tables that appeared (a partition
// added or truncated: from the ts of the DDL that made it, or from
// from when given) and drops the ones gone.
func (t *txnSubscription) syncPartitions(info *timodel.TableInfo, from uint64) {
	want := map[int64]bool{}
	for _, pid := range physicalIDs(info) {
		want[pid] = true
		if t.byPhys[pid] != nil {
			continue
		}
		from := from
		if from == 0 {
			from = max(t.tr.partitionSince(t.id, pid), t.startTs)
		}
		start, end := recordRange(pid)
		sp := t.src.client.subscribe(start, end, from, t.label, t.q, t.predecode)
		ps := &physSpan{id: pid, sub: sp, resolved: from}
		t.spans[sp], t.byPhys[pid] = ps, ps
	}
	for pid, ps := range t.byPhys {
		if !want[pid] {
			ps.sub.close()
			delete(t.byPhys, pid)
			delete(t.spans, ps.sub)
		}
	}
}

func (t *txnSubscription) Close() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		t.mu.Lock()
		for _, ps := range t.byPhys {
			ps.sub.close()
		}
		t.mu.Unlock()
		t.src.metrics.resolvedLag.DeleteLabelValues(t.label)
		t.src.releaseTracker(t.tr)
	})
	return nil
}

func (t *txnSubscription) Next(ctx context.Context) (source.TxnBatch, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lagTick := time.NewTicker(time.Second)
	defer lagTick.Stop()
	for {
		select {
		case <-t.closed:
			return source.TxnBatch{}, errors.New("tidb table subscription is closed")
		default:
		}
		evs, err := t.q.take()
		if err != nil {
			return source.TxnBatch{}, fmt.Errorf("table %s: %w", t.label, err)
		}
		var g txnGrouper
		for _, ev := range evs {
			ps := t.spans[ev.span]
			if ps == nil {
				continue // a partition dropped since
			}
			for i := range ev.rows {
				if ev.changes != nil && ev.changes[i] != nil {
					// Decoded on a worker: straight into its transaction.
					g.add(ev.changes[i])
					continue
				}
				t.pending = append(t.pending, pendingRow{raw: ev.rows[i]})
			}
			if ev.resolved > ps.resolved {
				ps.resolved = ev.resolved
			}
		}
		schemaResolved, changed, trErr := t.tr.state()
		if trErr != nil {
			return source.TxnBatch{}, fmt.Errorf("table %s: %w", t.label, trErr)
		}
		if v := t.tr.versionAt(t.id, schemaResolved); v != nil && v.info != nil && v.info.Partition != nil {
			t.syncPartitions(v.info, 0)
		}
		if err := t.decodeReady(schemaResolved, &g); err != nil {
			return source.TxnBatch{}, err
		}
		txns := g.txns
		out := schemaResolved + 1
		for _, ps := range t.byPhys {
			out = min(out, ps.resolved)
		}
		advanced := out > t.resolved
		if advanced {
			t.resolved = out
			t.src.metrics.resolvedLag.WithLabelValues(t.label).Set(model.LagSeconds(out, time.Now()))
		}
		if advanced || len(txns) > 0 {
			return source.TxnBatch{Txns: txns, ResolvedTs: t.resolved}, nil
		}
		select {
		case <-ctx.Done():
			return source.TxnBatch{}, ctx.Err()
		case <-t.closed:
		case <-t.q.wait():
		case <-changed:
		case <-lagTick.C:
			t.src.metrics.resolvedLag.WithLabelValues(t.label).Set(model.LagSeconds(t.resolved, time.Now()))
		}
	}
}

// pendingRow is a row waiting for the schema tracker to reach its commit
// ts − 1 (or one a worker could not decode), to be decoded in Next.
type pendingRow struct {
	raw rawRow
}

// txnGrouper gathers one Next's rows into transactions. Rows of one
// transaction that arrive in different steps (from different regions, or
// decoded at different times) become several Txn values with the same
// key; the sorter keeps them together.
type txnGrouper struct {
	txns  []*model.Txn
	byKey map[model.TxnKey]*model.Txn
}

func (g *txnGrouper) add(rc *model.RowChange) {
	k := model.TxnKey{CommitTs: rc.CommitTs, StartTs: rc.StartTs}
	txn := g.byKey[k]
	if txn == nil {
		if g.byKey == nil {
			g.byKey = map[model.TxnKey]*model.Txn{}
		}
		txn = &model.Txn{CommitTs: rc.CommitTs, StartTs: rc.StartTs}
		g.byKey[k] = txn
		g.txns = append(g.txns, txn)
	}
	txn.Rows = append(txn.Rows, rc)
}

// decodeReady decodes the pending rows whose schema is known (commit ts −
// 1 at or below the tracker's resolved ts) into g.
func (t *txnSubscription) decodeReady(schemaResolved uint64, g *txnGrouper) error {
	if len(t.pending) == 0 {
		return nil
	}
	b := batchDecoder{t: t}
	defer b.release()
	keep := t.pending[:0]
	for i := range t.pending {
		r := &t.pending[i].raw
		if r.commitTs-1 > schemaResolved {
			keep = append(keep, t.pending[i])
			continue
		}
		rc, ok, err := b.decode(r)
		if err != nil {
			return err
		}
		if !ok {
			t.src.log.Warn().Str("table", t.label).Uint64("commit_ts", r.commitTs).Msg("row of a table that did not exist at its commit ts; skipped")
			continue
		}
		g.add(rc)
	}
	clear(t.pending[len(keep):])
	t.pending = keep
	return nil
}

// batchDecoder decodes the rows of one batch, holding one decoder while
// consecutive rows fall in the same table version: the tracker's lock, the
// pool's and the version search are paid per version, not per row. Not
// safe for concurrent use; release returns the decoder.
type batchDecoder struct {
	t           *txnSubscription
	from, until uint64 // the held version is valid for ts in [from, until)
	pool        *sync.Pool
	dec         *rowDecoder
}

// decode decodes a row against the table's version at its commit ts − 1;
// ok is false when the table did not exist then.
func (b *batchDecoder) decode(r *rawRow) (*model.RowChange, bool, error) {
	ts := r.commitTs - 1
	if b.dec == nil || ts < b.from || ts >= b.until {
		b.release()
		v, until := b.t.tr.versionUntil(b.t.id, ts)
		if v == nil || v.info == nil {
			return nil, false, nil
		}
		pool, err := b.t.pool(v)
		if err != nil {
			return nil, false, err
		}
		b.from, b.until, b.pool = v.ts, until, pool
		b.dec = pool.Get().(*rowDecoder)
	}
	rc, err := b.dec.decodeRow(r)
	return rc, err == nil, err
}

func (b *batchDecoder) release() {
	if b.dec != nil {
		b.pool.Put(b.dec)
		b.dec = nil
	}
}

// predecode runs on the kv client's workers: it decodes what it can now
// (the tracker has passed the rows' commit ts − 1) and leaves the rest,
// and any row it cannot decode, to Next.
func (t *txnSubscription) predecode(rows []rawRow) []*model.RowChange {
	resolved, _, err := t.tr.state()
	if err != nil {
		return nil
	}
	b := batchDecoder{t: t}
	defer b.release()
	var out []*model.RowChange
	for i := range rows {
		if rows[i].commitTs-1 > resolved {
			continue
		}
		rc, ok, err := b.decode(&rows[i])
		if err != nil || !ok {
			continue
		}
		if out == nil {
			out = make([]*model.RowChange, len(rows))
		}
		out[i] = rc
	}
	return out
}

func (t *txnSubscription) pool(v *tableVersion) (*sync.Pool, error) {
	t.poolMu.Lock()
	defer t.poolMu.Unlock()
	if p := t.pools[v]; p != nil {
		return p, nil
	}
	schema, err := t.tr.schemaOf(v)
	if err != nil {
		return nil, err
	}
	// Check the version decodes at all before handing out a pool.
	first, err := newRowDecoder(v.info, schema)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.label, err)
	}
	p := &sync.Pool{New: func() any {
		d, _ := newRowDecoder(v.info, schema)
		return d
	}}
	p.Put(first)
	t.pools[v] = p
	return p, nil
}

// ---- DDL subscription ----

type ddlSubscription struct {
	src      *Source
	tr       *schemaTracker
	startTs  uint64
	next     int
	resolved uint64

	mu        sync.Mutex
	closeOnce sync.Once
	closed    chan struct{}
}

func (d *ddlSubscription) Close() error {
	d.closeOnce.Do(func() {
		close(d.closed)
		d.src.releaseTracker(d.tr)
	})
	return nil
}

func (d *ddlSubscription) Next(ctx context.Context) (source.DDLBatch, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		select {
		case <-d.closed:
			return source.DDLBatch{}, errors.New("tidb DDL subscription is closed")
		default:
		}
		resolved, changed, err := d.tr.state()
		if err != nil {
			return source.DDLBatch{}, err
		}
		evs, next := d.tr.eventsAfter(d.next, d.startTs)
		d.next = next
		resolved = max(resolved, d.startTs)
		if len(evs) > 0 || resolved > d.resolved {
			d.resolved = resolved
			return source.DDLBatch{DDLs: evs, ResolvedTs: resolved}, nil
		}
		select {
		case <-ctx.Done():
			return source.DDLBatch{}, ctx.Err()
		case <-d.closed:
		case <-changed:
		}
	}
}

func recordRange(id int64) (start, end []byte) {
	start = append([]byte(nil), tablecodec.GenTableRecordPrefix(id)...)
	end = append([]byte(nil), start...)
	end[len(end)-1]++
	return start, end
}
