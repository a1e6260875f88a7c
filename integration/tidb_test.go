package integration

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	timodel "github.com/pingcap/tidb/pkg/meta/model"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/internal/tidbfake"
	"github.com/raftcdc/raftcdc/model"
)

// The TiDB upstream end to end: a fake TiDB cluster (PD and three TiKV
// stores speaking kvproto's protocols, data written by TiDB's codec) served
// from the test process on loopback, three raftcdc processes, MariaDB
// downstream. A shop workload writes while the fake splits and merges
// regions, moves leaders, restarts stores, returns region errors or holds
// a lock, and DDL runs in between; every scenario ends with MariaDB exactly
// equal to the fake's MVCC state at the changefeed checkpoint.

var tidbShop = []string{
	"CREATE DATABASE shop",
	"CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, customer VARCHAR(32) NOT NULL, amount DECIMAL(12,2), placed DATETIME(3), status ENUM('new','paid','shipped'), doc JSON)",
	"CREATE TABLE shop.items (order_id BIGINT, line INT, sku VARCHAR(16), qty INT, PRIMARY KEY (order_id, line) CLUSTERED)",
	"CREATE TABLE shop.events (id BIGINT PRIMARY KEY, note VARCHAR(64)) PARTITION BY HASH(id) PARTITIONS 3",
}

type tidbEnv struct {
	t     *testing.T
	fake  *tidbfake.Cluster
	maria *testserver.MariaDB
	c     *Cluster
	feed  string
	wl    *shopWorkload
}

// startTiDBEnv starts the fake, MariaDB, three processes and a changefeed
// from the fake to MariaDB, and a running workload.
func startTiDBEnv(t *testing.T) *tidbEnv {
	t.Helper()
	fake, err := tidbfake.Start(tidbfake.Options{Stores: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	if err := fake.Exec("", tidbShop...); err != nil {
		t.Fatal(err)
	}
	maria := testserver.StartMariaDB(t)
	// The changefeed starts after the tables exist and before any row: a
	// changefeed replicates changes after its start ts.
	start := fake.Now()
	c := StartCluster(t, binPath, 3, ClusterOptions{ExtraArgs: []string{"--log-level", "info"}})
	c.WaitForLeader(30 * time.Second)
	e := &tidbEnv{t: t, fake: fake, maria: maria, c: c, feed: "tidb"}
	c.CreateChangefeed(api.ChangefeedRequest{ID: e.feed, SourceURI: "tidb://" + fake.PDAddr() + "/", SinkURI: maria.URI("root", "", "") + "?worker-count=4", StartTs: start})
	e.wl = startShopWorkload(t, fake)
	return e
}

// settle stops the workload, waits for the checkpoint to pass everything
// written and compares MariaDB with the fake's state at the checkpoint.
func (e *tidbEnv) settle() {
	e.t.Helper()
	e.wl.finish()
	final := e.fake.Now()
	cp := e.c.WaitCheckpointAbove(e.feed, final, 3*time.Minute)
	e.t.Logf("workload wrote %d transactions; checkpoint %d", e.wl.count(), cp)
	compareShop(e.t, e.fake, e.maria, cp)
}

// compareShop checks every table of shop: the same tables downstream, and
// in each the same rows as the fake's MVCC state at ts.
func compareShop(t *testing.T, fake *tidbfake.Cluster, maria *testserver.MariaDB, ts model.Ts) {
	t.Helper()
	up := fake.TableNames("shop")
	var down []string
	for _, r := range maria.Query(t, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop' ORDER BY table_name") {
		down = append(down, *r[0])
	}
	sort.Strings(down)
	if strings.Join(up, ",") != strings.Join(down, ",") {
		t.Fatalf("tables upstream %v, downstream %v", up, down)
	}
	for _, name := range up {
		cols, rows, err := fake.Rows("shop", name, ts)
		if err != nil {
			t.Fatal(err)
		}
		var keyIdx []int
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = model.QuoteIdent(c.Name.O)
			if mysql.HasPriKeyFlag(c.GetFlag()) {
				keyIdx = append(keyIdx, i)
			}
		}
		want := map[string][]string{}
		for _, r := range rows {
			vals, err := r.Strings()
			if err != nil {
				t.Fatal(err)
			}
			want[rowKey(vals, keyIdx)] = vals
		}
		got := map[string][]string{}
		for _, r := range maria.Query(t, "SELECT "+strings.Join(names, ", ")+" FROM shop."+model.QuoteIdent(name)) {
			vals := make([]string, len(r))
			for i, v := range r {
				if v == nil {
					vals[i] = "NULL"
				} else {
					vals[i] = *v
				}
			}
			got[rowKey(vals, keyIdx)] = vals
		}
		var diffs []string
		for k, w := range want {
			g, ok := got[k]
			switch {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("key %s missing downstream (want %v)", k, w))
			case !rowEqual(cols, g, w):
				diffs = append(diffs, fmt.Sprintf("key %s: downstream %v, upstream %v", k, g, w))
			}
		}
		for k, g := range got {
			if _, ok := want[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("key %s only downstream: %v", k, g))
			}
		}
		if len(diffs) > 0 {
			sort.Strings(diffs)
			if len(diffs) > 10 {
				diffs = append(diffs[:10], fmt.Sprintf("… %d more", len(diffs)-10))
			}
			t.Fatalf("shop.%s differs at ts %d (%d rows upstream, %d downstream):\n  %s", name, ts, len(want), len(got), strings.Join(diffs, "\n  "))
		}
		t.Logf("shop.%s: %d rows equal", name, len(want))
	}
}

func rowKey(vals []string, idx []int) string {
	var k []string
	for _, i := range idx {
		k = append(k, vals[i])
	}
	return strings.Join(k, "/")
}

func rowEqual(cols []*timodel.ColumnInfo, got, want []string) bool {
	for i := range want {
		if cols[i].GetType() == mysql.TypeJSON && got[i] != "NULL" && want[i] != "NULL" {
			if !model.JSONEqual(got[i], want[i]) {
				return false
			}
			continue
		}
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// shopWorkload writes orders, their items and events until stopped; DDL
// steps run between its transactions.
type shopWorkload struct {
	t    *testing.T
	fake *tidbfake.Cluster
	rng  *rand.Rand

	mu        sync.Mutex // one transaction or one DDL step at a time
	orders    map[int64]map[string]any
	items     map[[2]int64]map[string]any
	nextOrder int64
	nextEvent int64
	audit     string // the audit table's name while it exists
	noItems   bool
	n         int

	stop chan struct{}
	done chan struct{}
	err  error
}

func startShopWorkload(t *testing.T, fake *tidbfake.Cluster) *shopWorkload {
	w := &shopWorkload{t: t, fake: fake, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9)),
		orders: map[int64]map[string]any{}, items: map[[2]int64]map[string]any{}, nextOrder: 1, nextEvent: 1,
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if err := w.step(); err != nil {
				w.err = err
				return
			}
		}
	}()
	t.Cleanup(func() { w.halt() })
	return w
}

func (w *shopWorkload) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *shopWorkload) finish() {
	w.t.Helper()
	w.halt()
	if w.err != nil {
		w.t.Fatalf("workload: %v", w.err)
	}
	if w.count() < 20 {
		w.t.Fatalf("the workload wrote only %d transactions", w.count())
	}
}

func (w *shopWorkload) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// row orders values by the table's current columns; columns the
// workload does not know (added by DDL) get their default by being left
// NULL-able: the DDL steps add nullable columns with defaults.
func (w *shopWorkload) row(table string, vals map[string]any) ([]any, error) {
	info, err := w.fake.TableInfo("shop", table)
	if err != nil {
		return nil, err
	}
	var out []any
	for _, c := range info.Columns {
		v, ok := vals[c.Name.L]
		if !ok && c.DefaultValue != nil {
			v = c.DefaultValue
		}
		out = append(out, v)
	}
	return out, nil
}

func (w *shopWorkload) step() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	txn := w.fake.Begin()
	// Changes applied to the workload's own view only if the commit
	// succeeds.
	var apply []func()
	var rowErr error
	put := func(table string, op string, vals map[string]any) {
		r, err := w.row(table, vals)
		if err != nil {
			rowErr = err
			return
		}
		switch op {
		case "insert":
			txn.Insert("shop", table, r...)
		case "update":
			txn.Update("shop", table, r...)
		default:
			txn.Delete("shop", table, r...)
		}
	}
	switch p := w.rng.IntN(100); {
	case p < 40 || len(w.orders) < 5:
		id := w.nextOrder
		o := map[string]any{"id": id, "customer": fmt.Sprintf("c%d", w.rng.IntN(50)), "amount": fmt.Sprintf("%d.%02d", w.rng.IntN(1000), w.rng.IntN(100)),
			"placed": time.Unix(1700000000+int64(w.rng.IntN(1e6)), int64(w.rng.IntN(1000))*1e6).UTC().Format("2006-01-02 15:04:05.000"),
			"status": "new", "doc": fmt.Sprintf(`{"n": %d, "tags": ["a", "b"], "ok": true}`, id)}
		put("orders", "insert", o)
		lines := 1 + w.rng.IntN(3)
		newItems := map[[2]int64]map[string]any{}
		if !w.noItems {
			for l := 1; l <= lines; l++ {
				it := map[string]any{"order_id": id, "line": l, "sku": fmt.Sprintf("sku-%d", w.rng.IntN(100)), "qty": 1 + w.rng.IntN(9)}
				put("items", "insert", it)
				newItems[[2]int64{id, int64(l)}] = it
			}
		}
		ev := map[string]any{"id": w.nextEvent, "note": fmt.Sprintf("order %d placed", id)}
		put("events", "insert", ev)
		if w.audit != "" {
			put(w.audit, "insert", map[string]any{"id": w.nextEvent, "what": "placed"})
		}
		apply = append(apply, func() {
			w.orders[id] = o
			for k, v := range newItems {
				w.items[k] = v
			}
			w.nextOrder++
			w.nextEvent++
		})
	case p < 75:
		id := w.pickOrder()
		o := clone(w.orders[id])
		o["status"] = []string{"new", "paid", "shipped"}[w.rng.IntN(3)]
		o["amount"] = fmt.Sprintf("%d.%02d", w.rng.IntN(1000), w.rng.IntN(100))
		put("orders", "update", o)
		apply = append(apply, func() { w.orders[id] = o })
	case p < 90:
		id := w.pickOrder()
		put("orders", "delete", w.orders[id])
		var gone [][2]int64
		if !w.noItems {
			for k, it := range w.items {
				if k[0] == id {
					put("items", "delete", it)
					gone = append(gone, k)
				}
			}
		}
		apply = append(apply, func() {
			delete(w.orders, id)
			for _, k := range gone {
				delete(w.items, k)
			}
		})
	default:
		if w.noItems || len(w.items) == 0 {
			return nil
		}
		var k [2]int64
		for k = range w.items {
			break
		}
		it := clone(w.items[k])
		it["qty"] = 1 + w.rng.IntN(9)
		put("items", "update", it)
		apply = append(apply, func() { w.items[k] = it })
	}
	if err := errors.Join(rowErr, txn.Err()); err != nil {
		return fmt.Errorf("building a transaction: %w", err)
	}
	if _, err := txn.Commit(); err != nil {
		if strings.Contains(err.Error(), "write conflict") {
			return nil // a row the test locked on purpose
		}
		return err
	}
	for _, f := range apply {
		f()
	}
	w.n++
	return nil
}

func (w *shopWorkload) pickOrder() int64 {
	ids := make([]int64, 0, len(w.orders))
	for id := range w.orders {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids[w.rng.IntN(len(ids))]
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ddl runs DDL between two transactions of the workload; then, with the
// workload still paused, adjust updates its view (new names).
func (w *shopWorkload) ddl(adjust func(), stmts ...string) {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.fake.Exec("shop", stmts...); err != nil {
		w.t.Fatal(err)
	}
	if adjust != nil {
		adjust()
	}
}

// tableRegions lists the regions holding rows of every shop table.
func (e *tidbEnv) tableRegions() []tidbfake.RegionInfo {
	var out []tidbfake.RegionInfo
	seen := map[uint64]bool{}
	for _, name := range e.fake.TableNames("shop") {
		rs, err := e.fake.TableRegions("shop", name)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range rs {
			if !seen[r.ID] {
				seen[r.ID] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// waitProgress waits for the checkpoint to pass the fake's current ts, so
// that a scenario's next step happens with the changefeed running.
func (e *tidbEnv) waitProgress() {
	e.t.Helper()
	e.c.WaitCheckpointAbove(e.feed, e.fake.Now(), 2*time.Minute)
}

func TestTiDBToMariaDBThroughSplitsAndMerges(t *testing.T) {
	e := startTiDBEnv(t)
	e.waitProgress()
	for _, name := range []string{"orders", "items", "events"} {
		if err := e.fake.SplitTable("shop", name, 0, 400, 4); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	e.wl.ddl(nil, "ALTER TABLE orders ADD COLUMN note VARCHAR(20) DEFAULT 'none'")
	e.waitProgress()
	for _, name := range []string{"orders", "items"} {
		rs, _ := e.fake.TableRegions("shop", name)
		for i := len(rs) - 1; i > 0; i -= 2 {
			if err := e.fake.Merge(rs[i-1].ID, rs[i].ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(time.Second)
	e.settle()
}

func TestTiDBToMariaDBThroughLeaderMovesAndRegionErrors(t *testing.T) {
	e := startTiDBEnv(t)
	e.waitProgress()
	for round := 0; round < 3; round++ {
		for i, r := range e.tableRegions() {
			if err := e.fake.TransferLeader(r.ID, uint64((i+round)%3+1)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	e.wl.ddl(func() { e.wl.audit = "audit" }, "CREATE TABLE audit (id BIGINT PRIMARY KEY, what VARCHAR(32))")
	for _, kind := range []tidbfake.RegionError{tidbfake.ErrNotLeader, tidbfake.ErrEpochNotMatch, tidbfake.ErrRegionNotFound,
		tidbfake.ErrServerIsBusy, tidbfake.ErrCongested} {
		e.fake.FailRegistrations(0, kind, 3)
		for _, r := range e.tableRegions() {
			e.fake.SendRegionError(r.ID, kind)
		}
		time.Sleep(300 * time.Millisecond)
	}
	e.waitProgress()
	e.wl.ddl(func() { e.wl.audit = "audit_log" }, "RENAME TABLE audit TO audit_log")

	// A fatal error — TiKV says the request is a duplicate — fails the
	// changefeed with the reason; once TiKV stops saying so, the
	// changefeed's retry brings it back.
	e.fake.FailRegistrations(0, tidbfake.ErrDuplicateRequest, 1000)
	for _, r := range e.tableRegions() {
		e.fake.SendRegionError(r.ID, tidbfake.ErrServerIsBusy)
	}
	Eventually(t, 2*time.Minute, "the changefeed in error for the duplicate request", func() (bool, string) {
		d, err := e.c.Detail(e.feed)
		if err != nil {
			return false, err.Error()
		}
		if d.Info.Error != nil && strings.Contains(d.Info.Error.Message, "duplicate request") {
			return true, ""
		}
		return false, fmt.Sprintf("state %s, error %+v", d.Info.State, d.Info.Error)
	})
	e.fake.ClearFaults()
	Eventually(t, 3*time.Minute, "the changefeed running again", func() (bool, string) {
		d, err := e.c.Detail(e.feed)
		if err != nil {
			return false, err.Error()
		}
		return d.Info.State == model.StateNormal, string(d.Info.State)
	})
	e.settle()
	for _, reason := range []string{"not_leader", "epoch_not_match", "region_not_found", "server_is_busy", "congested", "fatal"} {
		total := 0.0
		for i := range e.c.Procs {
			v, _, _ := e.c.Metric(i, "raftcdc_tidb_region_reconnects_total", "reason="+reason)
			total += v
		}
		if total == 0 {
			t.Errorf("no region reconnect counted for %s", reason)
		}
	}
}

func TestTiDBToMariaDBThroughStoreRestarts(t *testing.T) {
	e := startTiDBEnv(t)
	e.waitProgress()
	for i := 0; i < 3; i++ {
		if err := e.fake.RestartStore(i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	e.wl.ddl(nil, "TRUNCATE TABLE events")
	e.waitProgress()
	// A store down for good: its leaders move to the other peers.
	e.fake.StopStore(1, true)
	time.Sleep(time.Second)
	e.waitProgress()
	if err := e.fake.StartStore(1); err != nil {
		t.Fatal(err)
	}
	e.settle()
}

func TestTiDBToMariaDBThroughAStalledLock(t *testing.T) {
	e := startTiDBEnv(t)
	e.waitProgress()
	// Two orders the workload never touches.
	for _, id := range []int64{1_000_001, 1_000_002, 1_000_003} {
		r, _ := e.wl.row("orders", map[string]any{"id": id, "customer": "locked", "amount": "1.00", "status": "new"})
		if _, err := e.fake.Begin().Insert("shop", "orders", r...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// A writer that crashed after prewrite, and one that crashed right after
	// committing its primary.
	upd := func(id int64, status string) []any {
		r, _ := e.wl.row("orders", map[string]any{"id": id, "customer": "locked", "amount": "2.00", "status": status})
		return r
	}
	dead, err := e.fake.Begin().Update("shop", "orders", upd(1_000_001, "paid")...).Prewrite(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	half, err := e.fake.Begin().Update("shop", "orders", upd(1_000_002, "shipped")...).Update("shop", "orders", upd(1_000_003, "shipped")...).Prewrite(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := half.CommitPrimary(); err != nil {
		t.Fatal(err)
	}
	lockTs := dead.StartTs()
	// While the locks are held the checkpoint cannot pass them.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		d, err := e.c.Detail(e.feed)
		if err == nil && d.CheckpointTs() > lockTs && dead.Locked() {
			t.Fatalf("checkpoint %d passed a lock at %d that is still held", d.CheckpointTs(), lockTs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.wl.ddl(func() { e.wl.noItems = true }, "DROP TABLE items")
	// The stalled regions get their locks resolved after the stall bound:
	// the expired one rolled back, the half-committed one committed.
	e.c.WaitCheckpointAbove(e.feed, lockTs, 2*time.Minute)
	if dead.Locked() || half.Locked() {
		t.Fatal("locks still held after the checkpoint passed them")
	}
	e.settle()
	got := e.maria.Query(t, "SELECT id, status FROM shop.orders WHERE id >= 1000001 ORDER BY id")
	if len(got) != 3 || *got[0][1] != "new" || *got[1][1] != "shipped" || *got[2][1] != "shipped" {
		t.Fatalf("locked orders downstream: %v", got)
	}
	resolves := 0.0
	for i := range e.c.Procs {
		v, _, _ := e.c.Metric(i, "raftcdc_tidb_lock_resolves_total")
		resolves += v
	}
	if resolves == 0 {
		t.Fatal("no lock resolution counted")
	}
}

func TestTiDBGCServiceSafepointFollowsTheMinimumCheckpoint(t *testing.T) {
	fake, err := tidbfake.Start(tidbfake.Options{Stores: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	if err := fake.Exec("", tidbShop...); err != nil {
		t.Fatal(err)
	}
	c := StartCluster(t, binPath, 3, ClusterOptions{ExtraArgs: []string{"--log-level", "info"}})
	c.WaitForLeader(30 * time.Second)
	src := "tidb://" + fake.PDAddr() + "/"
	first := fake.Now()
	c.CreateChangefeed(api.ChangefeedRequest{ID: "a", SourceURI: src, SinkURI: "blackhole://", StartTs: first})
	c.CreateChangefeed(api.ChangefeedRequest{ID: "b", SourceURI: src, SinkURI: "blackhole://", StartTs: fake.Now()})
	const service = "raftcdc-default"
	sp := func() (model.Ts, bool) {
		v, ok := fake.ServiceSafePoints()[service]
		return v, ok
	}
	checkpoint := func(id string) model.Ts {
		var cp model.Ts
		Eventually(t, 30*time.Second, "the checkpoint of "+id, func() (bool, string) {
			d, err := c.Detail(id)
			if err != nil {
				return false, err.Error()
			}
			cp = d.CheckpointTs()
			return cp != 0, string(d.Info.State)
		})
		return cp
	}
	Eventually(t, time.Minute, "the service safepoint at or above the first start ts", func() (bool, string) {
		v, ok := sp()
		return ok && v >= first, fmt.Sprintf("%d %v", v, ok)
	})
	c.WaitCheckpointAbove("a", first, time.Minute)
	c.WaitCheckpointAbove("b", first, time.Minute)
	// Pause a: the safepoint stops at a's checkpoint while b moves on.
	// The requests go through any node, again after a 503: c.Leader() is
	// -1 while one node's status read fails or lags behind an election.
	feedAction(t, c, http.MethodPost, "/api/v1/changefeeds/a/pause", nil)
	// The pause is carried out by the owner, later: a's checkpoint holds
	// once its state is stopped (the owner clears its tasks in the same
	// write), not after a fixed two seconds on a loaded machine.
	c.WaitPaused("a", time.Minute)
	held := checkpoint("a")
	c.WaitCheckpointAbove("b", held+(1<<18)*1000, time.Minute) // b a second ahead
	Eventually(t, time.Minute, "the safepoint held at the paused changefeed's checkpoint", func() (bool, string) {
		v, _ := sp()
		return v == held, fmt.Sprintf("safepoint %d, a's checkpoint %d", v, held)
	})
	if got := fake.RunGC(fake.Now()); got > held {
		t.Fatalf("GC passed the paused changefeed's checkpoint: %d > %d", got, held)
	}
	// Remove a: the safepoint follows b.
	feedAction(t, c, http.MethodDelete, "/api/v1/changefeeds/a", nil)
	Eventually(t, time.Minute, "the safepoint following b", func() (bool, string) {
		v, _ := sp()
		return v > held && v <= checkpoint("b"), fmt.Sprintf("safepoint %d, a held %d, b at %d", v, held, checkpoint("b"))
	})
	// Remove the last changefeed of that upstream: the service entry goes.
	feedAction(t, c, http.MethodDelete, "/api/v1/changefeeds/b", nil)
	Eventually(t, time.Minute, "the service safepoint removed", func() (bool, string) {
		v, ok := sp()
		return !ok, strconv.FormatUint(v, 10)
	})
}
