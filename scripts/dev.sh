#!/usr/bin/env bash
# Starts Seal for development: one node, embedded RocksDB in ./seal-data,
# plain HTTP on 127.0.0.1:4443, in-process signer. Builds first and installs
# the Debian packages the build needs when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seal-target}
scripts/install-deps.sh
cargo build --release --locked -p seal-node
exec "$CARGO_TARGET_DIR/release/seal-node" dev "$@"
