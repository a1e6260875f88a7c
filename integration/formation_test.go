package integration

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
)

// permutations returns every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for k := 0; k <= len(p); k++ {
			q := append(append(append([]int{}, p[:k]...), n-1), p[k:]...)
			out = append(out, q)
		}
	}
	return out
}

// clusterStatus is `ctl cluster status -o json`.
type clusterStatus struct {
	Status  *api.Status  `json:"status"`
	Members []api.Member `json:"members"`
}

// Scenario 1: three nodes started one after the other in every order, each
// joining the next with --join, form one cluster of three voters, and
// `ctl cluster status` asked of each node tells the same story.
func TestFormationInEveryOrder(t *testing.T) {
	for _, order := range permutations(3) {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			c := NewClusterFromTemplate(t, binPath, 3, ClusterOptions{})
			// A gap between starts makes the order matter: the first node
			// waits alone, joining a node that is not there yet.
			for k, i := range order {
				if k > 0 {
					time.Sleep(300 * time.Millisecond)
				}
				c.Start(i)
			}
			c.WaitForLeader(30 * time.Second)
			c.WaitForOwner(30*time.Second, 0)
			var ref clusterStatus
			Eventually(t, 20*time.Second, "every node's ctl cluster status to agree", func() (bool, string) {
				var views []string
				for i := range c.Procs {
					var cs clusterStatus
					if err := c.CtlJSON(i, &cs, "cluster", "status"); err != nil {
						return false, err.Error()
					}
					if cs.Status == nil || cs.Status.NodeID != c.Procs[i].ID {
						return false, fmt.Sprintf("node %d answered as %+v", i, cs.Status)
					}
					views = append(views, describe(cs))
					if i == 0 {
						ref = cs
					}
				}
				for _, v := range views[1:] {
					if v != views[0] {
						return false, "views differ:\n" + strings.Join(views, "\n")
					}
				}
				return strings.Count(views[0], "voter/alive") == 3, "not three alive voters: " + views[0]
			})
			leaders := 0
			for _, m := range ref.Members {
				if m.Leader {
					leaders++
					if m.ID != ref.Status.LeaderID {
						t.Errorf("member list leader %s, status leader %s", m.ID, ref.Status.LeaderID)
					}
				}
			}
			if leaders != 1 {
				t.Fatalf("%d leaders in the member list: %+v", leaders, ref.Members)
			}
			if ref.Status.OwnerNode != ref.Status.LeaderID {
				t.Fatalf("owner %s is not the leader %s", ref.Status.OwnerNode, ref.Status.LeaderID)
			}
			// Exactly one bootstrap happened: a cluster formed twice would
			// show up as two different leaders or terms above.
			boots := 0
			for i := range c.Procs {
				boots += c.LogContains(i, `"bootstrapped the cluster"`)
			}
			if boots == 0 {
				t.Fatal("no node logged a bootstrap")
			}
			t.Logf("order %v: leader %s term %d", order, ref.Status.LeaderID, ref.Status.Term)
		})
	}
}

// describe is the part of a cluster status every node must agree on.
func describe(cs clusterStatus) string {
	var ms []string
	for _, m := range cs.Members {
		ms = append(ms, fmt.Sprintf("%s=%s/%s leader=%v", m.ID, m.Suffrage, m.GossipStatus, m.Leader))
	}
	sort.Strings(ms)
	return fmt.Sprintf("leader=%s term=%d owner=%s epoch=%d members=[%s]", cs.Status.LeaderID, cs.Status.Term, cs.Status.OwnerNode, cs.Status.OwnerEpoch, strings.Join(ms, " "))
}
