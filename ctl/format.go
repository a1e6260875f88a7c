package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
)

// TimeLayout is how ctl shows wall times to people: UTC, to the millisecond,
// so that times printed by different nodes and operators compare at a glance.
const TimeLayout = "2006-01-02 15:04:05.000 UTC"

// FormatTime shows a wall time, "-" when unset.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(TimeLayout)
}

// FormatTs shows a ts as TSO and human time, "-" when unset.
func FormatTs(ts model.Ts) string {
	if ts == 0 {
		return "-"
	}
	return strconv.FormatUint(ts, 10) + " (" + FormatTime(model.TsTime(ts)) + ")"
}

func formatTimeInfo(ti *api.TimeInfo) string {
	if ti == nil {
		return "-"
	}
	return FormatTs(ti.TSO)
}

// FormatLag shows a lag in seconds.
func FormatLag(secs float64) string { return strconv.FormatFloat(secs, 'f', 1, 64) }

// WriteJSON writes v indented, with a final newline: the -o json output.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// URIs carry & and < >; escaping them for HTML would only hurt reading.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// Table writes aligned columns.
type Table struct {
	tw *tabwriter.Writer
}

// NewTable starts a table with a header row.
func NewTable(w io.Writer, header ...string) *Table {
	t := &Table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.Row(header...)
	return t
}

// Row adds a row; empty cells show as "-" so columns never collapse.
func (t *Table) Row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
		// A tab or newline in a value would break the alignment.
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(cells[i])
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// Flush writes the table out.
func (t *Table) Flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	return nil
}

// fields writes "Label: value" lines with the values aligned.
type fields struct {
	tw *tabwriter.Writer
}

func newFields(w io.Writer) *fields {
	return &fields{tw: tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)}
}

func (f *fields) add(label, value string) {
	if value == "" {
		value = "-"
	}
	fmt.Fprintf(f.tw, "%s:\t%s\n", label, value)
}

func (f *fields) flush() error {
	if err := f.tw.Flush(); err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	return nil
}
