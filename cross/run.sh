#!/usr/bin/env bash
# Cross-target test matrix (issue 6): for each target, the core's whole test suite (unit +
# integration, TLS included) under qemu-user / wine against a native devhub and mosquitto on
# the host, libedgemodule (.so / .dll + import library) built for the target, the C suite
# (tests/c) cross-compiled and run under the emulator (see c_suite below), and for aarch64 the
# devhub binary itself, emulated, under the host's core tests (devhub_suite). Last, a check
# that no test left files in the repository root.
#
#   bash cross/run.sh                      # all three targets
#   bash cross/run.sh armv7 windows        # a subset (aarch64 | armv7 | windows, or triples)
#
# Installs what it needs first (scripts/install-deps.sh cross: Debian cross gcc + libc,
# qemu-user, wine; rustup targets), idempotently. Logs: target/cross/logs/. Prints a per-target
# table and "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$TARGET_DIR/cross"
LOGS="$OUT/logs"
mkdir -p "$LOGS"

triple() {
  case "$1" in
    aarch64 | aarch64-unknown-linux-gnu) echo aarch64-unknown-linux-gnu ;;
    armv7 | armv7-unknown-linux-gnueabihf) echo armv7-unknown-linux-gnueabihf ;;
    windows | x86_64-pc-windows-gnu) echo x86_64-pc-windows-gnu ;;
    *) echo "cross/run.sh: unknown target $1 (aarch64, armv7, windows)" >&2; exit 2 ;;
  esac
}
TARGETS=()
for t in "${@:-aarch64 armv7 windows}"; do for u in $t; do TARGETS+=("$(triple "$u")"); done; done

bash scripts/install-deps.sh cross || { echo "cross/run.sh: dependency install failed"; exit 1; }

# No test may leave files in the repository root (an emulated run once left two garbage-named
# ones there): its entries before and after, checked at the end ("repo root clean").
tree_snapshot() { ls -A "$ROOT" | LC_ALL=C sort; }
TREE_BEFORE="$(tree_snapshot)"

RESULTS=()   # "target|step|PASS/FAIL/SKIP|seconds|note"
PASSED=0
FAILED=0
record() {   # target step status seconds note
  RESULTS+=("$1|$2|$3|$4|${5:-}")
  case "$3" in PASS) PASSED=$((PASSED + 1)) ;; FAIL) FAILED=$((FAILED + 1)) ;; esac
}
# step TARGET NAME LOG command...: runs it, logs, records PASS/FAIL with its duration.
step() {
  local t="$1" name="$2" log="$3"; shift 3
  local start=$SECONDS
  echo "== [$t] $name (log: ${log#"$ROOT"/})"
  if "$@" >"$log" 2>&1; then
    record "$t" "$name" PASS $((SECONDS - start)) "$(summary_of "$log")"
  else
    record "$t" "$name" FAIL $((SECONDS - start)) "$(summary_of "$log")"
    tail -n 25 "$log" | sed 's/^/    | /'
  fi
}
# "N passed, N failed" from cargo test or ctest output.
summary_of() {
  local log="$1" p f
  if grep -q '^test result:' "$log"; then
    p=$(grep '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s}')
    f=$(grep '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s}')
    echo "$p tests passed, $f failed"
  elif grep -q 'tests passed, ' "$log"; then
    grep -E 'tests passed, [0-9]+ tests? failed' "$log" | tail -1
  fi
}

# --- host helpers: native devhub + mosquitto on demand (cross/hostctl.py) --------------------
HOSTCTL_PID=""
cleanup() {
  if [ -n "$HOSTCTL_PID" ]; then kill "$HOSTCTL_PID" 2>/dev/null; wait "$HOSTCTL_PID" 2>/dev/null; fi
}
trap cleanup EXIT
echo "== [host] building devhub"
if ! $CARGO build -p edgemodule-devhub >"$LOGS/host-devhub.log" 2>&1; then
  tail -n 25 "$LOGS/host-devhub.log"; echo "0 passed, 1 failed"; exit 1
fi
DEVHUB="$TARGET_DIR/debug/devhub"
rm -f "$OUT/hostctl.port"
python3 cross/hostctl.py --devhub "$DEVHUB" --port-file "$OUT/hostctl.port" \
  --log-dir "$LOGS/hubs" >"$LOGS/hostctl.log" 2>&1 &
HOSTCTL_PID=$!
for _ in $(seq 100); do [ -s "$OUT/hostctl.port" ] && break; sleep 0.1; done
[ -s "$OUT/hostctl.port" ] || { cat "$LOGS/hostctl.log"; echo "hostctl did not start"; exit 1; }
export EDGEMODULE_HOSTCTL="127.0.0.1:$(cat "$OUT/hostctl.port")"

emulator() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo "qemu-aarch64 -L /usr/aarch64-linux-gnu" ;;
    armv7-unknown-linux-gnueabihf) echo "qemu-arm -L /usr/arm-linux-gnueabihf" ;;
  esac
}

# --- C suite ---------------------------------------------------------------------------------
# tests/c cross-compiled for the target and run by CTest through the target's emulator
# (CMAKE_CROSSCOMPILING_EMULATOR: qemu-user, or cross/wine-runner.sh; tests/c names its tests'
# targets, so CTest prepends it). Linux targets: the harness fork/execs the host's devhub and
# mosquitto (under qemu-user the exec runs natively). Windows (cross/mingw-toolchain.cmake,
# against edgemodule.dll + libedgemodule.dll.a, winpthreads linked statically): the harness's
# hostctl backend (EM_HOSTCTL) asks cross/hostctl.py for a native devhub per test, its CLI and
# mosquitto, and connects from wine to them over the shared network.
c_suite() {
  local t="$1" bdir="$OUT/c-$1" cfg=() envs=()
  case "$t" in
    aarch64-unknown-linux-gnu)
      cfg=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc
        "-DCMAKE_CROSSCOMPILING_EMULATOR=qemu-aarch64;-L;/usr/aarch64-linux-gnu") ;;
    armv7-unknown-linux-gnueabihf)
      cfg=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_C_COMPILER=arm-linux-gnueabihf-gcc
        "-DCMAKE_CROSSCOMPILING_EMULATOR=qemu-arm;-L;/usr/arm-linux-gnueabihf") ;;
    x86_64-pc-windows-gnu)
      cfg=(-DCMAKE_TOOLCHAIN_FILE="$ROOT/cross/mingw-toolchain.cmake")
      envs=(EM_HOSTCTL="$EDGEMODULE_HOSTCTL") ;;
  esac
  cmake -S tests/c -B "$bdir" "${cfg[@]}" -DEM_WITH_VALGRIND=OFF \
    -DEDGEMODULE_LIB_DIR="$TARGET_DIR/$t/debug" -DEM_DEVHUB_BINARY="$DEVHUB" &&
    cmake --build "$bdir" -j2 &&
    env "${envs[@]}" ctest --test-dir "$bdir" --output-on-failure -j2
}

# --- devhub on a Linux target ----------------------------------------------------------------
# devhub is a developer tool for x86_64 and aarch64 Linux: build its binary for the target and
# run the host's core integration tests against it under qemu (a second hostctl, whose devhubs
# run emulated; mosquitto stays native).
devhub_suite() {
  local t="$1" port_file="$OUT/hostctl-$1.port" pid rc
  $CARGO build -p edgemodule-devhub --target "$t" || return 1
  $CARGO test -p edgemodule --tests --no-run || return 1
  rm -f "$port_file"
  python3 cross/hostctl.py --devhub "$TARGET_DIR/$t/debug/devhub" \
    --devhub-runner "$(emulator "$t")" --port-file "$port_file" --log-dir "$LOGS/hubs-$t" &
  pid=$!
  for _ in $(seq 100); do [ -s "$port_file" ] && break; sleep 0.1; done
  EDGEMODULE_HOSTCTL="127.0.0.1:$(cat "$port_file")" RUST_BACKTRACE=0 \
    $CARGO test -p edgemodule --tests
  rc=$?
  kill "$pid"; wait "$pid" 2>/dev/null
  return $rc
}

# --- per target ------------------------------------------------------------------------------
for t in "${TARGETS[@]}"; do
  if [ "$t" = x86_64-pc-windows-gnu ]; then
    # Prefix + bcryptprimitives stub before the first test binary (the runner checks again).
    # shellcheck source=cross/wine-prefix.sh
    source cross/wine-prefix.sh
  fi
  step "$t" "core tests" "$LOGS/$t-core.log" \
    env RUST_BACKTRACE=0 $CARGO test -p edgemodule --target "$t"
  step "$t" "libedgemodule" "$LOGS/$t-ffi.log" \
    $CARGO build -p edgemodule-ffi --target "$t"
  if [ "$t" = x86_64-pc-windows-gnu ]; then
    d="$TARGET_DIR/$t/debug"
    if [ -f "$d/edgemodule.dll" ] && [ -f "$d/libedgemodule.dll.a" ]; then
      record "$t" "dll + import lib" PASS 0 "edgemodule.dll, libedgemodule.dll.a"
    else
      record "$t" "dll + import lib" FAIL 0 "missing in $d"
    fi
  fi
  step "$t" "C suite" "$LOGS/$t-c.log" c_suite "$t"
  if [ "$t" = aarch64-unknown-linux-gnu ]; then
    step "$t" "devhub (emulated)" "$LOGS/$t-devhub.log" devhub_suite "$t"
  fi
done

new_files="$(comm -13 <(echo "$TREE_BEFORE") <(tree_snapshot))"
if [ -z "$new_files" ]; then
  record host "repo root clean" PASS 0 "no new entries in $ROOT"
else
  record host "repo root clean" FAIL 0 "new: $(echo "$new_files" | head -5 | cat -v | tr '\n' ' ')"
fi

# --- summary ---------------------------------------------------------------------------------
echo
printf '%-32s %-18s %-5s %6s  %s\n' TARGET STEP RESULT SECS NOTE
for r in "${RESULTS[@]}"; do
  IFS='|' read -r t s st secs note <<<"$r"
  printf '%-32s %-18s %-5s %6s  %s\n' "$t" "$s" "$st" "$secs" "$note"
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
