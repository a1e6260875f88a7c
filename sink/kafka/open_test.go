package kafka

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

func TestOpenFailsClearlyOnBadDownstreams(t *testing.T) {
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	c := startBroker(t)
	brokers := strings.Join(c.ListenAddrs(), ",")
	for _, tc := range []struct{ name, uri, want string }{
		{"unreachable broker", "kafka://" + dead + "/t?protocol=open-protocol&dial-timeout=200ms&read-timeout=200ms&write-timeout=500ms&sasl-mechanism=PLAIN&sasl-user=u&sasl-password=hunter2",
			"kafka sink: reading metadata of topic t from [" + dead + "]"},
		{"missing topic without auto-create", "kafka://" + brokers + "/absent?protocol=open-protocol&auto-create-topic=false",
			"topic absent does not exist and auto-create-topic=false"},
		{"bad claim-check directory", "kafka://" + brokers + "/t?protocol=simple&large-message-handle-option=claim-check&claim-check-storage-uri=file:///proc/nope",
			"claim-check storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s, err := Open(ctx, tc.uri)
			if err == nil {
				s.Close()
				t.Fatalf("opened; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("got %v, want it to contain %q and no password", err, tc.want)
			}
		})
	}
}

func TestTopicMaxMessageBytesIsReadAndChecked(t *testing.T) {
	c := startBroker(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	small := "65536"
	for _, topic := range []string{"small-default", "small-table"} {
		if _, err := adm.CreateTopic(testCtx(t), 2, 1, map[string]*string{"max.message.bytes": &small}, topic); err != nil {
			t.Fatal(err)
		}
	}
	// The default topic's own limit lowers the sink's, with a warning.
	s := openSink(t, brokerURI(c, "small-default", "protocol=open-protocol"))
	if s.maxMessageBytes != 65536 {
		t.Fatalf("max message bytes %d, want the topic's 65536", s.maxMessageBytes)
	}
	// A row over it is refused naming the limit that applied: the topic's,
	// not the max-message-bytes the user set.
	sc := usersSchema("shop", "blobs")
	ts := openTable(t, s, sc.Table)
	err = ts.Write(testCtx(t), []*model.Txn{{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{bigRow(sc, 100)}}})
	if err == nil {
		err = ts.Flush(testCtx(t), 100)
	}
	if err == nil || !strings.Contains(err.Error(), "over topic small-default's max.message.bytes=65536") {
		t.Fatalf("a row over the topic's limit: %v", err)
	}
	// A table routed to another small topic is refused at open when the
	// sink's limit is above that topic's.
	s2 := openSink(t, brokerURI(c, "big-default", "protocol=open-protocol"),
		WithDispatchers([]model.DispatchRule{{Matcher: []string{"shop.*"}, Topic: "small-table"}}, false))
	_, err = s2.OpenTable(testCtx(t), model.TableName{Schema: "shop", Table: "t"}, sink.TableOptions{})
	if err == nil || !strings.Contains(err.Error(), "topic small-table accepts messages up to 65536 bytes (max.message.bytes), below this sink's max-message-bytes=10485760") {
		t.Fatalf("got %v", err)
	}
}
