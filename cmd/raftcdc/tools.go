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
	cmd := &cobra.Command{Use: "tools", Short: "Offline tools: the exact verifier, TLS certificates, data dir maintenance, a fake TiDB to try tidb:// with"}
	cmd.AddCommand(newVerifyCmd(), newTLSCmd(), newTiDBFakeCmd(), newKafkaFakeCmd())
	cmd.AddCommand(dataDirTools()...)
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
	var p verify.StateParams
	var start, checkpoint, rules string
	var caseSensitive bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check a downstream against a datagen source, exactly",
		Long: `Compares the downstream's state at the checkpoint with datagen's state at that
ts, row by row and value by value, and checks every DDL and the schemas.
--downstream is the changefeed's sink URI: a storage sink's file:// URI with its
parameters (the checkpoint is its metadata file's unless --checkpoint-ts is
given), a mysql:// or postgres:// database, or a Kafka sink's kafka:// URI
(its topics are read from the beginning). Rows whose last change is at or
before --start-ts are not expected downstream. Reports missing, extra and wrong
rows (column and both values) and schema differences; duplicate deliveries are
counted, not failed. Storage sinks need commit ts in their files: canal-json
with enable-tidb-extension=true, csv with include-commit-ts=true; Kafka sinks
with canal-json or avro need enable-tidb-extension=true, and --checkpoint-ts.

Exits 0 when the downstream is correct, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if p.StartTs, err = parseTs("start-ts", start); err != nil {
				return err
			}
			if p.CheckpointTs, err = parseTs("checkpoint-ts", checkpoint); err != nil {
				return err
			}
			if rules != "" {
				p.Filter.Rules = strings.Split(rules, ",")
			}
			p.Filter.CaseSensitive = caseSensitive
			if p.SourceURI == "" || p.Downstream == "" {
				return usageError("--source-uri and --downstream are required")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			rep, err := verify.CompareState(ctx, p)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), rep.String())
			if !rep.OK() {
				return fmt.Errorf("verification failed: %d missing, %d extra, %d wrong rows, %d missing and %d extra DDLs, %d schema differences",
					rep.Missing, rep.Extra, rep.Wrong, rep.DDLsMissing, rep.DDLsExtra, len(rep.SchemaDiffs))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.SourceURI, "source-uri", "", "the changefeed's datagen source URI")
	f.StringVar(&p.Downstream, "downstream", "", "the changefeed's sink URI: file:///dir?protocol=... (storage sink), mysql://..., postgres://... or kafka://...")
	f.StringVar(&start, "start-ts", "0", "the changefeed's start ts (rows at or below it are not expected)")
	f.StringVar(&checkpoint, "checkpoint-ts", "", "compare at this ts (a storage sink's metadata file gives it when omitted)")
	f.StringVar(&rules, "filter-rules", "", "comma-separated filter rules of the changefeed")
	f.BoolVar(&caseSensitive, "case-sensitive", false, "filter rules are case sensitive")
	return cmd
}
