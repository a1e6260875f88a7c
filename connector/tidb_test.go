package connector

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/internal/tidbfake"
	"github.com/raftcdc/raftcdc/source"
	"github.com/raftcdc/raftcdc/source/tidb"
)

func TestPoolOpensTiDBSourcesAndCheckReachesPD(t *testing.T) {
	c, err := tidbfake.Start(tidbfake.Options{Stores: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := NewPool()
	t.Cleanup(func() { p.Close() })

	uri := "tidb://" + c.PDAddr() + "/?kv-client-workers=2"
	if err := CheckSource(ctx, "cf", uri, nil); err != nil {
		t.Fatalf("check against the fake PD: %v", err)
	}
	a, err := p.Source(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	// Another spelling of the same configuration shares the connection.
	b, err := p.SourceFor(ctx, "other", "tidb://"+c.PDAddr()+"?kv-client-workers=2")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("two spellings of one TiDB URI opened two sources")
	}
	if _, ok := a.(source.SpanSource); !ok {
		t.Fatalf("a TiDB source is a %T, not a span source", a)
	}
	id, err := a.UpstreamID(ctx)
	if err != nil || id != strconv.FormatUint(c.ClusterID(), 10) {
		t.Fatalf("upstream ID %q %v, want PD's cluster ID %d", id, err, c.ClusterID())
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	err = CheckSource(ctx, "cf", "tidb://"+dead+"/", nil)
	if !errors.Is(err, tidb.ErrPDUnreachable) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("check against nothing: %v", err)
	}
	if _, err := p.Source(ctx, "tidb://"+dead+"/"); !errors.Is(err, tidb.ErrPDUnreachable) {
		t.Fatalf("opening a source whose PD is down: %v", err)
	}
}
