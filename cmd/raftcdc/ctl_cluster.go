package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl"
	"github.com/raftcdc/raftcdc/model"
	"github.com/spf13/cobra"
)

func newCaptureCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "capture", Short: "Inspect captures (every node is one)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List captures: address, owner or not, liveness, tables",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				cs, err := c.Captures(ctx)
				if err != nil {
					return fmt.Errorf("listing captures: %w", err)
				}
				return o.print(cmd, map[string]any{"captures": cs}, func(w io.Writer) error { return ctl.RenderCaptures(w, cs) })
			})
		},
	})
	cmd.AddCommand(newCaptureDrainCmd(o))
	return cmd
}

func newCaptureDrainCmd(o *ctlOptions) *cobra.Command {
	var (
		id      string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "drain",
		Short: "Move every table off a capture, before restarting or upgrading its node",
		Long: `Ask the owner to move every table off a capture. Each table stops at a
boundary on that capture and continues on another from exactly there, so
nothing is replayed. The request holds for the capture's current
incarnation: once its node restarts it takes tables again. With --wait (the
default) ctl reports progress until the capture holds no table.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return usageError("--capture-id is required ('raftcdc ctl capture list' lists the captures)")
			}
			if err := checkNodeID("--capture-id", id); err != nil {
				return err
			}
			if timeout <= 0 {
				return usageError("--timeout must be positive, such as 5m")
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				res, err := c.DrainCapture(ctx, id)
				if err != nil {
					return fmt.Errorf("draining capture %s: %w", id, err)
				}
				if wait {
					if res, err = waitDrained(ctx, cmd, c, res, timeout); err != nil {
						return err
					}
				}
				return o.print(cmd, res, func(w io.Writer) error {
					if res.TablesRemaining == 0 {
						_, err := fmt.Fprintf(w, "Capture %s holds no tables.\n", id)
						return err
					}
					_, err := fmt.Fprintf(w, "Drain of capture %s requested: %d tables to move ('raftcdc ctl capture list' follows it).\n", id, res.TablesRemaining)
					return err
				})
			})
		},
	}
	cmd.Flags().StringVarP(&id, "capture-id", "p", "", "capture (node) ID (required)")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the capture holds no table, reporting progress on stderr")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait, give up after this long")
	return cmd
}

// waitDrained follows a drain until the capture holds no table.
func waitDrained(ctx context.Context, cmd *cobra.Command, c *ctl.Client, res *api.DrainCaptureResponse, timeout time.Duration) (*api.DrainCaptureResponse, error) {
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		if res.TablesRemaining != last {
			fmt.Fprintf(cmd.ErrOrStderr(), "capture %s: %d tables to move\n", res.CaptureID, res.TablesRemaining)
			last = res.TablesRemaining
		}
		if res.TablesRemaining == 0 {
			return res, nil
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("draining capture %s: %d tables still on it after %v", res.CaptureID, res.TablesRemaining, timeout)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		cs, err := c.Captures(ctx)
		if err != nil {
			continue // a leader change: ask again
		}
		found := false
		for _, cv := range cs {
			if cv.ID != res.CaptureID {
				continue
			}
			found = true
			if cv.Incarnation != res.Incarnation {
				return res, fmt.Errorf("draining capture %s: it restarted (incarnation %d, drained %d) and takes tables again", res.CaptureID, cv.Incarnation, res.Incarnation)
			}
			res.TablesRemaining = cv.Tables
		}
		if !found {
			// Gone: evicted or left; it holds nothing.
			res.TablesRemaining = 0
		}
	}
}

func newProcessorCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "processor", Short: "Inspect processors (one per changefeed and capture)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List processors",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				ps, err := c.Processors(ctx)
				if err != nil {
					return fmt.Errorf("listing processors: %w", err)
				}
				return o.print(cmd, map[string]any{"processors": ps}, func(w io.Writer) error { return ctl.RenderProcessors(w, ps) })
			})
		},
	})
	var cf, capture string
	query := &cobra.Command{
		Use:   "query",
		Short: "Show one processor: its tables, operations and progress",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFeedID(cf, true); err != nil {
				return err
			}
			if capture == "" {
				return usageError("--capture-id is required ('raftcdc ctl capture list' lists the captures)")
			}
			if err := checkNodeID("--capture-id", capture); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				p, err := c.Processor(ctx, cf, capture)
				if err != nil {
					return fmt.Errorf("querying the processor of %s on %s: %w", cf, capture, err)
				}
				return o.print(cmd, p, func(w io.Writer) error { return ctl.RenderProcessor(w, p) })
			})
		},
	}
	query.Flags().StringVarP(&cf, "changefeed-id", "c", "", "changefeed ID (required)")
	query.Flags().StringVarP(&capture, "capture-id", "p", "", "capture (node) ID (required)")
	cmd.AddCommand(query)
	return cmd
}

// clusterStatus is the -o json output of `cluster status`.
type clusterStatus struct {
	Status  *api.Status  `json:"status"`
	Members []api.Member `json:"members"`
}

func newClusterCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect and change the Raft cluster"}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Leader, term, owner, and every member's Raft suffrage and gossip status",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				s, err := c.Status(ctx)
				if err != nil {
					return fmt.Errorf("reading the node status: %w", err)
				}
				ms, err := c.Members(ctx)
				if err != nil {
					return fmt.Errorf("listing members: %w", err)
				}
				return o.print(cmd, clusterStatus{Status: s, Members: ms}, func(w io.Writer) error { return ctl.RenderStatus(w, s, ms) })
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "members",
		Short: "List members as Raft and gossip see them",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				ms, err := c.Members(ctx)
				if err != nil {
					return fmt.Errorf("listing members: %w", err)
				}
				return o.print(cmd, map[string]any{"members": ms}, func(w io.Writer) error { return ctl.RenderMembers(w, ms) })
			})
		},
	})
	cmd.AddCommand(newTransferLeaderCmd(o), newRemoveNodeCmd(o))
	cmd.AddCommand(newSnapshotCmd(o), newShowMetadataCmd(o))
	return cmd
}

// transferOutput is the -o json output of `cluster transfer-leader`.
type transferOutput struct {
	PreviousLeader string `json:"previous_leader"`
	Requested      string `json:"requested,omitempty"`
	// NewLeader is empty when no new leader was seen before ctl stopped
	// waiting.
	NewLeader string `json:"new_leader"`
	Term      uint64 `json:"term,omitempty"`
}

func newTransferLeaderCmd(o *ctlOptions) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "transfer-leader",
		Short: "Hand Raft leadership to another voter (--to ID, or any)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to != "" {
				if err := checkNodeID("--to", to); err != nil {
					return err
				}
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				res, err := c.TransferLeader(ctx, to)
				if err != nil {
					return fmt.Errorf("transferring leadership: %w", err)
				}
				out := transferOutput{PreviousLeader: res.PreviousLeader, Requested: res.Requested}
				// The transfer is done when the API answers, but the node ctl
				// asks may learn of the new leader a little later.
				wctx, cancel := context.WithTimeout(ctx, min(o.timeout, 10*time.Second))
				defer cancel()
				for wctx.Err() == nil {
					s, err := c.Status(wctx)
					if err == nil && s.LeaderID != "" && s.LeaderID != res.PreviousLeader {
						out.NewLeader, out.Term = s.LeaderID, s.Term
						break
					}
					select {
					case <-wctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
				return o.print(cmd, out, func(w io.Writer) error {
					if out.NewLeader == "" {
						_, err := fmt.Fprintf(w, "Leadership left %s; no new leader seen yet. 'raftcdc ctl cluster status' shows it once elected.\n", out.PreviousLeader)
						return err
					}
					_, err := fmt.Fprintf(w, "Leadership moved from %s to %s (term %d).\n", out.PreviousLeader, out.NewLeader, out.Term)
					return err
				})
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "node ID of the voter to hand leadership to (default: any)")
	return cmd
}

func newRemoveNodeCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove-node ID",
		Short: "Remove a node from the Raft configuration",
		Long: `Remove a node from the Raft configuration. The leader refuses when the
remaining voters could not keep a quorum.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("%s takes exactly one node ID, got %d arguments\nRun '%s --help' for usage.", cmd.CommandPath(), len(args), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := checkNodeID("node ID", id); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				if err := c.RemoveNode(ctx, id); err != nil {
					return fmt.Errorf("removing node %s: %w", id, err)
				}
				return o.print(cmd, map[string]string{"removed": id}, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "Removed node %s from the Raft configuration.\n", id)
					return err
				})
			})
		},
	}
}

// tsoOutput is the -o json output of `tso`.
type tsoOutput struct {
	TSO  model.Ts  `json:"tso"`
	Time time.Time `json:"time"`
}

func newTSOCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "tso",
		Short: "Print the cluster's current TSO and its wall time",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				t, err := c.TSO(ctx)
				if err != nil {
					return fmt.Errorf("reading the TSO: %w", err)
				}
				out := tsoOutput{TSO: t.TSO, Time: model.TsTime(t.TSO).UTC()}
				return o.print(cmd, out, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "TSO:  %d\nTime: %s\n", out.TSO, ctl.FormatTime(out.Time))
					return err
				})
			})
		},
	}
}
