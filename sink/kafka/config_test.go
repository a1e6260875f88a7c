package kafka

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseURIDefaultsAndEveryParameter(t *testing.T) {
	c, err := ParseURI("kafka://127.0.0.1:9092,127.0.0.2:9093/cdc?protocol=canal-json")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Brokers, ","); got != "127.0.0.1:9092,127.0.0.2:9093" || c.Topic != "cdc" {
		t.Errorf("brokers %s topic %s", got, c.Topic)
	}
	if c.MaxMessageBytes != 10<<20 || c.RequiredAcks != -1 || !c.AutoCreateTopic || c.ReplicationFactor != 1 ||
		c.DialTimeout != 10*time.Second || c.Compression != "none" || c.LargeMessageHandle != LargeMessageNone || c.MaxBatchSize != 16 {
		t.Errorf("defaults: %+v", c)
	}
	dir := t.TempDir()
	pem := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(pem, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	all := "kafka://h:1/t?protocol=open-protocol&partition-num=3&replication-factor=2&max-message-bytes=2048&compression=ZSTD" +
		"&required-acks=1&auto-create-topic=false&kafka-client-id=cdc-1&dial-timeout=1s&read-timeout=2s&write-timeout=3s" +
		"&sasl-mechanism=scram-sha-512&sasl-user=u&sasl-password=p%40ss&enable-tls=true&ca=" + pem + "&cert=" + pem + "&key=" + pem +
		"&insecure-skip-verify=true&enable-tidb-extension=true&max-batch-size=7&large-message-handle-option=claim-check" +
		"&claim-check-storage-uri=file:///tmp/cc&kafka-version=2.4.0"
	c, err = ParseURI(all)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Brokers: []string{"h:1"}, Topic: "t", Protocol: "open-protocol", PartitionNum: 3, ReplicationFactor: 2, MaxMessageBytes: 2048,
		Compression: "zstd", RequiredAcks: 1, ClientID: "cdc-1", DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second,
		SASLMechanism: "SCRAM-SHA-512", SASLUser: "u", SASLPassword: "p@ss", EnableTLS: true, CA: pem, Cert: pem, Key: pem, InsecureSkipVerify: true,
		EnableTiDBExtension: true, MaxBatchSize: 7, LargeMessageHandle: "claim-check", ClaimCheckStorageURI: "file:///tmp/cc",
		AvroDecimalHandlingMode: "precise", AvroBigintUnsignedHandling: "long", KafkaVersion: "2.4.0"}
	if got := *c; !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	c, err = ParseURI("kafka://h:1/t?protocol=avro&schema-registry=http://127.0.0.1:8081&avro-decimal-handling-mode=string&avro-bigint-unsigned-handling-mode=string")
	if err != nil || c.SchemaRegistry != "http://127.0.0.1:8081" || c.AvroDecimalHandlingMode != "string" || c.AvroBigintUnsignedHandling != "string" {
		t.Errorf("avro: %+v %v", c, err)
	}
	if c, err := ParseURI("kafka://h:1/t?protocol=debezium&debezium-disable-schema=true"); err != nil || !c.DebeziumDisableSchema {
		t.Errorf("debezium: %+v %v", c, err)
	}
	// Every parameter the table knows is exercised above.
	if n := len(ParamNames()); n != 28 {
		t.Errorf("%d parameters; update this test when adding one", n)
	}
}

func TestParseURIRejectsBadInputNamingTheParameter(t *testing.T) {
	for _, c := range []struct{ uri, want string }{
		{"kafka://h:1/t", "parameter protocol is required"},
		{"kafka://h:1/t?protocol=json", `parameter protocol="json": not a known protocol; it takes canal-json, debezium, open-protocol, avro, simple`},
		{"kafka://h:1/t?protocol=simple&partition-nums=3", `unknown parameter "partition-nums" (known: auto-create-topic,`},
		{"kafka://h:1/t?protocol=simple&partition-num=0", `parameter partition-num="0": out of range`},
		{"kafka://h:1/t?protocol=simple&partition-num=1&partition-num=2", "parameter partition-num is given 2 times"},
		{"kafka://h:1/t?protocol=simple&max-message-bytes=10MiB", `parameter max-message-bytes="10MiB"`},
		{"kafka://h:1/t?protocol=simple&required-acks=2", `parameter required-acks="2": not a known value`},
		{"kafka://h:1/t?protocol=simple&compression=brotli", `parameter compression="brotli"`},
		{"kafka://h:1/t?protocol=simple&auto-create-topic=yes", `parameter auto-create-topic="yes": not a boolean`},
		{"kafka://h:1/t?protocol=simple&dial-timeout=10", `parameter dial-timeout="10": not a positive duration`},
		{"kafka://h:1/t?protocol=simple&sasl-mechanism=GSSAPI&sasl-user=u&sasl-password=p", `parameter sasl-mechanism="GSSAPI"`},
		{"kafka://h:1/t?protocol=simple&sasl-user=u&sasl-password=hunter2", "sasl-user and sasl-password need sasl-mechanism"},
		{"kafka://h:1/t?protocol=simple&sasl-mechanism=PLAIN&sasl-user=u", "sasl-mechanism=PLAIN needs sasl-user and sasl-password"},
		{"kafka://h:1/t?protocol=simple&ca=/nonexistent.pem&enable-tls=true", `parameter ca="/nonexistent.pem": cannot read it`},
		{"kafka://h:1/t?protocol=simple&insecure-skip-verify=true", "need enable-tls=true"},
		{"kafka://h:1/t?protocol=simple&large-message-handle-option=claim-check", "needs claim-check-storage-uri"},
		{"kafka://h:1/t?protocol=simple&claim-check-storage-uri=s3://b/p&large-message-handle-option=claim-check", `parameter claim-check-storage-uri="s3://b/p"`},
		{"kafka://h:1/t?protocol=avro", "protocol=avro needs schema-registry"},
		{"kafka://h:1/t?protocol=simple&schema-registry=http://r:1", "schema-registry is only used with protocol=avro"},
		{"kafka://h:1/t?protocol=simple&kafka-version=latest", `parameter kafka-version="latest"`},
		{"kafka://h:1/t?protocol=simple&kafka-client-id=a b", `parameter kafka-client-id="a b"`},
		{"kafka://h/t?protocol=simple", `broker "h" is not host:port`},
		{"kafka://h:99999/t?protocol=simple", "invalid port"},
		{"kafka://h:1/?protocol=simple", "no topic"},
		{"kafka://h:1/a/b?protocol=simple", `character '/' is not allowed`},
		{"kafka://u:hunter2@h:1/t?protocol=simple", "user info is not used"},
		{"mysql://h:1/t", `scheme must be "kafka"`},
		{"kafka:///t?protocol=simple", "write kafka://host:port"},
	} {
		_, err := ParseURI(c.uri)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant it to contain %q", c.uri, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", c.uri, err)
		}
	}
}
