#!/usr/bin/env bash
# New collections per second on one dev node (in-process signer, software
# keys), recorded in docs/benchmarks.md ("New collections"): for each
# seal-node binary given, a fresh `seal-node dev`, then `seal-bench new` creates
# collections (timestamp.key, then the first publish of a new GUN) from
# `threads` connections for `secs` seconds. Give two binaries (before and
# after a change) to run them side by side on the same machine.
# Usage: scripts/bench-new-collections.sh [secs] [threads] SEAL_NODE...
#   (seal-bench from $CARGO_TARGET_DIR/<profile>/seal-bench; build it with
#    `cargo build --workspace --bins`)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
threads=${2:-8}
shift 2
bench=${SEAL_BENCH:-${CARGO_TARGET_DIR:-target}/debug/seal-bench}
port=${SEAL_BENCH_PORT:-4481}
for bin in "$@"; do
  data=$(mktemp -d)
  addr=127.0.0.1:$port
  SEAL_LOG=warn "$bin" dev --addr "$addr" --data-dir "$data" >/dev/null 2>&1 &
  node=$!
  for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break; sleep 0.2; done
  echo "== $bin"
  "$bench" new "$addr" --threads "$threads" --seconds "$secs" --count "${SEAL_BENCH_MAX:-5000}" || true
  kill "$node"; wait "$node" 2>/dev/null || true
  rm -rf "$data"
  port=$((port + 1))
done
