package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/raftcdc/raftcdc/codec/avro/avrotest"
	"github.com/raftcdc/raftcdc/model"
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
			if tc.protocol != "avro" && rep.Duplicates == 0 {
				t.Fatalf("the replay after the failover was not counted as duplicates: %s", rep)
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
