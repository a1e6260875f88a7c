//go:build bench

// Package bench holds the benchmarks of bench/RESULTS.md. They are Go tests
// behind the "bench" build tag so that the default test run never includes
// them; bench/run.sh runs them.
package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/integration"
)

var (
	kills    = flag.Int("kills", 20, "failover: leader kills")
	writeOps = flag.Int("write-ops", 5000, "writes: operations per mode")
	workers  = flag.Int("workers", 64, "writes: concurrent clients")
	batch    = flag.Int("batch", 64, "writes: puts per batched request")
	// writeRounds: the first round warms up; the others are summed.
	writeRounds = flag.Int("write-rounds", 4, "writes: rounds, the first one a warm-up")
	writeTLS    = flag.Bool("write-tls", true, "writes: also measure a cluster with mutual TLS")
)

// benchBin runs the cluster benchmarks on a given binary instead of this
// tree's build: a "before" measurement uses a binary built from an older
// commit (git worktree add, go build ./cmd/raftcdc) with this tree's
// benchmark code, so the two sides differ only in the server.
var benchBin = flag.String("bench-bin", "", "run the cluster benchmarks on this raftcdc binary instead of building the tree's")

// clusterOptions are the options of a benchmark cluster of bin: a build
// from before --sink-root (a "before" side) runs without it.
func clusterOptions(t *testing.T, bin string, extra ...string) integration.ClusterOptions {
	out, err := exec.Command(bin, "server", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s server --help: %v\n%s", bin, err, out)
	}
	return integration.ClusterOptions{ExtraArgs: extra, NoSinkRoot: !strings.Contains(string(out), "--sink-root")}
}

func buildBinary(t *testing.T) string {
	if *benchBin != "" {
		return *benchBin
	}
	bin, err := integration.BuildBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// median is the middle of xs (the upper middle for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// TestBenchFailover kills the leader of a three-process cluster repeatedly
// and measures kill → a new leader accepting writes.
func TestBenchFailover(t *testing.T) {
	c := integration.StartCluster(t, buildBinary(t), 3, integration.ClusterOptions{})
	c.WaitForLeader(30 * time.Second)
	var times []time.Duration
	for k := 0; k < *kills; k++ {
		times = append(times, failoverOnce(t, c, k))
	}
	fmt.Printf("RESULT failover kills=%d p50=%v max=%v\n", len(times), percentile(times, 0.5).Round(time.Millisecond), percentile(times, 1).Round(time.Millisecond))
}

// TestBenchFailoverTLS is TestBenchFailover on two clusters side by side,
// one plaintext and one with mutual TLS on every node-to-node path, killing
// their leaders in turn so that both see the same machine.
func TestBenchFailoverTLS(t *testing.T) {
	bin := buildBinary(t)
	clusters := map[string]*integration.Cluster{
		"plaintext": integration.StartCluster(t, bin, 3, integration.ClusterOptions{}),
		"tls":       integration.StartCluster(t, bin, 3, integration.ClusterOptions{TLS: true}),
	}
	times := map[string][]time.Duration{}
	for k := 0; k < *kills; k++ {
		for _, name := range []string{"plaintext", "tls"} {
			times[name] = append(times[name], failoverOnce(t, clusters[name], k))
		}
	}
	p, s := percentile(times["plaintext"], 0.5), percentile(times["tls"], 0.5)
	fmt.Printf("RESULT failover-tls kills=%d plaintext p50=%v max=%v tls p50=%v max=%v tls/plaintext p50=%.2f\n", *kills,
		p.Round(time.Millisecond), percentile(times["plaintext"], 1).Round(time.Millisecond),
		s.Round(time.Millisecond), percentile(times["tls"], 1).Round(time.Millisecond), s.Seconds()/p.Seconds())
}

// failoverOnce kills c's leader and measures until a survivor accepts a
// write, then restarts the dead node and waits for it.
func failoverOnce(t *testing.T, c *integration.Cluster, k int) time.Duration {
	t.Helper()
	leader := c.WaitForLeader(30 * time.Second)
	survivors := []int{(leader + 1) % 3, (leader + 2) % 3}
	c.Kill(leader, syscall.SIGKILL)
	start := time.Now()
	for n := 0; ; n++ {
		s := survivors[n%2]
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		code, _, err := c.DoCtx(ctx, s, http.MethodPut, "/api/v1/kv/failover", k)
		cancel()
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("kill %d: no write accepted within 30s", k)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(start)
	t.Logf("kill %2d (%s): leader %s → writes accepted after %v", k+1, c.Scheme, c.Procs[leader].ID, d.Round(time.Millisecond))
	c.Restart(leader)
	integration.WaitFor(t, 30*time.Second, "restarted node ready", func() bool {
		code, _, err := c.Do(leader, http.MethodGet, "/readyz", nil)
		return err == nil && code == http.StatusOK
	})
	return d
}

type writer interface {
	name() string
	// transport is how its n clients connect.
	transport(n int) *http.Transport
	put(client *http.Client, key string, value []byte) error
	putBatch(client *http.Client, keys []string, value []byte) error
}

// raftcdcWriter writes to a raftcdc cluster's leader, over HTTPS when the
// cluster runs TLS (scheme https, tls trusting its CA).
type raftcdcWriter struct {
	label, scheme, addr string
	tls                 *tls.Config
}

func newRaftcdcWriter(label string, c *integration.Cluster, leader int) raftcdcWriter {
	w := raftcdcWriter{label: label, scheme: c.Scheme, addr: c.Procs[leader].API}
	if c.CAFile != "" {
		b, _ := os.ReadFile(c.CAFile)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(b)
		w.tls = &tls.Config{RootCAs: pool}
	}
	return w
}

func (w raftcdcWriter) name() string { return w.label }

func (w raftcdcWriter) transport(n int) *http.Transport {
	return &http.Transport{MaxIdleConnsPerHost: n + 4, TLSClientConfig: w.tls}
}

func (w raftcdcWriter) put(client *http.Client, key string, value []byte) error {
	body, _ := json.Marshal(string(value))
	req, _ := http.NewRequest(http.MethodPut, w.scheme+"://"+w.addr+"/api/v1/kv/"+key, bytes.NewReader(body))
	return do(client, req)
}

func (w raftcdcWriter) putBatch(client *http.Client, keys []string, value []byte) error {
	v, _ := json.Marshal(string(value))
	type op struct {
		Type  string          `json:"type"`
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	var ops []op
	for _, k := range keys {
		ops = append(ops, op{"put", k, v})
	}
	body, _ := json.Marshal(map[string]any{"ops": ops})
	req, _ := http.NewRequest(http.MethodPost, w.scheme+"://"+w.addr+"/api/v1/txn", bytes.NewReader(body))
	return do(client, req)
}

type etcdWriter struct{ addr string }

func (w etcdWriter) name() string { return "etcd" }

func (w etcdWriter) transport(n int) *http.Transport {
	return &http.Transport{MaxIdleConnsPerHost: n + 4}
}

func (w etcdWriter) put(client *http.Client, key string, value []byte) error {
	body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key)), "value": base64.StdEncoding.EncodeToString(value)})
	req, _ := http.NewRequest(http.MethodPost, "http://"+w.addr+"/v3/kv/put", bytes.NewReader(body))
	return do(client, req)
}

func (w etcdWriter) putBatch(client *http.Client, keys []string, value []byte) error {
	var ops []map[string]any
	for _, k := range keys {
		ops = append(ops, map[string]any{"request_put": map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(k)), "value": base64.StdEncoding.EncodeToString(value)}})
	}
	body, _ := json.Marshal(map[string]any{"success": ops})
	req, _ := http.NewRequest(http.MethodPost, "http://"+w.addr+"/v3/kv/txn", bytes.NewReader(body))
	return do(client, req)
}

func do(client *http.Client, req *http.Request) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return nil
}

type writeResult struct {
	mode     string
	ops      int
	elapsed  time.Duration
	p99      time.Duration
	failures int64
}

func (r writeResult) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// runWrites issues ops puts (in requests of perReq puts) from n clients.
func runWrites(w writer, mode string, n, ops, perReq int) writeResult {
	client := &http.Client{Timeout: 10 * time.Second, Transport: w.transport(n)}
	defer client.CloseIdleConnections()
	value := bytes.Repeat([]byte("v"), 256)
	reqs := ops / perReq
	var next int64 = -1
	var failures int64
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < n; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1)
				if i >= int64(reqs) {
					return
				}
				t0 := time.Now()
				var err error
				if perReq == 1 {
					err = w.put(client, fmt.Sprintf("%s/%d", mode, i), value)
				} else {
					keys := make([]string, perReq)
					for j := range keys {
						keys[j] = fmt.Sprintf("%s/%d/%d", mode, i, j)
					}
					err = w.putBatch(client, keys, value)
				}
				if err != nil {
					atomic.AddInt64(&failures, 1)
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return writeResult{mode: mode, ops: reqs * perReq, elapsed: elapsed, p99: percentile(all, 0.99), failures: failures}
}

// startEtcd runs a three-member etcd cluster from Debian's etcd-server.
func startEtcd(t *testing.T) []string {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not installed (apt-get install etcd-server)")
	}
	ports := make([]int, 0, 6)
	for len(ports) < 6 {
		ports = append(ports, freePort(t))
	}
	var initial string
	for i := 0; i < 3; i++ {
		if i > 0 {
			initial += ","
		}
		initial += fmt.Sprintf("e%d=http://127.0.0.1:%d", i, ports[2*i+1])
	}
	var clients []string
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		client := fmt.Sprintf("127.0.0.1:%d", ports[2*i])
		clients = append(clients, client)
		cmd := exec.Command(bin, "--name", fmt.Sprintf("e%d", i), "--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
			"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			"--initial-cluster", initial, "--initial-cluster-state", "new", "--log-level", "error")
		logf, _ := os.Create(filepath.Join(dir, fmt.Sprintf("e%d.log", i)))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	}
	integration.WaitFor(t, 30*time.Second, "etcd cluster healthy", func() bool {
		return etcdWriter{clients[0]}.put(http.DefaultClient, "warmup", []byte("x")) == nil
	})
	return clients
}

func etcdLeader(t *testing.T, clients []string) string {
	for _, c := range clients {
		resp, err := http.Post("http://"+c+"/v3/maintenance/status", "application/json", bytes.NewReader([]byte("{}")))
		if err != nil {
			continue
		}
		var s struct {
			Header struct {
				MemberID string `json:"member_id"`
			} `json:"header"`
			Leader string `json:"leader"`
		}
		json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if s.Leader != "" && s.Leader == s.Header.MemberID {
			return c
		}
	}
	return clients[0]
}

func freePort(t *testing.T) int {
	p := integration.FreePorts(t, 1)
	return p[0]
}

// TestBenchWrites compares metadata writes against etcd 3.4, side by side:
// raftcdc with each Raft log store (wal, and wal with the leader writing
// serially before it replicates, and boltdb), raftcdc with mutual TLS
// on every node-to-node path and HTTPS on the API (on the default store),
// and etcd, all running at once and measured in interleaved rounds so that
// they share the machine's noise.
func TestBenchWrites(t *testing.T) {
	etcdClients := startEtcd(t)
	bin := buildBinary(t)
	writers := []writer{}
	// WRITES_PROFILE_DIR: a CPU profile of the raft-wal cluster's leader
	// during the first measured 64-way run (make it last: -write-ops).
	profileDir := os.Getenv("WRITES_PROFILE_DIR")
	var walCluster *integration.Cluster
	var walLeader int
	// wal-serial: the wal store with the leader writing before it
	// replicates (hashicorp/raft's own order), beside the default parallel
	// leader sync.
	for _, store := range []string{"wal", "wal-serial", "boltdb"} {
		args := []string{"--log-level", "warn", "--raft-log-store", strings.TrimSuffix(store, "-serial")}
		if strings.HasSuffix(store, "-serial") {
			args = append(args, "--raft-leader-sync", "serial")
		}
		c := integration.StartCluster(t, bin, 3, integration.ClusterOptions{ExtraArgs: args})
		leader := c.WaitForLeader(30 * time.Second)
		writers = append(writers, newRaftcdcWriter("raftcdc-"+store, c, leader))
		if store == "wal" {
			walCluster, walLeader = c, leader
		}
	}
	if *writeTLS {
		ct := integration.StartCluster(t, bin, 3, integration.ClusterOptions{ExtraArgs: []string{"--log-level", "warn"}, TLS: true})
		writers = append(writers, newRaftcdcWriter("raftcdc-tls", ct, ct.WaitForLeader(30*time.Second)))
	}
	writers = append(writers, etcdWriter{etcdLeader(t, etcdClients)})
	results := map[string]map[string]writeResult{}
	rounds := *writeRounds
	for round := 0; round < rounds; round++ {
		for _, w := range writers {
			if results[w.name()] == nil {
				results[w.name()] = map[string]writeResult{}
			}
			for _, m := range []struct {
				mode      string
				n, perReq int
			}{{"sequential", 1, 1}, {"concurrent", *workers, 1}, {"batched", *workers, *batch}} {
				ops := *writeOps
				if m.mode == "sequential" {
					ops /= 5
				}
				if m.mode == "batched" {
					ops *= 4
				}
				if profileDir != "" && round == 1 && m.mode == "concurrent" && w.name() == "raftcdc-wal" {
					profileAsync(t, walCluster, walLeader, filepath.Join(profileDir, "leader-concurrent.pprof"), 5)
				}
				r := runWrites(w, fmt.Sprintf("r%d-%s", round, m.mode), m.n, ops, m.perReq)
				if r.failures > 0 {
					t.Errorf("%s %s: %d failed requests", w.name(), m.mode, r.failures)
				}
				if round == 0 {
					continue // warm-up
				}
				fmt.Printf("ROUND %d %s %s %.0f ops/s p99 %v\n", round, w.name(), m.mode, r.rate(), r.p99.Round(time.Microsecond))
				prev := results[w.name()][m.mode]
				prev.ops += r.ops
				prev.elapsed += r.elapsed
				if r.p99 > prev.p99 {
					prev.p99 = r.p99
				}
				results[w.name()][m.mode] = prev
			}
		}
	}
	etcd := results["etcd"]
	for _, mode := range []string{"sequential", "concurrent", "batched"} {
		for _, store := range []string{"wal", "wal-serial", "boltdb"} {
			a, b := results["raftcdc-"+store][mode], etcd[mode]
			fmt.Printf("RESULT writes mode=%s store=%s raftcdc=%.0f ops/s (worst p99 %v) etcd=%.0f ops/s (worst p99 %v) ratio=%.2f\n",
				mode, store, a.rate(), a.p99.Round(time.Microsecond), b.rate(), b.p99.Round(time.Microsecond), a.rate()/b.rate())
		}
	}
	for _, store := range []string{"wal", "wal-serial", "boltdb"} {
		fmt.Printf("RESULT writes store=%s batched-raftcdc/etcd-concurrent ratio=%.2f\n", store, results["raftcdc-"+store]["batched"].rate()/etcd["concurrent"].rate())
	}
	if !*writeTLS {
		return
	}
	for _, mode := range []string{"sequential", "concurrent", "batched"} {
		a, b := results["raftcdc-tls"][mode], results["raftcdc-wal"][mode]
		fmt.Printf("RESULT writes-tls mode=%s tls=%.0f ops/s (worst p99 %v) plaintext=%.0f ops/s (worst p99 %v) tls/plaintext=%.2f\n",
			mode, a.rate(), a.p99.Round(time.Microsecond), b.rate(), b.p99.Round(time.Microsecond), a.rate()/b.rate())
	}
}
