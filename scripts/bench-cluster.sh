#!/usr/bin/env bash
# Cluster benchmarks recorded in docs/benchmarks.md, on `seal-node local-cluster` (three voters
# and a learner on loopback, one seal-signer, default Raft timing, fsync on): failover time
# (`clusterbench failover`), reads of timestamp.json on a follower and on the learner (wrk),
# publishes over 100 GUNs through the leader and through a follower (`seal-bench publish`), and
# publishes through the leader once the learner is removed (the three voters alone).
# Usage: scripts/bench-cluster.sh [failover-runs] [publish-seconds] [read-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seal-target}
runs=${1:-10}
pub_secs=${2:-15}
read_secs=${3:-15}
scripts/install-deps.sh
cargo build --release --locked --bin seal-node --bin seal-signer --bin seal-bench --example clusterbench
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

mapfile -t paths < <("$bin/seal-bench" seed "$(at "$leader")")
sleep 1
for node in "$follower" 4; do
  echo "== GET ${paths[0]} on node $node"
  wrk -t2 -c32 -d"${read_secs}s" --latency "http://$(at "$node")${paths[0]}" |
    grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx"
done

echo "== publish through the leader: 100 GUNs, 8 client threads, ${pub_secs}s"
"$bin/seal-bench" publish "$(at "$leader")" --guns 100 --publishers 8 --seconds "$pub_secs"
echo "== publish through a follower: 100 GUNs, 8 client threads, ${pub_secs}s"
"$bin/seal-bench" publish "$(at "$follower")" --guns 100 --publishers 8 --seconds "$pub_secs"

# The publish target is for a three-node cluster: take the learner out of the membership (its
# process stays up, idle) and measure the three voters alone.
# shellcheck disable=SC2086
"$bin/seal-node" ${status/cluster status/cluster remove --id 4}
# shellcheck disable=SC2086
leader=$("$bin/seal-node" $status | sed -n 's/^leader: node //p')
echo "== three voters, no learner: publish through the leader: 100 GUNs, 8 client threads, ${pub_secs}s"
# Also the CPU each process spends per publish, from /proc/<pid>/stat over the middle of the
# timed window (from 1 s after seal-bench starts its clock to 1 s before it stops).
"$bin/seal-bench" publish "$(at "$leader")" --guns 100 --publishers 8 --seconds "$pub_secs" >"$dir/publish.out" 2>"$dir/publish.err" &
bench=$!
declare -A pids=([bench]=$bench [signer]=$(pgrep -f "$dir/cluster/signer/signer.json"))
for i in 1 2 3; do pids[node$i]=$(pgrep -f "$dir/cluster/node$i/config.json"); done
ticks() { for name in "${!pids[@]}"; do echo "$name $(awk '{print $14 + $15}' "/proc/${pids[$name]}/stat")"; done; }
until grep -q '^signed' "$dir/publish.err"; do
  kill -0 $bench 2>/dev/null || { cat "$dir/publish.err"; exit 1; }
  sleep 0.1
done
sleep 1
ticks >"$dir/ticks.0"
start=$(date +%s.%N)
sleep $((pub_secs - 2))
ticks >"$dir/ticks.1"
end=$(date +%s.%N)
wait $bench
cat "$dir/publish.err" "$dir/publish.out"
rate=$(sed -E 's/^publish +([0-9.]+)\/s.*/\1/' "$dir/publish.out")
hz=$(getconf CLK_TCK)
join <(sort "$dir/ticks.0") <(sort "$dir/ticks.1") | awk -v s="$start" -v e="$end" -v r="$rate" -v hz="$hz" '
  { cpu = ($3 - $2) / hz / (e - s); total += cpu
    printf "%-8s %5.1f%% of a core, %.3f ms of CPU per publish\n", $1, cpu * 100, cpu / r * 1000 }
  END { printf "%-8s %5.1f%% of a core, %.3f ms of CPU per publish (at %.0f/s)\n", "all", total * 100, total / r * 1000, r }'
