package model

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// GroupedTableTs is a TableTs written grouped by ts, each group's table IDs
// as runs:
//
//	[{"ts":449...,"ids":"1..33331:3,40000"},{"ts":450...,"ids":"7"}]
//
// A run is one ID, "a..b" (every ID from a to b) or "a..b:s" (a, a+s, …,
// b). A capture's position lists every table it runs with its checkpoint;
// at 33,000 tables that was a megabyte per report, written through Raft
// every ~4 s at best (issue 16). Most of a capture's tables share a few
// checkpoints (idle tables sit at the changefeed's barrier) and its table
// IDs come in progressions (the owner deals tables out in ID order), so
// grouped the same map is tens of bytes. The in-memory form stays a map:
// meta expands it when it decodes a record, and only writers choose this
// form, from metadata schema 3 on (meta.TablesSchemaVersion).
type GroupedTableTs map[TableID]Ts

// maxGroupedTables bounds what one grouped map may expand to, so that a
// hostile or corrupt run ("1..9223372036854775807") is an error, not an
// allocation of the whole address space.
const maxGroupedTables = 10_000_000

type tsGroup struct {
	Ts  Ts     `json:"ts"`
	IDs string `json:"ids"`
}

func (m GroupedTableTs) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	byTs := map[Ts][]TableID{}
	for id, ts := range m {
		byTs[ts] = append(byTs[ts], id)
	}
	tss := make([]Ts, 0, len(byTs))
	for ts := range byTs {
		tss = append(tss, ts)
	}
	slices.Sort(tss)
	b := make([]byte, 0, 64*len(tss))
	b = append(b, '[')
	for i, ts := range tss {
		if i > 0 {
			b = append(b, ',')
		}
		ids := byTs[ts]
		slices.Sort(ids)
		b = append(b, `{"ts":`...)
		b = strconv.AppendUint(b, ts, 10)
		b = append(b, `,"ids":"`...)
		b = appendRuns(b, ids)
		b = append(b, `"}`...)
	}
	return append(b, ']'), nil
}

// appendRuns writes sorted ids as runs: the longest progression from each
// ID that has at least three members, otherwise the ID alone.
func appendRuns(b []byte, ids []TableID) []byte {
	for i := 0; i < len(ids); {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, ids[i], 10)
		j := i + 1
		// A difference that overflows int64 comes out negative: no run.
		if step := int64(0); j+1 < len(ids) {
			if step = ids[j] - ids[i]; step > 0 {
				for j+1 < len(ids) && ids[j+1]-ids[j] == step {
					j++
				}
			}
			if step > 0 && j-i >= 2 {
				b = append(b, ".."...)
				b = strconv.AppendInt(b, ids[j], 10)
				if step != 1 {
					b = append(b, ':')
					b = strconv.AppendInt(b, step, 10)
				}
				i = j + 1
				continue
			}
		}
		i++
	}
	return b
}

func (m *GroupedTableTs) UnmarshalJSON(data []byte) error {
	var groups []tsGroup
	if err := json.Unmarshal(data, &groups); err != nil {
		return err
	}
	if groups == nil {
		return nil
	}
	// Parsed once, then the map sized before it is filled: a position of
	// 33,000 tables grown one insert at a time rehashed its way to the top
	// of a leader's profile.
	runs := make([][]idRun, len(groups))
	n := 0
	for i, g := range groups {
		var err error
		if runs[i], err = parseRuns(g.IDs); err != nil {
			return fmt.Errorf("grouped table map, group at ts %d: %w", g.Ts, err)
		}
		for _, r := range runs[i] {
			if n += r.len(); n > maxGroupedTables {
				return fmt.Errorf("grouped table map: more than %d tables", maxGroupedTables)
			}
		}
	}
	out := make(GroupedTableTs, n)
	for i, g := range groups {
		for _, r := range runs[i] {
			for id := r.from; ; id += r.step {
				if _, dup := out[id]; dup {
					return fmt.Errorf("grouped table map, group at ts %d: table %d is listed twice", g.Ts, id)
				}
				out[id] = g.Ts
				if id == r.to {
					break
				}
			}
		}
	}
	*m = out
	return nil
}

// idRun is one run of a run list: from, from+step, …, to.
type idRun struct{ from, to, step TableID }

func (r idRun) len() int { return int((r.to-r.from)/r.step) + 1 }

// parseRuns reads a run list ("" is none), checking each run's syntax and
// that it ends on its progression within maxGroupedTables IDs.
func parseRuns(s string) ([]idRun, error) {
	if s == "" {
		return nil, nil
	}
	var out []idRun
	for _, run := range strings.Split(s, ",") {
		from, rest, isRange := strings.Cut(run, "..")
		a, err := strconv.ParseInt(from, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("run %q: %q is not a table ID", run, from)
		}
		if !isRange {
			out = append(out, idRun{from: a, to: a, step: 1})
			continue
		}
		to, stepText, stepped := strings.Cut(rest, ":")
		z, err := strconv.ParseInt(to, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("run %q: %q is not a table ID", run, to)
		}
		step := int64(1)
		if stepped {
			if step, err = strconv.ParseInt(stepText, 10, 64); err != nil || step <= 0 {
				return nil, fmt.Errorf("run %q: step %q is not a positive number", run, stepText)
			}
		}
		if z < a || (z-a)%step != 0 {
			return nil, fmt.Errorf("run %q does not end on its progression", run)
		}
		if z-a < 0 || (z-a)/step >= maxGroupedTables { // z-a < 0: it overflowed
			return nil, fmt.Errorf("run %q: more than %d tables", run, maxGroupedTables)
		}
		out = append(out, idRun{from: a, to: z, step: step})
	}
	return out, nil
}
