"""Fixtures: one devhub per test session, and Microsoft's Python SDK clients connected to it.

The Python device SDK only connects to port 8883 (MQTT) and 443 (HTTPS method invoke), with TLS
1.2 and a hostname check, so devhub must listen on those ports: run.sh runs pytest inside a
private network namespace (`unshare -n`, loopback up) where binding them disturbs nothing.
"""

import contextlib
import json
import os
import pathlib
import queue
import shlex
import signal
import subprocess
import tempfile
import time

import pytest
import requests
from azure.iot.device import IoTHubModuleClient

HERE = pathlib.Path(__file__).resolve().parent
INTEROP = HERE.parent
REPO = INTEROP.parent.parent
MANIFEST = INTEROP / "manifest.json"
LOG_DIR = pathlib.Path(os.environ.get("INTEROP_LOG_DIR", REPO / "tests" / "out" / "interop"))

MQTT_PORT = 8883  # fixed by the Python SDK
HTTPS_PORT = 443  # fixed by the Python SDK (module-to-module invoke)
HTTP_TIMEOUT = 30  # seconds, for calls to devhub's service API


def devhub_bin():
    path = os.environ.get("DEVHUB_BIN") or str(REPO / "target" / "debug" / "devhub")
    if not os.access(path, os.X_OK):
        pytest.exit(f"devhub binary not found at {path} (set DEVHUB_BIN or run tests/interop/run.sh)", 2)
    return path


class DevHub:
    """A running `devhub run` process and the facts its ready file gives."""

    def __init__(self, binary, state_dir, ready, proc, log_path):
        self.binary = binary
        self.state_dir = state_dir
        self.ready = ready
        self.proc = proc
        self.log_path = log_path
        self.device_id = ready["device_id"]
        self.hub_host_name = ready["hub_host_name"]
        self.ca_file = ready["ca_file"]
        with open(self.ca_file, encoding="utf-8") as f:
            self.ca_pem = f.read()
        self.base_url = f"https://localhost:{ready['https_port']}"

    # ----- CLI -----
    def cli(self, *args):
        out = subprocess.run(
            [self.binary, *args, "--state-dir", str(self.state_dir)],
            check=True, capture_output=True, text=True, timeout=30,
        )
        return out.stdout

    def connection_string(self, module):
        return self.cli("connection-string", module).strip()

    def env(self, module):
        """`devhub env MODULE` parsed into a dict (the `export K='V'` lines)."""
        env = {}
        for line in self.cli("env", module).splitlines():
            if not line.startswith("export "):
                continue
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
        return env

    def service_connection_string(self):
        """IoT Hub service connection string for azure-iot-hub, from {state}/keys.json.

        devhub prints none (no CLI command), but stores the `iothubowner` policy key there.
        """
        with open(self.state_dir / "keys.json", encoding="utf-8") as f:
            keys = json.load(f)
        key = keys.get("service", {}).get("iothubowner")
        if not key:
            return None
        return f"HostName={self.hub_host_name};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"

    # ----- HTTPS service API (no Authorization: accepted from loopback) -----
    def request(self, method, path, body=None, headers=None):
        return requests.request(
            method, self.base_url + path, json=body, headers=headers,
            verify=self.ca_file, timeout=HTTP_TIMEOUT,
        )

    def twin_path(self, module):
        return f"/twins/{self.device_id}/modules/{module}?api-version=2021-04-12"

    def get_twin(self, module):
        r = self.request("GET", self.twin_path(module))
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def patch_desired(self, module, desired):
        r = self.request("PATCH", self.twin_path(module), {"properties": {"desired": desired}},
                         headers={"If-Match": "*"})
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def invoke(self, module, method, payload, response_timeout=10, connect_timeout=0):
        return self.request(
            "POST", f"/twins/{self.device_id}/modules/{module}/methods?api-version=2021-04-12",
            {"methodName": method, "payload": payload,
             "responseTimeoutInSeconds": response_timeout, "connectTimeoutInSeconds": connect_timeout},
        )

    def upstream(self):
        r = self.request("GET", "/devhub/upstream")
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def wait_upstream(self, predicate, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.upstream() if predicate(m)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def log_tail(self, n=60):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def start_devhub(state_dir, log_path, extra_args=()):
    binary = devhub_bin()
    ready_file = state_dir / "ready-file.json"
    log = open(log_path, "w", encoding="utf-8")
    proc = subprocess.Popen(
        [binary, "run", "--manifest", str(MANIFEST), "--state-dir", str(state_dir),
         "--ready-file", str(ready_file), "--mqtt-port", str(MQTT_PORT),
         "--https-port", str(HTTPS_PORT), "--log", "debug", *extra_args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"},
    )
    deadline = time.monotonic() + 60
    while not ready_file.exists():
        if proc.poll() is not None:
            log.close()
            pytest.exit(f"devhub exited with {proc.returncode} before it was ready:\n"
                        f"{pathlib.Path(log_path).read_text(errors='replace')[-3000:]}", 3)
        if time.monotonic() > deadline:
            proc.kill()
            pytest.exit("devhub did not write its ready file within 60 s", 3)
        time.sleep(0.1)
    ready = json.loads(ready_file.read_text())
    return DevHub(binary, state_dir, ready, proc, log_path)


def stop_devhub(hub):
    if hub.proc.poll() is None:
        hub.proc.send_signal(signal.SIGTERM)
        try:
            hub.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            hub.proc.kill()
            hub.proc.wait(timeout=5)


@pytest.fixture(scope="session")
def hub():
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="devhub-interop-py-") as d:
        h = start_devhub(pathlib.Path(d), LOG_DIR / "devhub-python.log")
        try:
            yield h
        finally:
            stop_devhub(h)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, append the end of devhub's log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "hub" in getattr(item, "funcargs", {}):
        rep.sections.append(("devhub log (tail)", item.funcargs["hub"].log_tail()))


@contextlib.contextmanager
def connected(client):
    try:
        client.connect()
        yield client
    finally:
        client.shutdown()


@contextlib.contextmanager
def module_client(hub, module):
    """IoTHubModuleClient from the module's connection string plus devhub's CA."""
    client = IoTHubModuleClient.create_from_connection_string(
        hub.connection_string(module), server_verification_cert=hub.ca_pem
    )
    with connected(client):
        yield client


EDGE_ENV_PREFIXES = ("IOTEDGE_",)
EDGE_ENV_NAMES = ("EdgeHubConnectionString", "EdgeModuleCACertificateFile")


def set_edge_env(hub, module, monkeypatch):
    """Replaces the module environment with what `devhub env MODULE` prints; returns it."""
    env = hub.env(module)
    for k in list(os.environ):
        if k.startswith(EDGE_ENV_PREFIXES) or k in EDGE_ENV_NAMES:
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@contextlib.contextmanager
def edge_module_client(hub, module, monkeypatch):
    """IoTHubModuleClient.create_from_edge_environment() through the Workload API only."""
    set_edge_env(hub, module, monkeypatch)
    for k in EDGE_ENV_NAMES:
        monkeypatch.delenv(k)
    client = IoTHubModuleClient.create_from_edge_environment()
    with connected(client):
        yield client


def get(q, timeout=15, what="item"):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no {what} within {timeout} s") from None


def assert_nothing_more(q, wait=1.0, what="item"):
    try:
        extra = q.get(timeout=wait)
    except queue.Empty:
        return
    raise AssertionError(f"unexpected extra {what}: {extra!r}")
