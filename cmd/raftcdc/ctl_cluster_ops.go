package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/raftcdc/raftcdc/ctl"
	"github.com/spf13/cobra"
)

func newSnapshotCmd(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up the cluster's metadata"}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Stream a consistent backup of the state machine from the leader into FILE",
		Long: `Stream a consistent backup of the state machine from the leader into FILE:
every changefeed's definition and checkpoint, every capture and task, as of a
point after every write acknowledged before the command started. The stream
is checked as it arrives (its SHA-256 and length) and FILE appears only when
the whole backup checked out; an existing FILE is not overwritten.

FILE holds every changefeed's URIs with their credentials: it is created
readable by its owner only. 'raftcdc tools restore FILE' seeds a new cluster
from it.`,
		Example: `  raftcdc ctl cluster snapshot save backup-$(date +%F).jsonl`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return usageError("%s takes exactly one file name\nRun '%s --help' for usage.", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				res, err := c.SaveSnapshot(ctx, args[0])
				if err != nil {
					return fmt.Errorf("saving a snapshot: %w", err)
				}
				return o.print(cmd, res, func(w io.Writer) error {
					cluster := res.Header.ClusterID
					if cluster == "" {
						cluster = "(no cluster record yet)"
					}
					_, err := fmt.Fprintf(w, "Saved a snapshot of cluster %s at Raft index %d (term %d, taken on %s): %d keys, %d bytes, sha256 %s, in %s.\n",
						cluster, res.Header.AppliedIndex, res.Header.Term, res.Header.NodeID, res.Trailer.Keys, res.Trailer.Bytes, res.Trailer.SHA256, res.File)
					return err
				})
			})
		},
	}
	cmd.AddCommand(save)
	return cmd
}

func newShowMetadataCmd(o *ctlOptions) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "show-metadata",
		Short: "Print every metadata key, decoded, as JSON (for debugging)",
		Long: `Print every key of the replicated state — or those under --prefix — with its
revisions and its record as the metadata schema decodes it, as JSON, like
TiCDC's 'cli unsafe show-metadata'. A key that does not decode is printed as
stored, with the reason. Passwords and secret URI parameters are hidden.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prefix != "" && !strings.HasPrefix(prefix, "/") {
				return usageError("--prefix %q must start with /, such as /changefeed/", prefix)
			}
			return o.withClient(cmd, func(ctx context.Context, c *ctl.Client) error {
				m, err := c.Metadata(ctx, prefix)
				if err != nil {
					return fmt.Errorf("reading the metadata: %w", err)
				}
				return ctl.WriteJSON(cmd.OutOrStdout(), m)
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only keys under this prefix, such as /changefeed/ or /task/status/orders/")
	return cmd
}
