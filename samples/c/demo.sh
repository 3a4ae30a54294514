#!/usr/bin/env bash
# The edgemodule demo with the C filter (samples/c/filter) in place of the Rust one: builds
# libedgemodule into an install prefix (`cargo xtask dist c`), builds the sample against it with
# CMake (`find_package(edgemodule)`), then runs samples/demo.sh (devhub + tempSensor + filter,
# twin change, `reset` method, checked summary). Run from the repository root (`make demo`).
# Env: DIST=release builds the release library (default: debug, faster); others as demo.sh.
set -euo pipefail

TARGET=${CARGO_TARGET_DIR:-target}
CARGO=${CARGO:-cargo}
if [[ ${DIST:-debug} == release ]]; then
  PREFIX=$TARGET/dist/c
  "$CARGO" xtask dist c --prefix "$PREFIX"
else
  PREFIX=$TARGET/dist/c-debug
  "$CARGO" xtask dist c --debug --prefix "$PREFIX"
fi
"$CARGO" build -p edgemodule-devhub -p edgemodule-samples
cmake -S samples/c -B "$TARGET/c-samples" -DCMAKE_PREFIX_PATH="$PWD/$PREFIX" >/dev/null
cmake --build "$TARGET/c-samples" -j2
C_FILTER=$PWD/$TARGET/c-samples/filter

echo "demo: filter = $C_FILTER (C)"
FILTER=$C_FILTER exec bash samples/demo.sh
