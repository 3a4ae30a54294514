"""A route between Python and Rust modules: the Rust temperature-sensor sample feeds a Python
module, which forwards to the Rust filter sample, which alerts to $upstream."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import uuid

import pytest

import edgemodule
from edgemodule import Message


def rust_bin(var, name):
    path = os.environ.get(var) or str(__import__("devhub").REPO / "target" / "debug" / name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built (cargo build -p edgemodule-samples)")
    return path


def start_module(hub, module, binary, log, extra=None):
    env = {**os.environ, **hub.env(module), **(extra or {})}
    return subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)


def test_rust_sensor_to_python_to_rust_filter(hub, tmp_path):
    sensor_bin = rust_bin("EDGEMODULE_RUST_SENSOR", "temperature-sensor")
    filter_bin = rust_bin("EDGEMODULE_RUST_FILTER", "filter")
    run = uuid.uuid4().hex[:8]
    py = edgemodule.ModuleClient.create_from_connection_string(hub.connection_string("pyfilter"), **hub.options())
    readings = queue.Queue()

    def forward(m: Message):
        body = json.loads(m.data)
        readings.put(body)
        out = Message(m.data, content_type="application/json", content_encoding="utf-8",
                      custom_properties={**m.custom_properties, "via": "python", "run": run})
        py.send_message_to_output(out, "output1")

    py.set_input_message_handler("input1", forward)
    procs = []
    try:
        py.connect()
        with open(tmp_path / "filter.log", "w") as flog, open(tmp_path / "sensor.log", "w") as slog:
            procs.append(start_module(hub, "filter", filter_bin, flog))
            procs.append(start_module(hub, "tempSensor", sensor_bin, slog,
                                      {"SENSOR_COUNT": "15", "SENSOR_INTERVAL_MS": "30"}))
            got = [readings.get(timeout=30) for _ in range(15)]
        assert all("machine" in r and "temperature" in r["machine"] for r in got)
        hot = [r for r in got if r["machine"]["temperature"] > 25]
        assert hot, "the sensor's sawtooth starts at 25 C: some readings must be above"
        ups = hub.wait_upstream(lambda m: m.get("module") == "filter" and m.get("properties", {}).get("run") == run,
                                count=len(hot), timeout=30)
        assert len(ups) >= len(hot)
        for u in ups:
            assert u["properties"]["via"] == "python" and u["properties"]["MessageType"] == "Alert"
            assert json.loads(u["body"])["machine"]["temperature"] > 25
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        py.shutdown()
