"""Misuse: closed clients, wrong argument types, raising handlers, shutdown inside a handler,
clients after fork, re-entrant calls from handlers."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

import edgemodule
import edgemodule.aio
from edgemodule import Message, MethodResponse
from conftest import wait_for


def test_closed_client_raises_client_closed(make_client):
    c = make_client("misuse")
    c.connect()
    c.shutdown()
    c.shutdown()  # idempotent
    for call in (lambda: c.send_message("x"), lambda: c.send_message_to_output("x", "out"), c.get_twin,
                 lambda: c.patch_twin_reported_properties({"a": 1}), c.connect,
                 lambda: c.send_messages_to_output(["a"], "out")):
        with pytest.raises(edgemodule.ClientClosedError) as e:
            call()
        assert e.value.code == 8 and e.value.kind == "Closed"
        assert isinstance(e.value, edgemodule.EdgeModuleError)


def test_shutdown_before_connect(make_client):
    c = make_client("misuse")
    c.shutdown()
    with pytest.raises(edgemodule.ClientClosedError):
        c.connect()


@pytest.mark.parametrize("call, exc, text", [
    (lambda c: c.send_message_to_output(Message("x"), 5), TypeError, "output_name must be a str"),
    (lambda c: c.send_message_to_output({"a": 1}, "out"), TypeError, "message must be an edgemodule.Message"),
    (lambda c: c.send_message_to_output("x", ""), ValueError, "output_name must not be empty"),
    (lambda c: c.send_message(42), TypeError, "message must be"),
    (lambda c: c.send_messages_to_output("abc", "out"), TypeError, "messages must be a list"),
    (lambda c: c.send_messages_to_output([Message("a"), 3], "out"), TypeError, "message must be"),
    (lambda c: c.patch_twin_reported_properties([1]), TypeError, "must be a dict"),
    (lambda c: c.patch_twin_reported_properties({"a": object()}), TypeError, "not JSON serializable"),
    (lambda c: c.patch_twin_reported_properties({1: "a"}), TypeError, "keys must be str"),
    (lambda c: c.send_method_response("ok"), TypeError, "must be a MethodResponse"),
    (lambda c: c.invoke_method("reset", "dev"), TypeError, "method_params must be a dict"),
    (lambda c: c.invoke_method({"payload": 1}, "dev"), ValueError, "methodName"),
    (lambda c: c.invoke_method({"methodName": "m"}, 7), TypeError, "device_id must be a str"),
    (lambda c: c.publish("t", b"x", qos=2), ValueError, "qos must be 0 or 1"),
    (lambda c: c.set_input_message_handler("in1", "not callable"), TypeError, "must be a callable"),
    (lambda c: c.set_method_handler(3, print), TypeError, "method_name must be a str"),
    (lambda c: setattr(c, "on_message_received", 5), TypeError, "must be a callable"),
])
def test_wrong_argument_types(make_client, call, exc, text):
    c = make_client("misuse")
    with pytest.raises(exc, match=text):
        call(c)


def test_message_type_checks():
    with pytest.raises(TypeError, match="Message data must be bytes"):
        Message(12)
    with pytest.raises(TypeError, match="custom_properties must be a dict"):
        Message(b"", custom_properties=[("a", "b")])
    m = Message("é")
    assert m.data == "é".encode()
    m.custom_properties["bad"] = object()
    with pytest.raises(TypeError, match="custom property .bad."):
        m.get_size()
    with pytest.raises(TypeError, match="MethodResponse|status must be an int"):
        MethodResponse("rid", "200")


def test_invalid_values_raise_value_errors(make_client):
    c = make_client("misuse")
    c.connect()
    with pytest.raises(edgemodule.InvalidArgumentError) as e:
        c.patch_twin_reported_properties({"bad key": 1})
    assert isinstance(e.value, ValueError)
    with pytest.raises(edgemodule.MessageTooLargeError):
        c.send_message_to_output(b"x" * (300 * 1024), "out")


def test_bad_configuration():
    with pytest.raises(edgemodule.ConfigurationError):
        edgemodule.ModuleClient.create_from_connection_string("HostName=x;DeviceId=y")
    with pytest.raises(TypeError, match="unexpected client option 'bogus'"):
        edgemodule.ModuleClient.create_from_connection_string("HostName=x", bogus=1)
    with pytest.raises(TypeError, match="connection_string must be a str"):
        edgemodule.ModuleClient.create_from_connection_string(None)


def test_raising_input_handler_is_logged_and_message_acked(make_client, hub, caplog):
    c = make_client("misuse")
    calls = queue.Queue()

    def handler(m):
        if m.data in (b"bad", b"good"):  # earlier tests may leave messages for redelivery
            calls.put(m)
        if m.data == b"bad":
            raise ValueError("handler failure")

    c.on_message_received = handler
    c.connect()
    with caplog.at_level(logging.ERROR, logger="edgemodule"):
        c.send_message_to_output("bad", "out")
        bad = calls.get(timeout=10)
        c.send_message_to_output("good", "out")
        good = calls.get(timeout=10)
    assert bad.data == b"bad" and good.data == b"good"
    assert not edgemodule._native.is_pending_ack(bad)  # acked despite the error: no redelivery loop
    assert any("handler failure" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_shutdown_inside_a_handler_sync(make_client, hub):
    c = make_client("misuse")
    seen, done = [], threading.Event()

    def handler(m):
        seen.append(m.data)
        c.send_message_to_output(b"reply", "out") if m.data == b"first" else None  # re-entrant call
        if m.data == b"reply":
            c.shutdown()  # from the dispatcher thread: must not deadlock
            done.set()

    c.on_message_received = handler
    c.connect()
    c.send_message_to_output(b"first", "out")
    assert done.wait(10), seen
    assert seen == [b"first", b"reply"]
    wait_for(lambda: not c._thread.is_alive(), 10, "dispatcher exit")


def test_no_handler_runs_after_shutdown_returns(make_client, hub):
    c = make_client("misuse")
    running = threading.Event()
    after = []
    state = {"closed": False}

    def handler(m):
        running.set()
        time.sleep(0.2)
        if state["closed"]:
            after.append(m.data)

    c.on_message_received = handler
    c.connect()
    sender = make_client("sender")
    sender.connect()
    c.send_messages_to_output([f"{i}" for i in range(50)], "out")
    assert running.wait(10)
    c.shutdown()
    state["closed"] = True
    time.sleep(0.5)
    assert after == []
    assert not c._thread.is_alive()


async def test_shutdown_inside_a_handler_aio(make_aclient):
    c = make_aclient("misuse")
    done = asyncio.Event()

    token = uuid.uuid4().hex.encode()

    async def handler(m):
        if m.data == token:  # earlier tests may leave unacked messages for redelivery
            await c.shutdown()
            done.set()

    c.on_message_received = handler
    await c.connect()
    await c.send_message_to_output(token, "out")
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.wait_for(c._task, 10)


async def test_shutdown_inside_a_method_handler_aio(make_aclient, hub):
    c = make_aclient("amethmod")

    async def stop(req):
        await c.send_method_response(MethodResponse(req.request_id, 200, "bye"))
        await c.shutdown()

    c.set_method_handler("stop", stop)
    await c.connect()
    s, body = await asyncio.to_thread(hub.invoke, "amethmod", "stop")
    assert body == {"status": 200, "payload": "bye"}
    await asyncio.wait_for(c._task, 10)


async def test_raising_coroutine_handler_aio(make_aclient, caplog):
    c = make_aclient("misuse")
    got: asyncio.Queue = asyncio.Queue()

    async def handler(m):
        if m.data == b"bad":
            raise RuntimeError("async failure")
        if m.data == b"good":
            await got.put(m.data)

    c.on_message_received = handler
    await c.connect()
    with caplog.at_level(logging.ERROR, logger="edgemodule"):
        await c.send_message_to_output("bad", "out")
        await c.send_message_to_output("good", "out")
        assert await asyncio.wait_for(got.get(), 10) == b"good"
    assert any(r.exc_info and "async failure" in str(r.exc_info[1]) for r in caplog.records)


async def test_aio_closed_and_type_errors(make_aclient):
    c = make_aclient("misuse")
    with pytest.raises(TypeError, match="output_name must be a str"):
        await c.send_message_to_output("x", None)
    await c.connect()
    await c.shutdown()
    with pytest.raises(edgemodule.ClientClosedError):
        await c.get_twin()


CHILD = textwrap.dedent("""
    import os, sys, edgemodule
    c = edgemodule.ModuleClient.create_from_connection_string(sys.argv[1], mqtt_port=int(sys.argv[2]),
        server_verification_cert=open(sys.argv[3]).read())
    c.connect()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            c.send_message_to_output("from child", "out")
            code = 10
        except edgemodule.EdgeModuleError as e:
            if "forked" not in str(e):
                code = 11
        try:
            edgemodule.ModuleClient.create_from_connection_string(sys.argv[1])
            code = 12
        except edgemodule.EdgeModuleError as e:
            if "fork" not in str(e):
                code = 13
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    c.send_message_to_output("parent still works", "out")
    c.shutdown()
    sys.exit(os.waitstatus_to_exitcode(status))
""")


def test_forked_child_gets_a_clear_error(hub):
    r = subprocess.run([sys.executable, "-c", CHILD, hub.connection_string("misuse"), str(hub.mqtt_port), hub.ca_file],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


EXIT_LIVE = textwrap.dedent("""
    import sys, logging, edgemodule
    logging.basicConfig(level=logging.DEBUG)
    c = edgemodule.ModuleClient.create_from_connection_string(sys.argv[1], mqtt_port=int(sys.argv[2]),
        server_verification_cert=open(sys.argv[3]).read())
    c.on_message_received = lambda m: None
    c.connect()
    print("connected", flush=True)
    # exit without shutdown: atexit closes the client; no hang, no crash
""")


def test_process_exits_with_a_live_client(hub):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-c", EXIT_LIVE, hub.connection_string("misuse"), str(hub.mqtt_port), hub.ca_file],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "connected" in r.stdout
    assert time.monotonic() - t < 15
