package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftcdc/raftcdc/logging"
	"github.com/raftcdc/raftcdc/server"
	"github.com/raftcdc/raftcdc/storage"
	"github.com/spf13/cobra"
)

func newServerCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var (
		join              string
		gossipKey         string
		logLevel          string
		logFormat         string
		clusterSecretFile string
		shutdownTimeout   time.Duration
		cdc               cdcOptions
		verifyIncoming    bool
		enablePprof       bool
		memoryLimit       string
		sinkRoots         []string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a raftcdc node",
		Long: `Run a raftcdc node. With no flags it is a single-node cluster on loopback
with its data in ./raftcdc-data. To form a three-node cluster, start each node
with --bootstrap-expect 3 and --join pointing at any other node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(logLevel, logFormat, os.Stderr)
			if err != nil {
				return usageError("%v", err)
			}
			if join != "" {
				for _, j := range strings.Split(join, ",") {
					if j = strings.TrimSpace(j); j != "" {
						cfg.Join = append(cfg.Join, j)
					}
				}
			}
			if gossipKey != "" {
				key, err := base64.StdEncoding.DecodeString(gossipKey)
				if err != nil {
					return usageError("--gossip-key is not base64: %v", err)
				}
				cfg.GossipKey = key
			}
			if clusterSecretFile != "" {
				b, err := os.ReadFile(clusterSecretFile)
				if err != nil {
					return usageError("reading --cluster-secret-file: %v", err)
				}
				cfg.ClusterSecret = strings.TrimSpace(string(b))
			} else if s := os.Getenv("RAFTCDC_CLUSTER_SECRET"); s != "" {
				cfg.ClusterSecret = s
			}
			if cfg.APIToken == "" {
				cfg.APIToken = os.Getenv("RAFTCDC_API_TOKEN")
			}
			fl := cmd.Flags()
			if fl.Changed("tls-verify-incoming") && verifyIncoming && cfg.TLSCAFile == "" {
				return usageError("--tls-verify-incoming needs --tls-ca: peers' certificates are checked against it")
			}
			cfg.TLSNoVerifyIncoming = !verifyIncoming
			cfg.DisablePprof = !enablePprof
			if memoryLimit != "" {
				n, err := parseBytes(memoryLimit)
				if err != nil || n < 64<<20 {
					return usageError("--memory-limit %q: give a size of at least 64MiB, such as 2GiB or 512MiB", memoryLimit)
				}
				// The Go runtime collects harder as the heap nears the limit,
				// so the garbage of a busy pipeline does not double the
				// process's memory (GOMEMLIMIT, which it overrides).
				debug.SetMemoryLimit(n)
			}
			for _, r := range sinkRoots {
				abs, err := filepath.Abs(r)
				if err != nil {
					return usageError("--sink-root %q: %v", r, err)
				}
				cfg.SinkRoots = append(cfg.SinkRoots, abs)
			}
			cfg.Version = version
			node, err := server.New(cfg, log)
			if err != nil {
				return usageError("%v", err)
			}
			if err := cdc.enable(node); err != nil {
				return usageError("%v", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// SIGHUP re-reads the TLS files, so that certificates can be
			// rotated without a restart. Registered before Start so that an
			// early SIGHUP does not kill the process.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			if err := node.Start(ctx); err != nil {
				return err
			}
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						if cfg.TLSCertFile == "" {
							log.Warn().Msg("SIGHUP: no TLS files configured, nothing to reload")
							continue
						}
						_ = node.ReloadTLS() // logs its outcome
					}
				}
			}()
			<-ctx.Done()
			stop()
			if cdc.drainTimeout > 0 {
				// A second signal stops the drain and shuts down at once.
				dctx, dcancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
				dctx, dtimeout := context.WithTimeout(dctx, cdc.drainTimeout)
				if err := node.Drain(dctx); err != nil {
					log.Warn().Err(err).Msg("drain not finished; shutting down anyway")
				}
				dtimeout()
				dcancel()
			}
			log.Info().Msg("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- node.Shutdown(sctx) }()
			select {
			case err := <-done:
				if err != nil {
					return fmt.Errorf("shutting down: %w", err)
				}
			case <-sctx.Done():
				// Something did not stop: say what, with every goroutine's
				// stack, rather than hang until someone kills the process.
				log.Error().Dur("shutdown_timeout", shutdownTimeout).Msg("clean shutdown did not finish in time; dumping goroutines and exiting")
				_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
				return fmt.Errorf("shutting down: not finished after %v (goroutines dumped to the log)", shutdownTimeout)
			}
			log.Info().Msg("stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NodeID, "node-id", "", "stable node ID (default: generated once and kept in the data dir)")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for Raft log, snapshots and state")
	f.StringVar(&cfg.GossipAddr, "gossip-addr", cfg.GossipAddr, "address for gossip (UDP and TCP)")
	f.StringVar(&cfg.AdvertiseGossipAddr, "advertise-gossip-addr", "", "gossip address other nodes use (default: --gossip-addr)")
	f.StringVar(&cfg.RaftAddr, "raft-addr", cfg.RaftAddr, "address for Raft traffic")
	f.StringVar(&cfg.AdvertiseRaftAddr, "advertise-raft-addr", "", "Raft address other nodes use (default: --raft-addr)")
	f.StringVar(&cfg.APIAddr, "api-addr", cfg.APIAddr, "address for the HTTP API and /metrics")
	f.StringVar(&cfg.AdvertiseAPIAddr, "advertise-api-addr", "", "API address other nodes and ctl use (default: --api-addr)")
	f.StringVar(&join, "join", "", "gossip addresses of existing nodes, host:port[,host:port]")
	f.DurationVar(&cfg.JoinTimeout, "join-timeout", cfg.JoinTimeout, "give up joining after this long")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", cfg.BootstrapExpect, "number of nodes that form a new cluster (1 = single node)")
	f.StringVar(&gossipKey, "gossip-key", "", "base64 AES key (16, 24 or 32 bytes); encrypts gossip when set")
	f.StringVar(&clusterSecretFile, "cluster-secret-file", "", "file holding the secret nodes use to authenticate forwarded requests (or RAFTCDC_CLUSTER_SECRET)")
	f.StringVar(&cfg.APIToken, "api-token", "", "bearer token required on every API write (or RAFTCDC_API_TOKEN)")
	f.BoolVar(&cfg.APITokenProtectReads, "api-token-protect-reads", false, "require the API token on reads too")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", "", "this node's certificate (PEM): the API is served over HTTPS with it and Raft, forwarding and the internal endpoints run over TLS with it; re-read on SIGHUP")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", "", "the certificate's private key (PEM); re-read on SIGHUP")
	f.StringVar(&cfg.TLSCAFile, "tls-ca", "", "the cluster's CA (PEM): peers must present certificates it signed (system roots and host names if empty); re-read on SIGHUP")
	f.BoolVar(&verifyIncoming, "tls-verify-incoming", true, "mutual TLS: Raft peers must present a certificate from --tls-ca, which also serves as their credential on the internal endpoints (needs --tls-ca)")
	f.DurationVar(&cfg.RaftHandshakeTimeout, "raft-handshake-timeout", cfg.RaftHandshakeTimeout, "a new Raft connection must complete its TLS handshake, and keep sending its first request, within this")
	f.IntVar(&cfg.RaftMaxConnsPerPeer, "raft-max-conns-per-peer", cfg.RaftMaxConnsPerPeer, "most concurrent inbound Raft connections from one address")
	f.BoolVar(&enablePprof, "enable-pprof", true, "serve Go profiles under /debug/pprof/ (they need the API token when one is set)")
	f.StringVar(&memoryLimit, "memory-limit", "", "soft limit of the process's memory (e.g. 2GiB): the Go runtime collects garbage harder near it; size it above the changefeeds' memory-quota sum")
	f.StringArrayVar(&sinkRoots, "sink-root", nil, "directory file:// sinks may write below (repeatable; default <data-dir>/sinks)")
	f.StringVar(&logLevel, "log-level", "info", "trace, debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "json", "json or console")
	f.DurationVar(&cfg.HeartbeatTimeout, "raft-heartbeat-timeout", cfg.HeartbeatTimeout, "Raft heartbeat timeout")
	f.DurationVar(&cfg.ElectionTimeout, "raft-election-timeout", cfg.ElectionTimeout, "Raft election timeout")
	f.DurationVar(&cfg.LeaderLeaseTimeout, "raft-leader-lease-timeout", cfg.LeaderLeaseTimeout, "how long a leader keeps leading without hearing from a quorum")
	f.DurationVar(&cfg.CommitTimeout, "raft-commit-timeout", cfg.CommitTimeout, "Raft commit timeout")
	f.Uint64Var(&cfg.SnapshotThreshold, "raft-snapshot-threshold", cfg.SnapshotThreshold, "log entries between snapshots")
	f.DurationVar(&cfg.SnapshotInterval, "raft-snapshot-interval", cfg.SnapshotInterval, "how often to check whether to snapshot")
	f.Var((*leaderSyncFlag)(&cfg.RaftLeaderSync), "raft-leader-sync", "when the Raft leader fsyncs its own new log entries (wal store): parallel (while they replicate; a command is answered once the leader's fsync is done too) or serial (before they replicate)")
	f.Var((*logStoreFlag)(&cfg.RaftLogStore), "raft-log-store", "Raft log store of a new data dir: wal or boltdb (default "+string(storage.DefaultLogStore)+"); an existing data dir keeps its own ('raftcdc tools migrate-log' changes it)")
	f.DurationVar(&cfg.ProbeInterval, "gossip-probe-interval", cfg.ProbeInterval, "gossip failure-detection probe interval")
	f.DurationVar(&cfg.ProbeTimeout, "gossip-probe-timeout", cfg.ProbeTimeout, "gossip probe timeout")
	f.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", cfg.ReconcileInterval, "leader's full membership reconcile period")
	f.DurationVar(&cfg.DeadServerTimeout, "dead-server-timeout", 0, "remove voters dead this long (0 = never; removal is an operator decision)")
	f.DurationVar(&shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a clean shutdown may take")
	cdc.addFlags(f)
	return cmd
}

// parseBytes reads a size: a number of bytes with an optional KiB, MiB, GiB
// (or KB, MB, GB, meaning the same binary units) suffix.
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	up := strings.ToUpper(strings.TrimSpace(s))
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(up, u.suffix) {
			up, mult = strings.TrimSpace(strings.TrimSuffix(up, u.suffix)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(up, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}
