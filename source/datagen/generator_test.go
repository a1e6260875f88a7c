package datagen

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

func mustGenerator(t testing.TB, uri string) *Generator {
	t.Helper()
	cfg, err := ParseURI(uri)
	if err != nil {
		t.Fatalf("ParseURI(%q): %v", uri, err)
	}
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatalf("NewGenerator: %v", err)
	}
	return g
}

func collect(g *Generator, table model.TableID, after, upto model.Ts) []model.LegacyRow {
	var out []model.LegacyRow
	g.Events(table, after, upto, func(r model.LegacyRow) bool {
		out = append(out, r)
		return true
	})
	return out
}

func TestGeneratorDeterministic(t *testing.T) {
	const uri = "datagen://?tables=3&rate=250&seed=7"
	a, b := mustGenerator(t, uri), mustGenerator(t, uri)
	start := model.TsFromTime(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	end := start + 2*ticksPerSecond
	for _, tb := range a.Tables() {
		ea, eb := collect(a, tb.ID, start, end), collect(b, tb.ID, start, end)
		if len(ea) != 500 {
			t.Fatalf("table %s: %d events in 2s at 250/s, want 500", tb, len(ea))
		}
		if !reflect.DeepEqual(ea, eb) {
			t.Fatalf("table %s: two generators with the same URI disagree", tb)
		}
	}
	other := mustGenerator(t, "datagen://?tables=3&rate=250&seed=8")
	if reflect.DeepEqual(collect(a, 1, start, end), collect(other, 1, start, end)) {
		t.Fatal("a different seed produced the same stream")
	}
}

func TestGeneratorCommitTsInverse(t *testing.T) {
	for _, rate := range []string{"0.5", "1", "3", "7.3", "10", "999.999", "100000"} {
		t.Run(rate, func(t *testing.T) {
			g := mustGenerator(t, "datagen://?tables=4&rate="+rate)
			rng := rand.New(rand.NewPCG(1, 2))
			now := model.TsFromTime(time.Now())
			for _, tb := range g.Tables() {
				// Around the epoch, including before the first event.
				for ts := g.CommitTs(tb.ID, 0) - 3; ts < g.CommitTs(tb.ID, 0)+3; ts++ {
					checkFirstAfter(t, g, tb.ID, ts)
				}
				for range 2000 {
					ts := now - rng.Uint64N(1<<40)
					checkFirstAfter(t, g, tb.ID, ts)
					// Exactly on an event, and next to it.
					k := g.FirstAfter(tb.ID, ts)
					ev := g.CommitTs(tb.ID, k)
					checkFirstAfter(t, g, tb.ID, ev)
					checkFirstAfter(t, g, tb.ID, ev-1)
					if got, ok := g.IndexOf(tb.ID, ev); !ok || got != k {
						t.Fatalf("IndexOf(%d) = %d, %v; want %d", ev, got, ok, k)
					}
					if _, ok := g.IndexOf(tb.ID, ev+1); ok && g.CommitTs(tb.ID, k+1) != ev+1 {
						t.Fatalf("IndexOf(%d) found an event that does not exist", ev+1)
					}
				}
			}
		})
	}
}

func checkFirstAfter(t *testing.T, g *Generator, table model.TableID, ts model.Ts) {
	t.Helper()
	k := g.FirstAfter(table, ts)
	if g.CommitTs(table, k) <= ts {
		t.Fatalf("FirstAfter(%d) = %d whose ts %d is not after it", ts, k, g.CommitTs(table, k))
	}
	if k > 0 && g.CommitTs(table, k-1) > ts {
		t.Fatalf("FirstAfter(%d) = %d but event %d (ts %d) is also after it", ts, k, k-1, g.CommitTs(table, k-1))
	}
}

func TestGeneratorReplayIsSuffix(t *testing.T) {
	g := mustGenerator(t, "datagen://?tables=2&rate=1000&mix=50:30:20")
	start := model.TsFromTime(time.Now().Add(-time.Minute))
	end := start + 3*ticksPerSecond
	full := collect(g, 2, start, end)
	if len(full) < 2990 || len(full) > 3010 {
		t.Fatalf("%d events in 3s at 1000/s", len(full))
	}
	for i := 1; i < len(full); i++ {
		if full[i].CommitTs <= full[i-1].CommitTs {
			t.Fatalf("commit ts not strictly increasing at %d: %d then %d", i, full[i-1].CommitTs, full[i].CommitTs)
		}
		if full[i].Columns[ColSeq].(uint64) != full[i-1].Columns[ColSeq].(uint64)+1 {
			t.Fatalf("seq not contiguous at %d", i)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		i := rng.IntN(len(full))
		from := full[i].CommitTs - rng.Uint64N(2) // exactly on an event, or just before it
		want := full[i:]
		if from == full[i].CommitTs {
			want = full[i+1:]
		}
		got := collect(g, 2, from, end)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("replay from %d: %d rows, want the %d-row suffix", from, len(got), len(want))
		}
	}
}

func TestGeneratorRows(t *testing.T) {
	g := mustGenerator(t, "datagen://?tables=2&rate=5000&row-size=37&keys=50&mix=60:30:10&schema=shop")
	start := model.TsFromTime(time.Now())
	rows := collect(g, 1, start, start+2*ticksPerSecond)
	counts := map[model.Op]int{}
	keys := map[string]bool{}
	for _, r := range rows {
		counts[r.Op]++
		keys[r.Key] = true
		if r.Table != (model.TableName{ID: 1, Schema: "shop", Table: "t0001"}) {
			t.Fatalf("row of table %+v", r.Table)
		}
		id := r.Columns[ColID].(int64)
		if id < 0 || id >= 50 {
			t.Fatalf("key %d outside keyspace", id)
		}
		p, hasPayload := r.Columns[ColPayload].(string)
		if r.Op == model.OpDelete {
			if hasPayload {
				t.Fatal("delete carries a payload")
			}
		} else if len(p) != 37 {
			t.Fatalf("payload of %d bytes, want 37", len(p))
		}
	}
	n := float64(len(rows))
	for op, want := range map[model.Op]float64{model.OpInsert: 0.6, model.OpUpdate: 0.3, model.OpDelete: 0.1} {
		if got := float64(counts[op]) / n; got < want-0.03 || got > want+0.03 {
			t.Errorf("%s share %.3f, want about %.2f", op, got, want)
		}
	}
	if len(keys) != 50 {
		t.Errorf("%d distinct keys in %d rows over a keyspace of 50", len(keys), len(rows))
	}
	onlyDeletes := mustGenerator(t, "datagen://?mix=0:0:1")
	for _, r := range collect(onlyDeletes, 3, start, start+ticksPerSecond) {
		if r.Op != model.OpDelete {
			t.Fatalf("mix 0:0:1 produced %s", r.Op)
		}
	}
}

func TestGeneratorTablesApart(t *testing.T) {
	g := mustGenerator(t, "datagen://?tables=20&rate=1")
	seen := map[model.Ts]bool{}
	for _, tb := range g.Tables() {
		seen[g.CommitTs(tb.ID, 1000)] = true
	}
	if len(seen) < 15 {
		t.Fatalf("only %d distinct commit ts for event 1000 of 20 tables: tables are not spread apart", len(seen))
	}
}

func BenchmarkGenerate(b *testing.B) {
	g := mustGenerator(b, "datagen://?tables=1&rate=100000")
	start := model.TsFromTime(time.Now())
	var n int
	for b.Loop() {
		g.Events(1, start, start+ticksPerSecond/10, func(model.LegacyRow) bool {
			n++
			return true
		})
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, uri := range []string{"datagen://?tables=3&rate=1000&mix=1:1:1", "datagen://?row-size=0&schema=S_1&keys=1", "datagen://?row-size=1000&tables=12000"} {
		g := mustGenerator(t, uri)
		start := model.TsFromTime(time.Now())
		ops := map[model.Op]bool{}
		for _, tb := range []model.TableID{1, model.TableID(g.Config().Tables)} {
			g.Events(tb, start, start+ticksPerSecond, func(r model.LegacyRow) bool {
				ops[r.Op] = true
				want, err := json.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				k := r.Columns[ColSeq].(uint64)
				if got := g.AppendJSON(nil, tb, k); string(got) != string(want) {
					t.Fatalf("AppendJSON:\n%s\nencoding/json:\n%s", got, want)
				}
				if g.KeyIndex(tb, k) != uint64(r.Columns[ColID].(int64)) {
					t.Fatal("KeyIndex disagrees with the id column")
				}
				return true
			})
		}
		if len(ops) != 3 && uri == "datagen://?tables=3&rate=1000&mix=1:1:1" {
			t.Fatalf("only ops %v were compared", ops)
		}
	}
}
