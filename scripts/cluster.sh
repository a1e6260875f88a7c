#!/usr/bin/env bash
# Runs a three-node raftcdc cluster on loopback in the foreground.
# Ctrl-C stops every node (cleanly, with SIGTERM) and removes nothing else:
# the data in .cluster/ stays, so running this again restarts the same cluster.
set -euo pipefail
bin=${1:-bin/raftcdc}
dir=${CLUSTER_DIR:-.cluster}
mkdir -p "$dir/sinks"
sinks=$(cd "$dir/sinks" && pwd)
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping ${#pids[@]} nodes..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped; data kept in $dir/"
}
trap stop INT TERM EXIT
for i in 1 2 3; do
  next=$(( i % 3 + 1 ))
  "$bin" server --node-id "node$i" --data-dir "$dir/node$i" \
    --gossip-addr "127.0.0.1:79${i}6" --raft-addr "127.0.0.1:79${i}7" --api-addr "127.0.0.1:83${i}0" \
    --join "127.0.0.1:79${next}6" --bootstrap-expect 3 --log-format json --sink-root "$sinks" ${RAFTCDC_SERVER_ARGS:-} \
    >>"$dir/node$i.log" 2>&1 &
  pids+=($!)
done
echo "three nodes starting; APIs on 127.0.0.1:8310, :8320, :8330; logs in $dir/node*.log; file sinks below $sinks"
for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:8310/readyz >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS http://127.0.0.1:8310/api/v1/cluster/members || true
echo "Ctrl-C to stop."
wait "${pids[@]}"
