// Package admission decides whether the cluster can take a changefeed's
// tables: every live capture declares a table budget, the cluster's
// capacity is their sum, and a changefeed that would push the tables of
// every running changefeed past it is refused with the numbers. See
// DESIGN.md beside this file.
package admission

import (
	"fmt"
	"sort"
	"strings"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/owner"
)

// DefaultTableBudget is the tables one node carries by default, measured
// (bench/RESULTS.md, "Table budget of one node"): one process on the 2-core
// reference machine, datagen tables at 0.5 rows/s each into blackhole. At
// 2,000 tables the checkpoint lag stayed bounded (p50 1.8 s) with no
// election; at 4,000 it was 11 s and the owner tick 1.4 s.
const DefaultTableBudget = 2000

// MaxTableBudget bounds --table-budget: a budget far beyond anything one
// process can run is a typo, not a decision.
const MaxTableBudget = 10_000_000

// ValidateBudget checks a --table-budget value.
func ValidateBudget(n int) error {
	if n < 1 || n > MaxTableBudget {
		return fmt.Errorf("--table-budget %d: give the tables one node carries, from 1 to %d (default %d)", n, MaxTableBudget, DefaultTableBudget)
	}
	return nil
}

// BudgetOf is the table budget a capture declares; a capture of a build
// from before budgets declares none and carries the default.
func BudgetOf(ci *model.CaptureInfo) int {
	if ci.TableBudget > 0 {
		return ci.TableBudget
	}
	return DefaultTableBudget
}

// Usage is the cluster's table load against its capacity.
type Usage struct {
	// Running is the tables of every changefeed that runs or will run
	// again by itself (normal, error), except the one being admitted and
	// those with a pending pause or remove.
	Running int
	// Capacity is the sum of the live captures' budgets.
	Capacity int
	// Captures are the live captures counted, each with its budget.
	Captures map[model.CaptureID]int
}

// Measure reads the load and the capacity from one consistent view of the
// state. live is gossip's liveness of every node ("alive", "draining",
// "dead", ...); only alive nodes count: a draining node is about to leave,
// a dead one carries nothing. Every node runs a capture; one whose capture
// record is not written yet (right after it started) counts with budget,
// the budget of the node that asks. exclude is the changefeed being
// admitted (its current load is what the request replaces).
func Measure(rd fsm.Reader, live map[string]string, exclude model.ChangefeedID, budget int) Usage {
	if budget <= 0 {
		budget = DefaultTableBudget
	}
	u := Usage{Captures: map[model.CaptureID]int{}}
	for id, l := range live {
		if l == "alive" {
			u.Captures[id] = budget
		}
	}
	rd.Range(meta.PrefixCapture, func(kv fsm.KV) bool {
		v, err := meta.Decode(kv.Key, kv.Value)
		if err != nil {
			return true // skipped, as everywhere; meta's tracker reports it
		}
		ci := v.(*model.CaptureInfo)
		if _, ok := u.Captures[ci.ID]; !ok {
			return true
		}
		u.Captures[ci.ID] = BudgetOf(ci)
		return true
	})
	for _, b := range u.Captures {
		u.Capacity += b
	}
	rd.Range(meta.PrefixChangefeedInfo, func(kv fsm.KV) bool {
		v, err := meta.Decode(kv.Key, kv.Value)
		if err != nil {
			return true
		}
		info := v.(*model.ChangefeedInfo)
		if info.ID == exclude || !Holds(info) {
			return true
		}
		st, _, _, _ := meta.GetStatus(rd, info.ID) // nil when absent or corrupt
		u.Running += Tables(info, st)
		return true
	})
	return u
}

// Holds says whether a changefeed takes its share of the capacity: it runs,
// or runs again by itself after a backoff (error), or an operator asked to
// resume it. One whose pause or remove is pending is on its way out, so
// that pausing one changefeed makes room for another at once.
func Holds(info *model.ChangefeedInfo) bool {
	switch info.AdminJob {
	case model.AdminPause, model.AdminRemove:
		return false
	case model.AdminResume:
		return true
	}
	return info.State == model.StateNormal || info.State == model.StateError
}

// Tables is a changefeed's table count: the table set the owner derived,
// while it was derived from the changefeed's current source and filter;
// otherwise the count admitted at its create or last update.
func Tables(info *model.ChangefeedInfo, st *model.ChangefeedStatus) int {
	if st != nil && st.Initialized && (st.TableSetKey == "" || st.TableSetKey == owner.TableSetKey(info)) {
		if st.Stream {
			return len(st.StreamTables)
		}
		return len(st.Tables)
	}
	if info.AdmittedTables > 0 {
		return info.AdmittedTables
	}
	if st != nil {
		return len(st.Tables)
	}
	return 0
}

// OverCapacityError refuses a changefeed with the numbers.
type OverCapacityError struct {
	Action   string // "create", "update", "resume"
	ID       model.ChangefeedID
	Asked    int
	Running  int
	Capacity int
	Captures map[model.CaptureID]int
}

func (e *OverCapacityError) Error() string {
	ids := make([]string, 0, len(e.Captures))
	for id, b := range e.Captures {
		ids = append(ids, fmt.Sprintf("%s=%d", id, b))
	}
	sort.Strings(ids)
	per := "no live capture"
	if len(ids) > 0 {
		per = strings.Join(ids, ", ")
	}
	free := max(0, e.Capacity-e.Running)
	what := fmt.Sprintf("changefeed %q", e.ID)
	if e.ID == "" {
		what = "this changefeed"
	}
	return fmt.Sprintf("cannot %s %s: it has %d tables, the running changefeeds hold %d, and the cluster carries %d (the table budgets of %d live captures: %s), so %d are free; "+
		"raise it by starting another node or restarting nodes with a larger --table-budget, or make room by pausing or removing a changefeed, or narrow this one's filter",
		e.Action, what, e.Asked, e.Running, e.Capacity, len(e.Captures), per, free)
}

// Check refuses asked more tables when they do not fit beside the running
// ones.
func (u Usage) Check(action string, id model.ChangefeedID, asked int) error {
	if u.Running+asked <= u.Capacity {
		return nil
	}
	return &OverCapacityError{Action: action, ID: id, Asked: asked, Running: u.Running, Capacity: u.Capacity, Captures: u.Captures}
}
