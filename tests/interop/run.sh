#!/usr/bin/env bash
# Interop tests: modules built on Microsoft's official SDKs (PyPI azure-iot-device and
# azure-iot-hub, npm azure-iot-device + azure-iot-device-mqtt) against devhub.
#
#   bash tests/interop/run.sh
#
# Idempotent setup: venv .venv-interop (repo root) from tests/requirements-interop.txt,
# node_modules in tests/interop from package-lock.json, `cargo build -p edgemodule-devhub`.
# The Python SDK only connects to ports 8883/443, so pytest runs in a private network
# namespace (`unshare -n`, loopback up) where devhub can bind them. Node tests use
# ephemeral ports (GatewayHostName=localhost:PORT). Needs: python3 (venv), node + npm,
# cargo, unshare (util-linux), ip (iproute2). devhub logs go to tests/out/interop/.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO"

VENV="$REPO/.venv-interop"
REQS="$REPO/tests/requirements-interop.txt"
export INTEROP_LOG_DIR="$REPO/tests/out/interop"

die() { echo "interop: $*" >&2; exit 2; }
for tool in python3 node npm cargo unshare ip; do
  command -v "$tool" >/dev/null || die "'$tool' not found (Debian: python3-venv nodejs npm util-linux iproute2; cargo from rustup)"
done

# --- Python venv (reinstalled only when the requirements change) ---
bash scripts/venv.sh "$VENV" "$REQS" interop || exit 2

# --- npm packages (reinstalled only when the lock file changes) ---
lock="$HERE/package-lock.json"
nstamp="$HERE/node_modules/.interop-lock.sha256"
nwant="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ ! -d "$HERE/node_modules" || "$(cat "$nstamp" 2>/dev/null)" != "$nwant" ]]; then
  echo "interop: npm ci in tests/interop"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
  echo "$nwant" > "$nstamp"
fi

# --- devhub ---
cargo build -q -p edgemodule-devhub || die "cargo build -p edgemodule-devhub failed"
target_dir="$(cargo metadata --format-version 1 --no-deps \
  | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')" \
  || die "cargo metadata failed"
export DEVHUB_BIN="$target_dir/debug/devhub"
[[ -x "$DEVHUB_BIN" ]] || die "no devhub binary at $DEVHUB_BIN"
mkdir -p "$INTEROP_LOG_DIR"

# --- Python SDK tests, in a private network namespace ---
# Root gets a plain network namespace; anyone else a user namespace mapped to root.
if [[ "$(id -u)" == 0 ]]; then ns=(unshare -n); else ns=(unshare -r -n); fi
echo "interop: Python SDK tests (pytest, ${ns[*]})"
timeout -k 10 200 "${ns[@]}" bash -c 'ip link set lo up && exec "$0" -m pytest -q "$1"' \
  "$VENV/bin/python" "$HERE/python"
py_rc=$?

# --- Node SDK tests ---
echo "interop: Node SDK tests (node --test)"
timeout -k 10 150 node --test --test-concurrency=1 "$HERE"/node/*.test.js
node_rc=$?

echo "interop: python rc=$py_rc node rc=$node_rc (devhub logs in $INTEROP_LOG_DIR)"
if [[ $py_rc -ne 0 || $node_rc -ne 0 ]]; then
  exit 1
fi
