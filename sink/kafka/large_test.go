package kafka

import (
	"encoding/json"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/codec/open"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// bigRow is an insert whose note column holds 12 MiB.
func bigRow(sc *model.TableSchema, ts model.Ts) *model.RowChange {
	return userRow(sc, model.OpInsert, ts, 7, 1, strings.Repeat("x", 12<<20))
}

func TestRowOverMaxMessageBytesFailsUnretryablyNamingTheTable(t *testing.T) {
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "big", "protocol=open-protocol"))
	sc := usersSchema("shop", "blobs")
	ts := openTable(t, s, sc.Table)
	ctx := testCtx(t)
	err := ts.Write(ctx, []*model.Txn{{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{bigRow(sc, 100)}}})
	if err == nil {
		err = ts.Flush(ctx, 100)
	}
	if err == nil || !strings.Contains(err.Error(), "table shop.blobs") || !strings.Contains(err.Error(), "over max-message-bytes=10485760") {
		t.Fatalf("a 12 MiB row with max-message-bytes 10 MiB: got %v, want an error naming the table and the limit", err)
	}
	// Restarting the table would meet the same row again: the error says
	// so, and the changefeed fails instead of retrying forever.
	if !sink.IsUnretryable(err) {
		t.Fatalf("the oversize error %v is not marked unretryable", err)
	}
	// The error sticks: a later small row must not be written after a gap.
	if err := ts.Write(ctx, []*model.Txn{{CommitTs: 110, StartTs: 109, Rows: []*model.RowChange{userRow(sc, model.OpInsert, 110, 8, 1, "")}}}); err == nil {
		t.Fatal("a write after the failed row succeeded")
	}
	if n := sumCounts(endOffsets(t, c, "big")); n != 0 {
		t.Fatalf("%d messages reached the topic", n)
	}
}

func sumCounts(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func TestRowOverMaxMessageBytesWithHandleKeyOnly(t *testing.T) {
	c := startBroker(t)
	s := openSink(t, brokerURI(c, "big", "protocol=open-protocol&large-message-handle-option=handle-key-only"))
	sc := usersSchema("shop", "blobs")
	ts := openTable(t, s, sc.Table)
	ctx := testCtx(t)
	small := userRow(sc, model.OpInsert, 100, 6, 1, "small")
	if err := ts.Write(ctx, []*model.Txn{{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{small, bigRow(sc, 100)}}}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, 100); err != nil {
		t.Fatal(err)
	}
	evs := allOpenEvents(t, consume(t, c, "big"))
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	if evs[0].Key.OnlyHandleKey || len(evs[0].Row.Update) != 5 {
		t.Errorf("the small row lost columns: %+v", evs[0])
	}
	big := evs[1]
	if !big.Key.OnlyHandleKey || len(big.Row.Update) != 1 || string(big.Row.Update["id"].Value) != "7" {
		t.Fatalf("the large row should carry only its handle key: key %+v value %s", big.Key, big.RawValue)
	}
}

func TestRowOverMaxMessageBytesWithClaimCheck(t *testing.T) {
	c := startBroker(t)
	dir := t.TempDir()
	s := openSink(t, brokerURI(c, "big", "protocol=open-protocol&large-message-handle-option=claim-check&claim-check-storage-uri=file://"+dir))
	sc := usersSchema("shop", "blobs")
	ts := openTable(t, s, sc.Table)
	ctx := testCtx(t)
	if err := ts.Write(ctx, []*model.Txn{{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{bigRow(sc, 100)}}}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(ctx, 100); err != nil {
		t.Fatal(err)
	}
	evs := allOpenEvents(t, consume(t, c, "big"))
	if len(evs) != 1 || evs[0].Key.ClaimCheck == "" || !evs[0].Key.OnlyHandleKey {
		t.Fatalf("want one claim-check event, got %+v", evs)
	}
	u, err := url.Parse(evs[0].Key.ClaimCheck)
	if err != nil || u.Scheme != "file" || !strings.HasPrefix(u.Path, dir) {
		t.Fatalf("claim-check location %q is not under %s", evs[0].Key.ClaimCheck, dir)
	}
	full, err := os.ReadFile(u.Path)
	if err != nil {
		t.Fatalf("reading the claimed value: %v", err)
	}
	var rv open.RowValue
	if err := json.Unmarshal(full, &rv); err != nil {
		t.Fatal(err)
	}
	var note string
	if err := json.Unmarshal(rv.Update["note"].Value, &note); err != nil || len(note) != 12<<20 {
		t.Fatalf("the stored value's note has %d bytes (%v), want 12 MiB", len(note), err)
	}
}

func allOpenEvents(t *testing.T, recs map[int32][]*kgo.Record) []open.Event {
	t.Helper()
	var ps []int32
	for p := range recs {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	var out []open.Event
	evs := openEvents(t, recs)
	for _, p := range ps {
		out = append(out, evs[p]...)
	}
	return out
}
