#!/usr/bin/env bash
# Many collections on one node (docs/benchmarks.md, "A million collections"): a release dev node
# (in-process signer, fsync on) on disk, grown through collection counts by `seal-bench scale
# seed` (first publishes through the HTTP API, 8 client threads). At each count it records:
#   seed/s      first publishes per second while growing to this count
#   disk        bytes of the data directory (du)
#   rss         the node's resident memory (VmRSS)
#   storage MB  of it, what the storage holds (seal_storage_memory_bytes): memtables, index and
#               filter blocks of open files, block caches, the current-file cache
#   warm        GET timestamp.json of 1,000 collections spread over the range, after a pass
#               over them (the node's file cache holds them): p50 / p99
#   restart     SIGTERM, start again, until the newest collection's timestamp is served
#   first       right after that restart (and with the kernel's page cache dropped, when this
#               runs as root): the first GET timestamp.json of 2,000 distinct random collections,
#               one at a time on one connection: p50 / p99 of reads no earlier one warmed
#   cold        then GET timestamp.json of random collections among all from 32 connections
#               for SEAL_SCALE_READ_SECS: p50 / p99 (at small counts the whole database is in
#               memory within the first second, so this is mostly warm there)
#   snapshot    the node's last state-machine snapshot build before the restart (from its log):
#               a RocksDB checkpoint's files, bytes, milliseconds, and the milliseconds of it
#               during which the state machine's writers waited
#   refresh/s   timestamps the refresher must re-sign per second at this count, with Notary's
#               14-day timestamp lifetime (count / 14 days)
# Usage: scripts/bench-scale.sh [count ...]   (default: 10000 100000)
#   SEAL_SCALE_DIR: where the data directory goes (default /var/tmp); SEAL_SCALE_READ_SECS (10)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seal-target}
if [ $# -eq 0 ]; then set -- 10000 100000; fi
scripts/install-deps.sh
cargo build --release --locked --bin seal-node --bin seal-bench
bin="$CARGO_TARGET_DIR/release"
dir=$(mktemp -d "${SEAL_SCALE_DIR:-/var/tmp}/seal-scale.XXXXXX")
addr=127.0.0.1:${SEAL_BENCH_PORT:-4590}
read_secs=${SEAL_SCALE_READ_SECS:-10}
prefix=scale.example.com/$$
node=
start_node() {
  SEAL_LOG=info "$bin/seal-node" dev --addr "$addr" --data-dir "$dir/data" >>"$dir/node.log" 2>&1 &
  node=$!
}
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null; rm -rf "$dir"' EXIT
result() { sed -n 's/^RESULT //p' | tail -1; }
storage_memory() {
  python3 - "$addr" <<'PY'
import sys, urllib.request
parts = {}
for line in urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read().decode().splitlines():
    if line.startswith("seal_storage_memory_bytes{part="):
        name, value = line.split()
        parts[name.split('"')[1]] = float(value) / 1e6
print("/".join(f"{parts.get(p, 0):.0f}" for p in ["memtables", "table_readers", "block_cache", "current_files"]))
PY
}
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d[sys.argv[2]])' "$1" "$2"; }

start_node
for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break; sleep 0.2; done
printf '%-9s %8s %10s %9s %16s %20s %9s %20s %20s %30s %10s\n' count seed/s disk rss "storage MB" "warm p50/p99 ms" restart "first p50/p99 ms" "cold p50/p99 ms" "snapshot (files, bytes, ms, held ms)" refresh/s
seeded=0
for n in "$@"; do
  seed=$("$bin/seal-bench" scale seed "$addr" --prefix "$prefix" --from "$seeded" --to "$n" | result)
  seeded=$n
  disk=$(du -sb "$dir/data" | cut -f1)
  rss=$(awk '/VmRSS/ {print $2 * 1024}' "/proc/$node/status")
  mem=$(storage_memory)
  "$bin/seal-bench" scale read "$addr" --prefix "$prefix" --count "$n" --hot 1000 --seconds 2 >/dev/null
  warm=$("$bin/seal-bench" scale read "$addr" --prefix "$prefix" --count "$n" --hot 1000 --seconds "$read_secs" | result)
  snap=$(grep 'built a state-machine snapshot' "$dir/node.log" | tail -1 |
    sed -E 's/.*[ "]files[=":]+([0-9]+).*[ "]bytes[=":]+([0-9]+).*[ "]millis[=":]+([0-9]+).*writers_waited_millis[=":]+([0-9]+).*/\1 \2 \3 \4/' || true)
  kill -TERM "$node"; wait "$node" 2>/dev/null || true
  if [ -w /proc/sys/vm/drop_caches ]; then sync; echo 3 >/proc/sys/vm/drop_caches || true; fi
  start_node
  ready=$("$bin/seal-bench" scale ready "$addr" --prefix "$prefix" --index $((n - 1)) | result)
  first=$("$bin/seal-bench" scale first "$addr" --prefix "$prefix" --count "$n" --seed "$n" | result)
  cold=$("$bin/seal-bench" scale read "$addr" --prefix "$prefix" --count "$n" --seconds "$read_secs" | result)
  printf '%-9s %8.0f %10s %9s %16s %20s %8.2fs %20s %20s %30s %10.3f\n' "$n" "$(field "$seed" rate)" "$disk" "$rss" "$mem" \
    "$(field "$warm" p50_ms)/$(field "$warm" p99_ms)" "$(field "$ready" seconds)" \
    "$(field "$first" p50_ms)/$(field "$first" p99_ms)" "$(field "$cold" p50_ms)/$(field "$cold" p99_ms)" "${snap:-none}" "$(awk -v n="$n" 'BEGIN { print n / (14 * 86400) }')"
done
