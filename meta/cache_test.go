package meta

import (
	"reflect"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
)

// A cached load answers what a plain load answers (corrupt keys included),
// reuses a record while its revision stands, decodes it again once it is
// rewritten, and forgets deleted keys at the next sweep.
func TestCachedLoadDecodesOnlyWhatChanged(t *testing.T) {
	h, epoch := corruptWorld(t)
	c := NewCache()
	load := func(cache *Cache) *State {
		var s *State
		if err := h.f.View(func(r fsm.Reader, _ uint64) error {
			var err error
			s, err = LoadCached(r, cache)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		cache.Sweep()
		return s
	}
	plain, first := load(nil), load(c)
	if !reflect.DeepEqual(plain, first) {
		t.Fatalf("cached load differs from a plain one:\n%+v\n%+v", first, plain)
	}
	second := load(c)
	if second.Changefeeds["good"].Status != first.Changefeeds["good"].Status {
		t.Fatal("an unchanged status was decoded again")
	}
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{put(ChangefeedStatusKey("good"), model.ChangefeedStatus{CheckpointTs: 9})}})
	third := load(c)
	if got := third.Changefeeds["good"].Status; got == second.Changefeeds["good"].Status || got.CheckpointTs != 9 {
		t.Fatalf("rewritten status read as %+v (same object: %v)", got, got == second.Changefeeds["good"].Status)
	}
	if third.Changefeeds["good"].Tasks["c1"].Status != second.Changefeeds["good"].Tasks["c1"].Status {
		t.Fatal("an unchanged task status was decoded again")
	}
	n := c.Len()
	h.mustApply(fsm.Command{OwnerEpoch: epoch, Ops: []fsm.Op{{Type: fsm.OpDelete, Key: TaskStatusKey("good", "c1")}}})
	load(c)
	if c.Len() != n-1 {
		t.Fatalf("cache holds %d keys after a key was deleted, want %d", c.Len(), n-1)
	}
}

// A reader without full passes (the API) sweeps by time: what nobody read
// since the last sweep goes at the next one, what was read stays.
func TestCacheSweepsByTime(t *testing.T) {
	h, _ := corruptWorld(t)
	c := NewCache()
	feed := func(id string, tasks bool) *Feed {
		var f *Feed
		h.f.View(func(r fsm.Reader, _ uint64) error {
			f, _, _ = LoadFeedCached(r, id, c, tasks)
			return nil
		})
		return f
	}
	now := time.Now()
	c.SweepEvery(time.Minute, now) // the first call sweeps an empty cache
	full := feed("good", true)
	withTasks := c.Len()
	if head := feed("good", false); len(head.Tasks) != 0 || head.Status != full.Status || head.Info != full.Info {
		t.Fatalf("a head-only load read tasks or decoded again: %+v", head)
	}
	c.SweepEvery(time.Minute, now.Add(30*time.Second))
	if c.Len() != withTasks {
		t.Fatalf("swept before the interval: %d keys, want %d", c.Len(), withTasks)
	}
	c.SweepEvery(time.Minute, now.Add(61*time.Second)) // everything was read in this interval
	feed("good", false)
	c.SweepEvery(time.Minute, now.Add(122*time.Second)) // the tasks were not
	if c.Len() >= withTasks || c.Len() == 0 {
		t.Fatalf("after a sweep with only the head read: %d keys (of %d)", c.Len(), withTasks)
	}
}
