#!/usr/bin/env bash
# Stripped sizes of libedgemodule and of the Python extension per target, into a section at the
# top of bench/RESULTS.md (replaced on each run, between the "cross-sizes" markers; the
# throughput table below it keeps getting rows appended by `make bench`).
#   bash cross/sizes.sh            (after cross/wheels.sh, which records the extension sizes)
# Release profile: thin LTO, strip = "symbols" (root Cargo.toml); `file` confirms "stripped".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RESULTS="${BENCH_RESULTS:-bench/RESULTS.md}"
EXT_SIZES="$TARGET_DIR/cross/wheel-ext-sizes.json"

declare -A PLATFORM=(
  [x86_64-unknown-linux-gnu]=""
  [aarch64-unknown-linux-gnu]=manylinux2014_aarch64
  [armv7-unknown-linux-gnueabihf]=manylinux2014_armv7l
  [x86_64-pc-windows-gnu]=win_amd64
)
rows=""
for t in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf \
         x86_64-pc-windows-gnu; do
  if [ "$t" = x86_64-unknown-linux-gnu ]; then
    $CARGO build --release -p edgemodule-ffi >/dev/null 2>&1
    lib="$TARGET_DIR/release/libedgemodule.so"
  else
    $CARGO build --release -p edgemodule-ffi --target "$t" >/dev/null 2>&1
    lib="$TARGET_DIR/$t/release/libedgemodule.so"
    [ "$t" = x86_64-pc-windows-gnu ] && lib="$TARGET_DIR/$t/release/edgemodule.dll"
  fi
  size=$(stat -c %s "$lib")
  stripped=$(file -b "$lib" | grep -q 'not stripped' && echo "NOT stripped" || echo stripped)
  ext="n/a"
  if [ -n "${PLATFORM[$t]}" ] && [ -f "$EXT_SIZES" ]; then
    ext=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], "n/a"))' \
      "$EXT_SIZES" "${PLATFORM[$t]}")
  fi
  rows+="| $t | $(basename "$lib") | $size | $stripped | $ext |"$'\n'
done

section="<!-- cross-sizes:begin (written by cross/sizes.sh) -->
# Binary sizes per target

Release profile (thin LTO, \`strip = \"symbols\"\`), measured $(date -u '+%Y-%m-%d %H:%M UTC') by
\`bash cross/sizes.sh\`. Python extension: \`_native.abi3.so\` / \`_native.pyd\` inside the abi3
wheel from \`cross/wheels.sh\` (manylinux2014 via zig for the ARM targets).

| target | library | libedgemodule bytes | file(1) | Python extension bytes |
|---|---|---|---|---|
${rows}<!-- cross-sizes:end -->
"
python3 - "$RESULTS" "$section" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
try:
    text = open(path).read()
except FileNotFoundError:
    text = ""
text = re.sub(r"<!-- cross-sizes:begin.*?<!-- cross-sizes:end -->\n\n?", "", text, flags=re.S)
open(path, "w").write(section + "\n" + text)
PY
echo "$section"
