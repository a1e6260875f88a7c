// Package tidbfake is a TiDB cluster for tests and benchmarks that speaks
// the real protocols: a PD serving pdpb over gRPC and one to three TiKV
// stores serving cdcpb.ChangeData and the kvrpcpb calls snapshot reads and
// lock resolution need, all from kvproto's service definitions. Behind
// them is one MVCC store whose keys and values are what TiDB writes:
// tables defined by DDL that TiDB's parser parses, kept as TiDB's meta
// model, rows encoded by TiDB's tablecodec and rowcodec, DDL jobs recorded
// in mysql.tidb_ddl_history and the meta keys by TiDB's meta package.
//
// Tests drive it directly: run DDL and transactions, split and merge
// regions, move leaders, stop and restart stores, inject every region
// error, hold a lock, and read the expected table contents at any ts.
// `raftcdc tools tidbfake` runs it as a command, to try the tidb:// source
// without a TiDB. See DESIGN.md.
package tidbfake

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/pingcap/kvproto/pkg/cdcpb"
	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"github.com/pingcap/kvproto/pkg/metapb"
	"github.com/pingcap/tidb/pkg/tablecodec"
	"github.com/tikv/client-go/v2/oracle"
)

// Options configure a cluster.
type Options struct {
	// Stores is the number of TiKV stores, 1–3 (default 3). Every region
	// has a peer on every store.
	Stores int
	// ClusterID is PD's cluster ID (default: random).
	ClusterID uint64
	// ResolvedTsInterval is how often stores send resolved ts (default
	// 100 ms; TiKV's cdc.min-ts-interval is 1 s).
	ResolvedTsInterval time.Duration
	// Addr is the loopback address to listen on (default 127.0.0.1).
	Addr string
	// PDPort and StorePorts pin the listening ports (default: any free
	// port). A process that restarts the fake needs them stable.
	PDPort     int
	StorePorts []int
	// Logf receives the fake's log lines (default: none).
	Logf func(format string, args ...any)
}

// Cluster is one fake TiDB cluster.
type Cluster struct {
	opts      Options
	clusterID uint64

	mu       sync.Mutex
	lastPhys int64
	logical  int64
	mvcc     *mvcc
	regions  regionTable
	nextID   uint64 // region and peer IDs
	cat      *catalog
	stores   []*Store
	pd       *pdServer
	gc       gcState
	faults   []*fault
	subs     map[uint64]map[*cdcSub]struct{} // by region ID
	noV2     map[uint64]bool                 // stores without EventFeedV2
	rowV1    bool
	closed   bool
	// scanPause slows incremental scans down (SetScanDelay).
	scanPause time.Duration
	// counters for tests (cluster lock)
	scannedRows, liveBeforeInit int64
}

type gcState struct {
	safePoint uint64
	services  map[string]serviceSafePoint
}

type serviceSafePoint struct {
	ts       uint64
	expireAt time.Time
}

// Start builds a cluster with an empty key space (one region), a mysql
// database holding tidb_ddl_history, and PD and the stores listening on
// loopback. It is closed with Close.
func Start(opts Options) (*Cluster, error) {
	if opts.Stores == 0 {
		opts.Stores = 3
	}
	if opts.Stores < 1 || opts.Stores > 3 {
		return nil, fmt.Errorf("tidbfake: %d stores; 1 to 3 are supported", opts.Stores)
	}
	if opts.ClusterID == 0 {
		opts.ClusterID = rand.Uint64()>>1 | 1
	}
	if opts.ResolvedTsInterval <= 0 {
		opts.ResolvedTsInterval = 100 * time.Millisecond
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	c := &Cluster{
		opts:      opts,
		clusterID: opts.ClusterID,
		mvcc:      newMVCC(),
		regions:   regionTable{byID: map[uint64]*region{}},
		nextID:    1000,
		cat:       newCatalog(),
		gc:        gcState{services: map[string]serviceSafePoint{}},
		subs:      map[uint64]map[*cdcSub]struct{}{},
		noV2:      map[uint64]bool{},
	}
	first := &region{id: c.allocIDLocked(), confVer: 1, version: 1}
	for i := 0; i < opts.Stores; i++ {
		st := &Store{c: c, id: uint64(i + 1)}
		if i < len(opts.StorePorts) {
			st.port = opts.StorePorts[i]
		}
		c.stores = append(c.stores, st)
		first.peers = append(first.peers, &metapb.Peer{Id: c.allocIDLocked(), StoreId: st.id})
	}
	first.leader = 1
	c.regions.list = []*region{first}
	c.regions.byID[first.id] = first

	for _, st := range c.stores {
		if err := st.start(); err != nil {
			c.Close()
			return nil, err
		}
	}
	pd, err := startPD(c, opts.PDPort)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.pd = pd
	if err := c.bootstrap(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// bootstrap creates what every TiDB has before a user connects: the mysql
// database with the DDL history table.
func (c *Cluster) bootstrap() error {
	if _, err := c.ExecDDL("", "CREATE DATABASE mysql"); err != nil {
		return err
	}
	return c.createSystemTable(historyTableSQL, HistoryTableID)
}

// Close stops PD and every store.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if c.pd != nil {
		c.pd.stop()
	}
	for _, st := range c.stores {
		st.stop()
	}
}

// ClusterID is PD's cluster ID.
func (c *Cluster) ClusterID() uint64 { return c.clusterID }

// PDAddr is PD's host:port.
func (c *Cluster) PDAddr() string { return c.pd.addr }

// StoreAddr is the address of store i (0-based).
func (c *Cluster) StoreAddr(i int) string { return c.stores[i].addr() }

// Stores is the number of stores.
func (c *Cluster) Stores() int { return len(c.stores) }

func (c *Cluster) logf(format string, args ...any) { c.opts.Logf(format, args...) }

func (c *Cluster) allocIDLocked() uint64 {
	c.nextID++
	return c.nextID
}

// tsoLocked allocates a timestamp, as PD's TSO: physical milliseconds and
// a logical counter, strictly increasing.
func (c *Cluster) tsoLocked() uint64 {
	now := time.Now().UnixMilli()
	if now > c.lastPhys {
		c.lastPhys, c.logical = now, 0
	}
	c.logical++
	if c.logical >= 1<<18 {
		c.lastPhys++
		c.logical = 1
	}
	return oracle.ComposeTS(c.lastPhys, c.logical)
}

// tsoBatchLocked allocates n timestamps and returns the last one's parts.
func (c *Cluster) tsoBatchLocked(n int64) (physical, logical int64) {
	now := time.Now().UnixMilli()
	if now > c.lastPhys {
		c.lastPhys, c.logical = now, 0
	}
	if c.logical+n >= 1<<18 {
		c.lastPhys++
		c.logical = 0
	}
	c.logical += n
	return c.lastPhys, c.logical
}

// Now is a fresh timestamp from the TSO.
func (c *Cluster) Now() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tsoLocked()
}

// mutation is one key written by a transaction.
type mutation struct {
	key   []byte
	value []byte
	del   bool
}

func (m mutation) op() kvrpcpb.Op {
	if m.del {
		return kvrpcpb.Op_Del
	}
	return kvrpcpb.Op_Put
}

// errConflict is a write conflict or a key locked by another transaction.
var errConflict = errors.New("write conflict")

// prewriteLocked locks every mutation for startTs, as TiKV's prewrite, and
// sends a PREWRITE event (with the old value) to the CDC observers.
func (c *Cluster) prewriteLocked(muts []mutation, startTs uint64, ttl time.Duration) error {
	if len(muts) == 0 {
		return nil
	}
	for _, m := range muts {
		if e := c.mvcc.get(m.key); e != nil {
			if e.lock != nil && e.lock.startTs != startTs {
				return fmt.Errorf("prewrite %x at %d: locked by %d: %w", m.key, startTs, e.lock.startTs, errConflict)
			}
			if n := len(e.versions); n > 0 && e.versions[n-1].commitTs >= startTs {
				return fmt.Errorf("prewrite %x at %d: committed at %d: %w", m.key, startTs, e.versions[n-1].commitTs, errConflict)
			}
		}
	}
	primary := muts[0].key
	for _, m := range muts {
		e := c.mvcc.getOrCreate(m.key)
		old, hasOld := e.valueAt(startTs)
		l := &lock{primary: primary, startTs: startTs, op: m.op(), value: m.value, ttlMs: uint64(ttl.Milliseconds()),
			bornMs: uint64(oracle.ExtractPhysical(startTs)), txnSize: uint64(len(muts)), oldValue: old, hasOld: true, oldExists: hasOld}
		c.mvcc.setLock(e, l)
		c.emitLocked(e.key, &cdcpb.Event_Row{StartTs: startTs, Type: cdcpb.Event_PREWRITE, OpType: opType(m.del), Key: e.key, Value: m.value, OldValue: old})
	}
	return nil
}

// commitKeyLocked commits one locked key; a key whose lock is gone is left
// alone (already committed or rolled back).
func (c *Cluster) commitKeyLocked(key []byte, startTs, commitTs uint64) bool {
	e := c.mvcc.get(key)
	if e == nil || e.lock == nil || e.lock.startTs != startTs {
		return false
	}
	l := e.lock
	c.mvcc.clearLock(e)
	kind := writePut
	if l.op == kvrpcpb.Op_Del {
		kind = writeDelete
	}
	if l.op != kvrpcpb.Op_Lock {
		e.versions = append(e.versions, version{startTs: startTs, commitTs: commitTs, kind: kind, value: l.value, seq: c.mvcc.nextSeq()})
	}
	c.emitLocked(e.key, &cdcpb.Event_Row{StartTs: startTs, CommitTs: commitTs, Type: cdcpb.Event_COMMIT, OpType: opType(l.op == kvrpcpb.Op_Del), Key: e.key})
	return true
}

// rollbackKeyLocked removes a transaction's lock and leaves a rollback
// record so that a late prewrite cannot succeed.
func (c *Cluster) rollbackKeyLocked(key []byte, startTs uint64) {
	e := c.mvcc.getOrCreate(key)
	if e.lock != nil && e.lock.startTs == startTs {
		c.mvcc.clearLock(e)
		c.emitLocked(e.key, &cdcpb.Event_Row{StartTs: startTs, Type: cdcpb.Event_ROLLBACK, Key: e.key})
	}
	if e.findWrite(startTs) == nil {
		e.versions = append(e.versions, version{startTs: startTs, commitTs: startTs, kind: writeRollback, seq: c.mvcc.nextSeq()})
	}
}

func opType(del bool) cdcpb.Event_Row_OpType {
	if del {
		return cdcpb.Event_Row_DELETE
	}
	return cdcpb.Event_Row_PUT
}

// commitLocked runs a whole two-phase commit.
func (c *Cluster) commitLocked(muts []mutation, startTs uint64) (uint64, error) {
	if err := c.prewriteLocked(muts, startTs, 3*time.Second); err != nil {
		return 0, err
	}
	commitTs := c.tsoLocked()
	for _, m := range muts {
		c.commitKeyLocked(m.key, startTs, commitTs)
	}
	return commitTs, nil
}

// emitLocked hands a change to every CDC subscription whose range has key.
func (c *Cluster) emitLocked(key []byte, row *cdcpb.Event_Row) {
	r := c.regions.locate(key)
	if r == nil {
		return
	}
	for s := range c.subs[r.id] {
		if s.covers(key) {
			s.live(row)
		}
	}
}

// listen opens a loopback listener on port (0 = any).
func listen(addr string, port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
}

// waitCtx waits for d or ctx.
func waitCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// tableRecordRange is the record key range of one physical table.
func tableRecordRange(id int64) (start, end []byte) {
	start = tablecodec.GenTableRecordPrefix(id)
	end = tablecodec.GenTableRecordPrefix(id)
	end[len(end)-1]++
	return start, end
}
