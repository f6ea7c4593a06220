#!/usr/bin/env bash
# The side-by-side comparisons of docs/benchmarks.md ("Against Notary and nginx"), all in one
# run on this machine with one load generator (seal-bench), alternating the two servers of each
# comparison over several rounds:
#   * reads (keep-alive GETs of timestamp.json, targets.json, the checksum-named snapshot) from
#     a `seal-node dev` against nginx serving the same bytes from disk, and against Notary;
#   * later publishes and first publishes of new collections on a single durable dev node, and
#     later publishes on a three-voter local cluster (fsync on), against Notary.
# Notary is the real notary-server given by NOTARY_SERVER_BIN, run with its memory storage and
# local signing (no durability). Without it, the Notary rows are skipped and said so.
# Usage: [NOTARY_SERVER_BIN=…/notary-server] scripts/bench-compare.sh [seconds-per-run] [rounds]
#   [read-rounds]: rounds of the read comparisons (default: rounds). nginx's rate on this machine
#   varies by up to 1.5x from one 5-second run to the next, so the read ratios want more rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seal-target}
secs=${1:-5}
rounds=${2:-3}
read_rounds=${3:-$rounds}
scripts/install-deps.sh
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq nginx-light
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --locked --bin seal-node --bin seal-signer --bin seal-bench
bin="$CARGO_TARGET_DIR/release"
bench="$bin/seal-bench"
work=$(mktemp -d)
# nginx's workers run as an unprivileged user when started by root: they must read the files.
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
base=${SEAL_BENCH_PORT:-17300}
dev=127.0.0.1:$base
static=127.0.0.1:$((base + 1))
notary=127.0.0.1:$((base + 2))
wait_port() {
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1" >&2
  return 1
}
echo "date: $(date -u +%F), $(nproc) CPUs, seconds per run: $secs, rounds: $rounds (reads: $read_rounds)"
compare() {
  echo "== $*"
  local r=$rounds
  if [ "$1" = read ]; then r=$read_rounds; fi
  "$bench" compare "$@" --rounds "$r" --seconds "$secs" 2>"$work/compare.err" | tee -a "$work/results" ||
    { cat "$work/compare.err"; exit 1; }
}

SEAL_LOG=warn "$bin/seal-node" dev --addr "$dev" --data-dir "$work/dev" >"$work/dev.log" 2>&1 &
pids+=($!)
wait_port "$dev"

# nginx serves the bytes the dev node serves, from disk, at the same paths.
"$bench" seed "$dev" --out "$work/static" >/dev/null
cat >"$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/json;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp;
  fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp;
  scgi_temp_path $work/nginx-tmp;
  # reuseport: the kernel spreads the load generator's connections over the workers; without it
  # a worker could take most of them, and nginx's rate varied by 1.5x from run to run.
  server { listen $static reuseport; root $work/static; }
}
CONF
"$nginx_bin" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$static"

if [ -n "${NOTARY_SERVER_BIN:-}" ]; then
  cat >"$work/notary.json" <<CONF
{"server": {"http_addr": "$notary"}, "trust_service": {"type": "local"},
 "logging": {"level": "error"}, "storage": {"backend": "memory"}}
CONF
  "$NOTARY_SERVER_BIN" -config "$work/notary.json" >"$work/notary.log" 2>&1 &
  pids+=($!)
  wait_port "$notary"
else
  echo "NOTARY_SERVER_BIN is not set: the comparisons with Notary are skipped"
fi

compare read seal-dev="$dev" nginx="$static"
[ -n "${NOTARY_SERVER_BIN:-}" ] && compare read seal-dev="$dev" notary="$notary"
[ -n "${NOTARY_SERVER_BIN:-}" ] && compare publish seal-dev="$dev" notary="$notary"
# One publisher: notary-server v0.7.0's local trust service dies under concurrent key creation
# ("fatal error: concurrent map read and map write", tuf/signed/ed25519.go:107).
[ -n "${NOTARY_SERVER_BIN:-}" ] && compare new seal-dev="$dev" notary="$notary" --publishers 1

# Three voters (no learner), fsync on, one seal-signer, mutual TLS between them.
SEAL_LOG=warn "$bin/seal-node" local-cluster --dir "$work/cluster" --base-port $((base + 10)) >"$work/cluster.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  grep -q '^ready' "$work/cluster.out" && break
  sleep 0.2
done
grep -q '^ready' "$work/cluster.out" || { cat "$work/cluster.out"; exit 1; }
status=$(sed -n 's/^cluster status: seal-node //p' "$work/cluster.out")
# shellcheck disable=SC2086
"$bin/seal-node" ${status/cluster status/cluster remove --id 4} >/dev/null
# shellcheck disable=SC2086
leader=$("$bin/seal-node" $status | sed -n 's/^leader: node //p')
cluster=127.0.0.1:$((base + 10 + leader))
if [ -n "${NOTARY_SERVER_BIN:-}" ]; then
  compare publish seal-3-voters="$cluster" notary="$notary"
else
  compare publish seal-3-voters="$cluster" seal-dev="$dev"
fi
echo "== summary"
grep -v '^RESULT' "$work/results" | grep -v '^round' || true
