package connector

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/raftcdc/raftcdc/sink/blackhole"
	"github.com/raftcdc/raftcdc/sink/storage"
	"github.com/raftcdc/raftcdc/sinkroot"
)

func TestValidateURIs(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name     string
		validate func(string) error
		uri      string
		want     string // "" means valid
	}{
		{"source ok", ValidateSourceURI, "datagen://?tables=3", ""},
		{"source empty", ValidateSourceURI, "", "source URI is empty"},
		{"source malformed", ValidateSourceURI, "datagen://%zz", "malformed source URI"},
		{"source no scheme", ValidateSourceURI, "tables=3", "no scheme"},
		{"source unknown", ValidateSourceURI, "mysql://root@x", "unknown scheme \"mysql\" (supported: datagen, postgres, tidb)"},
		{"source bad param", ValidateSourceURI, "datagen://?rate=-1", `"rate"`},
		{"source tidb ok", ValidateSourceURI, "tidb://127.0.0.1:2379,127.0.0.2:2379/?kv-client-workers=4", ""},
		{"source tidb unknown param", ValidateSourceURI, "tidb://127.0.0.1:2379/?region=1", `parameter "region" is unknown`},
		{"source tidb no port", ValidateSourceURI, "tidb://pd/", "not host:port"},
		{"sink file ok", ValidateSinkURI, "file://" + dir, ""},
		{"sink blackhole ok", ValidateSinkURI, "blackhole://", ""},
		{"sink unknown", ValidateSinkURI, "amqp://x", "supported: file, blackhole, kafka, mysql, tidb, postgres"},
		{"sink kafka ok", ValidateSinkURI, "kafka://127.0.0.1:9092/t?protocol=canal-json", ""},
		{"sink kafka bad param", ValidateSinkURI, "kafka://127.0.0.1:9092/t?protocol=canal-json&acks=1", `unknown parameter "acks"`},
		{"sink kafka password hidden", ValidateSinkURI, "kafka://127.0.0.1:9092/t?protocol=x&sasl-password=hunter2", "sasl-password=xxxxx"},
		{"sink relative", ValidateSinkURI, "file://out", "absolute"},
		{"sink bad param", ValidateSinkURI, "blackhole://?x=1", `unknown parameter "x"`},
		{"sink malformed", ValidateSinkURI, ":/x", "malformed sink URI"},
		{"sink mysql ok", ValidateSinkURI, "mysql://u:pw@127.0.0.1:3306/?worker-count=4&safe-mode=true", ""},
		{"sink tidb ok", ValidateSinkURI, "tidb://u:pw@127.0.0.1/?tidb-txn-mode=pessimistic", ""},
		{"sink mysql unknown param", ValidateSinkURI, "mysql://u:pw@h/?workers=4", `unknown parameter "workers"`},
		{"sink mysql password hidden", ValidateSinkURI, "mysql://u:hunter2@h/?workers=4", "mysql://u:xxxxx@h/"},
		{"sink malformed password hidden", ValidateSinkURI, "mysql://u:hun#ter2@h/", "malformed"},
		{"sink postgres ok", ValidateSinkURI, "postgres://u:pw@127.0.0.1:5432/db?sslmode=disable&worker-count=8", ""},
		{"sink postgres no database", ValidateSinkURI, "postgres://u:hunter2@h/", "name one database"},
		{"sink postgres unknown param", ValidateSinkURI, "postgres://u:hunter2@h/db?slot=x", `unknown parameter "slot"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.validate(tc.uri)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			for _, secret := range []string{"hunter2", "ter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error shows a password: %v", err)
				}
			}
		})
	}
}

func TestPoolSharesSourcesPerURI(t *testing.T) {
	ctx := context.Background()
	p := NewPool()
	a, err := p.Source(ctx, "datagen://?tables=2&gc-life=1h")
	if err != nil {
		t.Fatal(err)
	}
	// Same configuration spelled differently: the same instance, which shows
	// in the shared GC state.
	b, err := p.Source(ctx, "datagen://?gc-life=60m&tables=2&seed=1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.Source(ctx, "datagen://?tables=3&gc-life=1h")
	if err != nil {
		t.Fatal(err)
	}
	// datagen's GC safepoint follows the clock (now − gc-life, in ms): a
	// safepoint read one millisecond before the update is already below
	// the one in force and refused. Pin it with the value the update
	// accepts.
	var gc model.Ts
	for deadline := time.Now().Add(5 * time.Second); ; {
		if gc, err = a.GCSafepoint(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := a.UpdateServiceGCSafepoint(ctx, "cdc", time.Hour, gc)
		if err != nil {
			t.Fatal(err)
		}
		if got == gc {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service safepoint was refused at every attempt (last %d, in force %d)", gc, got)
		}
	}
	// A user's Close must not close the shared instance.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// With the service entry at gc, a lower request is refused by the shared
	// instance but accepted by the other one.
	if got, err := b.UpdateServiceGCSafepoint(ctx, "x", time.Hour, gc-1); err != nil || got != gc {
		t.Fatalf("shared instance: got %d, %v; want %d", got, err, gc)
	}
	tables, err := other.TablesAt(ctx, 0)
	if err != nil || len(tables) != 3 {
		t.Fatalf("other source: %d tables, %v", len(tables), err)
	}
	if _, err := p.Source(ctx, "datagen://?tables=0"); err == nil {
		t.Fatal("bad URI opened")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TablesAt(ctx, 0); err == nil {
		t.Fatal("source still open after Pool.Close")
	}
	if _, err := p.Source(ctx, "datagen://"); err == nil {
		t.Fatal("closed pool opened a source")
	}
}

func TestPoolOpensSinks(t *testing.T) {
	ctx := context.Background()
	p := NewPool()
	defer p.Close()
	dir := t.TempDir()
	s, err := p.OpenSink(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*storage.Sink); !ok {
		t.Fatalf("file URI opened %T, want the storage sink", s)
	}
	s.Close()
	s, err = p.OpenSink(ctx, "blackhole://")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := s.OpenTable(ctx, model.TableName{ID: 1, Schema: "a", Table: "b"}, sink.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts.Write(ctx, []*model.Txn{{CommitTs: 1, Rows: []*model.RowChange{{CommitTs: 1}}}})
	if s.(*blackhole.Sink).Stats().WrittenRows != 1 {
		t.Fatal("blackhole did not count")
	}
	if _, err := p.OpenSink(ctx, "nats://x"); err == nil {
		t.Fatal("unknown sink opened")
	}
}

func TestPoolOpensKafkaSinksWithTheChangefeedsDispatchers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := prometheus.NewRegistry()
	p := NewPool(WithMetricsRegistry(reg))
	defer p.Close()
	cfg := model.ChangefeedConfig{Dispatchers: []model.DispatchRule{{Matcher: []string{"a.*"}, Topic: "t_{table}"}}}
	s, err := p.OpenChangefeedSink(ctx, "cf1", "kafka://"+c.ListenAddrs()[0]+"/main?protocol=canal-json", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.OpenTable(ctx, model.TableName{ID: 1, Schema: "a", Table: "b"}, sink.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !topics.Has("t_b") || !topics.Has("main") {
		t.Fatalf("topics %v: the dispatcher's t_b and the URI's main should exist", topics.Names())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "raftcdc_kafka_produce_latency_seconds"
	}
	if !found {
		t.Error("the Kafka sink's metrics are not in the pool's registry")
	}
}

func TestPoolConfinesFileSinksToTheRoots(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	policy, err := sinkroot.New(root)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(WithSinkRoots(policy))
	defer p.Close()
	if err := p.ValidateSinkURI("file://" + root + "/feed"); err != nil {
		t.Fatal(err)
	}
	if err := p.ValidateSinkURI("blackhole://"); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"file://" + outside, "file://" + root + "/../x", "file:///etc/cron.d"} {
		if err := p.ValidateSinkURI(uri); err == nil || !strings.Contains(err.Error(), "--sink-root") {
			t.Errorf("validate %s: %v", uri, err)
		}
		if _, err := p.OpenSink(context.Background(), uri); err == nil || !strings.Contains(err.Error(), "--sink-root") {
			t.Errorf("open %s: %v", uri, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("a refused open wrote %v", entries)
	}
	// A directory that became a symlink out of the root after create is
	// refused at open.
	link := filepath.Join(root, "moved")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if _, err := p.OpenSink(context.Background(), "file://"+link); err == nil {
		t.Error("opened a sink through a symlink out of the root")
	}
	s, err := p.OpenSink(context.Background(), "file://"+root+"/feed")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
