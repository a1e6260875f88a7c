package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source/tidb"
)

func TestToolsTiDBFakeRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--pd-addr", "localhost"}, "--pd-addr"},
		{[]string{"--pd-addr", "127.0.0.1:99999"}, "--pd-addr"},
		{[]string{"--stores", "4"}, "--stores"},
		{[]string{"--tables", "0"}, "--tables"},
		{[]string{"--regions-per-table", "1001"}, "--regions-per-table"},
		{[]string{"--rate", "-1"}, "--rate"},
		{[]string{"--rate", "NaN"}, "--rate"},
		{[]string{"--duration", "-1s"}, "--duration"},
	} {
		r := run(t, nil, append([]string{"tools", "tidbfake"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", c.args, r.code, r.stderr, c.want)
		}
		if strings.Contains(r.stdout, "Source URI") {
			t.Errorf("%v: started anyway: %s", c.args, r.stdout)
		}
	}
}

// The fake the command runs is one the tidb:// source reads: its demo
// tables are listed, and rows written into them arrive decoded.
func TestToolsTiDBFakeServesTheTiDBSource(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	done := make(chan result, 1)
	go func() {
		done <- run(t, nil, "tools", "tidbfake", "--pd-addr", addr, "--tables", "2", "--regions-per-table", "3", "--rate", "200", "--duration", "10s")
	}()
	// Whatever happens below, the command ends by --duration; wait for it
	// so that no fake outlives the test.
	var r result
	waited := false
	t.Cleanup(func() {
		if !waited {
			<-done
		}
	})

	cfg, err := tidb.ParseURI("tidb://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var src *tidb.Source
	for src == nil {
		if src, err = tidb.Open(ctx, cfg); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the fake's PD never answered: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	defer src.Close()
	var t1 model.TableName
	for t1.ID == 0 {
		now, err := src.CurrentTs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tables, err := src.TablesAt(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range tables {
			if tn.Schema == "demo" && tn.Table == "t1" {
				t1 = tn
			}
		}
		if t1.ID == 0 {
			if ctx.Err() != nil {
				t.Fatalf("demo.t1 never appeared; tables: %v", tables)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	start, err := src.CurrentTs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := src.SubscribeTxns(ctx, t1, start)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	rows := 0
	for rows < 20 {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("after %d rows of demo.t1: %v", rows, err)
		}
		for _, txn := range b.Txns {
			for _, rc := range txn.Rows {
				if rc.CommitTs <= start {
					t.Fatalf("row at %d, at or below the start %d", rc.CommitTs, start)
				}
				img := rc.After
				if rc.Op == model.OpDelete {
					img = rc.Before
				}
				if len(img) != 4 || img[0].Kind != model.ValueInt {
					t.Fatalf("row %v of demo.t1: want 4 columns with an integer id", img)
				}
				rows++
			}
		}
	}
	r = <-done
	waited = true
	if r.code != 0 || !strings.Contains(r.stdout, "Source URI: tidb://"+addr+"/") || !strings.Contains(r.stdout, "Stopped after") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n, err := strconv.Atoi(strings.Fields(r.stdout[strings.Index(r.stdout, "Stopped after")+len("Stopped after "):])[0]); err != nil || n < rows {
		t.Fatalf("the command reports %d rows (%v); the source alone saw %d of one table", n, err, rows)
	}
}
