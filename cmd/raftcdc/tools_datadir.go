package main

import (
	"fmt"
	"os"
	"os/signal"

	"github.com/raftcdc/raftcdc/logging"
	"github.com/raftcdc/raftcdc/storage"
	"github.com/spf13/cobra"
)

// dataDirTools are the offline tools that work on a stopped node's data
// dir: each takes the data dir's lock first, so none of them can run
// beside a node.
func dataDirTools() []*cobra.Command {
	return []*cobra.Command{newMigrateLogCmd()}
}

// logStoreFlag is --raft-log-store, checked when parsed.
type logStoreFlag storage.LogStore

func (f *logStoreFlag) String() string { return string(*f) }
func (f *logStoreFlag) Type() string   { return "wal|boltdb" }
func (f *logStoreFlag) Set(v string) error {
	k, err := storage.ParseLogStore(v)
	if err != nil {
		return err
	}
	*f = logStoreFlag(k)
	return nil
}

func newMigrateLogCmd() *cobra.Command {
	var dataDir string
	var to logStoreFlag
	cmd := &cobra.Command{
		Use:   "migrate-log",
		Short: "Move a stopped node's Raft log to another log store (wal or boltdb)",
		Long: `Move the Raft log of a stopped node's data dir to another log store. The
node must be stopped (the data dir's lock is taken). The new store is written
and synced beside the old one before the data dir switches to it, so an
interrupted migration leaves the old log in use; run it again.

A data dir keeps the log store it was created with; new data dirs get the
WAL. Going back to a build that only knows boltdb needs --to boltdb first.`,
		Example: `  raftcdc tools migrate-log --data-dir /var/lib/raftcdc --to wal`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return usageError("--data-dir is required")
			}
			if to == "" {
				return usageError("--to is required: wal or boltdb")
			}
			if st, err := os.Stat(dataDir); err != nil || !st.IsDir() {
				return usageError("--data-dir %s is not a directory", dataDir)
			}
			lock, err := storage.Lock(dataDir)
			if err != nil {
				return fmt.Errorf("%w; stop the node first", err)
			}
			defer lock.Unlock()
			log, err := logging.New("warn", "console", cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			res, err := storage.MigrateLog(ctx, dataDir, storage.LogStore(to), log)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if res.Unchanged {
				_, err = fmt.Fprintf(w, "%s already keeps its Raft log in %s; nothing to do.\n", dataDir, res.To)
				return err
			}
			if res.Entries == 0 {
				_, err = fmt.Fprintf(w, "Moved the Raft log of %s from %s to %s (it was empty: everything is in the snapshot).\n", dataDir, res.From, res.To)
				return err
			}
			_, err = fmt.Fprintf(w, "Moved the Raft log of %s from %s to %s: %d entries, %d to %d.\n", dataDir, res.From, res.To, res.Entries, res.First, res.Last)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped node's data dir (required)")
	cmd.Flags().Var(&to, "to", "log store to move to: wal or boltdb (required)")
	return cmd
}
