#!/usr/bin/env bash
# `make demo` for the Python filter: runs samples/demo.sh (devhub + Rust temperature sensor)
# with samples/python/filter in place of the Rust filter, once per style (sync, then asyncio).
#
#   bash samples/python/demo.sh            # both styles;  EDGEMODULE_PY_FILTER=sync|async for one
#
# Builds the binding into bindings/python/.venv first (bindings/python/run-tests.sh --build-only).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
bash bindings/python/run-tests.sh --build-only
PY="${EDGEMODULE_PY_VENV:-$REPO/bindings/python/.venv}/bin/python"
TARGET="$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"

SHIM=$(mktemp -d "${TMPDIR:-/tmp}/edgemodule-pydemo.XXXXXX")
trap 'rm -rf "$SHIM"' EXIT
ln -s "$TARGET/devhub" "$SHIM/devhub"
ln -s "$TARGET/temperature-sensor" "$SHIM/temperature-sensor"

styles=(sync async)
[[ -n "${EDGEMODULE_PY_FILTER:-}" ]] && styles=("$EDGEMODULE_PY_FILTER")
for style in "${styles[@]}"; do
  printf '#!/usr/bin/env bash\nexec "%s" -u "%s" "$@"\n' "$PY" "$REPO/samples/python/filter/filter_$style.py" > "$SHIM/filter"
  chmod +x "$SHIM/filter"
  echo "== demo with the Python filter ($style)"
  TARGET_DIR="$SHIM" bash samples/demo.sh
done
