#!/usr/bin/env bash
# Cross-built Python abi3 wheels (issue 6): manylinux2014 aarch64 and armv7l (maturin --zig,
# glibc >= 2.17) and win_amd64 (mingw), into dist/ (or $1), then cross/check_wheels.py checks
# each wheel's tag and that its extension is an ELF/PE of the right machine.
#   bash cross/wheels.sh [DIST_DIR]
# Tools: a venv at target/cross/venv with maturin + ziglang pinned as in
# bindings/python/requirements-dev.txt (created once). Prints "N passed, N failed".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIST="${1:-$ROOT/dist}"
VENV="$TARGET_DIR/cross/venv"
REQS=bindings/python/requirements-dev.txt
pin() { grep -E "^$1==" "$REQS" || echo "$1"; }
if [ ! -x "$VENV/bin/maturin" ] || [ ! -x "$VENV/bin/python" ] ||
   ! "$VENV/bin/python" -c 'import ziglang' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$(pin maturin)" "$(pin ziglang)"
fi
bash scripts/install-deps.sh cross
mkdir -p "$DIST"
rm -f "$DIST"/edgemodule-*-cp39-abi3-{manylinux*_aarch64,manylinux*_armv7l,win_amd64}.whl
export PATH="$VENV/bin:$PATH"
for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  echo "== wheel $t (manylinux2014, zig)"
  maturin build --release --manifest-path bindings/python/Cargo.toml --target "$t" \
    --zig --compatibility manylinux2014 --out "$DIST"
done
echo "== wheel x86_64-pc-windows-gnu"
maturin build --release --manifest-path bindings/python/Cargo.toml \
  --target x86_64-pc-windows-gnu --out "$DIST"
python3 cross/check_wheels.py "$DIST" --strip-sizes "$TARGET_DIR/cross/wheel-ext-sizes.json"
