#!/usr/bin/env bash
# Cluster benchmarks recorded in docs/benchmarks.md, on `seal-node local-cluster` (three voters
# and a learner on loopback, one seal-signer, default Raft timing, fsync on): failover time
# (`clusterbench failover`), publishes over 100 GUNs through the leader and through a follower
# (`loadgen publish`), and reads of timestamp.json on a follower and on the learner (wrk).
# Usage: scripts/bench-cluster.sh [failover-runs] [publish-seconds] [read-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seal-target}
runs=${1:-10}
pub_secs=${2:-15}
read_secs=${3:-15}
scripts/install-deps.sh
cargo build --release --locked --bin seal-node --bin seal-signer --example clusterbench --example loadgen
bin="$CARGO_TARGET_DIR/release"

echo "== failover: $runs runs"
"$bin/examples/clusterbench" failover "$runs"

dir=$(mktemp -d)
base=${SEAL_BENCH_PORT:-17100}
SEAL_LOG=warn "$bin/seal-node" local-cluster --dir "$dir/cluster" --base-port "$base" >"$dir/out" &
cluster=$!
trap 'kill $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do
  grep -q '^ready' "$dir/out" && break
  kill -0 $cluster 2>/dev/null || { cat "$dir/out"; exit 1; }
  sleep 0.2
done
status=$(sed -n 's/^cluster status: seal-node //p' "$dir/out")
# shellcheck disable=SC2086
leader=$("$bin/seal-node" $status | sed -n 's/^leader: node //p')
follower=$(( leader % 3 + 1 ))
at() { echo "127.0.0.1:$(( base + $1 ))"; }
echo "leader: node $leader, follower: node $follower, learner: node 4"

echo "== publish through the leader: 100 GUNs, 8 client threads, ${pub_secs}s"
"$bin/examples/loadgen" publish "$(at "$leader")" 100 8 "$pub_secs"
echo "== publish through a follower: 100 GUNs, 8 client threads, ${pub_secs}s"
"$bin/examples/loadgen" publish "$(at "$follower")" 100 8 "$pub_secs"

mapfile -t paths < <("$bin/examples/loadgen" seed "$(at "$leader")" bench.example.com/read/app)
sleep 1
for node in "$follower" 4; do
  echo "== GET ${paths[0]} on node $node"
  wrk -t2 -c32 -d"${read_secs}s" --latency "http://$(at "$node")${paths[0]}" |
    grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx"
done
