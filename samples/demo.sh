#!/usr/bin/env bash
# The edgemodule demo: devhub routes tempSensor -> filter -> $upstream from samples/deployment.json;
# we change the filter's threshold through its twin, call its `reset` method, and check that
# messages, the twin change and the method all flowed.
#
# Run from the repository root after
#   cargo build -p edgemodule-devhub -p edgemodule-samples
# (`make demo`). Env: TARGET_DIR (default target/debug), DEMO_SECS (default 8), KEEP=1 keeps the
# temporary directory with the logs.
set -euo pipefail

TARGET_DIR=${TARGET_DIR:-target/debug}
DEMO_SECS=${DEMO_SECS:-8}
DEVHUB=$TARGET_DIR/devhub
SENSOR=$TARGET_DIR/temperature-sensor
FILTER=${FILTER:-$TARGET_DIR/filter}
MANIFEST=samples/deployment.json

for bin in "$DEVHUB" "$SENSOR" "$FILTER"; do
  if [[ ! -x $bin ]]; then
    echo "demo: $bin is missing; build first: cargo build -p edgemodule-devhub -p edgemodule-samples" >&2
    exit 2
  fi
done
[[ -f $MANIFEST ]] || { echo "demo: run me from the repository root ($MANIFEST not found)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgemodule-demo.XXXXXX")
STATE=$WORK/state
READY=$WORK/ready.json
PIDS=()

cleanup() {
  local status=$?
  # Modules first, devhub last, each by the pid we started.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ ${KEEP:-0} == 1 || $status -ne 0 ]]; then
    echo "demo: logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
dh() { "$DEVHUB" --state-dir "$STATE" "$@"; }
# For background jobs: exec, so that $! is devhub's own pid (a backgrounded function would be a
# subshell whose death leaves devhub running).
dh_exec() { exec "$DEVHUB" --state-dir "$STATE" "$@"; }

# Waits up to $2 seconds for regex $3 in file $1.
wait_for_line() {
  local file=$1 secs=$2 pattern=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    if grep -Eq -- "$pattern" "$file" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: no line matching '$pattern' in $file after ${secs}s" >&2
  return 1
}

json_field() { # file key: prints ready-file key
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

say "starting devhub ($MANIFEST, ephemeral ports, state in $STATE)"
dh_exec run --manifest "$MANIFEST" --mqtt-port 0 --https-port 0 --ready-file "$READY" --log warn \
  >"$WORK/devhub.log" 2>&1 &
DEVHUB_PID=$!
PIDS+=("$DEVHUB_PID")
for ((i = 0; i < 300; i++)); do
  [[ -s $READY ]] && break
  if ! kill -0 "$DEVHUB_PID" 2>/dev/null; then
    echo "demo: devhub exited:" >&2
    cat "$WORK/devhub.log" >&2
    exit 1
  fi
  sleep 0.1
done
[[ -s $READY ]] || { echo "demo: devhub wrote no ready file in 30 s" >&2; exit 1; }
MQTT_PORT=$(json_field "$READY" mqtt_tls_port)
HTTPS_PORT=$(json_field "$READY" https_port)
echo "devhub ready: MQTT/TLS 127.0.0.1:$MQTT_PORT, HTTPS 127.0.0.1:$HTTPS_PORT"

# $upstream feed, one JSON object per line, collected for the summary.
dh_exec monitor --json >"$WORK/upstream.jsonl" 2>"$WORK/monitor.log" &
PIDS+=("$!")

# A module's process: the environment `devhub env` prints (IoT Edge variables, Workload API,
# CA file) plus the ephemeral ports.
start_module() { # name binary log
  local env_lines
  env_lines=$(dh env "$1")
  (
    eval "$env_lines"
    export EDGEMODULE_MQTT_PORT=$MQTT_PORT EDGEMODULE_HTTPS_PORT=$HTTPS_PORT
    exec "$2"
  ) >"$3" 2>&1 &
  PIDS+=("$!")
}

say "starting filter and tempSensor"
start_module filter "$FILTER" "$WORK/filter.log"
wait_for_line "$WORK/filter.log" 30 '^filter: connected'
start_module tempSensor "$SENSOR" "$WORK/sensor.log"
wait_for_line "$WORK/sensor.log" 30 '^tempSensor: connected'
# Live view of both modules.
tail -q -n +1 -F "$WORK/filter.log" "$WORK/sensor.log" 2>/dev/null &
PIDS+=("$!")

half=$(((DEMO_SECS + 1) / 2))
sleep "$half"
say "twin: filter desired TemperatureThreshold -> 30"
dh twin update filter --desired '{"TemperatureThreshold": 30}' >"$WORK/twin-update.json"
wait_for_line "$WORK/filter.log" 10 'threshold changed .* -> 30'

sleep $((DEMO_SECS - half))
say "method: filter reset"
dh invoke filter reset --payload '{}' >"$WORK/invoke.json"
cat "$WORK/invoke.json"
wait_for_line "$WORK/filter.log" 10 'method reset'
# An unknown method: the filter answers 404 (devhub may report it as an error; keep the output).
dh invoke filter selfDestruct >"$WORK/invoke-unknown.json" 2>&1 || true
sleep 1
dh twin get filter >"$WORK/twin.json"

say "stopping"
for ((i = ${#PIDS[@]} - 1; i >= 1; i--)); do
  kill -TERM "${PIDS[i]}" 2>/dev/null || true
  wait "${PIDS[i]}" 2>/dev/null || true
done
PIDS=("$DEVHUB_PID")

say "summary"
python3 - "$WORK" <<'PY'
import json, re, sys

work = sys.argv[1]
read = lambda name: open(f"{work}/{name}", encoding="utf-8").read()
sensor, filt = read("sensor.log"), read("filter.log")

sent = len(re.findall(r"^tempSensor: sent #", sensor, re.M))
forwarded = len(re.findall(r"-> alert #", filt))
changes = re.findall(r"^filter: (threshold changed .*|method reset: .*)$", filt, re.M)

alerts, bad = 0, []
for line in read("upstream.jsonl").splitlines():
    if not line.strip():
        continue
    m = json.loads(line)
    if m.get("module") != "filter" or m.get("output") != "output1":
        continue
    alerts += 1
    body = json.loads(m.get("body") or "{}")
    temp = body.get("machine", {}).get("temperature")
    if m.get("properties", {}).get("MessageType") != "Alert" or temp is None or temp <= 25:
        bad.append(line)

invoke = json.loads(read("invoke.json"))
unknown = read("invoke-unknown.json")
try:
    unknown_status = json.loads(unknown).get("status")
except ValueError:
    unknown_status = None
twin = json.loads(read("twin.json"))
reported = twin.get("properties", {}).get("reported", {}).get("TemperatureThreshold")

print(f"sensor messages sent        : {sent}")
print(f"alerts forwarded by filter  : {forwarded}")
print(f"alerts that reached upstream: {alerts}" + (f" ({len(bad)} malformed)" if bad else ""))
print(f"threshold changes seen      : {len(changes)}")
for c in changes:
    print(f"  - {c}")
print(f"method reset result         : status {invoke.get('status')}, payload {json.dumps(invoke.get('payload'))}")
print(f"unknown method result       : {' '.join(unknown.split())}")
print(f"reported TemperatureThreshold: {reported}")

checks = {
    "the sensor sent messages": sent > 0,
    "alerts reached $upstream with MessageType=Alert": alerts > 0 and not bad,
    "the twin change reached the filter": any("-> 30" in c for c in changes),
    "reset answered 200 with threshold 25": invoke.get("status") == 200
    and invoke.get("payload") == {"threshold": 25},
    "the filter reported threshold 25": reported == 25,
    "an unknown method got 404": unknown_status == 404,
}
failed = [name for name, ok in checks.items() if not ok]
for name, ok in checks.items():
    print(f"[{'ok' if ok else 'FAIL'}] {name}")
sys.exit(1 if failed else 0)
PY
