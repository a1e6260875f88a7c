package processor

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"testing"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/model/modeltest"
)

// spillRecords is every kind of value and image a run must carry back
// unchanged: the edge values of every type, NULL, missing and unchanged
// columns, nil images (an insert's before) and empty ones, and the
// snapshot mark of an insert.
func spillRecords() []spillRecord {
	imgs := modeltest.EdgeImages()
	var recs []spillRecord
	for i, img := range imgs {
		rec := spillRecord{StartTs: uint64(100 + i), CommitTs: uint64(200 + i)}
		rec.Rows = append(rec.Rows,
			spillRow{Table: 7, Version: 3, StartTs: 99, Op: model.OpInsert, After: img},
			spillRow{Table: 7, Version: 3, StartTs: 99, Op: model.OpInsert, Snapshot: true, After: img},
			spillRow{Table: -1, Version: 1 << 40, StartTs: 1<<64 - 1, Op: model.OpUpdate, Before: imgs[(i+1)%len(imgs)], After: img},
			spillRow{Table: 7, Op: model.OpDelete, Before: img, After: []model.Value{}},
			spillRow{Table: 7, Op: model.OpUpdate, Before: []model.Value{model.Null(), {}}, After: []model.Value{model.Unchanged(), model.BytesValue([]byte{})}})
		recs = append(recs, rec)
	}
	return append(recs, spillRecord{StartTs: 1, CommitTs: 2}) // a record with no rows
}

func TestSpillFramesRoundTripEveryValue(t *testing.T) {
	var file []byte
	recs := spillRecords()
	for i := range recs {
		file = appendSpillRecord(file, &recs[i])
	}
	r := spillReader{bufio.NewReader(bytes.NewReader(file))}
	for i, want := range recs {
		var got spillRecord
		if err := r.next(&got); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if got.StartTs != want.StartTs || got.CommitTs != want.CommitTs || len(got.Rows) != len(want.Rows) {
			t.Fatalf("record %d: got %+v want %+v", i, got, want)
		}
		for j, w := range want.Rows {
			g := got.Rows[j]
			if g.Table != w.Table || g.Version != w.Version || g.StartTs != w.StartTs || g.Op != w.Op || g.Snapshot != w.Snapshot {
				t.Fatalf("record %d row %d: got %+v want %+v", i, j, g, w)
			}
			for _, im := range []struct {
				what      string
				got, want []model.Value
			}{{"before", g.Before, w.Before}, {"after", g.After, w.After}} {
				if (im.got == nil) != (im.want == nil) || len(im.got) != len(im.want) {
					t.Fatalf("record %d row %d %s: got %#v want %#v", i, j, im.what, im.got, im.want)
				}
				for k := range im.want {
					a, b := im.got[k], im.want[k]
					// Byte strings compare by content: nil and empty are
					// the same value to every sink.
					if a.Kind != b.Kind || a.I != b.I || a.Uint() != b.Uint() || math.Float64bits(a.Float()) != math.Float64bits(b.Float()) || a.S != b.S || !bytes.Equal(a.B, b.B) {
						t.Fatalf("record %d row %d %s column %d: got %#v want %#v", i, j, im.what, k, a, b)
					}
				}
			}
		}
	}
	var rec spillRecord
	if err := r.next(&rec); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
}

// A run cut short or damaged anywhere gives an error, never a panic or a
// record that was not written.
func TestSpillDamagedFrameIsAnError(t *testing.T) {
	// Small values of every kind: the test cuts and damages every byte.
	img := []model.Value{{}, model.Null(), model.Unchanged(), model.IntValue(-300), model.UintValue(1 << 63), model.FloatValue(-0.5),
		model.StringValue("héllo"), model.BytesValue([]byte{0, 1, 2})}
	rec := spillRecord{StartTs: 1 << 40, CommitTs: 1<<40 + 1, Rows: []spillRow{
		{Table: 7, Version: 3, StartTs: 1 << 40, Op: model.OpUpdate, Before: img, After: img},
		{Table: 7, Version: 3, StartTs: 1 << 40, Op: model.OpInsert, Snapshot: true, After: img}}}
	frame := appendSpillRecord(nil, &rec)
	for cut := 1; cut < len(frame); cut++ {
		r := spillReader{bufio.NewReader(bytes.NewReader(frame[:cut]))}
		var rec spillRecord
		if err := r.next(&rec); err == nil || err == io.EOF {
			t.Fatalf("a frame cut at %d of %d bytes read as %v", cut, len(frame), err)
		}
	}
	for i := 1; i < len(frame); i++ {
		damaged := append([]byte(nil), frame...)
		damaged[i] ^= 0xff
		r := spillReader{bufio.NewReader(bytes.NewReader(damaged))}
		var rec spillRecord
		_ = r.next(&rec) // any error or a differing record; it must not panic
	}
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0}
	if err := (&spillReader{bufio.NewReader(bytes.NewReader(huge))}).next(&spillRecord{}); err == nil {
		t.Fatal("a frame length of 4 GiB was accepted")
	}
}

// benchRecords are spill records shaped like a catching-up changefeed's:
// 128-row fragments of 40 short columns.
func benchRecords() []spillRecord {
	img := make([]model.Value, 40)
	for i := range img {
		switch i % 4 {
		case 0:
			img[i] = model.IntValue(int64(i) * 1000003)
		case 1:
			img[i] = model.StringValue("2026-12-02 03:04:05.123")
		case 2:
			img[i] = model.StringValue("a payload of some forty characters ....")
		default:
			img[i] = model.FloatValue(float64(i) / 7)
		}
	}
	var recs []spillRecord
	for r := 0; r < 16; r++ {
		rec := spillRecord{StartTs: uint64(r), CommitTs: uint64(r + 1)}
		for j := 0; j < spillFragmentRows; j++ {
			rec.Rows = append(rec.Rows, spillRow{Table: 7, Version: 3, StartTs: uint64(r), Op: model.OpUpdate, Before: img, After: img})
		}
		recs = append(recs, rec)
	}
	return recs
}

func BenchmarkSpillRoundTrip(b *testing.B) {
	recs := benchRecords()
	var file []byte
	for i := range recs {
		file = appendSpillRecord(file, &recs[i])
	}
	b.SetBytes(int64(len(file)))
	b.ReportMetric(float64(len(recs)*spillFragmentRows), "rows/op")
	for i := 0; i < b.N; i++ {
		file = file[:0]
		for j := range recs {
			file = appendSpillRecord(file, &recs[j])
		}
		r := spillReader{bufio.NewReader(bytes.NewReader(file))}
		var rec spillRecord
		for r.next(&rec) == nil {
		}
	}
}
