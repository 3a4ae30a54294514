#!/usr/bin/env bash
# Builds the Python binding into a venv and runs its pytest suite against the devhub binary.
#
#   bash bindings/python/run-tests.sh [pytest args...]
#
# Idempotent: the venv (bindings/python/.venv, gitignored) is created once and reinstalled
# only when requirements-dev.txt changes; `maturin develop` (debug, fast) rebuilds what changed.
#   bash bindings/python/run-tests.sh --build-only   (venv + devhub + maturin develop; no tests)
# Env: EDGEMODULE_PY_RELEASE=1 builds in release mode; DEVHUB_BIN overrides the devhub path.
# Tests that need the official SDK on ports 8883/443 run in a private network namespace
# (`unshare -n`, like tests/interop/run.sh); they are skipped where that is impossible.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${EDGEMODULE_PY_VENV:-$HERE/.venv}"
REQS="$HERE/requirements-dev.txt"
die() { echo "python-tests: $*" >&2; exit 2; }

bash "$REPO/scripts/venv.sh" "$VENV" "$REQS" python-tests || exit 2

cd "$REPO"
cargo build -q -p edgemodule-devhub -p edgemodule-samples || die "cargo build (devhub, samples) failed"
target_dir="$(cargo metadata --format-version 1 --no-deps \
  | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')" \
  || die "cargo metadata failed"
export DEVHUB_BIN="${DEVHUB_BIN:-$target_dir/debug/devhub}"
export EDGEMODULE_RUST_FILTER="${EDGEMODULE_RUST_FILTER:-$target_dir/debug/filter}"
export EDGEMODULE_RUST_SENSOR="${EDGEMODULE_RUST_SENSOR:-$target_dir/debug/temperature-sensor}"
[[ -x "$DEVHUB_BIN" ]] || die "no devhub binary at $DEVHUB_BIN"

mode=()
[[ "${EDGEMODULE_PY_RELEASE:-0}" == 1 ]] && mode=(--release)
(cd "$HERE" && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" \
  "$VENV/bin/maturin" develop -q "${mode[@]}" 2>&1 | grep -v '^📦\|^🔗\|^🐍\|^💻\|^📡\|^🛠' ) 
[[ ${PIPESTATUS[0]} -eq 0 ]] || die "maturin develop failed"
"$VENV/bin/python" -c 'import edgemodule' || die "the built package does not import"

[[ "${1:-}" == --build-only ]] && exit 0

cd "$HERE"
timeout -k 10 900 "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@" tests
rc=$?
exit $rc
