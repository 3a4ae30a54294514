"""Smoke test of an installed wheel in a fresh venv (build-wheel.sh): import, then the sample
filter (sync style) against a devhub: a hot reading becomes an alert upstream, `reset` answers."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(sys.argv[1]).resolve()
sys.path.insert(0, str(REPO / "bindings" / "python" / "tests"))
from devhub import DevHub  # noqa: E402

import edgemodule  # noqa: E402
import edgemodule.aio  # noqa: E402,F401

assert "site-packages" in edgemodule.__file__, edgemodule.__file__
print(f"wheel smoke: edgemodule {edgemodule.__version__} imported from {pathlib.Path(edgemodule.__file__).parent}")

with tempfile.TemporaryDirectory() as d:
    hub = DevHub(pathlib.Path(d) / "state", pathlib.Path(d) / "devhub.log")
    log = open(pathlib.Path(d) / "filter.log", "w+")
    proc = subprocess.Popen([sys.executable, "-u", str(REPO / "samples/python/filter/filter_sync.py")],
                            env={**os.environ, **hub.env("filter")}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "filter: connected" not in pathlib.Path(log.name).read_text():
            assert proc.poll() is None and time.monotonic() < deadline, pathlib.Path(log.name).read_text()
            time.sleep(0.1)
        hub.inject("filter", "input1", json.dumps({"machine": {"temperature": 99.5}}).encode(), {"src": "smoke"})
        ups = hub.wait_upstream(lambda m: m.get("module") == "filter" and m.get("properties", {}).get("src") == "smoke")
        assert ups and ups[0]["properties"]["MessageType"] == "Alert", (ups, pathlib.Path(log.name).read_text())
        status, body = hub.invoke("filter", "reset", {})
        assert body == {"status": 200, "payload": {"threshold": 25}}, body
        print("wheel smoke: sample filter forwarded an alert and answered reset: ok")
    finally:
        proc.terminate()
        proc.wait(10)
        hub.stop()
