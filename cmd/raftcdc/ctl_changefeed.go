package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl"
	"github.com/raftcdc/raftcdc/model"
	"github.com/spf13/cobra"
)

func newChangefeedCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "changefeed", Aliases: []string{"cf"}, Short: "Create, inspect and control changefeeds"}
	cmd.AddCommand(
		newCfCreateCmd(o), newCfListCmd(o), newCfQueryCmd(o), newCfPauseCmd(o), newCfResumeCmd(o),
		newCfRemoveCmd(o), newCfUpdateCmd(o), newCfMoveTableCmd(o), newCfRebalanceCmd(o), newCfStatisticsCmd(o),
	)
	return cmd
}

// specFlags are the flags create and update share.
type specFlags struct {
	id, sourceURI, sinkURI, startTs, targetTs, configFile string
	noConfirm, dryRun                                     bool
}

func (s *specFlags) add(cmd *cobra.Command, create bool) {
	f := cmd.Flags()
	if create {
		f.StringVarP(&s.id, "changefeed-id", "c", "", "changefeed ID: letters, digits and single dashes (generated when absent)")
		f.StringVar(&s.startTs, "start-ts", "now", "replicate changes committed after this ts: a TSO, now, or an RFC 3339 time")
		f.BoolVar(&s.noConfirm, "no-confirm", false, "do not show the tables and ask before creating")
		f.BoolVar(&s.dryRun, "dry-run", false, "have the server check the changefeed and show the tables it would replicate, without creating it")
	} else {
		f.StringVarP(&s.id, "changefeed-id", "c", "", "changefeed ID (required)")
		f.BoolVar(&s.noConfirm, "no-confirm", false, "do not show the changes and ask before updating")
		f.BoolVar(&s.dryRun, "dry-run", false, "have the server check the update and show what it would change, tables included, without applying it")
	}
	f.StringVar(&s.sourceURI, "source-uri", "", "upstream URI, for example datagen://?tables=8")
	f.StringVar(&s.sinkURI, "sink-uri", "", "downstream URI, for example file:///var/lib/out or blackhole://")
	f.StringVar(&s.targetTs, "target-ts", "", "stop once this ts is replicated: a TSO or an RFC 3339 time (default: never)")
	f.StringVar(&s.configFile, "config", "", "changefeed config file (TOML: case-sensitive, [filter] rules, [sink] options)")
}

// request builds the API request from the URIs and the config file; the
// callers add the timestamps, which create and update treat differently.
func (s *specFlags) request() (api.ChangefeedRequest, error) {
	req := api.ChangefeedRequest{ID: s.id, SourceURI: s.sourceURI, SinkURI: s.sinkURI}
	if s.configFile != "" {
		cfg, err := ctl.LoadConfig(s.configFile)
		if err != nil {
			return req, usageError("%v", err)
		}
		req.Config = &cfg
	}
	return req, nil
}

func newCfCreateCmd(o *ctlOptions) *cobra.Command {
	s := &specFlags{}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a changefeed",
		Long: `Create a changefeed that replicates the upstream's changes to the sink. At a
terminal it first lists the tables the filter selects and asks; --no-confirm
(or a stdin that is not a terminal) skips that. The server opens the source
to list the tables, so ctl needs no access to it.

--dry-run has the server run every check of a create (ID, URIs, timestamps,
filter, GC safepoint, ID not taken) and prints what would be created, with
the tables the filter selects, without creating anything; it exits 0 when a
create would pass. With -o json it prints the server's preview object.`,
		Example: `  raftcdc ctl changefeed create -c orders --source-uri 'datagen://?tables=8' --sink-uri file:///var/lib/raftcdc-out
  raftcdc ctl changefeed create -c orders --source-uri 'datagen://' --sink-uri blackhole:// --config orders.toml --no-confirm
  raftcdc ctl changefeed create -c orders --source-uri 'datagen://' --sink-uri blackhole:// --config orders.toml --dry-run`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(s.id, false); err != nil {
				return err
			}
			if s.sourceURI == "" {
				return usageError("--source-uri is required (for example datagen://?tables=8)")
			}
			if s.sinkURI == "" {
				return usageError("--sink-uri is required (for example file:///tmp/out or blackhole://)")
			}
			start, startNow, err := parseTsArg("start-ts", s.startTs)
			if err != nil {
				return err
			}
			target, targetNow, err := parseTsArg("target-ts", s.targetTs)
			if err != nil {
				return err
			}
			if targetNow {
				return usageError("--target-ts now would stop the changefeed before it starts; give a later TSO or time")
			}
			if start != 0 && target != 0 && target <= start {
				return usageError("--target-ts %s must be after --start-ts %s", ctl.FormatTs(target), ctl.FormatTs(start))
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				req, err := s.request()
				if err != nil {
					return err
				}
				req.TargetTs = target
				if !startNow {
					req.StartTs = start
				}
				// 0 lets the server take its own now.
				if s.dryRun {
					return dryRunCreate(ctx, o, cmd, c, req)
				}
				if err := confirmCreate(ctx, cmd, c, s, req); err != nil {
					return err
				}
				res, err := c.CreateChangefeed(ctx, req)
				if err != nil {
					return fmt.Errorf("creating the changefeed: %w", err)
				}
				return o.print(cmd, res, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "Created changefeed %s, replicating changes after %s.\n", res.ID, ctl.FormatTs(res.StartTs.TSO))
					return err
				})
			})
		},
	}
	s.add(cmd, true)
	return cmd
}

// dryRunCreate shows what a create of req would do, as the server checked
// it, and creates nothing.
func dryRunCreate(ctx context.Context, o *ctlOptions, cmd *cobra.Command, c *ctl.Client, req api.ChangefeedRequest) error {
	p, err := c.PreviewChangefeed(ctx, req)
	if err != nil {
		if previewUnsupported(err) {
			return fmt.Errorf("checking the changefeed: this server cannot check a changefeed without creating it (it predates --dry-run): %w", err)
		}
		return fmt.Errorf("checking the changefeed: %w", err)
	}
	return o.print(cmd, p, func(w io.Writer) error {
		_, err := io.WriteString(w, previewText(req, p)+"Dry run: nothing was created.\n")
		return err
	})
}

// confirmCreate shows what the changefeed would replicate, as the server's
// preview says, and asks.
func confirmCreate(ctx context.Context, cmd *cobra.Command, c *ctl.Client, s *specFlags, req api.ChangefeedRequest) error {
	if s.noConfirm || !isTerminal(cmd.InOrStdin()) {
		return nil
	}
	w := cmd.ErrOrStderr()
	p, err := c.PreviewChangefeed(ctx, req)
	switch {
	case err == nil:
		fmt.Fprint(w, previewText(req, p))
	case previewUnsupported(err):
		// An older server still creates; it just cannot say beforehand
		// what. Its create runs the same checks.
		fmt.Fprint(w, previewText(req, nil))
		fmt.Fprintf(w, "The server cannot list the tables beforehand (%v); it checks them at create.\n", err)
	default:
		// The create runs the same checks and would fail the same way, so
		// there is nothing to ask.
		return fmt.Errorf("creating the changefeed: %w", err)
	}
	return confirm(cmd, false, "Create this changefeed?")
}

// previewUnsupported is true when the server has no preview route: a server
// from before it answers with its router's plain 404 or 405, not an API
// error object.
func previewUnsupported(err error) bool {
	var ae *ctl.APIError
	return errors.As(err, &ae) && (ae.Code == "http_404" || ae.Code == "http_405")
}

// previewText describes the changefeed req would create. p is the server's
// preview, or nil when the server cannot give one.
func previewText(req api.ChangefeedRequest, p *api.ChangefeedPreview) string {
	var b strings.Builder
	id := req.ID
	if id == "" {
		id = "(generated by the server)"
	}
	cfg := model.ChangefeedConfig{}
	if req.Config != nil {
		cfg = *req.Config
	}
	start := "now"
	switch {
	case req.StartTs != 0:
		start = ctl.FormatTs(req.StartTs)
	case p != nil && p.StartTs != nil:
		// The create takes the server's now again when it runs.
		start = "now: " + ctl.FormatTs(p.StartTs.TSO)
	}
	fmt.Fprintf(&b, "Changefeed:  %s\nSource:      %s\nSink:        %s\n", id, req.SourceURI, req.SinkURI)
	fmt.Fprintf(&b, "Start ts:    %s\nTarget ts:   %s\nFilter:      %s (case sensitive: %v)\n", start, ctl.FormatTs(req.TargetTs), ctl.FilterText(cfg.Filter), cfg.Filter.CaseSensitive)
	if p == nil {
		return b.String()
	}
	fmt.Fprintf(&b, "%d of the source's %d tables will be replicated:\n", len(p.Tables), p.TotalTables)
	const show = 20
	for i, t := range p.Tables {
		if i == show {
			fmt.Fprintf(&b, "  ... and %d more\n", len(p.Tables)-show)
			break
		}
		fmt.Fprintf(&b, "  %s\n", t)
	}
	return b.String()
}

func newCfListCmd(o *ctlOptions) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List changefeeds with their state, checkpoint and lag",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				feeds, err := c.ListChangefeeds(ctx, all)
				if err != nil {
					return fmt.Errorf("listing changefeeds: %w", err)
				}
				return o.print(cmd, map[string]any{"changefeeds": feeds}, func(w io.Writer) error { return ctl.RenderChangefeeds(w, feeds) })
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include removed and finished changefeeds")
	return cmd
}

func newCfQueryCmd(o *ctlOptions) *cobra.Command {
	var id string
	var simple bool
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Show one changefeed: definition, progress, and where its tables run",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(id, true); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				d, err := c.GetChangefeed(ctx, id)
				if err != nil {
					return fmt.Errorf("querying changefeed %s: %w", id, err)
				}
				if simple {
					return o.print(cmd, d.ChangefeedSummary, func(w io.Writer) error { return ctl.RenderChangefeedSummary(w, d.ChangefeedSummary) })
				}
				return o.print(cmd, d, func(w io.Writer) error { return ctl.RenderChangefeedDetail(w, d) })
			})
		},
	}
	cmd.Flags().StringVarP(&id, "changefeed-id", "c", "", "changefeed ID (required)")
	cmd.Flags().BoolVarP(&simple, "simple", "s", false, "only state, checkpoint, lag and error")
	return cmd
}

// adminRequested tells the operator that a request was recorded and that
// the owner carries it out asynchronously.
func adminRequested(o *ctlOptions, cmd *cobra.Command, res *ctl.AdminResult) error {
	return o.print(cmd, res, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "Requested %s of changefeed %s (state now: %s); the owner carries it out shortly.\n'raftcdc ctl changefeed query -c %s' shows its state.\n",
			res.AdminJob, res.ID, res.State, res.ID)
		return err
	})
}

func newCfPauseCmd(o *ctlOptions) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "Pause a changefeed; its checkpoint is kept",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(id, true); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				res, err := c.PauseChangefeed(ctx, id)
				if err != nil {
					return fmt.Errorf("pausing changefeed %s: %w", id, err)
				}
				return adminRequested(o, cmd, res)
			})
		},
	}
	cmd.Flags().StringVarP(&id, "changefeed-id", "c", "", "changefeed ID (required)")
	return cmd
}

func newCfResumeCmd(o *ctlOptions) *cobra.Command {
	var id, overwrite string
	var noConfirm bool
	cmd := &cobra.Command{
		Use:   "resume",
		Short: "Resume a paused or failed changefeed, optionally from another checkpoint",
		Long: `Resume a paused or failed changefeed from its checkpoint. With
--overwrite-checkpoint-ts it restarts from that ts instead: a later ts skips
changes (they never reach the sink), an earlier one replays them. At a
terminal it says which and asks, unless --no-confirm.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(id, true); err != nil {
				return err
			}
			ts, isNow, err := parseTsArg("overwrite-checkpoint-ts", overwrite)
			if err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				if isNow {
					if ts, err = serverNow(ctx, c); err != nil {
						return err
					}
				}
				if ts != 0 {
					d, err := c.GetChangefeed(ctx, id)
					if err != nil {
						return fmt.Errorf("reading changefeed %s: %w", id, err)
					}
					if err := confirm(cmd, noConfirm, overwriteQuestion(d, ts)); err != nil {
						return err
					}
				}
				res, err := c.ResumeChangefeed(ctx, id, ts)
				if err != nil {
					return fmt.Errorf("resuming changefeed %s: %w", id, err)
				}
				return adminRequested(o, cmd, res)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&id, "changefeed-id", "c", "", "changefeed ID (required)")
	f.StringVar(&overwrite, "overwrite-checkpoint-ts", "", "restart from this ts instead of the checkpoint: a TSO, now, or an RFC 3339 time")
	f.BoolVar(&noConfirm, "no-confirm", false, "do not ask before skipping or replaying changes")
	return cmd
}

// overwriteQuestion says what moving the checkpoint to ts does.
func overwriteQuestion(d *api.ChangefeedDetail, ts model.Ts) string {
	var cp model.Ts
	if d.Checkpoint != nil {
		cp = d.Checkpoint.TSO
	}
	span := func(a, b model.Ts) string {
		return fmt.Sprintf("%.1fs", math.Abs(model.TsTime(b).Sub(model.TsTime(a)).Seconds()))
	}
	switch {
	case cp == 0 || ts == cp:
		return fmt.Sprintf("Resume changefeed %s from %s?", d.ID, ctl.FormatTs(ts))
	case ts > cp:
		return fmt.Sprintf("Resuming changefeed %s from %s SKIPS every change committed after its checkpoint %s and up to that ts (%s of changes): they will never reach the sink. Resume?",
			d.ID, ctl.FormatTs(ts), ctl.FormatTs(cp), span(cp, ts))
	default:
		return fmt.Sprintf("Resuming changefeed %s from %s REPLAYS every change committed after that ts and up to its checkpoint %s (%s of changes): the sink receives them again. Resume?",
			d.ID, ctl.FormatTs(ts), ctl.FormatTs(cp), span(ts, cp))
	}
}

func newCfRemoveCmd(o *ctlOptions) *cobra.Command {
	var id string
	var force bool
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Remove a changefeed and its progress",
		Long: `Remove a changefeed. Its progress is deleted; the ID can then be used for a
new changefeed. At a terminal it asks first, unless --force.

--force also removes a changefeed whose stored metadata no longer decodes
(the cluster skips such a changefeed, so it can be neither queried nor
removed otherwise): its record is replaced by a removed changefeed's, and the
owner deletes its status and tasks.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(id, true); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				if !force && isTerminal(cmd.InOrStdin()) {
					d, err := c.GetChangefeed(ctx, id)
					if err != nil {
						return fmt.Errorf("reading changefeed %s: %w", id, err)
					}
					q := fmt.Sprintf("Remove changefeed %s (state %s, checkpoint %s)? Its progress is deleted and it cannot be resumed.",
						id, d.State, ctl.FormatTs(tiTs(d.Checkpoint)))
					if err := confirm(cmd, false, q); err != nil {
						return err
					}
				}
				res, err := c.RemoveChangefeed(ctx, id, force)
				if err != nil {
					return fmt.Errorf("removing changefeed %s: %w", id, err)
				}
				if res.Replaced == "" {
					return adminRequested(o, cmd, &res.AdminResult)
				}
				return o.print(cmd, res, func(w io.Writer) error {
					fmt.Fprintf(w, "Removed changefeed %s, whose metadata did not decode: %s now holds a removed changefeed's record, and the owner deletes its status and tasks.\nUpstream clean-up: %s.\n",
						res.ID, res.Replaced, res.UpstreamCleanup)
					if len(res.CorruptLeft) > 0 {
						fmt.Fprintf(w, "Still unreadable: %s; the cluster keeps skipping the changefeed until they are repaired.\n", strings.Join(res.CorruptLeft, ", "))
					}
					return nil
				})
			})
		},
	}
	cmd.Flags().StringVarP(&id, "changefeed-id", "c", "", "changefeed ID (required)")
	cmd.Flags().BoolVar(&force, "force", false, "do not ask; also remove a changefeed whose metadata does not decode")
	return cmd
}

func tiTs(ti *api.TimeInfo) model.Ts {
	if ti == nil {
		return 0
	}
	return ti.TSO
}

func newCfUpdateCmd(o *ctlOptions) *cobra.Command {
	s := &specFlags{}
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Change a paused or failed changefeed's URIs, target ts or config",
		Long: `Change a changefeed that is paused (or failed). Only the flags given change;
--config replaces the whole config. On a terminal it first shows each field
before and after and, when the source or the filter changes, the tables the
changefeed will add and remove when it runs again, and asks. Prints each field
before and after.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(s.id, true); err != nil {
				return err
			}
			if s.sourceURI == "" && s.sinkURI == "" && s.targetTs == "" && s.configFile == "" {
				return usageError("nothing to update: give --source-uri, --sink-uri, --target-ts or --config")
			}
			target, targetNow, err := parseTsArg("target-ts", s.targetTs)
			if err != nil {
				return err
			}
			if targetNow {
				return usageError("--target-ts now would finish the changefeed at once; give a later TSO or time")
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				req, err := s.request()
				if err != nil {
					return err
				}
				req.ID = ""
				req.TargetTs = target
				if s.dryRun || (!s.noConfirm && isTerminal(cmd.InOrStdin())) {
					// The server runs every check of the update and says
					// what it would change, tables included, before asking.
					preview, err := c.UpdateChangefeed(ctx, s.id, req, true)
					if err != nil {
						return fmt.Errorf("updating changefeed %s: %w", s.id, err)
					}
					if s.dryRun {
						return o.print(cmd, preview, func(w io.Writer) error { return ctl.RenderUpdate(w, preview) })
					}
					if err := ctl.RenderUpdate(cmd.ErrOrStderr(), preview); err != nil {
						return err
					}
					if err := confirm(cmd, false, "Update this changefeed?"); err != nil {
						return err
					}
				}
				res, err := c.UpdateChangefeed(ctx, s.id, req, false)
				if err != nil {
					return fmt.Errorf("updating changefeed %s: %w", s.id, err)
				}
				return o.print(cmd, res, func(w io.Writer) error { return ctl.RenderUpdate(w, res) })
			})
		},
	}
	s.add(cmd, false)
	return cmd
}

func newCfMoveTableCmd(o *ctlOptions) *cobra.Command {
	var id, target string
	var table int64
	cmd := &cobra.Command{
		Use:   "move-table",
		Short: "Move one table of a changefeed to another capture",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(id, true); err != nil {
				return err
			}
			if !cmd.Flags().Changed("table-id") {
				return usageError("--table-id is required ('raftcdc ctl changefeed query -c %s' lists the tables)", id)
			}
			if target == "" {
				return usageError("--target-capture is required ('raftcdc ctl capture list' lists the captures)")
			}
			if err := checkNodeID("--target-capture", target); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				res, err := c.MoveTable(ctx, id, table, target)
				if err != nil {
					return fmt.Errorf("moving table %d of changefeed %s: %w", table, id, err)
				}
				return o.print(cmd, res, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "Requested the move of table %d of changefeed %s to capture %s; the owner carries it out shortly.\n", res.TableID, res.ID, res.TargetCapture)
					return err
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&id, "changefeed-id", "c", "", "changefeed ID (required)")
	f.Int64Var(&table, "table-id", 0, "ID of the table to move (required)")
	f.StringVar(&target, "target-capture", "", "capture (node) ID to move it to (required)")
	return cmd
}

func newCfRebalanceCmd(o *ctlOptions) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "rebalance",
		Short: "Spread a changefeed's tables evenly over the captures again",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(id, true); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				res, err := c.Rebalance(ctx, id)
				if err != nil {
					return fmt.Errorf("rebalancing changefeed %s: %w", id, err)
				}
				return o.print(cmd, res, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "Requested a rebalance of changefeed %s; the owner carries it out shortly.\n", res.ID)
					return err
				})
			})
		},
	}
	cmd.Flags().StringVarP(&id, "changefeed-id", "c", "", "changefeed ID (required)")
	return cmd
}

func newCfStatisticsCmd(o *ctlOptions) *cobra.Command {
	var id string
	var interval time.Duration
	var count int
	cmd := &cobra.Command{
		Use:   "statistics",
		Short: "Show rows/s, checkpoint lag and resolved lag live, until Ctrl-C",
		Long: `Show a changefeed's throughput and lag every --interval until interrupted.
Rows/s is the change of rows written over the interval. With -o json each
sample is one JSON object on its own line.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(id, true); err != nil {
				return err
			}
			if interval <= 0 {
				return usageError("--interval must be positive, not %v", interval)
			}
			if count < 0 {
				return usageError("--count must not be negative")
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				err := statistics(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr(), c, id, interval, count)
				if errors.Is(err, context.Canceled) && ctx.Err() != nil {
					return nil // Ctrl-C is how this command is meant to end
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&id, "changefeed-id", "c", "", "changefeed ID (required)")
	f.DurationVar(&interval, "interval", time.Second, "time between samples")
	f.IntVar(&count, "count", 0, "stop after this many samples (0: until interrupted)")
	_ = f.MarkHidden("count")
	return cmd
}

// statistics prints a sample every interval until ctx ends or count samples
// are printed. It outlives leader changes and dead nodes: a read that fails
// in a way that may pass by itself (no leader during an election, a node
// that stopped answering) is reported once on stderr and retried at the
// next tick, and the next sample's rate covers the whole gap. Only errors a
// retry cannot fix (an unknown changefeed, a wrong token) end it.
func statistics(ctx context.Context, o *ctlOptions, w, errw io.Writer, c *ctl.Client, id string, interval time.Duration, count int) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var outage time.Time // when the current run of failed reads began
	read := func() (*api.ChangefeedDetail, bool, error) {
		d, err := c.GetChangefeed(ctx, id)
		switch {
		case err == nil:
			if !outage.IsZero() {
				fmt.Fprintf(errw, "%s  answering again after %.1fs\n", ctl.FormatTime(time.Now().UTC()), time.Since(outage).Seconds())
				outage = time.Time{}
			}
			return d, true, nil
		case ctx.Err() != nil:
			return nil, false, ctx.Err()
		case ctl.Transient(err):
			if outage.IsZero() {
				outage = time.Now()
				fmt.Fprintf(errw, "%s  no answer (%v); retrying every %v\n", ctl.FormatTime(outage.UTC()), err, interval)
			}
			return nil, false, nil
		default:
			return nil, false, fmt.Errorf("reading changefeed %s: %w", id, err)
		}
	}
	wait := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
			return nil
		}
	}
	var prev *api.ChangefeedDetail
	var prevAt time.Time
	for prev == nil {
		d, ok, err := read()
		if err != nil {
			return err
		}
		if ok {
			prev, prevAt = d, time.Now()
			break
		}
		if err := wait(); err != nil {
			return err
		}
	}
	sw := ctl.NewStatsWriter(w, o.json())
	for n := 0; count == 0 || n < count; {
		if err := wait(); err != nil {
			return err
		}
		cur, ok, err := read()
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		now := time.Now()
		if err := sw.Write(ctl.NewSample(prev, cur, now.Sub(prevAt), now)); err != nil {
			return err
		}
		prev, prevAt = cur, now
		n++
	}
	return nil
}
