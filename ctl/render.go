package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/model"
)

// stateText shows a state and any operator request still pending on it, so
// that "paused?" right after a pause gets an honest answer.
func stateText(state model.FeedState, job model.AdminJobType) string {
	if job != model.AdminNone {
		return fmt.Sprintf("%s (%s pending)", state, job)
	}
	return string(state)
}

func errorText(e *model.RunningError) string {
	if e == nil {
		return ""
	}
	if e.Code != "" {
		return e.Code + ": " + e.Message
	}
	return e.Message
}

// RenderChangefeeds is the table of `changefeed list`.
func RenderChangefeeds(w io.Writer, feeds []api.ChangefeedSummary) error {
	if len(feeds) == 0 {
		_, err := fmt.Fprintln(w, "No changefeeds. Create one with 'raftcdc ctl changefeed create'.")
		return err
	}
	t := NewTable(w, "ID", "STATE", "CHECKPOINT", "CHECKPOINT LAG(s)", "RESOLVED LAG(s)", "TABLES", "ERROR")
	for _, f := range feeds {
		t.Row(f.ID, stateText(f.State, f.AdminJob), formatTimeInfo(f.Checkpoint), lagCell(f.Resolved, f.CheckpointLagSecs, ""),
			lagCell(f.Resolved, f.ResolvedLagSecs, ""), strconv.Itoa(f.Tables), errorText(f.Error))
	}
	return t.Flush()
}

// lagCell shows a lag in seconds with unit. Lags are known only once the
// owner has reported progress (a resolved ts): before that the API shows the
// start ts as the checkpoint, with a lag of 0 that means nothing.
func lagCell(progress *api.TimeInfo, lag float64, unit string) string {
	if progress == nil {
		return "-"
	}
	return FormatLag(lag) + unit
}

// RenderChangefeedSummary is `changefeed query --simple`.
func RenderChangefeedSummary(w io.Writer, s api.ChangefeedSummary) error {
	f := newFields(w)
	addSummary(f, s)
	return f.flush()
}

func addSummary(f *fields, s api.ChangefeedSummary) {
	f.add("ID", s.ID)
	f.add("State", stateText(s.State, s.AdminJob))
	f.add("Source", s.SourceURI)
	f.add("Sink", s.SinkURI)
	f.add("Checkpoint", formatTimeInfo(s.Checkpoint))
	f.add("Checkpoint lag", lagCell(s.Resolved, s.CheckpointLagSecs, "s"))
	f.add("Resolved", formatTimeInfo(s.Resolved))
	f.add("Resolved lag", lagCell(s.Resolved, s.ResolvedLagSecs, "s"))
	f.add("Tables", strconv.Itoa(s.Tables))
	f.add("Error", errorText(s.Error))
}

// RenderChangefeedDetail is `changefeed query`: the summary, the definition,
// then where every table runs and how far each processor got.
func RenderChangefeedDetail(w io.Writer, d *api.ChangefeedDetail) error {
	f := newFields(w)
	addSummary(f, d.ChangefeedSummary)
	f.add("Start ts", FormatTs(d.Info.StartTs))
	f.add("Target ts", FormatTs(d.Info.TargetTs))
	f.add("Created", FormatTime(d.Info.CreateTime))
	f.add("Rows written", strconv.FormatUint(d.Count, 10))
	f.add("Filter rules", FilterText(d.Info.Config.Filter))
	f.add("Case sensitive", strconv.FormatBool(d.Info.Config.Filter.CaseSensitive))
	f.add("Sink options", sinkOptions(d.Info.Config.Sink))
	if len(d.Info.Config.Dispatchers) > 0 {
		f.add("Dispatchers", DispatchersText(d.Info.Config.Dispatchers))
	}
	var pending []string
	if d.Info.RebalanceRequested {
		pending = append(pending, "rebalance")
	}
	for _, m := range d.Info.PendingMoves {
		pending = append(pending, fmt.Sprintf("move table %d to %s", m.TableID, m.TargetCapture))
	}
	if d.Info.OverwriteCheckpointTs != 0 {
		pending = append(pending, "resume from "+FormatTs(d.Info.OverwriteCheckpointTs))
	}
	f.add("Pending requests", strings.Join(pending, "; "))
	if d.Status != nil && d.Status.Stream {
		names := make([]string, 0, len(d.Status.StreamTables))
		for _, tn := range d.Status.StreamTables {
			names = append(names, tn.String())
		}
		f.add("Stream tables", strings.Join(names, ", "))
		if sp := d.Status.StreamPosition; sp != nil {
			f.add("Stream position", FormatTs(sp.Ts)+" "+sp.Position)
		}
	}
	if sn := d.Snapshot; sn != nil {
		text := fmt.Sprintf("%d of %d tables, %d rows, %d bytes", sn.TablesDone, sn.TablesTotal, sn.Rows, sn.Bytes)
		if sn.EstRows > 0 {
			text += fmt.Sprintf(" of about %d rows", sn.EstRows)
		}
		if sn.ETASeconds > 0 {
			text += fmt.Sprintf(", ETA %s", time.Duration(sn.ETASeconds*float64(time.Second)))
		}
		f.add("Initial snapshot", text)
	}
	if d.Upstream != nil {
		if b, err := json.Marshal(d.Upstream); err == nil {
			f.add("Upstream", string(b))
		}
	}
	for _, w := range d.Warnings {
		f.add("Warning", w)
	}
	if err := f.flush(); err != nil {
		return err
	}
	if d.Status != nil && len(d.Status.Tables) > 0 {
		fmt.Fprintf(w, "\nTables (%d):\n", len(d.Status.Tables))
		where := d.Assignments()
		t := NewTable(w, "TABLE ID", "TABLE", "CAPTURE", "CHECKPOINT")
		tables := append([]model.TableName(nil), d.Status.Tables...)
		sort.Slice(tables, func(i, j int) bool { return tables[i].ID < tables[j].ID })
		for _, tn := range tables {
			var c string
			if cs := where[tn.ID]; len(cs) > 0 {
				c = cs[0]
			}
			var cp model.Ts
			if p := d.Positions[c]; p != nil {
				cp = p.Running[tn.ID]
			}
			if c == "" {
				c = "(unassigned)"
			}
			t.Row(strconv.FormatInt(tn.ID, 10), tn.String(), c, FormatTs(cp))
		}
		if err := t.Flush(); err != nil {
			return err
		}
	}
	if len(d.Positions) > 0 {
		fmt.Fprintln(w, "\nProcessors:")
		t := NewTable(w, "CAPTURE", "TABLES", "CHECKPOINT", "RESOLVED", "ROWS", "ERROR")
		for _, c := range sortedKeys(d.Positions) {
			p := d.Positions[c]
			n := 0
			if ts := d.Tasks[c]; ts != nil {
				n = len(ts.Tables)
			}
			t.Row(c, strconv.Itoa(n), FormatTs(p.CheckpointTs), FormatTs(p.ResolvedTs), strconv.FormatUint(p.Count, 10), errorText(p.Error))
		}
		if err := t.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sinkOptions(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}

// RenderCaptures is `capture list`.
func RenderCaptures(w io.Writer, cs []api.CaptureView) error {
	t := NewTable(w, "ID", "ADDRESS", "OWNER", "LIVENESS", "TABLES", "VERSION", "STARTED")
	for _, c := range cs {
		l := c.Liveness
		if c.Draining && l == "alive" {
			l = "alive, draining"
		}
		t.Row(c.ID, c.Address, yesNo(c.IsOwner), l, strconv.Itoa(c.Tables), c.Version, FormatTime(c.StartTime))
	}
	return t.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// RenderProcessors is `processor list`.
func RenderProcessors(w io.Writer, ps []api.ProcessorView) error {
	if len(ps) == 0 {
		_, err := fmt.Fprintln(w, "No processors: no changefeed has tables running on any capture.")
		return err
	}
	t := NewTable(w, "CHANGEFEED", "CAPTURE", "TABLES", "CHECKPOINT")
	for _, p := range ps {
		t.Row(p.Changefeed, p.Capture, strconv.Itoa(p.Tables), formatTimeInfo(p.Checkpoint))
	}
	return t.Flush()
}

// RenderProcessor is `processor query`.
func RenderProcessor(w io.Writer, p *api.ProcessorView) error {
	f := newFields(w)
	f.add("Changefeed", p.Changefeed)
	f.add("Capture", p.Capture)
	f.add("Tables", strconv.Itoa(p.Tables))
	if p.Position != nil {
		f.add("Checkpoint", FormatTs(p.Position.CheckpointTs))
		f.add("Resolved", FormatTs(p.Position.ResolvedTs))
		f.add("Rows written", strconv.FormatUint(p.Position.Count, 10))
		f.add("Error", errorText(p.Position.Error))
	} else {
		f.add("Checkpoint", "-")
		f.add("Resolved", "-")
		f.add("Rows written", "-")
		f.add("Error", "")
	}
	if err := f.flush(); err != nil {
		return err
	}
	if p.Status == nil || len(p.Status.Tables)+len(p.Status.Operations) == 0 {
		return nil
	}
	ids := map[model.TableID]bool{}
	for id := range p.Status.Tables {
		ids[id] = true
	}
	for id := range p.Status.Operations {
		ids[id] = true
	}
	sorted := make([]model.TableID, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	fmt.Fprintln(w, "\nTables:")
	t := NewTable(w, "TABLE ID", "START TS", "CHECKPOINT", "WORKLOAD", "OPERATION")
	for _, id := range sorted {
		start := ""
		if r, ok := p.Status.Tables[id]; ok {
			start = FormatTs(r.StartTs)
		}
		var cp model.Ts
		if p.Position != nil {
			cp = p.Position.Running[id]
		}
		wl := ""
		if x, ok := p.Workload[id]; ok {
			wl = strconv.FormatUint(x.Workload, 10)
		}
		t.Row(strconv.FormatInt(id, 10), start, FormatTs(cp), wl, operationText(p.Status.Operations[id]))
	}
	return t.Flush()
}

func operationText(op *model.TableOperation) string {
	if op == nil {
		return ""
	}
	kind := "add"
	switch {
	case op.IsMove:
		kind = "move to " + op.TargetCapture
	case op.Delete:
		kind = "remove"
	}
	return fmt.Sprintf("%s at %s, %s", kind, FormatTs(op.BoundaryTs), op.Status)
}

// RenderStatus is `cluster status`: the answering node's view, then every
// member as Raft and gossip see it.
func RenderStatus(w io.Writer, s *api.Status, ms []api.Member) error {
	f := newFields(w)
	f.add("Answered by", s.NodeID+" ("+s.RaftState+")")
	leader := s.LeaderID
	if leader == "" {
		leader = "none known"
	} else if s.LeaderAPIAddr != "" {
		leader += " at " + s.LeaderAPIAddr
	}
	f.add("Leader", leader)
	f.add("Term", strconv.FormatUint(s.Term, 10))
	f.add("Applied/commit index", fmt.Sprintf("%d/%d", s.AppliedIndex, s.CommitIndex))
	owner := s.OwnerNode
	if owner == "" {
		owner = "none"
	}
	f.add("Owner", fmt.Sprintf("%s (epoch %d)", owner, s.OwnerEpoch))
	f.add("Version", s.Version)
	if n := len(s.CorruptKeys); n > 0 {
		f.add("Corrupt keys", fmt.Sprintf("%d, skipped by every component until repaired or removed (listed below)", n))
	}
	if err := f.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := RenderMembers(w, ms); err != nil {
		return err
	}
	if len(s.CorruptKeys) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	t := NewTable(w, "CORRUPT KEY", "REVISION", "REASON")
	for _, c := range s.CorruptKeys {
		t.Row(c.Key, strconv.FormatUint(c.ModRev, 10), c.Reason)
	}
	return t.Flush()
}

// RenderMembers is `cluster members`.
func RenderMembers(w io.Writer, ms []api.Member) error {
	t := NewTable(w, "ID", "RAFT", "GOSSIP", "LEADER", "API ADDRESS", "RAFT ADDRESS", "VERSION")
	for _, m := range ms {
		t.Row(m.ID, m.Suffrage, m.GossipStatus, yesNo(m.Leader), m.APIAddr, m.RaftAddr, m.Version)
	}
	return t.Flush()
}

// RenderUpdate shows what an update changed, one line per field.
func RenderUpdate(w io.Writer, u *UpdateResult) error {
	lines := DiffInfo(u.Before, u.After)
	if len(lines) == 0 {
		_, err := fmt.Fprintf(w, "Changefeed %s is unchanged.\n", u.ID)
		return err
	}
	if u.DryRun {
		fmt.Fprintf(w, "Update of changefeed %s (not applied):\n", u.ID)
	} else {
		fmt.Fprintf(w, "Updated changefeed %s:\n", u.ID)
	}
	t := NewTable(w, "FIELD", "BEFORE", "AFTER")
	for _, l := range lines {
		t.Row(l[0], l[1], l[2])
	}
	if err := t.Flush(); err != nil {
		return err
	}
	return renderTableChanges(w, u)
}

// renderTableChanges lists how the table set changes when the changefeed
// runs next.
func renderTableChanges(w io.Writer, u *UpdateResult) error {
	if len(u.TablesAdded) == 0 && len(u.TablesRemoved) == 0 {
		return nil
	}
	fmt.Fprintf(w, "When it runs again, the changefeed adds %d and removes %d tables (new tables start at its checkpoint):\n", len(u.TablesAdded), len(u.TablesRemoved))
	for _, t := range u.TablesAdded {
		fmt.Fprintf(w, "  + %s\n", t)
	}
	for _, t := range u.TablesRemoved {
		fmt.Fprintf(w, "  - %s\n", t)
	}
	return nil
}

// DiffInfo lists the user-settable fields that differ, as field, before,
// after.
func DiffInfo(a, b model.ChangefeedInfo) [][3]string {
	var out [][3]string
	add := func(name, x, y string) {
		if x != y {
			out = append(out, [3]string{name, x, y})
		}
	}
	add("source-uri", a.SourceURI, b.SourceURI)
	add("sink-uri", a.SinkURI, b.SinkURI)
	add("target-ts", FormatTs(a.TargetTs), FormatTs(b.TargetTs))
	add("filter rules", FilterText(a.Config.Filter), FilterText(b.Config.Filter))
	add("case-sensitive", strconv.FormatBool(a.Config.Filter.CaseSensitive), strconv.FormatBool(b.Config.Filter.CaseSensitive))
	keys := map[string]bool{}
	for k := range a.Config.Sink {
		keys[k] = true
	}
	for k := range b.Config.Sink {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		x, okx := a.Config.Sink[k]
		y, oky := b.Config.Sink[k]
		if !okx {
			x = "(unset)"
		}
		if !oky {
			y = "(unset)"
		}
		add("sink."+k, x, y)
	}
	add("sink.dispatchers", DispatchersText(a.Config.Dispatchers), DispatchersText(b.Config.Dispatchers))
	return out
}

// DispatchersText shows dispatcher rules on one line, in config-file form.
func DispatchersText(rules []model.DispatchRule) string {
	if len(rules) == 0 {
		return "(none)"
	}
	parts := make([]string, len(rules))
	for i, r := range rules {
		s := fmt.Sprintf("%s →", strings.Join(r.Matcher, ","))
		if r.Topic != "" {
			s += " topic " + r.Topic
		}
		p := r.Partition
		if p == "" {
			p = model.PartitionDefault
		}
		s += " partition " + p
		if r.Index != "" {
			s += "(" + r.Index + ")"
		}
		if len(r.Columns) > 0 {
			s += "(" + strings.Join(r.Columns, ",") + ")"
		}
		parts[i] = s
	}
	return strings.Join(parts, "; ")
}
