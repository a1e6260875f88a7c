package integration

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/internal/testserver"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source/datagen"
	"github.com/raftcdc/raftcdc/verify"
)

// SQL downstreams through three processes: datagen v2 (every type, a DDL
// every 5 s, transactions over two tables on overlapping keys) into
// MariaDB, and separately into PostgreSQL. While the changefeed runs, the
// leader is killed twice, a follower is frozen past its fence, and the
// downstream server itself is SIGKILLed and restarted. The changefeed never
// fails (a replayed transaction after a kill is written in safe mode, so
// no duplicate-key error), and the verifier finds the downstream exactly
// equal to datagen's state at the checkpoint, every DDL applied.

func TestDatagenToMariaDBThroughFailures(t *testing.T) {
	src := sqlFeedSource()
	requireDatagenV2(t, src)
	m := testserver.StartMariaDB(t)
	m.CreateUser(t, "cdc", "cdc-pw", "ALL ON *.*")
	runSQLFeedThroughFailures(t, src, m.URI("cdc", "cdc-pw", "")+"?worker-count=8", func() { m.Restart(t) })
}

func TestDatagenToPostgresThroughFailures(t *testing.T) {
	src := sqlFeedSource()
	requireDatagenV2(t, src)
	p := testserver.StartPostgres(t)
	p.CreateUser(t, "cdc", "cdc-pw")
	p.Exec(t, "postgres", "CREATE DATABASE sink OWNER cdc")
	runSQLFeedThroughFailures(t, src, p.ConnString("cdc", "cdc-pw", "sink")+"&worker-count=8", func() { p.Restart(t) })
}

// sqlFeedSource is the upstream; the changefeed starts at its epoch, so
// the downstream (empty, its tables created from the upstream schemas)
// receives every row's insert: an UPDATE of a row inserted before the
// start would find nothing to update, as with any SQL replica that was
// not loaded with the upstream's state at the start ts.
func sqlFeedSource() string {
	epoch := time.Now().Add(-2 * time.Second).UTC().Truncate(time.Second).Format(time.RFC3339)
	return "datagen://?tables=3&rate=40&keys=40&txn-rows=3&txn-tables=2&ddl-every=5s&row-size=16&epoch=" + epoch
}

func sqlFeedStart(t *testing.T, src string) model.Ts {
	cfg, err := datagen.ParseURI(src)
	if err != nil {
		t.Fatal(err)
	}
	return model.TsFromTime(time.UnixMilli(cfg.EpochMs))
}

func runSQLFeedThroughFailures(t *testing.T, src, sinkURI string, restartDownstream func()) {
	c := StartCluster(t, binPath, 3, ClusterOptions{ExtraArgs: []string{"--log-level", "info"}})
	c.WaitForOwner(30*time.Second, 0)
	const id = "sql"
	start := sqlFeedStart(t, src)
	c.CreateChangefeed(api.ChangefeedRequest{ID: id, SourceURI: src, SinkURI: sinkURI, StartTs: start})
	c.WaitCheckpointAbove(id, start, advanceBound)

	// The leader (the owner, which executes the DDLs) is killed twice.
	for kill := 0; kill < 2; kill++ {
		o := c.WaitForOwner(ownerBound, 0)
		inc := c.Incarnation(o.ID)
		t.Logf("killing the leader %s", o.ID)
		c.Kill(o.Index, syscall.SIGKILL)
		killed := time.Now()
		c.WaitForOwner(ownerBound, o.Epoch)
		c.WaitCheckpointAbove(id, model.TsFromTime(killed), advanceBound)
		c.Restart(o.Index)
		c.WaitCaughtUp(rejoinBound)
		c.WaitCaptureAlive(o.ID, inc, rejoinBound)
	}

	// A follower frozen past its fence stops writing; its tables move.
	owner := c.WaitForOwner(ownerBound, 0)
	frozen := (owner.Index + 1) % len(c.Procs)
	c.Pause(frozen)
	paused := time.Now()
	time.Sleep(6 * time.Second)
	c.WaitCheckpointAbove(id, model.TsFromTime(paused), advanceBound)
	c.Resume(frozen)

	// The downstream server crashes mid-stream and comes back: the sink
	// retries, nothing is lost, the changefeed does not fail.
	t.Log("SIGKILL and restart of the downstream server")
	restartDownstream()
	restarted := time.Now()
	c.WaitCheckpointAbove(id, model.TsFromTime(restarted), advanceBound)

	// A SQL downstream has no commit ts per row: it is compared with
	// datagen once it holds exactly the rows up to a ts. Pause, give the
	// changefeed a target ts a few DDLs ahead, resume (a replay from the
	// checkpoint, in safe mode, over rows already written) and wait until
	// it finishes there.
	// Asked again while the read fails: right after the downstream's
	// restart the nodes are busy retrying, and a failed read says nothing.
	d := c.DetailEventually(id, 30*time.Second)
	if d.Info.State != model.StateNormal || d.Info.Error != nil || len(d.Info.ErrorHistory) > 0 {
		t.Fatalf("the changefeed is %s with error %+v (history %v) after the faults", d.Info.State, d.Info.Error, d.Info.ErrorHistory)
	}
	feedAction(t, c, http.MethodPost, "/api/v1/changefeeds/"+id+"/pause", nil)
	WaitFor(t, time.Minute, "the changefeed paused", func() bool {
		d, err := c.Detail(id)
		return err == nil && d.Info.State == model.StateStopped
	})
	target := model.TsFromTime(time.Now().Add(8 * time.Second))
	feedAction(t, c, http.MethodPut, "/api/v1/changefeeds/"+id, api.ChangefeedRequest{TargetTs: target})
	feedAction(t, c, http.MethodPost, "/api/v1/changefeeds/"+id+"/resume", nil)
	WaitFor(t, 2*time.Minute, "the changefeed finished at its target ts", func() bool {
		var err error
		d, err = c.Detail(id)
		return err == nil && d.Info.State == model.StateFinished
	})
	cp := d.CheckpointTs()
	if cp != target {
		t.Fatalf("finished at checkpoint %d, target %d", cp, target)
	}
	if d.Info.Error != nil || len(d.Info.ErrorHistory) > 0 {
		t.Fatalf("the changefeed failed on the way: %+v (history %v)", d.Info.Error, d.Info.ErrorHistory)
	}
	// DDLs were replicated (the verifier over SQL sees only the resulting
	// schemas, which it compares), and every node that writes has the
	// SQL sink's metrics, labelled by changefeed.
	var ddls, rows float64
	for i := range c.Procs {
		n, _, _ := c.Metric(i, "raftcdc_sql_sink_ddl_total", "changefeed="+id)
		r, _, _ := c.Metric(i, "raftcdc_sql_sink_rows_total", "changefeed="+id)
		ddls, rows = ddls+n, rows+r
	}
	if ddls == 0 || rows == 0 {
		t.Fatalf("metrics show %v DDLs and %v rows written by the SQL sink since the last restarts", ddls, rows)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := verify.CompareState(ctx, verify.StateParams{SourceURI: src, Downstream: sinkURI, StartTs: start, CheckpointTs: cp})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Expected == 0 || rep.Matched != rep.Expected {
		for _, k := range append(append([]verify.RowKey(nil), rep.MissingExamples...), rep.ExtraExamples...) {
			t.Logf("history of %s:\n%s", k, keyHistory(t, src, k, start, cp))
		}
		t.Fatalf("downstream differs from datagen at checkpoint %d: %s\nmissing e.g. %v\nextra e.g. %v\nwrong e.g. %v\nschema: %v",
			cp, rep, rep.MissingExamples, rep.ExtraExamples, rep.WrongExamples, rep.SchemaDiffs)
	}
	t.Logf("verified at %d: %s", cp, fmt.Sprint(rep))
}

// keyHistory lists datagen's changes of one key in (start, upto] and the
// DDLs in between, for a failure's report.
func keyHistory(t *testing.T, src string, k verify.RowKey, start, upto model.Ts) string {
	ds, err := datagen.Open(src)
	if err != nil {
		return err.Error()
	}
	defer ds.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sub, err := ds.SubscribeTxns(ctx, k.Table, start)
	if err != nil {
		return err.Error()
	}
	defer sub.Close()
	var b strings.Builder
	for {
		batch, err := sub.Next(ctx)
		if err != nil {
			break
		}
		for _, tx := range batch.Txns {
			for _, r := range tx.Rows {
				img := r.Image()
				if i := r.Schema.ColumnIndex("id"); i >= 0 && i < len(img) && img[i].Text() == strconv.FormatUint(k.Key, 10) ||
					r.Before != nil && i >= 0 && r.Before[i].Text() == strconv.FormatUint(k.Key, 10) {
					fmt.Fprintf(&b, "  %d (start %d, %d rows in txn) %s schema v%d\n", tx.CommitTs, tx.StartTs, len(tx.Rows), r.Op, r.Schema.Version)
				}
			}
		}
		if batch.ResolvedTs >= upto {
			break
		}
	}
	h, err := datagen.ParseHistory(src)
	if err != nil {
		return err.Error()
	}
	h.DDLs(start, upto, func(d *model.DDLEvent) bool {
		fmt.Fprintf(&b, "  DDL %s\n", d)
		return true
	})
	return b.String()
}
