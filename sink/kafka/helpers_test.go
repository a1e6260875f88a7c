package kafka

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// The vocabulary of these tests: a broker (kfake on loopback), a sink
// opened on it, rows made from a small schema, and consumers (franz-go, and
// kcat as the independent one) reading back what was written.

func startBroker(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func brokerURI(c *kfake.Cluster, topic, params string) string {
	return "kafka://" + strings.Join(c.ListenAddrs(), ",") + "/" + topic + "?" + params
}

func openSink(t *testing.T, uri string, opts ...Option) *Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, uri, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", redact.URI(uri), err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTable(t *testing.T, s *Sink, tn model.TableName) sink.TableSink {
	t.Helper()
	ts, err := s.OpenTable(testCtx(t), tn, sink.TableOptions{})
	if err != nil {
		t.Fatalf("open table %s: %v", tn, err)
	}
	t.Cleanup(func() { ts.Close() })
	return ts
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// usersSchema is a table with a primary key, a unique key, a nullable
// text column and a blob.
func usersSchema(schema, table string) *model.TableSchema {
	return &model.TableSchema{
		Table:   model.TableName{ID: 42, Schema: schema, Table: table},
		Version: 1,
		Columns: []model.Column{
			{Name: "id", Type: model.ColumnType{Kind: model.TypeBigInt}},
			{Name: "email", Type: model.ColumnType{Kind: model.TypeVarchar, Length: 64}},
			{Name: "note", Type: model.ColumnType{Kind: model.TypeLongText}, Nullable: true},
			{Name: "pic", Type: model.ColumnType{Kind: model.TypeBlob}, Nullable: true},
			{Name: "n", Type: model.ColumnType{Kind: model.TypeInt, Unsigned: true}},
		},
		Indexes: []model.Index{
			{Name: "PRIMARY", Columns: []string{"id"}, Primary: true},
			{Name: "uk_email", Columns: []string{"email"}, Unique: true},
		},
	}
}

func userRow(s *model.TableSchema, op model.Op, ts model.Ts, id int64, n uint64, note string) *model.RowChange {
	img := []model.Value{model.IntValue(id), model.StringValue(fmt.Sprintf("u%d@x", id)), model.StringValue(note), model.BytesValue([]byte{0, 1, 2, 0xff}), model.UintValue(n)}
	if note == "" {
		img[2] = model.Null()
	}
	r := &model.RowChange{Schema: s, CommitTs: ts, StartTs: ts - 1, Op: op}
	switch op {
	case model.OpInsert:
		r.After = img
	case model.OpUpdate:
		before := append([]model.Value(nil), img...)
		before[4] = model.UintValue(n - 1)
		r.Before, r.After = before, img
	case model.OpDelete:
		r.Before = img
	}
	return r
}

// keyedWorkload writes, for each of keys ids, an insert then updates with
// n counting up, then a delete, spread over transactions of several rows;
// it returns the rows in write order.
func keyedWorkload(s *model.TableSchema, keys, updates int, baseTs model.Ts) []*model.Txn {
	var txns []*model.Txn
	ts := baseTs
	for step := 0; step <= updates+1; step++ {
		ts += 10
		txn := &model.Txn{CommitTs: ts, StartTs: ts - 1}
		for id := 1; id <= keys; id++ {
			var r *model.RowChange
			switch {
			case step == 0:
				r = userRow(s, model.OpInsert, ts, int64(id), 0, "")
			case step <= updates:
				r = userRow(s, model.OpUpdate, ts, int64(id), uint64(step), fmt.Sprintf("step %d", step))
			default:
				r = userRow(s, model.OpDelete, ts, int64(id), uint64(updates), fmt.Sprintf("step %d", updates))
			}
			txn.Rows = append(txn.Rows, r)
		}
		txns = append(txns, txn)
	}
	return txns
}

// consume reads every record of a topic from the beginning, per partition,
// until the end offsets seen at the start are reached. opts are what the
// broker asks of a client (SASL, TLS).
func consume(t *testing.T, c *kfake.Cluster, topic string, opts ...kgo.Opt) map[int32][]*kgo.Record {
	t.Helper()
	const fetchMax = 64 << 20
	base := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(fetchMax), kgo.FetchMaxPartitionBytes(fetchMax)}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testCtx(t)
	ends := endOffsets(t, c, topic, opts...)
	out := map[int32][]*kgo.Record{}
	done := func() bool {
		for p, end := range ends {
			if int64(len(out[p])) < end {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consuming %s: %v (have %v of %v)", topic, err, counts(out), ends)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("consuming %s: %v", topic, err) })
		fs.EachRecord(func(r *kgo.Record) { out[r.Partition] = append(out[r.Partition], r) })
	}
	return out
}

func counts(m map[int32][]*kgo.Record) map[int32]int {
	out := map[int32]int{}
	for p, rs := range m {
		out[p] = len(rs)
	}
	return out
}

func endOffsets(t *testing.T, c *kfake.Cluster, topic string, opts ...kgo.Opt) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(testCtx(t), topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// kcatPath finds kcat or fails the test with the command that installs it:
// the independent consumer is part of what this package's tests prove.
func kcatPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed; it is the independent consumer these tests check the sink with. Install it: apt-get install -y kcat")
	}
	return p
}

// kcatLine is one line of kcat -f '%p %k %s\n'.
type kcatLine struct {
	partition int32
	key       string
	value     string
}

// runKcat reads a whole topic with kcat and returns its lines. Keys and
// values must not contain newlines (JSON protocols do not).
func runKcat(t *testing.T, c *kfake.Cluster, topic string) []kcatLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcatPath(t), "-C", "-b", strings.Join(c.ListenAddrs(), ","), "-t", topic,
		"-e", "-o", "beginning", "-q", "-f", "%p %k %s\n", "-X", "fetch.message.max.bytes=67108864")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat: %v\nstderr: %s", err, stderr.String())
	}
	var out []kcatLine
	for _, l := range strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n") {
		if l == "" {
			continue
		}
		var kl kcatLine
		ps, rest, ok := strings.Cut(l, " ")
		if !ok {
			t.Fatalf("kcat line %q has no partition", l)
		}
		if _, err := fmt.Sscanf(ps, "%d", &kl.partition); err != nil {
			t.Fatalf("kcat line %q: %v", l, err)
		}
		// Keys are JSON objects without spaces outside strings; cut at the
		// end of the key object.
		kl.key, kl.value = splitJSONObject(t, rest)
		out = append(out, kl)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].partition < out[j].partition })
	return out
}

// splitJSONObject splits "{...} rest" at the end of the leading object.
func splitJSONObject(t *testing.T, s string) (string, string) {
	t.Helper()
	if !strings.HasPrefix(s, "{") {
		k, v, _ := strings.Cut(s, " ")
		return k, v
	}
	depth, inStr, esc := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case !inStr && c == '{':
			depth++
		case !inStr && c == '}':
			depth--
			if depth == 0 {
				return s[:i+1], strings.TrimPrefix(s[i+1:], " ")
			}
		}
	}
	t.Fatalf("unterminated JSON key in %q", s)
	return "", ""
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deliverRows writes n inserts of shop.users (one transaction) through s,
// flushes them, and checks that a canal-json consumer with the broker's
// client options (SASL, TLS) reads back exactly those ids, once each.
func deliverRows(t *testing.T, c *kfake.Cluster, s *Sink, topic string, n int, opts ...kgo.Opt) {
	t.Helper()
	sc := usersSchema("shop", "users")
	ts := openTable(t, s, sc.Table)
	ctx := testCtx(t)
	txn := &model.Txn{CommitTs: 100, StartTs: 99}
	var want []string
	for id := 1; id <= n; id++ {
		txn.Rows = append(txn.Rows, userRow(sc, model.OpInsert, 100, int64(id), uint64(id), fmt.Sprintf("row %d", id)))
		want = append(want, fmt.Sprint(id))
	}
	if err := ts.Write(ctx, []*model.Txn{txn}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := ts.Flush(ctx, 100); err != nil {
		t.Fatalf("flush: %v", err)
	}
	var got []string
	for _, rs := range consume(t, c, topic, opts...) {
		for _, r := range rs {
			for _, e := range decodeCanal(t, r) {
				if e.kind == "row" {
					got = append(got, e.id)
				}
			}
		}
	}
	sort.Slice(got, func(i, j int) bool { return len(got[i]) < len(got[j]) || len(got[i]) == len(got[j]) && got[i] < got[j] })
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("consumed ids %v, want %v", got, want)
	}
}

// addColumnAndWatermark sends a DDL adding column z to table, then a
// watermark, both at ts: what a consumer sees on every partition after the
// rows before ts.
func addColumnAndWatermark(t *testing.T, ctx context.Context, s *Sink, table model.TableName, ts model.Ts) {
	t.Helper()
	query := fmt.Sprintf("ALTER TABLE `%s`.`%s` ADD COLUMN `z` INT", table.Schema, table.Table)
	if err := s.EmitDDL(ctx, &model.DDLEvent{CommitTs: ts, Kind: model.DDLAddColumn, Schema: table.Schema, Query: query, Tables: []model.TableName{table}}); err != nil {
		t.Fatal(err)
	}
	if err := s.EmitCheckpoint(ctx, ts); err != nil {
		t.Fatal(err)
	}
}
