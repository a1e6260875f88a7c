package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
)

// matrixEnv is what the bad-input matrix needs from a target: a running
// changefeed "orders" that replicates table 1, a removed changefeed "gone",
// a live capture node2, and a way to read the state the API writes.
type matrixEnv struct {
	addr string
	// snapshot is the state a refused request must leave unchanged.
	snapshot func() string
	// extra are cases only this target can set up.
	extra []matrixCase
}

type matrixCase struct {
	name string
	args []string
	// code and stderr are the exact exit status and error output, after
	// normaliseLive and with the config directory shown as <DIR>.
	code   int
	stderr string
}

// badInputMatrix runs every bad input and checks the exact error and that
// nothing changed.
func badInputMatrix(t *testing.T, env matrixEnv) {
	dir := t.TempDir()
	cfg := func(name, content string) string {
		p := filepath.Join(dir, name)
		writeFileAt(t, p, content)
		return p
	}
	unknownKey := cfg("unknown-key.toml", "[filter]\nrule = ['db.*']\n")
	badRule := cfg("bad-rule.toml", "[filter]\nrules = ['db.*', 'a.b.c']\n")
	badSyntax := cfg("bad-syntax.toml", "[filter\nrules = []\n")
	noMatch := cfg("no-match.toml", "[filter]\nrules = ['nope.*']\n")
	create := func(extra ...string) []string {
		return append([]string{"changefeed", "create", "--no-confirm"}, extra...)
	}
	const idHelp = `use letters, digits and single dashes between them (for example: orders-to-file)`
	cases := []matrixCase{
		{"bad changefeed ID on create", create("-c", "bad_id", "--source-uri", "datagen://", "--sink-uri", "blackhole://"), 2,
			`Error: --changefeed-id: changefeed ID "bad_id" is invalid: ` + idHelp + "\n"},
		{"bad changefeed ID on pause", []string{"changefeed", "pause", "--changefeed-id=a--b"}, 2,
			`Error: --changefeed-id: changefeed ID "a--b" is invalid: ` + idHelp + "\n"},
		{"too long changefeed ID", []string{"changefeed", "query", "-c", strings.Repeat("x", 129)}, 2,
			`Error: --changefeed-id: changefeed ID "` + strings.Repeat("x", 129) + `" is longer than 128 characters` + "\n"},
		{"missing changefeed ID", []string{"changefeed", "pause"}, 2, "Error: --changefeed-id (-c) is required\n"},
		{"duplicate ID", create("-c", "orders", "--source-uri", "datagen://", "--sink-uri", "blackhole://"), 1,
			`Error: creating the changefeed: changefeed "orders" already exists (state normal); pick another ID or remove it first` + "\n"},
		{"unknown ID on pause", []string{"changefeed", "pause", "-c", "nosuch"}, 1,
			`Error: pausing changefeed nosuch: changefeed "nosuch" does not exist` + "\nHint: 'raftcdc ctl changefeed list --all' lists every changefeed.\n"},
		{"unknown ID on query", []string{"changefeed", "query", "-c", "nosuch"}, 1,
			`Error: querying changefeed nosuch: changefeed "nosuch" does not exist; 'ctl changefeed list --all' shows every changefeed` + "\n"},
		{"unknown ID on processor query", []string{"processor", "query", "-c", "nosuch", "-p", "node1"}, 1,
			`Error: querying the processor of nosuch on node1: no processor of changefeed "nosuch" runs on capture "node1"` + "\n"},
		{"missing source URI", create("-c", "new1", "--sink-uri", "blackhole://"), 2,
			"Error: --source-uri is required (for example datagen://?tables=8)\n"},
		{"source URI without scheme", create("-c", "new1", "--source-uri", "datagen", "--sink-uri", "blackhole://"), 1,
			`Error: creating the changefeed: malformed source URI "datagen": no scheme, write it as scheme://...` + "\n"},
		{"malformed sink URI", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "file://%zz"), 1,
			`Error: creating the changefeed: malformed sink URI: invalid URL escape "%zz" (a % in a password must be written %25)` + "\n"},
		{"unknown source scheme", create("-c", "new1", "--source-uri", "mysql://db:3306", "--sink-uri", "blackhole://"), 1,
			`Error: creating the changefeed: source URI "mysql://db:3306": unknown scheme "mysql" (supported: datagen, postgres, tidb)` + "\n"},
		{"unknown sink scheme", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "amqp://broker/topic"), 1,
			`Error: creating the changefeed: sink URI "amqp://broker/topic": unknown scheme "amqp" (supported: file, blackhole, kafka, mysql, tidb, postgres)` + "\n"},
		{"kafka sink URI without a port", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "kafka://broker/topic?protocol=canal-json&sasl-password=hunter2"), 1,
			`Error: creating the changefeed: kafka sink URI kafka://broker/topic?protocol=canal-json&sasl-password=xxxxx: broker "broker" is not host:port` + "\n"},
		{"unknown source parameter", create("-c", "new1", "--source-uri", "datagen://?tabels=3", "--sink-uri", "blackhole://"), 1,
			`Error: creating the changefeed: datagen URI: unknown parameter "tabels" (known: tables, rate, row-size, mix, keys, seed, schema, gc-life, resolve-interval, txn-rows, txn-tables, ddl-every, epoch, cluster-id)` + "\n"},
		{"malformed start ts", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--start-ts", "yesterday"), 2,
			`Error: --start-ts "yesterday" is not a TSO number, "now" or an RFC 3339 time` + "\n"},
		{"start ts after target ts", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://",
			"--start-ts", "2026-01-02T00:00:00Z", "--target-ts", "2026-01-01T00:00:00Z"), 2,
			"Error: --target-ts <TSO> (<TIME>) must be after --start-ts <TSO> (<TIME>)\n"},
		{"target ts before now", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--target-ts", "2020-01-01T00:00:00Z"), 1,
			"Error: creating the changefeed: target_ts <TSO> must be after start_ts <TSO>\n"},
		{"start ts below the GC safepoint", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--start-ts", "2020-03-04T05:06:07Z"), 1,
			"Error: creating the changefeed: start_ts <TSO> (<TIME>) is below the upstream GC safepoint <TSO> (<TIME>): that data is gone; choose a later start ts\n" +
				"Hint: 'raftcdc ctl tso' shows the current TSO; a start ts within the upstream's GC life is kept.\n"},
		{"start ts in the future", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--start-ts", "2099-01-01T00:00:00Z"), 1,
			"Error: creating the changefeed: start_ts <TSO> (<TIME>) is in the future\n"},
		{"config with an unknown key", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--config", unknownKey), 2,
			`Error: config file <DIR>/unknown-key.toml: unknown key "filter.rule"; the known keys are case-sensitive, gc-ttl, memory-quota (bytes), [filter] rules, [sink] dispatchers = [{matcher = [...], topic = "...", partition = "..."}] and [sink] <option> = "value"` + "\n"},
		{"config with a bad filter rule", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--config", badRule), 2,
			`Error: config file <DIR>/bad-rule.toml: filter rule 2 "a.b.c": more than one dot: write schema.table, and neither side may contain a dot` + "\n"},
		{"config that is not TOML", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--config", badSyntax), 2,
			"Error: config file <DIR>/bad-syntax.toml: line 2: expected '.' or ']' to end table name, but got '\\n' instead\n"},
		{"missing config file", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--config", filepath.Join(dir, "absent.toml")), 2,
			"Error: reading the config file: open <DIR>/absent.toml: no such file or directory\n"},
		{"filter that selects no table", create("-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--config", noMatch), 1,
			`Error: creating the changefeed: the filter rules ["nope.*"] match none of the 8 upstream tables` + "\n"},
		// A dry run answers on the node it reaches (a follower, on a
		// cluster) with the same refusals as the create.
		{"dry run of a taken ID", []string{"changefeed", "create", "--dry-run", "-c", "orders", "--source-uri", "datagen://", "--sink-uri", "blackhole://"}, 1,
			`Error: checking the changefeed: changefeed "orders" already exists (state normal); pick another ID or remove it first` + "\n"},
		{"dry run with a filter that selects no table", []string{"changefeed", "create", "--dry-run", "-c", "new1", "--source-uri", "datagen://", "--sink-uri", "blackhole://", "--config", noMatch}, 1,
			`Error: checking the changefeed: the filter rules ["nope.*"] match none of the 8 upstream tables` + "\n"},
		{"update of a running changefeed", []string{"changefeed", "update", "-c", "orders", "--sink-uri", "blackhole://"}, 1,
			`Error: updating changefeed orders: cannot update changefeed "orders" in state normal: pause it first` + "\n"},
		{"update with nothing to change", []string{"changefeed", "update", "-c", "orders"}, 2,
			"Error: nothing to update: give --source-uri, --sink-uri, --target-ts or --config\n"},
		{"resume of a removed changefeed", []string{"changefeed", "resume", "-c", "gone"}, 1,
			`Error: resuming changefeed gone: cannot resume changefeed "gone": it was removed; create it again instead` + "\n"},
		{"resume of a running changefeed", []string{"changefeed", "resume", "-c", "orders"}, 1,
			`Error: resuming changefeed orders: cannot resume changefeed "orders" in state normal: it is running` + "\n"},
		{"pause of a removed changefeed", []string{"changefeed", "pause", "-c", "gone"}, 1,
			`Error: pausing changefeed gone: cannot pause changefeed "gone": it was removed; create it again instead` + "\n"},
		{"move-table to an unknown capture", []string{"changefeed", "move-table", "-c", "orders", "--table-id", "1", "--target-capture", "node9"}, 1,
			`Error: moving table 1 of changefeed orders: capture "node9" is not a live capture of this cluster; 'ctl capture list' shows them` + "\n"},
		{"move-table to a malformed capture ID", []string{"changefeed", "move-table", "-c", "orders", "--table-id", "1", "--target-capture", "node_9"}, 2,
			`Error: --target-capture: node ID "node_9" is invalid: use letters, digits and single dashes between them` + "\n"},
		{"move-table of a table the changefeed lacks", []string{"changefeed", "move-table", "-c", "orders", "--table-id", "99", "--target-capture", "node2"}, 1,
			`Error: moving table 99 of changefeed orders: table 99 is not replicated by changefeed "orders"` + "\n"},
		{"move-table without a table", []string{"changefeed", "move-table", "-c", "orders", "--target-capture", "node2"}, 2,
			"Error: --table-id is required ('raftcdc ctl changefeed query -c orders' lists the tables)\n"},
		{"remove-node with a malformed ID", []string{"cluster", "remove-node", "bad_id"}, 2,
			`Error: node ID: node ID "bad_id" is invalid: use letters, digits and single dashes between them` + "\n"},
		{"transfer-leader to a malformed ID", []string{"cluster", "transfer-leader", "--to", "x.y"}, 2,
			`Error: --to: node ID "x.y" is invalid: use letters, digits and single dashes between them` + "\n"},
		{"unknown subcommand", []string{"changefeed", "lst"}, 2,
			"Error: unknown command \"lst\" for \"raftcdc ctl changefeed\"; did you mean list?\nRun 'raftcdc ctl changefeed --help' for usage.\n"},
		{"unexpected argument", []string{"changefeed", "list", "orders"}, 2,
			"Error: raftcdc ctl changefeed list takes no arguments, got \"orders\"\nRun 'raftcdc ctl changefeed list --help' for usage.\n"},
		{"unknown flag", []string{"changefeed", "list", "--al"}, 2,
			"Error: unknown flag: --al\nRun 'raftcdc ctl changefeed list --help' for usage.\n"},
		{"bad output format", []string{"-o", "yaml", "changefeed", "list"}, 2,
			"Error: --output \"yaml\" is not a format: use table or json\n"},
	}
	cases = append(cases, env.extra...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := env.snapshot()
			r := ctlRun(t, env.addr, nil, c.args...)
			got := normaliseLive(strings.ReplaceAll(r.stderr, dir, "<DIR>"))
			if r.code != c.code || got != c.stderr {
				t.Errorf("exit %d, want %d\n got %q\nwant %q", r.code, c.code, got, c.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
			if after := env.snapshot(); after != before {
				t.Errorf("the state changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func writeFileAt(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCtlBadInputStub(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	badInputMatrix(t, matrixEnv{
		addr:     s.Addr(),
		snapshot: func() string { return s.Store.Dump(t) },
		extra: []matrixCase{
			{"move-table to a dead capture", []string{"changefeed", "move-table", "-c", "orders", "--table-id", "1", "--target-capture", "node3"}, 1,
				`Error: moving table 1 of changefeed orders: capture "node3" is not a live capture of this cluster; 'ctl capture list' shows them` + "\n"},
			{"update of a removed changefeed", []string{"changefeed", "update", "-c", "gone", "--sink-uri", "blackhole://"}, 1,
				`Error: updating changefeed gone: cannot update changefeed "gone": it was removed; create it again instead` + "\n"},
		},
	})
}

// TestCtlTokenStub: with a token required, writes without it (or with a
// wrong one) are refused and change nothing; reads stay open; the right
// token from the flag or RAFTCDC_TOKEN works.
func TestCtlTokenStub(t *testing.T) {
	s := ctltest.NewServer(t, func(h *api.Handler) { h.RequireToken("s3cret-token", false, api.ClusterSecretCheck("cluster-secret")) })
	fixture(t, s)
	before := s.Store.Dump(t)
	r := ctlRun(t, s.Addr(), nil, "changefeed", "pause", "-c", "orders")
	want := "Error: pausing changefeed orders: POST /api/v1/changefeeds/orders/pause: this request needs the API token: send the header 'Authorization: Bearer <token>' (ctl: --token or RAFTCDC_TOKEN)\n" +
		"Hint: pass the API token with --token or RAFTCDC_TOKEN.\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d\n got %q\nwant %q", r.code, r.stderr, want)
	}
	r = ctlRun(t, s.Addr(), nil, "--token", "wrong", "changefeed", "pause", "-c", "orders")
	want = "Error: pausing changefeed orders: POST /api/v1/changefeeds/orders/pause: the API token is wrong\nHint: pass the API token with --token or RAFTCDC_TOKEN.\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d\n got %q\nwant %q", r.code, r.stderr, want)
	}
	if s.Store.Dump(t) != before {
		t.Fatal("a refused write changed the state")
	}
	ctlRun(t, s.Addr(), nil, "changefeed", "list").mustOK(t)
	ctlRun(t, s.Addr(), nil, "--token", "s3cret-token", "changefeed", "pause", "-c", "orders").mustOK(t)
	t.Setenv(envToken, "s3cret-token")
	ctlRun(t, s.Addr(), nil, "changefeed", "pause", "-c", "paused") // stopped already: refused by the API, not by the guard
	r = ctlRun(t, s.Addr(), nil, "changefeed", "rebalance", "-c", "orders")
	if r.code != 1 || !strings.Contains(r.stderr, "pending pause request") {
		t.Errorf("with RAFTCDC_TOKEN the guard should let the request reach the API: exit %d %s", r.code, r.stderr)
	}
	// An explicitly empty flag overrides the environment.
	r = ctlRun(t, s.Addr(), nil, "--token", "", "changefeed", "rebalance", "-c", "orders")
	if r.code != 1 || !strings.Contains(r.stderr, "needs the API token") {
		t.Errorf("--token '': exit %d %s", r.code, r.stderr)
	}
}

// TestCtlNoLeaderStub: a node that knows no leader refuses writes with the
// no_leader code, and ctl says so with a hint.
func TestCtlNoLeaderStub(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fixture(t, s)
	s.Store.SetLeader(false)
	before := s.Store.Dump(t)
	r := ctlRun(t, s.Addr(), nil, "changefeed", "pause", "-c", "orders")
	want := "Error: pausing changefeed orders: no Raft leader is known yet; retry shortly\n" +
		"Hint: the cluster is electing a leader or has lost its quorum; 'raftcdc ctl cluster status' against each node shows what it sees, and reads work without a leader with --consistent=false (that node's own, possibly stale, state).\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d\n got %q\nwant %q", r.code, r.stderr, want)
	}
	r = ctlRun(t, s.Addr(), nil, "cluster", "transfer-leader")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: transferring leadership: no Raft leader is known yet; retry shortly\nHint: ") {
		t.Errorf("exit %d %q", r.code, r.stderr)
	}
	if s.Store.Dump(t) != before {
		t.Error("the state changed")
	}
	// Reads still answer, from this node's replica; status says no leader.
	r = ctlRun(t, s.Addr(), nil, "cluster", "status").mustOK(t)
	if !strings.Contains(r.stdout, "Leader:               none known") {
		t.Errorf("status:\n%s", r.stdout)
	}
}
