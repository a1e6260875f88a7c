package tidb

import (
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/internal/tidbfake"
)

// Every retryable region error, injected on registrations and cut into
// running subscriptions of several tables spread over three stores, after
// leader moves and with a table created meanwhile: every table resolves
// again and holds the fake's state.
func TestRegionErrorsAcrossTablesAndStores(t *testing.T) {
	e := newEnv(t)
	e.exec("", "CREATE DATABASE d", kvTable, "CREATE TABLE d.u (id INT PRIMARY KEY, v VARCHAR(32))")
	start := e.c.Now()
	ft, fu := e.subscribe(e.table("d", "t"), start), e.subscribe(e.table("d", "u"), start)
	_, ddls := e.subscribeDDL(start)
	w := e.startWriter("d", "t", 100)
	all := func() []tidbfake.RegionInfo {
		var out []tidbfake.RegionInfo
		for _, name := range e.c.TableNames("d") {
			rs, _ := e.c.TableRegions("d", name)
			out = append(out, rs...)
		}
		return out
	}
	for round := 0; round < 3; round++ {
		for i, r := range all() {
			if err := e.c.TransferLeader(r.ID, uint64((i+round)%3+1)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.exec("d", "CREATE TABLE a (id BIGINT PRIMARY KEY, what VARCHAR(32))")
	created := ddls.next(t)
	fa := e.subscribe(created.After[0].Table, created.CommitTs)
	e.commit(e.c.Begin().Insert("d", "a", 1, "x").Insert("d", "u", 1, "y"))
	for _, kind := range []tidbfake.RegionError{tidbfake.ErrNotLeader, tidbfake.ErrEpochNotMatch, tidbfake.ErrRegionNotFound,
		tidbfake.ErrServerIsBusy, tidbfake.ErrCongested} {
		e.c.FailRegistrations(0, kind, 3)
		for _, r := range all() {
			e.c.SendRegionError(r.ID, kind)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.finish(t)
	now := e.c.Now()
	e.checkState(ft, "d", "t", now)
	e.checkState(fu, "d", "u", now)
	e.checkState(fa, "d", "a", now)
}
