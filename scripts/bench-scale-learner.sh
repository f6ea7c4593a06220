#!/usr/bin/env bash
# A new learner catching up from empty as the collections grow (docs/benchmarks.md, "A million
# collections"): `seal-node local-cluster` (three voters, one seal-signer, fsync on), its learner
# taken out; then for each count, the collections are grown to it through the leader (`seal-bench
# scale seed`), and a learner with an empty data directory is added: the time until its matched
# index reaches the leader's last log index at the moment it was added, the size of its data
# directory and of the snapshot it was sent, and the bytes per second that makes; and from the
# learner's log, the snapshot's own part: its bytes, how long it took to arrive (first chunk to
# last) and to install.
# Usage: scripts/bench-scale-learner.sh [count ...]   (default: 10000 30000)
#   SEAL_LEARNER_BINS: directories holding the learner's seal-node, space-separated (default: this
#   build's); at each count a learner of each joins in turn, SEAL_LEARNER_ROUNDS times (default 1),
#   so that two builds of the receiving side are compared against the same cluster in one run.
#   SEAL_LEARNER_PERF: a directory; when set, `perf record -g` samples the learner and the leader
#   from add-learner until the learner has caught up (<count>-<n>-learner.data, -leader.data).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seal-target}
if [ $# -eq 0 ]; then set -- 10000 30000; fi
scripts/install-deps.sh
# SEAL_BENCH_BIN: a directory holding seal-node, seal-signer and seal-bench to run instead of
# this checkout's build (to compare two builds of the whole cluster, one run after the other).
if [ -z "${SEAL_BENCH_BIN:-}" ]; then
  cargo build --release --locked --bin seal-node --bin seal-signer --bin seal-bench
fi
bin=${SEAL_BENCH_BIN:-$CARGO_TARGET_DIR/release}
dir=$(mktemp -d "${SEAL_SCALE_DIR:-/var/tmp}/seal-learner.XXXXXX")
base=${SEAL_BENCH_PORT:-17300}
prefix=scale.example.com/$$
learner=
SEAL_LOG=warn "$bin/seal-node" local-cluster --dir "$dir/cluster" --base-port "$base" >"$dir/out" &
cluster=$!
trap 'kill $learner $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do
  grep -q '^ready' "$dir/out" && break
  kill -0 $cluster 2>/dev/null || { cat "$dir/out"; exit 1; }
  sleep 0.2
done
status=$(sed -n 's/^cluster status: seal-node cluster status //p' "$dir/out")
admin() { local cmd=$1; shift; "$bin/seal-node" cluster "$cmd" $status "$@"; }
json() { admin status --json; }
get() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }
leader=$(json | get 'd["leader_id"]')
at() { echo "127.0.0.1:$(( base + $1 ))"; }
# The learner local-cluster made: out of the membership, its process stopped.
admin remove --id 4 >/dev/null
pkill -TERM -f "$dir/cluster/node4/config.json" || true
sleep 1
raft4=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["raft"]["addr"])' "$dir/cluster/node4/config.json")
printf '%-9s %10s %12s %14s %12s %12s %14s %-52s %s\n' count seed/s "last index" "catch-up (s)" "MB/s" "data bytes" "snapshot bytes" "snapshot: bytes, arrival ms, install ms, MB/s" learner
seeded=0
runs=0
catch_up() {
  local n=$1 learner_bin=$2
  rm -rf "$dir/cluster/node4/data"
  : >"$dir/cluster/node4/node.log"
  SEAL_LOG=info "$learner_bin/seal-node" serve --config "$dir/cluster/node4/config.json" >>"$dir/cluster/node4/node.log" 2>&1 &
  learner=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$(( base + 4 ))") 2>/dev/null && break; sleep 0.1; done
  target=$(json | get 'd["last_log_index"]')
  perfs=
  if [ -n "${SEAL_LEARNER_PERF:-}" ]; then
    runs=$((runs + 1))
    leader_pid=$(pgrep -f "$dir/cluster/node$leader/config.json" | head -1)
    for who in learner:$learner leader:$leader_pid; do
      perf record -q -F 499 -g -o "$SEAL_LEARNER_PERF/$n-$runs-${who%%:*}.data" -p "${who#*:}" 2>/dev/null &
      perfs="$perfs $!"
    done
    sleep 0.5
  fi
  start=$(date +%s.%N)
  admin add-learner --id 4 --raft-addr "$raft4" >/dev/null
  until [ "$(json | get '[m.get("matched_index") or 0 for m in d["members"] if m["id"] == 4][0]')" -ge "$target" ]; do
    kill -0 $learner 2>/dev/null || { tail -20 "$dir/cluster/node4/node.log"; exit 1; }
    sleep 0.05
  done
  end=$(date +%s.%N)
  for p in $perfs; do kill -INT "$p"; wait "$p" 2>/dev/null || true; done
  size=$(du -sb "$dir/cluster/node4/data" | cut -f1)
  snap=$(du -sb "$dir/cluster/node4/data/raft/snapshots" 2>/dev/null | cut -f1 || true)
  installed=$(grep 'installed a state-machine snapshot' "$dir/cluster/node4/node.log" | tail -1 |
    sed -nE 's/.*[ "]bytes[=":]+([0-9]+).*receiving_millis[=":]+([0-9]+).*install_millis[=":]+([0-9]+).*/\1 \2 \3/p' || true)
  if [ -n "$installed" ]; then
    installed="$installed $(echo "$installed" | awk '{ printf "%.0f", ($2 > 0 ? $1 / ($2 / 1000) / 1e6 : 0) }')"
  fi
  printf '%-9s %10.0f %12s %14.2f %12.1f %12s %14s %-52s %s\n' "$n" \
    "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["rate"])' "$seed")" "$target" \
    "$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')" \
    "$(awk -v s="$start" -v e="$end" -v b="$size" 'BEGIN { print b / (e - s) / 1e6 }')" "$size" "${snap:-none}" "${installed:-none}" \
    "$learner_bin"
  admin remove --id 4 >/dev/null
  kill -TERM $learner; wait $learner 2>/dev/null || true
  learner=
}
for n in "$@"; do
  seed=$("$bin/seal-bench" scale seed "$(at "$leader")" --prefix "$prefix" --from "$seeded" --to "$n" | sed -n 's/^RESULT //p')
  seeded=$n
  for _ in $(seq 1 "${SEAL_LEARNER_ROUNDS:-1}"); do
    for learner_bin in ${SEAL_LEARNER_BINS:-$bin}; do
      catch_up "$n" "$learner_bin"
    done
  done
done
