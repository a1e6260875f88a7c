package connector

import (
	"context"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/internal/testserver"
)

func TestCheckSinkReachesTheSQLServers(t *testing.T) {
	m := testserver.StartMariaDB(t)
	m.CreateUser(t, "cdc", "cdc-pw", "ALL ON *.*")
	ctx := context.Background()
	res, err := CheckSink(ctx, m.URI("cdc", "cdc-pw", ""), []string{"app"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheme != "mysql" || res.Server == nil || res.Server.Flavour != "MariaDB" || strings.Contains(res.URI, "cdc-pw") {
		t.Fatalf("check: %+v %+v", res, res.Server)
	}
	_, err = CheckSink(ctx, m.URI("cdc", "wrong-pw", ""), nil)
	if err == nil || !strings.Contains(err.Error(), "access denied") || strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("wrong password: %v", err)
	}
	p := testserver.StartPostgres(t)
	p.CreateUser(t, "cdc", "cdc-pw")
	p.Exec(t, "postgres", "CREATE DATABASE sinkdb OWNER cdc")
	res, err = CheckSink(ctx, p.ConnString("cdc", "cdc-pw", "sinkdb"), []string{"app"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheme != "postgres" || res.Server == nil || res.Server.Flavour != "PostgreSQL" {
		t.Fatalf("check: %+v %+v", res, res.Server)
	}
	// Non-SQL sinks are validated only.
	if res, err := CheckSink(ctx, "blackhole://", nil); err != nil || res.Server != nil {
		t.Fatalf("blackhole: %+v %v", res, err)
	}
}
