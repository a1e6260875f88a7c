package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/raftcdc/raftcdc/codec/avro/avrotest"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/kafka"
)

// A Kafka sink written the way a changefeed writes it — every DDL kind, a
// 3-partition topic per table, a failover that replays a stretch — is
// rebuilt by the consumer and equals datagen's state at the checkpoint,
// for every protocol.
func TestStateOfAKafkaSinkMatchesDatagenForEveryProtocol(t *testing.T) {
	for _, tc := range []struct{ protocol, params string }{
		{"canal-json", "enable-tidb-extension=true"},
		{"open-protocol", "max-batch-size=4"},
		{"debezium", ""},
		{"simple", ""},
		{"avro", "enable-tidb-extension=true"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			h := stateHistory(t, stateURI)
			c, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			params := tc.params
			if tc.protocol == "avro" {
				params += "&schema-registry=" + avrotest.Start(t).URL
			}
			uri := "kafka://" + c.ListenAddrs()[0] + "/cdc?protocol=" + tc.protocol + "&partition-num=3&" + params
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			s, err := kafka.Open(ctx, uri, kafka.WithDispatchers([]model.DispatchRule{{Matcher: []string{"*.*"}, Topic: "{schema}_{table}", Partition: model.PartitionIndexValue}}, false))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			start, upto := h.EpochTs(), after(h, 25*time.Second)
			replicateTo(t, h, s, start, upto, after(h, 9*time.Second))
			rep := mustCompare(t, StateParams{SourceURI: stateURI, Downstream: uri, StartTs: start, CheckpointTs: upto})
			if !rep.OK() || rep.Expected == 0 || rep.Matched != rep.Expected || rep.DDLs < 10 || rep.DDLsFound != rep.DDLs {
				t.Fatalf("%s", rep)
			}
			if tc.protocol != "avro" && (rep.Duplicates == 0 || rep.Replayed == 0) {
				t.Fatalf("the replay after the failover was not counted as duplicates and replayed events: %s", rep)
			}
			if rep.Reordered != 0 {
				t.Fatalf("a failover's replay was taken for reordering: %s", rep)
			}
			t.Log(rep)

			// Verifying at an earlier checkpoint than the data reached
			// ignores what lies after it, written with schema versions
			// the checkpoint's time does not know yet (a rename, a column
			// added); a later one finds rows missing.
			for _, early := range []time.Duration{3 * time.Second, 11 * time.Second, 17 * time.Second} {
				rep := mustCompare(t, StateParams{SourceURI: stateURI, Downstream: uri, StartTs: start, CheckpointTs: after(h, early)})
				if !rep.OK() || rep.AfterCheckpoint == 0 {
					t.Fatalf("at %s: %s", early, rep)
				}
			}
			late := mustCompare(t, StateParams{SourceURI: stateURI, Downstream: uri, StartTs: start, CheckpointTs: after(h, 40*time.Second)})
			if late.OK() || late.Missing == 0 {
				t.Fatalf("a checkpoint past the data verified: %s", late)
			}
		})
	}
}

func TestKafkaVerificationRefusesWhatItCannotCheck(t *testing.T) {
	for _, c := range []struct{ uri, want string }{
		{"kafka://127.0.0.1:1/t?protocol=canal-json", "needs enable-tidb-extension=true"},
		{"kafka://127.0.0.1:1/t?protocol=open-protocol&large-message-handle-option=handle-key-only", "sends only keys"},
		{"kafka://127.0.0.1:1/t?protocol=nope", `parameter protocol="nope"`},
	} {
		_, err := CompareState(context.Background(), StateParams{SourceURI: stateURI, Downstream: c.uri, CheckpointTs: 100})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.uri, err, c.want)
		}
	}
}

// TestKafkaOrderTellsReplaysFromReorderings: one key's versions written to
// a one-partition topic. Writing a stretch again after newer versions (a
// failover's replay) counts its older versions as replayed; a version
// first written after a newer one counts as reordered. Both topics still
// rebuild datagen's state, since the state keeps each key's newest version.
func TestKafkaOrderTellsReplaysFromReorderings(t *testing.T) {
	const src = "datagen://?tables=1&rate=10&keys=1&row-size=8&epoch=" + stateEpoch
	h := stateHistory(t, src)
	start, upto := h.EpochTs(), after(h, 2*time.Second)
	tn := h.TablesAt(upto)[0]
	var txns []*model.Txn
	h.Txns(tn.ID, start, upto, func(txn *model.Txn) bool { txns = append(txns, txn); return true })
	if len(txns) < 8 {
		t.Fatalf("%d transactions in 2 s of the history, want at least 8", len(txns))
	}
	last := txns[len(txns)-1].CommitTs
	for _, tc := range []struct {
		name                string
		order               []int // indexes into txns, in the order written
		replayed, reordered uint64
	}{
		// 0..7, then 3..7 again: 3, 4, 5 and 6 come after 7 and were
		// seen before; 7 again is not behind anything.
		{"replay", []int{0, 1, 2, 3, 4, 5, 6, 7, 3, 4, 5, 6, 7}, 4, 0},
		// 4 is first written after 5.
		{"reordering", []int{0, 1, 2, 3, 5, 4, 6, 7}, 0, 1},
		// Both: 2 is replayed after 6, 5 first arrives after 6.
		{"replay and reordering", []int{0, 1, 2, 3, 4, 6, 2, 5, 7}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			uri := "kafka://" + c.ListenAddrs()[0] + "/cdc?protocol=canal-json&enable-tidb-extension=true&partition-num=1"
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := kafka.Open(ctx, uri)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sch, err := h.SchemaAt(tn.ID, start)
			if err != nil {
				t.Fatal(err)
			}
			ts, err := s.OpenTable(ctx, tn, sink.TableOptions{StartTs: start, Schema: sch})
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range tc.order {
				// One Write and Flush each, so the messages reach the
				// partition in exactly this order.
				if err := ts.Write(ctx, []*model.Txn{txns[i]}); err != nil {
					t.Fatal(err)
				}
				if err := ts.Flush(ctx, last); err != nil {
					t.Fatal(err)
				}
			}
			ts.Close()
			rep := mustCompare(t, StateParams{SourceURI: src, Downstream: uri, StartTs: start, CheckpointTs: txns[7].CommitTs})
			if rep.Matched != rep.Expected || rep.Expected == 0 {
				t.Fatalf("the topic does not rebuild the state: %s", rep)
			}
			// A replay is at-least-once delivery; a reordering is a fault.
			if rep.OK() != (tc.reordered == 0) {
				t.Fatalf("OK() = %v with %d reordered: %s", rep.OK(), rep.Reordered, rep)
			}
			if rep.Replayed != tc.replayed || rep.Reordered != tc.reordered || rep.OutOfOrder != tc.replayed+tc.reordered {
				t.Fatalf("replayed %d, reordered %d, out of order %d; want %d, %d, %d: %s",
					rep.Replayed, rep.Reordered, rep.OutOfOrder, tc.replayed, tc.reordered, tc.replayed+tc.reordered, rep)
			}
			if tc.reordered > 0 && (len(rep.ReorderedExamples) == 0 || !strings.Contains(rep.ReorderedExamples[0], "partition 0")) {
				t.Fatalf("no example says where the reordering is: %v", rep.ReorderedExamples)
			}
		})
	}
}
