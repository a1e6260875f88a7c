package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
)

// Sample is one line of `changefeed statistics`; with -o json it is printed
// as one JSON object per line.
type Sample struct {
	Time          time.Time       `json:"time"`
	Changefeed    string          `json:"changefeed"`
	State         model.FeedState `json:"state"`
	RowsWritten   uint64          `json:"rows_written"`
	RowsPerSecond float64         `json:"rows_per_second"`
	// RateKnown is false when rows written went down over the interval (a
	// processor restarted and its count began again), so no rate is known.
	RateKnown         bool          `json:"rate_known"`
	Checkpoint        *api.TimeInfo `json:"checkpoint,omitempty"`
	Resolved          *api.TimeInfo `json:"resolved,omitempty"`
	CheckpointLagSecs float64       `json:"checkpoint_lag_seconds"`
	ResolvedLagSecs   float64       `json:"resolved_lag_seconds"`
}

// NewSample computes a sample from two reads of a changefeed taken elapsed
// apart.
func NewSample(prev, cur *api.ChangefeedDetail, elapsed time.Duration, now time.Time) Sample {
	s := Sample{
		Time: now.UTC(), Changefeed: cur.ID, State: cur.State, RowsWritten: cur.Count,
		Checkpoint: cur.Checkpoint, Resolved: cur.Resolved,
		CheckpointLagSecs: cur.CheckpointLagSecs, ResolvedLagSecs: cur.ResolvedLagSecs,
	}
	if cur.Count >= prev.Count && elapsed > 0 {
		s.RateKnown = true
		s.RowsPerSecond = float64(cur.Count-prev.Count) / elapsed.Seconds()
	}
	return s
}

// StatsWriter prints samples as they come: fixed-width columns for people
// (a tabwriter could not align rows it has not seen yet), JSON lines for
// scripts.
type StatsWriter struct {
	w       io.Writer
	json    bool
	started bool
}

// NewStatsWriter writes samples to w.
func NewStatsWriter(w io.Writer, asJSON bool) *StatsWriter { return &StatsWriter{w: w, json: asJSON} }

const statsRow = "%-27s  %-8s  %8s  %12s  %17s  %15s  %s\n"

// Write prints one sample.
func (sw *StatsWriter) Write(s Sample) error {
	if sw.json {
		enc := json.NewEncoder(sw.w)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			return fmt.Errorf("writing a sample: %w", err)
		}
		return nil
	}
	if !sw.started {
		sw.started = true
		if _, err := fmt.Fprintf(sw.w, statsRow, "TIME", "STATE", "ROWS/S", "ROWS WRITTEN", "CHECKPOINT LAG(s)", "RESOLVED LAG(s)", "CHECKPOINT"); err != nil {
			return err
		}
	}
	rate := "-"
	if s.RateKnown {
		rate = fmt.Sprintf("%.1f", s.RowsPerSecond)
	}
	_, err := fmt.Fprintf(sw.w, statsRow, FormatTime(s.Time), s.State, rate, fmt.Sprint(s.RowsWritten),
		lagCell(s.Resolved, s.CheckpointLagSecs, ""), lagCell(s.Resolved, s.ResolvedLagSecs, ""), formatTimeInfo(s.Checkpoint))
	return err
}
