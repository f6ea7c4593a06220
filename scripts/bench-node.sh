#!/usr/bin/env bash
# Node benchmarks recorded in docs/benchmarks.md: reads with wrk (32
# connections) against timestamp.json, targets.json and a checksum-named
# snapshot on one dev node, then concurrent publishes over 100 GUNs.
# Usage: scripts/bench-node.sh [seconds-per-read-run] [publish-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seal-target}
secs=${1:-20}
pub_secs=${2:-20}
scripts/install-deps.sh
cargo build --release --locked --bin seal-node --bin seal-bench
bin="$CARGO_TARGET_DIR/release"
data=$(mktemp -d)
addr=127.0.0.1:${SEAL_BENCH_PORT:-4481}
SEAL_LOG=warn "$bin/seal-node" dev --addr "$addr" --data-dir "$data" >/dev/null &
node=$!
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break; sleep 0.2; done
mapfile -t paths < <("$bin/seal-bench" seed "$addr")
for p in "${paths[@]}"; do
  echo "== GET $p"
  wrk -t2 -c32 -d"${secs}s" --latency "http://$addr$p" | grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx"
done
echo "== publish: 100 GUNs, 8 client threads, ${pub_secs}s"
"$bin/seal-bench" publish "$addr" --guns 100 --publishers 8 --seconds "$pub_secs"
