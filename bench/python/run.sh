#!/usr/bin/env bash
# Python benchmark (make bench-python): edgemodule vs azure-iot-device vs the Rust core, one run.
#   bash bench/python/run.sh
# Builds: release devhub, the Rust baseline (edgemodule-python example rust_route), the binding
# in release mode into bindings/python/.venv, and the release wheel (manylinux2014, via zig)
# whose size is reported. Runs in a private network namespace (azure-iot-device needs 8883).
# Env: BENCH_PY_N (20000), BENCH_PY_AZURE_N (2000), BENCH_PY_SINGLE_N (5000), BENCH_PY_RSS_N
# (100000), BENCH_RESULTS (bench/RESULTS.md), SKIP_WHEEL=1.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
VENV="${EDGEMODULE_PY_VENV:-$REPO/bindings/python/.venv}"
bash bindings/python/run-tests.sh --build-only   # venv + requirements
cargo build -q --release -p edgemodule-devhub
cargo build -q --release -p edgemodule-python --example rust_route
TARGET="$(cargo metadata --format-version 1 --no-deps | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
(cd bindings/python && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" maturin develop -q --release >/dev/null)
if [[ "${SKIP_WHEEL:-0}" != 1 ]]; then
  bash bindings/python/build-wheel.sh >/dev/null
fi
WHEEL="$(ls -t bindings/python/dist/edgemodule-*manylinux2014*.whl 2>/dev/null | head -1 || true)"
if [[ "$(id -u)" == 0 ]]; then ns=(unshare -n); else ns=(unshare -r -n); fi
export DEVHUB_LOG=warn DEVHUB_BIN="$TARGET/release/devhub" RUST_ROUTE="$TARGET/release/examples/rust_route" WHEEL
"${ns[@]}" bash -c 'ip link set lo up && exec "$0" "$1"' "$VENV/bin/python" "$REPO/bench/python/bench.py"
# Leave the fast debug build for the tests.
(cd bindings/python && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" maturin develop -q >/dev/null)
