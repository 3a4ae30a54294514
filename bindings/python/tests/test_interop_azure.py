"""Routes between an edgemodule module and a module on Microsoft's azure-iot-device (the
official SDK insists on port 8883/443, so azure_peer.py runs in a private network namespace
with `unshare -n`, like tests/interop/run.sh)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import LOG_DIR

HERE = pathlib.Path(__file__).resolve().parent


def netns_prefix():
    if not shutil.which("unshare") or not shutil.which("ip"):
        return None
    prefix = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        return None
    return prefix


def test_routes_and_methods_with_azure_iot_device():
    pytest.importorskip("azure.iot.device")
    prefix = netns_prefix()
    if prefix is None:
        pytest.skip("no private network namespace here (unshare -n)")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [*prefix, "bash", "-c", 'ip link set lo up && exec "$0" "$1" "$2"',
         sys.executable, str(HERE / "azure_peer.py"), str(LOG_DIR)],
        capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"
    for line in ("azure-iot-device -> edgemodule: ok", "edgemodule -> azure-iot-device: ok",
                 "azure-iot-device invokes edgemodule method: ok"):
        assert line in r.stdout
