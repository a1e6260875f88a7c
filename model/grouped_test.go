package model

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestGroupedTableTsWritesRuns(t *testing.T) {
	m := GroupedTableTs{}
	for id := TableID(1); id <= 31; id += 3 { // a progression of step 3
		m[id] = 500
	}
	for id := TableID(100); id <= 105; id++ { // consecutive
		m[id] = 500
	}
	m[200], m[202] = 500, 500 // two are not a run
	m[-1] = 600               // the stream unit's negative ID
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"ts":500,"ids":"1..31:3,100..105,200,202"},{"ts":600,"ids":"-1"}]`
	if string(b) != want {
		t.Fatalf("encoded %s\nwant    %s", b, want)
	}
	var back GroupedTableTs
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, m) {
		t.Fatalf("decoded %v (%v), want %v", back, err, m)
	}
}

func TestGroupedTableTsRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for round := 0; round < 200; round++ {
		m := GroupedTableTs{}
		n := rng.IntN(300)
		for i := 0; i < n; i++ {
			id := TableID(rng.IntN(1000) - 10)
			if rng.IntN(4) == 0 {
				id = TableID(rng.Int64())
			}
			m[id] = Ts(400 + rng.IntN(3))
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back GroupedTableTs
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("round %d: %v decoding %s", round, err, b)
		}
		if len(m) == 0 && len(back) == 0 {
			continue
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round %d: %s decoded to a different map", round, b)
		}
	}
	// IDs whose differences overflow int64 are written one by one.
	extremes := GroupedTableTs{math.MinInt64: 1, -1: 1, math.MaxInt64 - 1: 1, math.MaxInt64: 1, 0: 1}
	b, _ := json.Marshal(extremes)
	var back GroupedTableTs
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, extremes) {
		t.Fatalf("extreme IDs %s decoded to %v (%v)", b, back, err)
	}
	// A large capture's position: 33,334 tables dealt out every third ID,
	// all at one ts but a few, is a few dozen bytes.
	m := GroupedTableTs{}
	for id := TableID(2); id < 100_000; id += 3 {
		m[id] = 1000
	}
	m[5], m[50_000] = 999, 1001
	b, _ = json.Marshal(m)
	if len(b) > 200 {
		t.Fatalf("33,333 tables at three checkpoints take %d bytes: %s", len(b), b)
	}
}

func TestGroupedTableTsRefusesBadRuns(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`[{"ts":1,"ids":"x"}]`, `"x" is not a table ID`},
		{`[{"ts":1,"ids":"1..y"}]`, `"y" is not a table ID`},
		{`[{"ts":1,"ids":"1..9:0"}]`, `step "0" is not a positive number`},
		{`[{"ts":1,"ids":"1..9:-2"}]`, `step "-2" is not a positive number`},
		{`[{"ts":1,"ids":"1..10:2"}]`, `does not end on its progression`},
		{`[{"ts":1,"ids":"9..1"}]`, `does not end on its progression`},
		{`[{"ts":1,"ids":"1..5"},{"ts":2,"ids":"3"}]`, `table 3 is listed twice`},
		{`[{"ts":1,"ids":"0..9223372036854775806"}]`, `more than 10000000 tables`},
		{`[{"ts":1,"ids":"-9223372036854775808..9223372036854775807"}]`, `more than 10000000 tables`},
		{`[{"ts":1,"ids":"1..4000000"},{"ts":2,"ids":"5000000..12000000"}]`, `more than 10000000 tables`},
		{`[{"ts":1,"ids":"1,,2"}]`, `"" is not a table ID`},
		{`{"1":2}`, `cannot unmarshal object`},
	} {
		var m GroupedTableTs
		err := json.Unmarshal([]byte(tc.doc), &m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
}
