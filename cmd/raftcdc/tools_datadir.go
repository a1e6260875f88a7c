package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/backup"
	"github.com/raftcdc/raftcdc/logging"
	"github.com/raftcdc/raftcdc/offline"
	"github.com/raftcdc/raftcdc/storage"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// dataDirTools are the offline tools that work on a stopped node's data
// dir: each takes the data dir's lock first, so none of them can run
// beside a node.
func dataDirTools() []*cobra.Command {
	return []*cobra.Command{newMigrateLogCmd(), newRestoreCmd(), newRecoverCmd()}
}

// lockDataDir takes a data dir's lock, so that no node runs on it while an
// offline tool does, and makes the tool's logger.
func lockDataDir(cmd *cobra.Command, dir string) (unlock func(), log zerolog.Logger, err error) {
	lock, err := storage.Lock(dir)
	if err != nil {
		return nil, log, fmt.Errorf("%w; stop the node first", err)
	}
	if log, err = logging.New("warn", "console", cmd.ErrOrStderr()); err != nil {
		lock.Unlock()
		return nil, log, err
	}
	return func() { lock.Unlock() }, log, nil
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

type leaderSyncFlag storage.LeaderSync

func (f *leaderSyncFlag) String() string {
	if *f == "" {
		return string(storage.DefaultLeaderSync)
	}
	return string(*f)
}
func (f *leaderSyncFlag) Type() string { return "parallel|serial" }
func (f *leaderSyncFlag) Set(v string) error {
	k, err := storage.ParseLeaderSync(v)
	if err != nil {
		return err
	}
	*f = leaderSyncFlag(k)
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
			unlock, log, err := lockDataDir(cmd, dataDir)
			if err != nil {
				return err
			}
			defer unlock()
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

func newRestoreCmd() *cobra.Command {
	var o offline.RestoreOptions
	var logStore logStoreFlag
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR --raft-addr HOST:PORT",
		Short: "Seed a new cluster's first node from a backup (ctl cluster snapshot save)",
		Long: `Seed the empty data dir of a new node from a backup that 'raftcdc ctl cluster
snapshot save' wrote. The whole file is checked first (its SHA-256 and
length). The node then starts as the only voter of a new cluster — start it
with the same --node-id, --raft-addr and the usual flags, without --join —
and further nodes join it with --join and empty data dirs.

The new cluster gets a new identity that names the backed-up one, so the two
never join one Raft group and keep separate upstream GC safepoints. It keeps
every changefeed's definition and checkpoint: running changefeeds continue
from their checkpoints (at least once, as after any failover). It does not
keep the old cluster's owner, captures, tasks or GC records. If the old
cluster may still be running its changefeeds, --paused restores them
stopped, to be resumed once it is gone.`,
		Example: `  raftcdc tools restore backup.jsonl --data-dir /var/lib/raftcdc --node-id n1 --raft-addr 10.0.0.1:7947
  raftcdc server --data-dir /var/lib/raftcdc --node-id n1 --raft-addr 10.0.0.1:7947 ...`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return usageError("%s takes exactly one backup file\nRun '%s --help' for usage.", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.File, o.LogStore = args[0], storage.LogStore(logStore)
			if o.DataDir == "" || o.RaftAddr == "" {
				return usageError("--data-dir and --raft-addr are required")
			}
			if o.NodeID != "" {
				if err := storage.ValidateNodeID(o.NodeID); err != nil {
					return usageError("--node-id: %v", err)
				}
			}
			// Check the file before the data dir is touched at all.
			f, err := os.Open(o.File)
			if err != nil {
				return usageError("the backup file: %v", err)
			}
			_, _, err = backup.Read(f, nil)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w; nothing was restored", o.File, err)
			}
			unlock, log, err := lockDataDir(cmd, o.DataDir)
			if err != nil {
				return err
			}
			defer unlock()
			o.Logger = log
			res, err := offline.Restore(o)
			if err != nil {
				return err
			}
			from := res.Header.ClusterID
			if from == "" {
				from = "(no cluster record)"
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Restored the backup of cluster %s at Raft index %d (taken %s) into %s.\n",
				from, res.Header.AppliedIndex, res.Header.Created.Format(time.RFC3339), o.DataDir)
			fmt.Fprintf(w, "New cluster %s: node %s, the only voter, at %s; %d keys kept (%d changefeeds), %d of the old cluster's runtime keys left out.\n",
				res.Cluster.ID, res.NodeID, o.RaftAddr, res.Kept, res.Changefeeds, res.Dropped)
			if len(res.Paused) > 0 {
				fmt.Fprintf(w, "Paused: %s (resume with 'raftcdc ctl changefeed resume').\n", strings.Join(res.Paused, ", "))
			}
			_, err = fmt.Fprintf(w, "Start the node with --node-id %s --raft-addr %s and no --join; start others with --join pointing at it.\n", res.NodeID, o.RaftAddr)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", "", "the new node's data dir; empty or new (required)")
	f.StringVar(&o.NodeID, "node-id", "", "the new node's ID (default: the data dir's, or a generated one)")
	f.StringVar(&o.RaftAddr, "raft-addr", "", "the Raft address the node will advertise (required)")
	f.Var(&logStore, "raft-log-store", "Raft log store of the new data dir: wal or boltdb (default "+string(storage.DefaultLogStore)+")")
	f.BoolVar(&o.Paused, "paused", false, "restore running changefeeds as stopped (for when the old cluster may still run them)")
	return cmd
}

func newRecoverCmd() *cobra.Command {
	var dataDir, peers string
	cmd := &cobra.Command{
		Use:   "recover --data-dir DIR --peers ID=HOST:PORT[,...]",
		Short: "Rewrite a stopped node's Raft configuration after a quorum loss",
		Long: `Rewrite the Raft configuration of a stopped node to exactly --peers, for a
cluster that lost its quorum for good (Consul's peers.json). Every log entry
the node has is applied to its state, which is written as a snapshot
carrying the new configuration.

Run it on every node named in --peers, each stopped, with the same --peers;
then start them (without --join to the lost nodes). A node recovered alone
leads a one-node cluster at once; new nodes join it with --join and empty
data dirs, and the owner moves the lost captures' tables to the nodes that
are alive.

Use it only when the lost nodes are gone for good: entries the node had but
that were never committed are applied too, and lost nodes that come back
with their old data must not rejoin.`,
		Example: `  raftcdc tools recover --data-dir /var/lib/raftcdc --peers n1=10.0.0.1:7947`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return usageError("--data-dir is required")
			}
			ps, err := offline.ParsePeers(peers)
			if err != nil {
				return usageError("%v", err)
			}
			if st, err := os.Stat(dataDir); err != nil || !st.IsDir() {
				return usageError("--data-dir %s is not a directory", dataDir)
			}
			unlock, log, err := lockDataDir(cmd, dataDir)
			if err != nil {
				return err
			}
			defer unlock()
			res, err := offline.Recover(dataDir, ps, log)
			if err != nil {
				return err
			}
			name := func(p []offline.Peer) string {
				var s []string
				for _, x := range p {
					s = append(s, x.ID+"="+x.Addr)
				}
				return strings.Join(s, ",")
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Recovered node %s: the configuration was %s, it is now %s (snapshot at index %d, term %d).\nStart the node without --join to the lost nodes.\n",
				res.NodeID, name(res.Previous), name(res.Peers), res.Index, res.Term)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped node's data dir (required)")
	cmd.Flags().StringVar(&peers, "peers", "", "every voter of the new configuration, id=raft-host:port, comma-separated (required)")
	return cmd
}
