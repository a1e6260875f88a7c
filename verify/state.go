// Package verify checks a downstream against the exact history datagen
// produces, for tests, chaos runs and operators (raftcdc tools verify).
//
// Every datagen row and DDL is a pure function of the source URI and ts,
// so the verifier computes datagen's state at the checkpoint without
// recording anything, and compares the downstream's state with it, row by
// row and typed.
package verify

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source/datagen"
)

// MaxExamples bounds each list of examples in a report.
const MaxExamples = 10

// Version 2: the downstream's state at the checkpoint against datagen's.
//
// datagen v2 can say, for any key of any table, its row at any ts in O(1)
// (datagen.History.StateAt). The verifier reads the downstream's state —
// a storage sink directory replayed up to the checkpoint, or the tables of
// a SQL database — and compares it row by row and value by value, typed.
// Rows whose last change upstream is at or before the changefeed's start
// ts never reached the downstream (datagen has no snapshot to copy); they
// are counted as unchanged, and compared only if the downstream has them.

// StateParams says what to compare.
type StateParams struct {
	// SourceURI is the changefeed's datagen URI.
	SourceURI string
	// Downstream is the changefeed's sink URI: file:///dir?protocol=...
	// (the storage sink; its parameters say how to read it), mysql://...
	// or postgres://....
	Downstream string
	// StartTs is the changefeed's start ts. CheckpointTs is the ts to
	// compare at; 0 reads it from the storage sink's metadata file.
	StartTs, CheckpointTs model.Ts
	Filter                model.FilterConfig
}

// RowKey names one row.
type RowKey struct {
	Table model.TableName
	Key   uint64
}

func (k RowKey) String() string { return fmt.Sprintf("%s id=%d", k.Table, k.Key) }

// ValueDiff is one wrong value.
type ValueDiff struct {
	Row       RowKey
	Column    string
	Want, Got string
}

func (d ValueDiff) String() string {
	return fmt.Sprintf("%s column %s: want %s, got %s", d.Row, d.Column, d.Want, d.Got)
}

// StateReport is the result of a state comparison.
type StateReport struct {
	CheckpointTs model.Ts
	Tables       int // upstream tables compared
	// Expected rows exist upstream at the checkpoint and changed after
	// the start ts; Matched of them are downstream with every value equal.
	Expected, Matched uint64
	// Missing rows are expected but absent; Extra rows are downstream but
	// not upstream (or belong to no table that exists); Wrong rows are
	// present with at least one different value.
	Missing, Extra, Wrong uint64
	// Unchanged rows exist upstream but did not change after the start ts,
	// so the downstream cannot have them; not a failure.
	Unchanged uint64
	// Duplicates counts change events delivered more than once (storage
	// sink replays after a failover); not a failure. OutOfOrder counts
	// events that came after a later event of the same key in one file
	// (storage) or partition (Kafka).
	Duplicates, OutOfOrder uint64
	// Kafka splits OutOfOrder in two. Replayed events are exact copies
	// (commit ts and content) of a version of their key the partition
	// delivered before: at-least-once replays after a failover, not a
	// failure. Reordered events are versions first delivered after a newer
	// version of their key: a consumer applying the partition in order
	// ends with the older one, so OK fails on any.
	Replayed, Reordered uint64
	// Events are the change events read (storage), AfterCheckpoint those
	// with a commit ts above the checkpoint (ignored).
	Events, AfterCheckpoint uint64
	// DDLs expected in (start, checkpoint], found downstream, missing,
	// extra; DDLDuplicates counts DDL messages written more than once.
	DDLs, DDLsFound, DDLsMissing, DDLsExtra, DDLDuplicates int
	// DDLOrderViolations counts, in a storage sink's canal-json files read
	// in order, DDL messages of a table that come after a DDL of a later
	// commit ts, and rows that come after a DDL but are of an older schema
	// version; DDLOrderExample is the first.
	DDLOrderViolations int
	DDLOrderExample    string
	SchemaDiffs        []string

	MissingExamples []RowKey
	ExtraExamples   []RowKey
	WrongExamples   []ValueDiff
	DDLExamples     []string
	// ReorderedExamples say where some Reordered events are.
	ReorderedExamples []string
}

// OK is true when no row is missing, extra or wrong, no key's versions were
// reordered, every DDL up to the checkpoint is there exactly and in order,
// and the schemas agree.
func (r StateReport) OK() bool {
	return r.Missing == 0 && r.Extra == 0 && r.Wrong == 0 && r.Reordered == 0 && r.DDLsMissing == 0 && r.DDLsExtra == 0 && r.DDLOrderViolations == 0 && len(r.SchemaDiffs) == 0
}

func (r StateReport) String() string {
	var b strings.Builder
	status := "OK"
	if !r.OK() {
		status = "FAILED"
	}
	fmt.Fprintf(&b, "verify %s at checkpoint %d: %d tables; rows expected %d, matched %d, missing %d, extra %d, wrong %d, unchanged since start %d; events %d (duplicates %d, out of order %d: replayed %d, reordered %d; after checkpoint %d); DDLs expected %d, found %d, missing %d, extra %d, duplicated %d, out of order %d; schema differences %d",
		status, r.CheckpointTs, r.Tables, r.Expected, r.Matched, r.Missing, r.Extra, r.Wrong, r.Unchanged, r.Events, r.Duplicates, r.OutOfOrder, r.Replayed, r.Reordered, r.AfterCheckpoint, r.DDLs, r.DDLsFound, r.DDLsMissing, r.DDLsExtra, r.DDLDuplicates, r.DDLOrderViolations, len(r.SchemaDiffs))
	for _, m := range r.MissingExamples {
		fmt.Fprintf(&b, "\n  missing: %s", m)
	}
	for _, m := range r.ExtraExamples {
		fmt.Fprintf(&b, "\n  extra: %s", m)
	}
	for _, d := range r.WrongExamples {
		fmt.Fprintf(&b, "\n  wrong: %s", d)
	}
	for _, d := range r.DDLExamples {
		fmt.Fprintf(&b, "\n  DDL: %s", d)
	}
	if r.DDLOrderExample != "" {
		fmt.Fprintf(&b, "\n  DDL order: %s", r.DDLOrderExample)
	}
	for _, d := range r.SchemaDiffs {
		fmt.Fprintf(&b, "\n  schema: %s", d)
	}
	for _, d := range r.ReorderedExamples {
		fmt.Fprintf(&b, "\n  reordered: %s", d)
	}
	return b.String()
}

func (r *StateReport) addMissing(k RowKey) {
	r.Missing++
	if len(r.MissingExamples) < MaxExamples {
		r.MissingExamples = append(r.MissingExamples, k)
	}
}

func (r *StateReport) addExtra(k RowKey) {
	r.Extra++
	if len(r.ExtraExamples) < MaxExamples {
		r.ExtraExamples = append(r.ExtraExamples, k)
	}
}

func (r *StateReport) addDDLOrder(msg string) {
	r.DDLOrderViolations++
	if r.DDLOrderExample == "" {
		r.DDLOrderExample = msg
	}
}

func (r *StateReport) addDDL(msg string) {
	if len(r.DDLExamples) < MaxExamples {
		r.DDLExamples = append(r.DDLExamples, msg)
	}
}

// downTable is one downstream table's state at the checkpoint, typed
// against the upstream schema it is compared with.
type downTable struct {
	name model.TableName
	// rows by datagen key; images aligned with the upstream schema's
	// columns (ValueMissing where the downstream has no such column).
	rows map[uint64][]model.Value
}

// downstream reads a downstream's state.
type downstream interface {
	// load reads every table's state at cp; want are the upstream tables
	// at cp with their schemas. It returns the downstream tables by
	// upstream table ID, rows of tables that do not exist upstream at cp
	// (counted as extra), and adds what it finds about events, DDLs and
	// schemas to rep.
	load(ctx context.Context, want []upstreamTable, rep *StateReport) (map[model.TableID]*downTable, error)
	close() error
}

type upstreamTable struct {
	name   model.TableName
	schema *model.TableSchema
}

// CompareState compares a downstream's state at the checkpoint with
// datagen's. An error means the comparison could not be made; differences
// are in the report.
func CompareState(ctx context.Context, p StateParams) (StateReport, error) {
	cfg, err := datagen.ParseURI(p.SourceURI)
	if err != nil {
		return StateReport{}, fmt.Errorf("verify: only datagen sources can be verified: %w", err)
	}
	hist, err := datagen.NewHistory(cfg)
	if err != nil {
		return StateReport{}, fmt.Errorf("verify: %w", err)
	}
	flt, err := filter.New(p.Filter)
	if err != nil {
		return StateReport{}, fmt.Errorf("verify: %w", err)
	}
	u, err := url.Parse(p.Downstream)
	if err != nil {
		return StateReport{}, fmt.Errorf("verify: downstream URI: %w", err)
	}
	var down downstream
	switch u.Scheme {
	case "file":
		down, err = openStorage(ctx, p, hist, flt)
	case "mysql", "postgres", "postgresql":
		down, err = openSQL(ctx, p, u)
	case "kafka":
		down, err = openKafka(ctx, p, hist, flt)
	default:
		return StateReport{}, fmt.Errorf("verify: downstream URI scheme %q: supported are file (storage sink), mysql, postgres and kafka", u.Scheme)
	}
	if err != nil {
		return StateReport{}, err
	}
	defer down.close()
	if sd, ok := down.(interface{ checkpoint() model.Ts }); ok && p.CheckpointTs == 0 {
		p.CheckpointTs = sd.checkpoint()
	}
	if p.CheckpointTs == 0 {
		return StateReport{}, fmt.Errorf("verify: a checkpoint ts is required for %s downstreams", u.Scheme)
	}
	if p.CheckpointTs < p.StartTs {
		return StateReport{}, fmt.Errorf("verify: checkpoint ts %d is below start ts %d", p.CheckpointTs, p.StartTs)
	}
	cp := p.CheckpointTs
	rep := StateReport{CheckpointTs: cp}
	if s, ok := down.(interface{ setCheckpoint(model.Ts) }); ok {
		s.setCheckpoint(cp)
	}

	var want []upstreamTable
	for _, tn := range hist.TablesAt(cp) {
		if !flt.Match(tn) {
			continue
		}
		sch, err := hist.SchemaAt(tn.ID, cp)
		if err != nil {
			return StateReport{}, fmt.Errorf("verify: %w", err)
		}
		want = append(want, upstreamTable{name: tn, schema: sch})
	}
	rep.Tables = len(want)
	got, err := down.load(ctx, want, &rep)
	if err != nil {
		return StateReport{}, err
	}
	for _, ut := range want {
		d := got[ut.name.ID]
		if d == nil {
			d = &downTable{name: ut.name, rows: map[uint64][]model.Value{}}
		}
		seen := make(map[uint64]bool, len(d.rows))
		err := hist.StateAt(ut.name.ID, cp, func(s *model.TableSchema, ks datagen.KeyState) bool {
			if err := ctx.Err(); err != nil {
				return false
			}
			row, have := d.rows[ks.Key]
			seen[ks.Key] = have
			key := RowKey{Table: ut.name, Key: ks.Key}
			switch {
			case !ks.Exists && have:
				rep.addExtra(key)
			case !ks.Exists:
			case ks.LastTs <= p.StartTs && !have:
				rep.Unchanged++
			case !have:
				rep.Expected++
				rep.addMissing(key)
			default:
				if ks.LastTs > p.StartTs {
					rep.Expected++
				}
				if diff, ok := compareRow(s, ks.Row, row); !ok {
					rep.Wrong++
					if len(rep.WrongExamples) < MaxExamples {
						diff.Row = key
						rep.WrongExamples = append(rep.WrongExamples, diff)
					}
				} else if ks.LastTs > p.StartTs {
					rep.Matched++
				}
			}
			return true
		})
		if err != nil {
			return StateReport{}, fmt.Errorf("verify: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return StateReport{}, fmt.Errorf("verify: %w", err)
		}
		// Downstream keys datagen never has (outside its key space).
		for k := range d.rows {
			if _, ok := seen[k]; !ok {
				rep.addExtra(RowKey{Table: ut.name, Key: k})
			}
		}
	}
	sort.Strings(rep.SchemaDiffs)
	return rep, nil
}

// compareRow compares an upstream image with a downstream one column by
// column; a column the downstream lacks is reported by the schema check,
// not here.
func compareRow(s *model.TableSchema, want, got []model.Value) (ValueDiff, bool) {
	for i, c := range s.Columns {
		if got[i].IsMissing() {
			continue
		}
		if !model.ValueEqual(c.Type, want[i], got[i]) {
			return ValueDiff{Column: c.Name, Want: showValue(want[i]), Got: showValue(got[i])}, false
		}
	}
	return ValueDiff{}, true
}

// showValue renders a value for a report: strings quoted and cut short,
// bytes in hex.
func showValue(v model.Value) string {
	var s string
	switch v.Kind {
	case model.ValueNull:
		return "NULL"
	case model.ValueBytes:
		s = "0x" + hex.EncodeToString(v.B)
	case model.ValueString:
		s = fmt.Sprintf("%q", v.S)
	default:
		s = v.Text()
	}
	if len(s) > 80 {
		cut := 77
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
