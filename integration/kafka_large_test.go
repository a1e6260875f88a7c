package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// TestKafkaRowOverMaxMessageBytesFailsTheChangefeed: a PostgreSQL table is
// replicated by three raftcdc processes into a Kafka broker in a process of
// its own (`raftcdc tools kafkafake`) with max-message-bytes=4096 and
// large-message-handle-option=none. A row larger than that makes the
// changefeed fail — state failed, not the error state that is retried after
// a backoff — with a reason naming the table, the row's size and the limit,
// in the API and in `ctl changefeed query`; it stays failed past the error
// backoff, and no message over the limit, nor the row after it, reached the
// topic. Changing the sink to handle-key-only and resuming then delivers
// the row's handle key and the rows after it.
func TestKafkaRowOverMaxMessageBytesFailsTheChangefeed(t *testing.T) {
	const limit = 4096
	broker := startKafkaFake(t)
	pg := testserver.StartPostgres(t, testserver.PostgresLogicalReplication())
	pg.CreateDatabase(t, "shop")
	pg.Exec(t, "shop",
		`CREATE TABLE blobs (id int PRIMARY KEY, body text)`,
		`INSERT INTO blobs SELECT g, 'small ' || g FROM generate_series(1, 3) g`)

	c := StartCluster(t, binPath, 3, ClusterOptions{})
	c.WaitForOwner(60*time.Second, 0)
	const id = "big"
	sinkURI := fmt.Sprintf("kafka://%s/blobs?protocol=canal-json&enable-tidb-extension=true&partition-num=1&max-message-bytes=%d", broker, limit)
	c.CreateChangefeed(api.ChangefeedRequest{ID: id, SourceURI: pg.SuperConnString("shop"), SinkURI: sinkURI})
	Eventually(t, 2*time.Minute, "the snapshot's rows in the topic", func() (bool, string) {
		got := readBlobs(t, broker, limit)
		return got.has(1, 2, 3), fmt.Sprintf("ids %v", got.ids)
	})

	// About 20 KB of text that does not compress away (PostgreSQL decodes
	// it in full for the stream either way), then a small row after it.
	pg.Exec(t, "shop",
		`INSERT INTO blobs SELECT 100, string_agg(md5(g::text), '') FROM generate_series(1, 640) g`,
		`INSERT INTO blobs VALUES (101, 'after the large row')`)

	var d api.ChangefeedDetail
	Eventually(t, 90*time.Second, "the changefeed failed", func() (bool, string) {
		var err error
		d, err = c.Detail(id)
		if err != nil {
			return false, err.Error()
		}
		return d.Info.State == model.StateFailed, fmt.Sprintf("state %s error %+v", d.Info.State, d.Info.Error)
	})
	e := d.Info.Error
	if e == nil || e.Code != sink.CodeUnretryable {
		t.Fatalf("failed with %+v, want code %s", e, sink.CodeUnretryable)
	}
	m := regexp.MustCompile(`table public\.blobs: a row at commit ts \d+ encodes to a message of (\d+) bytes \(\d+ with Kafka's record framing\), over max-message-bytes=4096`).FindStringSubmatch(e.Message)
	if m == nil {
		t.Fatalf("the reason %q does not name the table, the row's size and the limit", e.Message)
	}
	if size, _ := strconv.Atoi(m[1]); size < 20000 {
		t.Fatalf("the reason gives the row's size as %s bytes; the row holds over 20000", m[1])
	}
	ctx, cancel := Ctx(20 * time.Second)
	out, err := c.Ctl(ctx, 0, "changefeed", "query", "--changefeed-id", id)
	cancel()
	if err != nil {
		t.Fatalf("ctl changefeed query: %v", err)
	}
	if !strings.Contains(string(out), "failed") || !strings.Contains(string(out), m[0]) {
		t.Fatalf("ctl changefeed query does not show the state and the reason:\n%s", out)
	}

	// The error state would run again after its backoff (10 s at first);
	// failed must not.
	for until := time.Now().Add(15 * time.Second); time.Now().Before(until); time.Sleep(time.Second) {
		d, err := c.Detail(id)
		if err == nil && d.Info.State != model.StateFailed {
			t.Fatalf("the failed changefeed became %s without a resume", d.Info.State)
		}
	}
	got := readBlobs(t, broker, limit)
	if !got.has(1, 2, 3) || got.has(100) || got.has(101) {
		t.Fatalf("topic holds ids %v: want 1, 2 and 3, and neither the large row (100) nor the row after it (101)", got.ids)
	}

	// The user's way out: send such rows with their handle key only.
	feedAction(t, c, http.MethodPut, "/api/v1/changefeeds/"+id, api.ChangefeedRequest{SinkURI: sinkURI + "&large-message-handle-option=handle-key-only"})
	feedAction(t, c, http.MethodPost, "/api/v1/changefeeds/"+id+"/resume", nil)
	Eventually(t, 2*time.Minute, "the large row's handle key and the row after it in the topic", func() (bool, string) {
		got = readBlobs(t, broker, limit)
		return got.has(100, 101), fmt.Sprintf("ids %v", got.ids)
	})
	if !got.keyOnly[100] {
		t.Fatal("the large row arrived with more than its handle key")
	}
	if d, err := c.Detail(id); err != nil || d.Info.State != model.StateNormal {
		t.Fatalf("after the resume: state %s (%v), want normal", d.Info.State, err)
	}
}

// blobRows is what readBlobs found: every row message's id, and which
// carried only the handle key.
type blobRows struct {
	ids     []int
	keyOnly map[int]bool
}

func (b blobRows) has(ids ...int) bool {
	for _, want := range ids {
		found := false
		for _, id := range b.ids {
			found = found || id == want
		}
		if !found {
			return false
		}
	}
	return true
}

// readBlobs reads the whole blobs topic, failing the test on any message
// over limit bytes (key and value).
func readBlobs(t *testing.T, broker string, limit int) blobRows {
	t.Helper()
	ctx, cancel := Ctx(30 * time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics("blobs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := blobRows{keyOnly: map[int]bool{}}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "blobs")
	if err != nil {
		// Not created yet (the sink creates it when it opens): nothing
		// to read.
		t.Logf("end offsets of blobs: %v", err)
		return got
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	read := map[int32]int64{}
	for p, end := range want {
		for read[p] < end {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("reading blobs: %v (partition %d: %d of %d)", ctx.Err(), p, read[p], end)
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("reading blobs: %v", err) })
			fs.EachRecord(func(r *kgo.Record) {
				read[r.Partition]++
				if n := len(r.Key) + len(r.Value); n > limit {
					t.Fatalf("a %d-byte message over max-message-bytes=%d reached the topic at partition %d offset %d", n, limit, r.Partition, r.Offset)
				}
				msg, err := canal.Decode(r.Value)
				if err != nil {
					t.Fatalf("partition %d offset %d: %v", r.Partition, r.Offset, err)
				}
				if msg.Kind() != canal.KindRow {
					return
				}
				for _, row := range msg.Data {
					if v := row["id"]; v != nil {
						id, _ := strconv.Atoi(*v)
						got.ids = append(got.ids, id)
						got.keyOnly[id] = msg.TiDB != nil && msg.TiDB.OnlyHandleKey
					}
				}
			})
		}
	}
	return got
}

// startKafkaFake runs `raftcdc tools kafkafake` (one partition a topic) on
// a free port until the test ends, and returns its address.
func startKafkaFake(t *testing.T) string {
	t.Helper()
	port := FreePorts(t, 1)[0]
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(t.TempDir(), "kafkafake.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "tools", "kafkafake", "--port", strconv.Itoa(port), "--partitions", "1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	WaitFor(t, 30*time.Second, "the Kafka fake listening on "+addr, func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	return addr
}
