package owner

import (
	"slices"
	"sort"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

// The owner decides from meta.State: one consistent view of the metadata,
// decoded by package meta with its policy for corrupt keys (see
// meta/DESIGN.md). Its Feed.Skipped changefeeds are left alone.

func sortedKeys[K ~string | ~int64, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// The clone helpers copy exactly what the reactor mutates, so a Tick never
// changes the State it was given.

func cloneInfo(in *model.ChangefeedInfo) *model.ChangefeedInfo {
	out := *in
	out.ErrorHistory = append([]time.Time(nil), in.ErrorHistory...)
	out.PendingMoves = append([]model.MoveTableRequest(nil), in.PendingMoves...)
	if in.Error != nil {
		e := *in.Error
		out.Error = &e
	}
	return &out
}

func cloneStatus(in *model.ChangefeedStatus) *model.ChangefeedStatus {
	if in == nil {
		return nil
	}
	out := *in
	// The table lists are shared with the snapshot, clipped so that an
	// append copies: the plan replaces them or copies before changing one
	// in place (applyDDL's rename), never writes into them. Copying
	// 100,000 names was a few percent of every tick.
	out.Tables = slices.Clip(in.Tables)
	out.Orphans = make(map[model.TableID]model.Ts, len(in.Orphans))
	for k, v := range in.Orphans {
		out.Orphans[k] = v
	}
	out.StreamTables = slices.Clip(in.StreamTables)
	if in.StreamPosition != nil {
		sp := *in.StreamPosition
		out.StreamPosition = &sp
	}
	return &out
}

func cloneTaskStatus(in *model.TaskStatus) *model.TaskStatus {
	out := &model.TaskStatus{AdminJob: in.AdminJob}
	out.Tables = make(map[model.TableID]model.TableReplicaInfo, len(in.Tables))
	for k, v := range in.Tables {
		out.Tables[k] = v
	}
	if len(in.Operations) > 0 {
		out.Operations = make(map[model.TableID]*model.TableOperation, len(in.Operations))
		for k, v := range in.Operations {
			if v == nil {
				continue // a null operation means nothing; dropping it keeps callers nil-safe
			}
			op := *v
			out.Operations[k] = &op
		}
	}
	return out
}
