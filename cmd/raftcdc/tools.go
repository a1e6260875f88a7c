package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/verify"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newToolsCmd) }

func newToolsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tools", Short: "Offline tools: the exact verifier"}
	cmd.AddCommand(newVerifyCmd())
	return cmd
}

// parseTs accepts a TSO number, "now", or an RFC 3339 time.
func parseTs(flag, v string) (model.Ts, error) {
	switch {
	case v == "":
		return 0, nil
	case v == "now":
		return model.TsFromTime(time.Now()), nil
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		return n, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return model.TsFromTime(t), nil
	}
	return 0, usageError("--%s %q is not a TSO number, \"now\" or an RFC 3339 time", flag, v)
}

func newVerifyCmd() *cobra.Command {
	var p verify.Params
	var start, checkpoint, rules string
	var caseSensitive bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check a file sink against a datagen source, exactly",
		Long: `Recomputes from the datagen source every change with start-ts < commit ts <=
checkpoint-ts of every table the filter selects, reads every file under the sink
directory, and reports missing, duplicated, out-of-order and unexpected rows.
Exits 0 when nothing is missing and nothing is unexpected, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if p.StartTs, err = parseTs("start-ts", start); err != nil {
				return err
			}
			if p.CheckpointTs, err = parseTs("checkpoint-ts", checkpoint); err != nil {
				return err
			}
			if p.SourceURI == "" || p.SinkDir == "" || p.CheckpointTs == 0 {
				return usageError("--source-uri, --sink-dir and --checkpoint-ts are required")
			}
			p.SinkDir = strings.TrimPrefix(p.SinkDir, "file://")
			if rules != "" {
				p.Filter.Rules = strings.Split(rules, ",")
			}
			p.Filter.CaseSensitive = caseSensitive
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			rep, err := verify.Run(ctx, p)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), rep.String())
			if !rep.OK() {
				return fmt.Errorf("verification failed: %d missing, %d unexpected", rep.Missing, rep.Unexpected)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.SourceURI, "source-uri", "", "the changefeed's datagen source URI")
	f.StringVar(&p.SinkDir, "sink-dir", "", "the file sink's directory (or file:// URI)")
	f.StringVar(&start, "start-ts", "0", "the changefeed's start ts (rows at or below it are not expected)")
	f.StringVar(&checkpoint, "checkpoint-ts", "", "every row at or below this ts must be present")
	f.StringVar(&rules, "filter-rules", "", "comma-separated filter rules of the changefeed")
	f.BoolVar(&caseSensitive, "case-sensitive", false, "filter rules are case sensitive")
	return cmd
}
