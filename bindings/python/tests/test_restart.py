"""Reconnect after a devhub restart with no lost message (both clients)."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time

import pytest

import edgemodule
import edgemodule.aio
from devhub import DevHub, free_port
from conftest import LOG_DIR


@pytest.fixture
def own_hub(tmp_path):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    h = DevHub(tmp_path / "state", LOG_DIR / "devhub-restart.log", mqtt_port=free_port(), https_port=free_port())
    yield h
    h.stop()


N = 300


def test_sync_sender_and_receiver_survive_a_restart(own_hub):
    hub = own_hub
    opts = {**hub.options(), "connect_timeout": 30}
    recv = edgemodule.ModuleClient.create_from_connection_string(hub.connection_string("receiver"), **opts)
    send = edgemodule.ModuleClient.create_from_connection_string(hub.connection_string("sender"), **opts)
    got, errors = set(), []
    lock = threading.Lock()

    def on_msg(m):
        with lock:
            got.add(m.data)

    recv.on_message_received = on_msg
    try:
        recv.connect()
        send.connect()

        def produce():
            for i in range(N):
                try:
                    send.send_message_to_output(f"m{i}", "out")
                except edgemodule.EdgeModuleError as e:
                    errors.append((i, e))
                time.sleep(0.005)

        t = threading.Thread(target=produce)
        t.start()
        time.sleep(0.4)
        hub.restart()
        t.join(120)
        assert not errors, errors[:3]
        deadline = time.monotonic() + 60
        while len(got) < N and time.monotonic() < deadline:
            time.sleep(0.1)
        missing = sorted(set(f"m{i}".encode() for i in range(N)) - got)
        assert not missing, f"{len(missing)} lost, e.g. {missing[:5]}"
    finally:
        send.shutdown()
        recv.shutdown()


async def test_aio_sender_survives_a_restart(own_hub):
    hub = own_hub
    opts = {**hub.options(), "connect_timeout": 30}
    recv = edgemodule.aio.ModuleClient.create_from_connection_string(hub.connection_string("areceiver"), **opts)
    send = edgemodule.aio.ModuleClient.create_from_connection_string(hub.connection_string("asender"), **opts)
    got = set()
    recv.on_message_received = lambda m: got.add(m.data)
    async with recv, send:
        await recv.connect()
        await send.connect()

        async def produce():
            for i in range(N):
                await send.send_message_to_output(f"a{i}", "out")
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(produce())
        await asyncio.sleep(0.4)
        await asyncio.to_thread(hub.restart)
        await asyncio.wait_for(task, 120)
        deadline = time.monotonic() + 60
        while len(got) < N and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        missing = sorted(set(f"a{i}".encode() for i in range(N)) - got)
        assert not missing, f"{len(missing)} lost, e.g. {missing[:5]}"
