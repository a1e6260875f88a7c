package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/codec/debezium"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// TestCopiedRowsAreSnapshotReadsAndStreamedRowsAreNot: the rows of the
// initial snapshot and of a table added later come marked as snapshot
// reads (Debezium's op "r"); every change streamed after them, inserts
// included, comes unmarked (op "c", "u", "d").
func TestCopiedRowsAreSnapshotReadsAndStreamedRowsAreNot(t *testing.T) {
	pg, uri := startServer(t)
	pg.Exec(t, "shop", "CREATE TABLE snap (id int PRIMARY KEY, v text)",
		"INSERT INTO snap SELECT g, 'v' || g FROM generate_series(1, 50) g")
	cfg := mustConfig(t, uri, "heartbeat-interval=200ms&table-poll-interval=200ms", "snapmark")
	src := New(cfg, "snapmark")
	defer src.Close()
	p := newProcessor(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	enc := debezium.NewEncoder(debezium.Options{})
	type seen struct {
		op       model.Op
		snapshot bool
		wire     string // the Debezium op and source.snapshot the row encodes to
	}
	rows := map[string][]seen{} // "table/id" -> every row of that key, in order
	reads := map[string]int{}   // table -> snapshot reads
	keys := map[string]int{}    // table -> keys seen
	phase := 0
	err := p.run(ctx, source.StreamOptions{StartTs: model.TsFromTime(time.Now())}, 1, 0, func(b source.StreamBatch, _ int) bool {
		for _, txn := range b.Txns {
			for _, r := range txn.Rows {
				_, v, err := enc.EncodeRow(r, debezium.RowOptions{})
				if err != nil {
					t.Fatalf("encoding a row of %s: %v", r.Table(), err)
				}
				d, err := debezium.Decode(v)
				if err != nil {
					t.Fatal(err)
				}
				tb := r.Table().Table
				k := fmt.Sprintf("%s/%d", tb, r.Image()[r.Schema.ColumnIndex("id")].I)
				if len(rows[k]) == 0 {
					keys[tb]++
				}
				rows[k] = append(rows[k], seen{r.Op, r.Snapshot, d.Payload.Op + " " + d.Payload.Source.Snapshot})
				if r.Snapshot {
					reads[tb]++
				}
			}
		}
		switch {
		case phase == 0 && keys["snap"] == 50:
			// The snapshot is delivered: everything from now on is
			// streamed, and a new table is created with rows already in
			// it (one transaction, so its rows can only come by its copy).
			pg.Exec(t, "shop", "INSERT INTO snap VALUES (100, 'new')", "UPDATE snap SET v = 'changed' WHERE id = 1",
				"DELETE FROM snap WHERE id = 2",
				"BEGIN; CREATE TABLE later (id int PRIMARY KEY); INSERT INTO later VALUES (1), (2); COMMIT")
			phase = 1
		case phase == 1 && keys["later"] == 2:
			// The later table's copy is delivered; a row written now is
			// streamed.
			pg.Exec(t, "shop", "INSERT INTO later VALUES (3)")
			phase = 2
		case phase == 2 && len(rows["later/3"]) > 0 && len(rows["snap/2"]) > 1 && len(rows["snap/100"]) > 0 && len(rows["snap/1"]) > 1:
			return true
		}
		return false
	})
	if err != nil {
		t.Fatalf("stream: %v (phase %d)", err, phase)
	}
	want := map[string][]seen{
		"snap/1":   {{model.OpInsert, true, "r true"}, {model.OpUpdate, false, "u false"}},
		"snap/2":   {{model.OpInsert, true, "r true"}, {model.OpDelete, false, "d false"}},
		"snap/3":   {{model.OpInsert, true, "r true"}},
		"snap/100": {{model.OpInsert, false, "c false"}},
		"later/1":  {{model.OpInsert, true, "r true"}},
		"later/2":  {{model.OpInsert, true, "r true"}},
		"later/3":  {{model.OpInsert, false, "c false"}},
	}
	for k, w := range want {
		if fmt.Sprint(rows[k]) != fmt.Sprint(w) {
			t.Errorf("%s: got %v, want %v", k, rows[k], w)
		}
	}
	if n := reads["snap"]; n != 50 {
		t.Errorf("%d snapshot reads of snap, want its 50 rows", n)
	}
}
