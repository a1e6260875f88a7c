package owner

import (
	"fmt"
	"testing"

	"github.com/raftcdc/raftcdc/model"
)

// BenchmarkTickSteady is one owner tick over a settled changefeed of many
// tables on three captures, each reporting every table running: the tick a
// large cluster's owner runs every interval when nothing but progress
// changes. The tick's commands are not applied, so every iteration sees
// the same state.
func BenchmarkTickSteady(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			w := newWorld(b)
			w.capture("a", LivenessAlive).capture("b", LivenessAlive).capture("c", LivenessAlive)
			w.tables[cf] = TablesResult{Tables: tableNames(tableRange(n)...)}
			w.info(model.ChangefeedInfo{ID: cf, StartTs: 100})
			w.settle()
			w.processors(cf, func(model.TableID) model.Ts { return 200 })
			s, in := w.state(), w.inputs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				Tick(s, in)
			}
		})
	}
}
