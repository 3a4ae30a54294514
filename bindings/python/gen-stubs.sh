#!/usr/bin/env bash
# Regenerates the .pyi stubs of the pure-Python modules (docstrings included) from the typed
# sources; _native.pyi is written by hand. tests/test_stubs.py checks they are fresh.
#   bash bindings/python/gen-stubs.sh [OUT_DIR]   (default: the package itself)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${EDGEMODULE_PY_VENV:-$HERE/.venv}/bin"
OUT="${1:-$HERE/python}"
cd "$HERE/python"
"$PY/stubgen" -q --include-docstrings -o "$OUT" \
  -m edgemodule -m edgemodule.aio -m edgemodule.models -m edgemodule.exceptions \
  -m edgemodule._sync -m edgemodule._base -m edgemodule._logging
