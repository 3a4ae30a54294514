#!/usr/bin/env python3
"""Runs a CTest build's tests through an emulator (qemu-user).

  ctest_emulated.py BUILD_DIR "qemu-aarch64 -L /usr/aarch64-linux-gnu"

CMake prepends CMAKE_CROSSCOMPILING_EMULATOR only when add_test's COMMAND names a target, not
for `$<TARGET_FILE:t>` (tests/c uses the latter). This reads the tests from
`ctest --show-only=json-v1` and runs each command with the emulator in front, honouring the
ENVIRONMENT, WORKING_DIRECTORY, TIMEOUT and SKIP_RETURN_CODE properties, sequentially.
Prints CTest-like lines and "N tests passed, N tests failed"; exits 1 on any failure.
"""

import json
import os
import shlex
import subprocess
import sys
import time


def main():
    build, emulator = sys.argv[1], shlex.split(sys.argv[2])
    out = subprocess.run(["ctest", "--test-dir", build, "--show-only=json-v1"],
                         check=True, capture_output=True, text=True).stdout
    tests = json.loads(out)["tests"]
    passed = failed = skipped = 0
    for i, t in enumerate(tests, 1):
        props = {p["name"]: p["value"] for p in t.get("properties", [])}
        env = dict(os.environ)
        for kv in props.get("ENVIRONMENT", []):
            k, _, v = kv.partition("=")
            env[k] = v
        cmd = list(t["command"])
        started = time.time()
        try:
            r = subprocess.run(emulator + cmd, cwd=props.get("WORKING_DIRECTORY", build),
                               env=env, timeout=props.get("TIMEOUT", 1500),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            rc, output = r.returncode, r.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            rc, output = "timeout", (e.stdout or b"").decode(errors="replace")
        secs = time.time() - started
        if rc == 0:
            verdict = "Passed"
            passed += 1
        elif rc == props.get("SKIP_RETURN_CODE"):
            verdict = "Skipped"
            skipped += 1
        else:
            verdict = f"***Failed ({rc})"
            failed += 1
        print(f"{i}/{len(tests)} Test #{i}: {t['name']:<28} {verdict}  {secs:.2f} sec", flush=True)
        if rc != 0:
            print(output[-4000:], flush=True)
    print(f"{passed} tests passed, {failed} tests failed ({skipped} skipped) out of {len(tests)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
