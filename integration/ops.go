package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Helpers for the day-2 scenarios: nodes added to a running cluster,
// command lines changed between starts, and the offline tools.

// AddProc lays out one more node slot (not started) with a fresh data dir
// and free ports that joins the given gossip addresses; extra flags are
// appended to its command line.
func (c *Cluster) AddProc(id string, join []string, extra ...string) int {
	c.t.Helper()
	ports := FreePorts(c.t, 3)
	base := c.t.TempDir()
	p := &Proc{
		ID:         id,
		GossipAddr: "127.0.0.1:" + strconv.Itoa(ports[0]),
		RaftAddr:   "127.0.0.1:" + strconv.Itoa(ports[1]),
		API:        "127.0.0.1:" + strconv.Itoa(ports[2]),
	}
	p.DataDir = filepath.Join(base, id)
	p.LogPath = filepath.Join(base, id+".log")
	p.Args = append([]string{"server", "--node-id", id, "--data-dir", p.DataDir,
		"--gossip-addr", p.GossipAddr, "--raft-addr", p.RaftAddr, "--api-addr", p.API,
		"--join", strings.Join(join, ","), "--log-level", "debug", "--sink-root", os.TempDir()}, extra...)
	p.client = &http.Client{Timeout: 5 * time.Second}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Procs = append(c.Procs, p)
	return len(c.Procs) - 1
}

// SetFlag sets flag to value on process i's command line for its next
// start (added when absent); an empty value removes the flag.
func (c *Cluster) SetFlag(i int, flag, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.Procs[i]
	var out []string
	found := false
	for k := 0; k < len(p.Args); k++ {
		if p.Args[k] == flag && k+1 < len(p.Args) {
			k++
			if value != "" && !found {
				out = append(out, flag, value)
			}
			found = true
			continue
		}
		out = append(out, p.Args[k])
	}
	if !found && value != "" {
		out = append(out, flag, value)
	}
	p.Args = out
}

// Tool runs `raftcdc args...` (tools, ctl) with the cluster's binary and
// returns its standard output; the error carries the exit status and
// standard error.
func (c *Cluster) Tool(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("raftcdc %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// WaitVoters waits until node i's Raft configuration holds exactly the
// given voters.
func (c *Cluster) WaitVoters(i int, ids []string, timeout time.Duration) {
	c.t.Helper()
	want := strings.Join(ids, ",")
	Eventually(c.t, timeout, "voters "+want, func() (bool, string) {
		var out struct {
			Members []struct {
				ID       string `json:"id"`
				Suffrage string `json:"raft_suffrage"`
			} `json:"members"`
		}
		if err := c.GetJSON(i, "/api/v1/cluster/members", &out); err != nil {
			return false, err.Error()
		}
		var got []string
		for _, m := range out.Members {
			if m.Suffrage == "voter" {
				got = append(got, m.ID)
			}
		}
		return strings.Join(got, ",") == want, "voters " + strings.Join(got, ",")
	})
}
