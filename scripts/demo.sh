#!/usr/bin/env bash
# The main job: a local three-node raftcdc cluster replicating a datagen →
# file changefeed, with live progress. Ctrl-C stops everything cleanly.
# Data and the sink live in .demo/ (removed at the start of every run).
set -euo pipefail
bin=${1:-bin/raftcdc}
dir=${DEMO_DIR:-.demo}
rm -rf "$dir"
mkdir -p "$dir/sink"
sink="file://$(cd "$dir/sink" && pwd)"
# Ports: gossip, Raft and API of node 1, then of node 2 and 3. DEMO_PORTS
# overrides them (nine numbers), so a test can run the demo on free ports;
# DEMO_INTERVAL sets the live view's sampling interval (default 2s).
read -r -a ports <<<"${DEMO_PORTS:-7916 7917 8310 7926 7927 8320 7936 7937 8330}"
if [ "${#ports[@]}" -ne 9 ]; then echo "DEMO_PORTS needs nine port numbers" >&2; exit 2; fi
port() { echo "${ports[$(( ($1 - 1) * 3 + $2 ))]}"; } # port NODE KIND(0 gossip, 1 raft, 2 api)
servers=127.0.0.1:$(port 1 2),127.0.0.1:$(port 2 2),127.0.0.1:$(port 3 2)
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping the cluster..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped. Sink files: $dir/sink, logs: $dir/node*.log"
}
trap stop INT TERM EXIT
for i in 1 2 3; do
  next=$(( i % 3 + 1 ))
  "$bin" server --node-id "node$i" --data-dir "$dir/node$i" \
    --gossip-addr "127.0.0.1:$(port $i 0)" --raft-addr "127.0.0.1:$(port $i 1)" --api-addr "127.0.0.1:$(port $i 2)" \
    --join "127.0.0.1:$(port $next 0)" --bootstrap-expect 3 --sink-root "${sink#file://}" >>"$dir/node$i.log" 2>&1 &
  pids+=($!)
done
echo "starting three nodes (APIs on $servers)..."
for _ in $(seq 1 150); do
  # Ready once a node reports a leader.
  if "$bin" ctl --server "$servers" cluster status -o json 2>/dev/null | grep -Eq '"leader_id": *"[^"]+"'; then break; fi
  sleep 0.2
done
"$bin" ctl --server "$servers" cluster status
# datagen's typed history (every MySQL type, 3-row transactions over 2
# tables, a DDL every 30 s) into TiCDC's storage-sink layout as canal-json.
"$bin" ctl --server "$servers" changefeed create --changefeed-id demo \
  --source-uri 'datagen://?tables=12&rate=100&txn-rows=3&txn-tables=2&ddl-every=30s' \
  --sink-uri "$sink?protocol=canal-json&enable-tidb-extension=true&flush-interval=1s" --no-confirm
sleep 2
"$bin" ctl --server "$servers" capture list
echo
echo "live progress (Ctrl-C to stop the cluster):"
"$bin" ctl --server "$servers" changefeed statistics --changefeed-id demo --interval "${DEMO_INTERVAL:-2s}" &
pids+=($!)
wait "${pids[@]}"
