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
import sys
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

sys.path.insert(0, str(REPO / "tests" / "support"))
from devhub_harness import DevHubProcess, DevHubStartError  # noqa: E402
from devhub_pytest import pytest_runtest_makereport, require_devhub_bin  # noqa: E402,F401

MQTT_PORT = 8883  # fixed by the Python SDK
HTTPS_PORT = 443  # fixed by the Python SDK (module-to-module invoke)
HTTP_TIMEOUT = 30  # seconds, for calls to devhub's service API


class DevHub(DevHubProcess):
    """`devhub run` on the SDK's fixed ports, plus the service API calls the interop tests make."""

    def __init__(self, state_dir, log_path):
        super().__init__(state_dir, log_path, MANIFEST, mqtt_port=MQTT_PORT, https_port=HTTPS_PORT,
                         log_level="debug", fresh_log=True)
        self.base_url = f"https://localhost:{self.https_port}"

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


@pytest.fixture(scope="session")
def hub():
    require_devhub_bin("set DEVHUB_BIN or run tests/interop/run.sh")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="devhub-interop-py-") as d:
        try:
            h = DevHub(pathlib.Path(d), LOG_DIR / "devhub-python.log")
        except DevHubStartError as e:
            pytest.exit(f"devhub did not start: {e}", 3)
        try:
            yield h
        finally:
            h.stop()


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
