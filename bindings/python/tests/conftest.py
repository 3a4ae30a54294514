"""Fixtures: one devhub (ephemeral ports) per session; clients of its modules; helpers."""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from devhub import REPO, DevHub  # noqa: E402
from devhub_pytest import pytest_runtest_makereport, require_devhub_bin  # noqa: E402,F401

import edgemodule  # noqa: E402
import edgemodule.aio  # noqa: E402

LOG_DIR = pathlib.Path(os.environ.get("EDGEMODULE_PY_LOG_DIR", REPO / "tests" / "out" / "python"))


@pytest.fixture(scope="session")
def hub():
    require_devhub_bin("set DEVHUB_BIN; run bindings/python/run-tests.sh")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="devhub-py-") as d:
        log = LOG_DIR / "devhub.log"
        log.write_text("")
        h = DevHub(pathlib.Path(d) / "state", log)
        try:
            yield h
        finally:
            h.stop()


@pytest.fixture
def make_client(hub):
    """make_client(module) -> connected-later sync client; shut down after the test."""
    made = []

    def make(module, **opts):
        c = edgemodule.ModuleClient.create_from_connection_string(
            hub.connection_string(module), **{**hub.options(), **opts})
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown()


@pytest.fixture
async def make_aclient(hub):
    made = []

    def make(module, **opts):
        c = edgemodule.aio.ModuleClient.create_from_connection_string(
            hub.connection_string(module), **{**hub.options(), **opts})
        made.append(c)
        return c

    yield make
    for c in made:
        await c.shutdown()


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
