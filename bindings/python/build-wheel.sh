#!/usr/bin/env bash
# The release wheel (make dist-python): abi3 (CPython >= 3.9), manylinux2014 (glibc >= 2.17)
# built with zig, into bindings/python/dist; then installed into a fresh venv and smoke-tested
# (import, and the sample filter against a devhub when DEVHUB_BIN is given or built).
#   bash bindings/python/build-wheel.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${EDGEMODULE_PY_VENV:-$HERE/.venv}"
bash "$HERE/run-tests.sh" --build-only >/dev/null
cd "$HERE"
rm -f dist/edgemodule-*.whl
VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" maturin build -q --release --zig --compatibility manylinux2014 -o dist
WHEEL="$(ls dist/edgemodule-*manylinux2014*.whl)"
echo "wheel: $WHEEL ($(stat -c %s "$WHEEL") bytes)"
SMOKE="$(mktemp -d "${TMPDIR:-/tmp}/edgemodule-wheel.XXXXXX")"
trap 'rm -rf "$SMOKE"' EXIT
python3 -m venv "$SMOKE/venv"
"$SMOKE/venv/bin/pip" install -q --no-index "$WHEEL"
"$SMOKE/venv/bin/python" "$HERE/tests/wheel_smoke.py" "$REPO"
