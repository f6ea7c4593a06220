#!/usr/bin/env bash
# The whole test suite: formatting, clippy with warnings denied, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seal-target}
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The chaos tests' seal-node with its test-only fault switches, built first and
# kept apart; the `cargo test` below then links target/debug/seal-node back to
# the build every other test runs, with the features that ship
# (docs/architecture.md, "Fault injection").
cargo build --locked -p seal-node --bin seal-node --features fault-injection
mkdir -p "$CARGO_TARGET_DIR/fault-injection"
cp -f "$CARGO_TARGET_DIR/debug/seal-node" "$CARGO_TARGET_DIR/fault-injection/seal-node"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo's own last line is the
# doc-test run of the last crate, which may have no tests).
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
