package model

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestTableMapsReadWhatEncodingJSONReads: for each document, the hand
// reader and encoding/json (on the plain map type) agree on the value or
// both refuse it; the documents cover the writers' own shape and the
// shapes only the fallback takes.
func TestTableMapsReadWhatEncodingJSONReads(t *testing.T) {
	docs := []string{
		`{}`, ` { } `, `null`, `{"1":2}`, `{"-3":4,"5":0}`, "{\n \"1\" : 2 ,\"2\":3\n}",
		`{"1":2,"1":3}`, `{"1":1.5}`, `{"1":-1}`, `{"1":1e3}`, `{"a":1}`, `{"1":"2"}`,
		`{"01":2}`, `{"1":02}`, `{"1":18446744073709551615}`, `{"1":18446744073709551616}`,
		`{"9223372036854775807":1}`, `{"9223372036854775808":1}`, `{"-9223372036854775808":1}`,
		`{"1":2`, `{"1":2,}`, `[1,2]`, `{"1":2} x`, ``, `{"1":null}`,
	}
	for _, d := range docs {
		var want map[TableID]Ts
		wantErr := json.Unmarshal([]byte(d), &want)
		var got TableTs
		gotErr := json.Unmarshal([]byte(d), &got)
		if (wantErr == nil) != (gotErr == nil) {
			t.Errorf("%q: encoding/json error %v, TableTs error %v", d, wantErr, gotErr)
			continue
		}
		if wantErr == nil && !reflect.DeepEqual(map[TableID]Ts(got), want) {
			t.Errorf("%q: encoding/json read %v, TableTs %v", d, want, got)
		}
	}

	replicaDocs := []string{
		`{"1":{"start_ts":5}}`, `{"1":{ "start_ts" : 5 }, "2":{"start_ts":0}}`,
		`{"1":{"start_ts":5,"later_field":true}}`, `{"1":{}}`, `{"1":{"start_ts":-5}}`,
		`{"1":5}`, `null`, `{"1":{"START_TS":5}}`,
	}
	for _, d := range replicaDocs {
		var want map[TableID]TableReplicaInfo
		wantErr := json.Unmarshal([]byte(d), &want)
		var got TableReplicas
		gotErr := json.Unmarshal([]byte(d), &got)
		if (wantErr == nil) != (gotErr == nil) || (wantErr == nil && !reflect.DeepEqual(map[TableID]TableReplicaInfo(got), want)) {
			t.Errorf("%q: encoding/json %v (%v), TableReplicas %v (%v)", d, want, wantErr, got, gotErr)
		}
	}
}

// TestTableNamesReadWhatEncodingJSONReads: the hand reader of table
// lists agrees with encoding/json on the writers' shape and hands every
// other shape (escapes, other key orders, non-ASCII) to it.
func TestTableNamesReadWhatEncodingJSONReads(t *testing.T) {
	docs := []string{
		`[]`, `null`, `[{"id":1,"schema":"s","table":"t"}]`,
		` [ { "id" : -2 , "schema" : "a b" , "table" : "<x&y>" } , {"id":3,"schema":"","table":""} ] `,
		`[{"schema":"s","table":"t","id":1}]`, `[{"id":1,"schema":"s\"q","table":"t"}]`,
		`[{"id":1,"schema":"s\u00e9","table":"t"}]`, "[{\"id\":1,\"schema\":\"\xc3\xa9\",\"table\":\"t\"}]",
		"[{\"id\":1,\"schema\":\"\xff\",\"table\":\"t\"}]", `[{"id":1,"schema":"s","table":"t","later":1}]`,
		`[{"id":1,"schema":"s"}]`, `[{"id":1.5,"schema":"s","table":"t"}]`, `[{"id":1,"schema":2,"table":"t"}]`,
		`[{"id":1,"schema":"s","table":"t"},]`, `[{"id":1,"schema":"s","table":"t"}`, `{}`,
	}
	for _, d := range docs {
		var want []TableName
		wantErr := json.Unmarshal([]byte(d), &want)
		var got TableNames
		gotErr := json.Unmarshal([]byte(d), &got)
		if (wantErr == nil) != (gotErr == nil) || (wantErr == nil && !reflect.DeepEqual([]TableName(got), want)) {
			t.Errorf("%q: encoding/json %#v (%v), TableNames %#v (%v)", d, want, wantErr, got, gotErr)
		}
	}
	for _, l := range []TableNames{nil, {}, {{ID: 1, Schema: "s", Table: "t"}, {ID: -4, Schema: "<&>", Table: "é\"\\"}}, {{ID: 7, Schema: "a", Table: "b"}}} {
		got, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal([]TableName(l))
		if string(got) != string(want) {
			t.Errorf("%#v is written %s, encoding/json writes %s", l, got, want)
		}
	}
}

// TestTableMapsRoundTrip: what the writers produce, encoding/json reads
// back to the same map, and what encoding/json writes, the readers do; in
// records, nil and empty maps are written as encoding/json writes them.
func TestTableMapsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		ts, reps, wl := TableTs{}, TableReplicas{}, TaskWorkload{}
		for range r.IntN(300) {
			id := r.Int64N(1<<40) - 1<<20
			ts[id] = r.Uint64()
			reps[id] = TableReplicaInfo{StartTs: r.Uint64()}
			wl[id] = WorkloadInfo{Workload: r.Uint64N(1e6)}
		}
		checkRoundTrip(t, ts, map[TableID]Ts(ts))
		checkRoundTrip(t, reps, map[TableID]TableReplicaInfo(reps))
		checkRoundTrip(t, wl, map[TableID]WorkloadInfo(wl))
	}

	for _, rec := range []any{
		TaskPosition{CheckpointTs: 1, Running: TableTs{}, Stopped: nil},
		TaskPosition{CheckpointTs: 1, Running: TableTs{7: 8}, Stopped: TableTs{9: 10}},
		TaskStatus{},
		TaskStatus{Tables: TableReplicas{}},
		TaskStatus{Tables: TableReplicas{3: {StartTs: 4}}, Operations: map[TableID]*TableOperation{3: {Delete: true, BoundaryTs: 5}}},
	} {
		got, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(plain(rec))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%#v is written %s, encoding/json writes %s", rec, got, want)
		}
	}
}

// checkRoundTrip: typed (with the hand codec) and plain (encoding/json's)
// encode to documents both read back as the same map.
func checkRoundTrip[M any, V comparable](t *testing.T, typed M, plainMap map[TableID]V) {
	t.Helper()
	fast, err := json.Marshal(typed)
	if err != nil {
		t.Fatal(err)
	}
	var viaJSON map[TableID]V
	if err := json.Unmarshal(fast, &viaJSON); err != nil || !maps.Equal(viaJSON, plainMap) {
		t.Fatalf("encoding/json reads the hand-written %s as %v (%v)", fast, viaJSON, err)
	}
	slow, err := json.Marshal(plainMap)
	if err != nil {
		t.Fatal(err)
	}
	var back M
	if err := json.Unmarshal(slow, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(reflect.ValueOf(back).Convert(reflect.TypeOf(plainMap)).Interface(), plainMap) {
		t.Fatalf("the hand reader reads encoding/json's %s as %v", slow, back)
	}
}

// plain is rec with its table maps as plain maps, so encoding/json writes
// them with no method of ours.
func plain(rec any) any {
	switch r := rec.(type) {
	case TaskPosition:
		type plainPos struct {
			Epoch        uint64            `json:"epoch,omitempty"`
			CheckpointTs Ts                `json:"checkpoint_ts"`
			ResolvedTs   Ts                `json:"resolved_ts"`
			Stopped      map[TableID]Ts    `json:"stopped,omitempty"`
			Running      map[TableID]Ts    `json:"running,omitempty"`
			Count        uint64            `json:"count"`
			Error        *RunningError     `json:"error,omitempty"`
			Stream       *StreamPosition   `json:"stream,omitempty"`
			Snapshot     *SnapshotProgress `json:"snapshot,omitempty"`
		}
		return plainPos{r.Epoch, r.CheckpointTs, r.ResolvedTs, r.Stopped, r.Running, r.Count, r.Error, r.Stream, r.Snapshot}
	case TaskStatus:
		type plainStatus struct {
			Tables     map[TableID]TableReplicaInfo `json:"tables"`
			Operations map[TableID]*TableOperation  `json:"operations,omitempty"`
			AdminJob   AdminJobType                 `json:"admin_job,omitempty"`
		}
		return plainStatus{r.Tables, r.Operations, r.AdminJob}
	}
	panic("plain: unknown record")
}

// BenchmarkTableMap33k: a 33,000-table position map (one capture's share
// of 100,000 tables) through encoding/json with the plain map type and
// with TableTs, side by side: go test -run XXX -bench TableMap ./model/
func BenchmarkTableMap33k(b *testing.B) {
	typed, plainMap := TableTs{}, map[TableID]Ts{}
	for i := range 33000 {
		typed[TableID(i+1)] = 470890675982041088 + Ts(i)
		plainMap[TableID(i+1)] = 470890675982041088 + Ts(i)
	}
	doc, err := json.Marshal(typed)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("marshal/plain", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(plainMap)
		}
	})
	b.Run("marshal/TableTs", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(typed)
		}
	})
	b.Run("unmarshal/plain", func(b *testing.B) {
		for b.Loop() {
			var m map[TableID]Ts
			_ = json.Unmarshal(doc, &m)
		}
	})
	b.Run("unmarshal/TableTs", func(b *testing.B) {
		for b.Loop() {
			var m TableTs
			_ = json.Unmarshal(doc, &m)
		}
	})
}

// TestTableMapErrorsNameTheField: a record that does not decode is reported
// (as a corrupt key, to operators) with the same text as before the hand
// readers: encoding/json's, naming the record's field.
func TestTableMapErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		doc  string
		into any
		want string
	}{
		{`{"checkpoint_ts":1,"running":{"1":"x"}}`, &TaskPosition{}, "json: cannot unmarshal string into Go struct field TaskPosition.running of type uint64"},
		{`{"tables":[1]}`, &TaskStatus{}, "json: cannot unmarshal array into Go struct field TaskStatus.tables of type map[int64]model.TableReplicaInfo"},
		{`{"tables":[{"id":"x"}]}`, &ChangefeedStatus{}, "json: cannot unmarshal string into Go struct field ChangefeedStatus.tables.id of type int64"},
	} {
		err := json.Unmarshal([]byte(c.doc), c.into)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s into %T: error %v, want %q", c.doc, c.into, err, c.want)
		}
	}
}
