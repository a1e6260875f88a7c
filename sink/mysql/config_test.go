package mysql

import (
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/sink/sqlsink"
)

func TestParseURIDefaultsAndEveryParameter(t *testing.T) {
	c, err := ParseURI("mysql://root:pw@db.local/")
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 3306 || c.WorkerCount != 16 || c.MaxTxnRow != 256 || c.SafeMode != sqlsink.SafeAuto ||
		!c.BatchDML || !c.MultiStmt || !c.CachePrepStmts || c.Atomicity != sqlsink.AtomicityTable ||
		c.ReadTimeout != 2*time.Minute || !c.CreateTables || c.TimeZone != time.UTC {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = ParseURI("tidb://u:p%40ss@h:4001/?worker-count=64&max-txn-row=1000&max-multi-update-row=10&safe-mode=true" +
		"&batch-dml-enable=false&multi-stmt-enable=0&cache-prep-stmts=false&transaction-atomicity=none" +
		"&read-timeout=30s&write-timeout=1m&time-zone=%2B08:00&create-tables=false&tidb-txn-mode=optimistic")
	if err != nil {
		t.Fatal(err)
	}
	if c.Scheme != "tidb" || c.Port != 4001 || c.Password != "p@ss" || c.WorkerCount != 64 || c.MaxTxnRow != 1000 ||
		c.MaxMultiUpdateRow != 10 || c.SafeMode != sqlsink.SafeAlways || c.BatchDML || c.MultiStmt || c.CachePrepStmts ||
		c.Atomicity != sqlsink.AtomicityNone || c.ReadTimeout != 30*time.Second || c.WriteTimeout != time.Minute ||
		c.TimeZoneName != "+08:00" || c.CreateTables || c.TiDBTxnMode != "optimistic" {
		t.Fatalf("parsed: %+v", c)
	}
	if _, off := time.Date(2024, 1, 1, 0, 0, 0, 0, c.TimeZone).Zone(); off != 8*3600 {
		t.Fatalf("time-zone +08:00 has offset %d", off)
	}
}

func TestParseURIRejectsBadInputNamingIt(t *testing.T) {
	cases := []struct{ uri, want string }{
		{"mysql://root:pw@h/?worker-cnt=1", `unknown parameter "worker-cnt"`},
		{"mysql://root:pw@h/?worker-count=2000", "worker-count=\"2000\": want a whole number from 1 to 1024"},
		{"mysql://root:pw@h/?max-txn-row=x", "max-txn-row=\"x\""},
		{"mysql://root:pw@h/?safe-mode=maybe", "safe-mode=\"maybe\": want auto, true or false"},
		{"mysql://root:pw@h/?transaction-atomicity=global", "transaction-atomicity=\"global\": want table or none"},
		{"mysql://root:pw@h/?read-timeout=-1s", "read-timeout=\"-1s\""},
		{"mysql://root:pw@h/?batch-dml-enable=yes", "batch-dml-enable=\"yes\": want true or false"},
		{"mysql://root:pw@h/?tidb-txn-mode=optimistic", "tidb-txn-mode: only for tidb:// URIs"},
		{"mysql://root:pw@h/?time-zone=Nowhere/City", "time-zone=\"Nowhere/City\""},
		{"mysql://root:pw@h/?ssl-ca=/no/such/file.pem", "parameter ssl-ca"},
		{"mysql://root:pw@h/?ssl-cert=/a.pem", "ssl-cert and ssl-key go together"},
		{"mysql://root:pw@h/?worker-count=1&worker-count=2", "worker-count is given 2 times"},
		{"mysql://root:pw@h/app", "a database in the path (\"app\") is not supported"},
		{"mysql://root:pw@h:99999/", "port \"99999\""},
		{"mysql://h/", "no user"},
		{"mysql://root:pw@/", "write it as mysql://"},
		{"kafka://root:pw@h/", "scheme must be mysql or tidb"},
		{"mysql://root:pw@h/#frag", "a fragment"},
		{"mysql://root:pw#x@h/", "malformed"},
		{"mysql://root:p w@%zz/", "malformed"},
	}
	for _, c := range cases {
		_, err := ParseURI(c.uri)
		if err == nil {
			t.Errorf("ParseURI(%q) passed", c.uri)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseURI(%q): %v\nwant it to say %q", c.uri, err, c.want)
		}
		for _, secret := range []string{":pw@", "p w", "pw#x"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("ParseURI(%q) error shows the password: %v", c.uri, err)
			}
		}
	}
}

func TestGrantParsing(t *testing.T) {
	g := &grantSet{global: map[string]bool{}}
	for _, l := range []string{
		"GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*ABC'",
		"GRANT SELECT, INSERT, UPDATE (`a`, `b`), DELETE ON `shop`.* TO `u`@`%`",
		"GRANT ALL PRIVILEGES ON `app\\_%`.* TO `u`@`%`",
		"GRANT SELECT ON `other`.`t` TO `u`@`%`",
	} {
		g.add(l)
	}
	need := sqlsink.RequiredMySQLPrivileges
	if m := g.missing("app_x", need); len(m) != 0 {
		t.Fatalf("app_x: missing %v", m)
	}
	if m := g.missing("appx", need); len(m) != len(need) {
		t.Fatalf("appx matched the escaped pattern app\\_%%: missing only %v", m)
	}
	if m := strings.Join(g.missing("shop", need), ","); m != "UPDATE,CREATE,DROP,ALTER,INDEX" {
		t.Fatalf("shop: missing %s (a column-level UPDATE is not a table-wide one)", m)
	}
	if m := g.missing("", need); len(m) != len(need) {
		t.Fatalf("*.*: missing %v", m)
	}
}
