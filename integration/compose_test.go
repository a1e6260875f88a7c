package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/raftcdc/raftcdc/ctl"
	"github.com/raftcdc/raftcdc/model"
)

// composeFile is the part of docker-compose.yml the test runs.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Hostname    string   `yaml:"hostname"`
	Image       string   `yaml:"image"`
	Entrypoint  []string `yaml:"entrypoint"`
	Command     []string `yaml:"command"`
	Environment envMap   `yaml:"environment"`
	Volumes     []string `yaml:"volumes"`
	DependsOn   []string `yaml:"depends_on"`
}

// envMap reads compose's environment in either of its forms: a mapping, or
// a list of NAME=value.
type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	*e = envMap{}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]string{}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			(*e)[k] = v
		}
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = v
		}
	default:
		return fmt.Errorf("environment: unexpected YAML %v", n.Kind)
	}
	return nil
}

// interpolate does what docker compose does to the file's values before
// anything runs: $$ is a dollar, ${NAME}, ${NAME:-default},
// ${NAME-default} and $NAME come from the caller's environment, and
// ${NAME:?message} / ${NAME?message} fail the test like compose refuses to
// start when NAME is unset (or, with the colon, empty).
func interpolate(t *testing.T, s string, env map[string]string) string {
	t.Helper()
	re := regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?]([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
	return re.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		g := re.FindStringSubmatch(m)
		name := g[1] + g[4]
		v, set := env[name]
		switch {
		case strings.HasPrefix(g[2], ":-") && v == "":
			return g[3]
		case strings.HasPrefix(g[2], "-") && !set:
			return g[3]
		case strings.HasPrefix(g[2], ":?") && v == "", strings.HasPrefix(g[2], "?") && !set:
			t.Fatalf("docker compose would refuse to start: %s: %s", name, g[3])
		}
		return v
	})
}

// TestComposeDemo runs docker-compose.yml without Docker: each raftcdc
// service's command as a local process on its own loopback address (its
// hostname mapped there), then the one-shot service's script with ctl on
// PATH. The three nodes must form one cluster from the file's flags alone,
// and the changefeed the script creates must replicate, so the compose file
// cannot drift from the binary's flags.
func TestComposeDemo(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	// What `docker compose up` would be given in its environment.
	hostEnv := map[string]string{"DEMO_STATISTICS_ARGS": "-o json", "RAFTCDC_CLUSTER_SECRET": "compose-test-secret"}

	var servers, oneShots []string
	for name, s := range cf.Services {
		if len(s.Entrypoint) == 0 && len(s.Command) > 0 && s.Command[0] == "server" {
			servers = append(servers, name)
		} else {
			oneShots = append(oneShots, name)
		}
	}
	sort.Strings(servers)
	sort.Strings(oneShots)
	if len(servers) != 3 || len(oneShots) != 1 {
		t.Fatalf("docker-compose.yml: want three server services and one one-shot service, found servers %v and others %v", servers, oneShots)
	}

	// Each service's hostname (or name) → its own loopback address.
	base := t.TempDir()
	hostIP := map[string]string{}
	for k, name := range servers {
		h := cf.Services[name].Hostname
		if h == "" {
			h = name
		}
		hostIP[h] = fmt.Sprintf("127.0.0.%d", 11+k)
	}
	hostPort := regexp.MustCompile(`\b([A-Za-z0-9][A-Za-z0-9.-]*):(\d+)\b`)
	mapHosts := func(s string) string {
		return hostPort.ReplaceAllStringFunc(s, func(m string) string {
			g := hostPort.FindStringSubmatch(m)
			if ip, ok := hostIP[g[1]]; ok {
				return ip + ":" + g[2]
			}
			return m
		})
	}
	// Named volumes → directories shared by every service that mounts them.
	volumes := map[string]string{}
	volumeDir := func(spec string) (hostDir, ctrPath string) {
		name, ctr, _ := strings.Cut(spec, ":")
		ctr, _, _ = strings.Cut(ctr, ":") // drop :ro and the like
		if volumes[name] == "" {
			volumes[name] = filepath.Join(base, "volumes", name)
			if err := os.MkdirAll(volumes[name], 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return volumes[name], ctr
	}

	var procs []*Proc
	for _, name := range servers {
		s := cf.Services[name]
		ip := hostIP[hostOr(s.Hostname, name)]
		p := &Proc{ID: name, LogPath: filepath.Join(base, name+".log")}
		args := make([]string, len(s.Command))
		for k, a := range s.Command {
			a = interpolate(t, a, hostEnv)
			a = strings.ReplaceAll(a, "0.0.0.0:", ip+":")
			// A path inside a mounted volume is the volume's directory here.
			for _, v := range s.Volumes {
				dir, ctr := volumeDir(v)
				if a == ctr || strings.HasPrefix(a, ctr+"/") {
					a = dir + strings.TrimPrefix(a, ctr)
				}
			}
			args[k] = mapHosts(a)
		}
		for k, v := range s.Environment {
			p.Env = append(p.Env, k+"="+mapHosts(interpolate(t, v, hostEnv)))
		}
		for k := 0; k+1 < len(args); k++ {
			switch args[k] {
			case "--data-dir":
				p.DataDir = filepath.Join(base, name, "data")
				args[k+1] = p.DataDir
			case "--node-id":
				p.ID = args[k+1]
			case "--gossip-addr":
				p.GossipAddr = args[k+1]
			case "--raft-addr":
				p.RaftAddr = args[k+1]
			case "--api-addr":
				p.API = args[k+1]
			}
		}
		if p.DataDir == "" || p.API == "" || p.GossipAddr == "" {
			t.Fatalf("service %s: command %v lacks --data-dir, --api-addr or --gossip-addr", name, s.Command)
		}
		for _, addr := range []string{p.GossipAddr, p.RaftAddr, p.API} {
			requireFree(t, addr)
		}
		p.Args = args
		procs = append(procs, p)
	}
	c := NewCluster(t, binPath, procs)
	for i, p := range procs {
		t.Logf("%s: raftcdc %s", p.ID, strings.Join(p.Args, " "))
		c.Start(i)
	}
	c.WaitForLeader(60 * time.Second)
	Eventually(t, 30*time.Second, "three voters agreed on by every node", func() (bool, string) {
		for i := range c.Procs {
			var ms struct {
				Members []struct {
					ID       string `json:"id"`
					Suffrage string `json:"raft_suffrage"`
					Gossip   string `json:"gossip_status"`
				} `json:"members"`
			}
			if err := c.GetJSON(i, "/api/v1/cluster/members", &ms); err != nil {
				return false, err.Error()
			}
			voters := 0
			for _, m := range ms.Members {
				if m.Suffrage == "voter" && m.Gossip == "alive" {
					voters++
				}
			}
			if voters != 3 {
				return false, fmt.Sprintf("%s sees %+v", c.Procs[i].ID, ms.Members)
			}
		}
		return true, ""
	})

	// The one-shot service: its entrypoint and command, with ctl on PATH.
	demo := cf.Services[oneShots[0]]
	argv := append(append([]string{}, demo.Entrypoint...), demo.Command...)
	if len(argv) == 0 {
		t.Fatalf("service %s has neither entrypoint nor command", oneShots[0])
	}
	for k, a := range argv {
		a = interpolate(t, a, hostEnv)
		for _, v := range demo.Volumes {
			dir, ctr := volumeDir(v)
			a = strings.ReplaceAll(a, "file://"+ctr, "file://"+dir)
		}
		argv[k] = mapHosts(a)
	}
	env := append(os.Environ(), "PATH="+filepath.Dir(binPath)+string(os.PathListSeparator)+os.Getenv("PATH"))
	for k, v := range demo.Environment {
		env = append(env, k+"="+mapHosts(interpolate(t, v, hostEnv)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// The script execs ctl and never ends by itself: the whole group goes.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	// Two rounds of statistics with rows written and the checkpoint moving.
	var samples []ctl.Sample
	var transcript []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(samples) < 3 {
		line := sc.Text()
		transcript = append(transcript, line)
		var s ctl.Sample
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &s) == nil && s.Changefeed != "" {
			samples = append(samples, s)
		}
	}
	cancel()
	_ = cmd.Wait()
	t.Logf("%s printed:\n%s\nand on stderr:\n%s", oneShots[0], strings.Join(transcript, "\n"), stderr.String())
	if len(samples) < 3 {
		t.Fatalf("%s printed %d statistics samples before it ended; stderr:\n%s", oneShots[0], len(samples), stderr.String())
	}
	first, last := samples[1], samples[len(samples)-1]
	if last.State != model.StateNormal || last.RowsWritten <= first.RowsWritten || last.Checkpoint == nil || first.Checkpoint == nil || last.Checkpoint.TSO <= first.Checkpoint.TSO {
		t.Fatalf("statistics do not show replication: %+v then %+v", first, last)
	}

	// The changefeed the script created replicates every row.
	ids := feedIDs(t, c)
	if len(ids) != 1 {
		t.Fatalf("changefeeds after the demo script: %v", ids)
	}
	// Asked again while the read fails (the client's timeout on a loaded
	// machine): a failed read says nothing about the changefeed.
	d := c.DetailEventually(ids[0], 30*time.Second)
	if d.Status == nil || !d.Status.Initialized {
		t.Fatalf("changefeed %s is not initialised: %+v", ids[0], d.Status)
	}
	tables := len(d.Status.Tables)
	c.WaitAllAssignedOnce(ids[0], tables, nil, settleBound)
	cp := c.WaitCheckpointAbove(ids[0], d.CheckpointTs(), advanceBound)
	dir := strings.TrimPrefix(d.Info.SinkURI, "file://")
	if !strings.HasPrefix(dir, base) {
		t.Fatalf("sink %s is outside the test's directories: the volume mapping missed it", d.Info.SinkURI)
	}
	rep := VerifyDownstream(t, d.Info.SourceURI, d.Info.SinkURI, d.Info.StartTs, cp)
	t.Logf("changefeed %s (%s → %s): %d tables, %d rows verified", ids[0], d.Info.SourceURI, d.Info.SinkURI, tables, rep.Expected)
}

func hostOr(h, name string) string {
	if h == "" {
		return name
	}
	return h
}

// requireFree fails the test when addr is already taken (for TCP, and for
// UDP too, which gossip also uses).
func requireFree(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("compose address %s is taken on this machine: %v", addr, err)
	}
	l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("compose address %s (udp) is taken on this machine: %v", addr, err)
	}
	u.Close()
}

func feedIDs(t *testing.T, c *Cluster) []string {
	t.Helper()
	var out struct {
		Changefeeds []struct {
			ID string `json:"id"`
		} `json:"changefeeds"`
	}
	if err := c.GetJSON(c.Up()[0], "/api/v1/changefeeds", &out); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range out.Changefeeds {
		ids = append(ids, f.ID)
	}
	return ids
}
