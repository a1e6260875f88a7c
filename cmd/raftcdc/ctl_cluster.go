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
	return cmd
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
