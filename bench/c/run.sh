#!/usr/bin/env bash
# C API overhead: the filter sample's path (pull an input message, forward it, ack) in C
# (bench/c/relay_bench.c, linked against the `cargo xtask dist c` prefix through pkg-config)
# and in Rust on the core (bench/c/relay_core.rs), alternately against one release devhub.
# Records the median rates, their ratio (target >= 0.95) and the stripped size of
# libedgemodule.so in bench/RESULTS.md (section "C API overhead", kept above the end-to-end
# table, whose rows are appended at the end of the file).
#
# Run from the repository root (`make bench-c`). Env: BENCH_MESSAGES (default 20000),
# BENCH_ROUNDS (default 3), BENCH_RESULTS (default bench/RESULTS.md), CARGO_TARGET_DIR.
set -euo pipefail

N=${BENCH_MESSAGES:-20000}
ROUNDS=${BENCH_ROUNDS:-3}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
TARGET=${CARGO_TARGET_DIR:-target}
PREFIX=$TARGET/dist/c
OUT=$TARGET/bench-c
CARGO=${CARGO:-cargo}
mkdir -p "$OUT"

"$CARGO" xtask dist c --prefix "$PREFIX"
"$CARGO" build --release -p edgemodule-devhub -p edgemodule-ffi --example relay_core
export PKG_CONFIG_PATH=$PWD/$PREFIX/lib/pkgconfig
# shellcheck disable=SC2046
gcc -O2 -Wall -Wextra -Werror bench/c/relay_bench.c -o "$OUT/relay_bench" \
  $(pkg-config --cflags --libs edgemodule) -lpthread -Wl,-rpath,"$(pkg-config --variable=libdir edgemodule)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/em-bench-c.XXXXXX")
DEVHUB=$TARGET/release/devhub
cleanup() {
  [[ -n ${HUB_PID:-} ]] && kill -TERM "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
"$DEVHUB" --state-dir "$WORK/state" run --manifest bench/c/manifest.json --mqtt-port 0 \
  --https-port 0 --ready-file "$WORK/ready.json" --log error >"$WORK/devhub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 300); do [[ -s $WORK/ready.json ]] && break; sleep 0.1; done
[[ -s $WORK/ready.json ]] || { cat "$WORK/devhub.log" >&2; exit 1; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/ready.json" "$1"; }
export EM_BENCH_MQTT_PORT=$(field mqtt_tls_port) EM_BENCH_CA_FILE=$(field ca_file) BENCH_MESSAGES=$N
for m in src relay sink; do
  export "EM_BENCH_CS_${m^^}=$("$DEVHUB" --state-dir "$WORK/state" connection-string "$m")"
done

rust=() c=()
for ((i = 0; i < ROUNDS; i++)); do
  # Alternate the order so warm-up and drift hit both sides alike.
  if ((i % 2 == 0)); then order="rust c"; else order="c rust"; fi
  for who in $order; do
    if [[ $who == rust ]]; then
      r=$("$TARGET/release/examples/relay_core" | awk '/^RESULT rust/ {print $3}')
      rust+=("$r")
    else
      r=$("$OUT/relay_bench" | awk '/^RESULT c/ {print $3}')
      c+=("$r")
    fi
    echo "round $((i + 1)): $who $r msg/s"
  done
done

cp "$PREFIX/lib/libedgemodule.so" "$OUT/libedgemodule.stripped.so"
strip --strip-all "$OUT/libedgemodule.stripped.so"
SO_SIZE=$(stat -c %s "$OUT/libedgemodule.stripped.so")

python3 - "$RESULTS" "$N" "$SO_SIZE" "${rust[*]}" "${c[*]}" <<'PY'
import datetime, os, platform, statistics, sys

path, n, so_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rust = [float(x) for x in sys.argv[4].split()]
c = [float(x) for x in sys.argv[5].split()]
mr, mc = statistics.median(rust), statistics.median(c)
ratio = mc / mr
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
row = (f"| {date} | {platform.machine()} | {os.cpu_count()} | {n} | {len(c)} | {mr:.0f} | {mc:.0f} "
       f"| {ratio:.3f} | {so_size} |\n")
header = """# C API overhead (bench/c)

Written by `bench/c/run.sh` (`make bench-c`). The C filter sample's path under load: module `relay`
pulls each input message, forwards it to an output with a blocking send and acks it; `src` feeds it
(batches of 100, 256-byte bodies) and `sink` counts, all through one release devhub over MQTT/TLS.
The same program runs in C on libedgemodule (release, from `cargo xtask dist c`, via pkg-config)
and in Rust on the core's blocking facade, alternately in one run; the medians are compared
(target: C / Rust >= 0.95). `.so` is the stripped size of libedgemodule.so in bytes.

| date (UTC) | arch | nproc | N | rounds | Rust msg/s | C msg/s | C / Rust | .so bytes |
|---|---|---|---|---|---|---|---|---|
"""
text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
if "# C API overhead (bench/c)" not in text:
    # Above the end-to-end table: that one grows at the end of the file.
    text = header + "\n" + text
start = text.index("# C API overhead (bench/c)")
lines = text[start:].split("\n")
first = next(i for i, l in enumerate(lines) if l.startswith("|"))  # our table's header
last = first
while last + 1 < len(lines) and lines[last + 1].startswith("|"):
    last += 1
offset = start + sum(len(l) + 1 for l in lines[: last + 1])
text = text[:offset] + row + text[offset:]
open(path, "w", encoding="utf-8").write(text)
print(f"C / Rust = {ratio:.3f} (Rust {mr:.0f} msg/s, C {mc:.0f} msg/s); libedgemodule.so stripped: {so_size} bytes")
print(f"recorded in {path}")
if ratio < 0.95:
    print("warning: below the 0.95 target", file=sys.stderr)
PY
