"""The blocking client against devhub: messages, handlers, twin, methods, status, logging."""

from __future__ import annotations

import logging
import queue
import threading
import uuid

import pytest

import edgemodule
from edgemodule import (
    ConnectionStatus,
    Message,
    MethodRequest,
    MethodResponse,
    StatusReason,
    Twin,
)
from conftest import wait_for


def get(q, timeout=15, what="item"):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no {what} within {timeout} s") from None


def test_route_message_keeps_body_and_properties(make_client, hub):
    recv = make_client("receiver")
    got = queue.Queue()
    threads = set()

    def on_in1(m):
        threads.add(threading.current_thread().name)
        got.put(m)

    recv.set_input_message_handler("in1", on_in1)
    recv.connect()
    send = make_client("sender")
    send.connect()
    assert send.connected and send.connection_status is ConnectionStatus.CONNECTED
    assert send.module_id == "sender" and send.device_id == hub.device_id
    m = Message(b'{"t": 21.5}', message_id="m-1", content_encoding="utf-8", content_type="application/json",
                correlation_id="c-1", custom_properties={"unit": "celsius", "odd key": "a b/c&d=e%f", "n": 3})
    m.custom_properties["none"] = None
    send.send_message_to_output(m, "out")
    r = get(got, what="routed message")
    assert r.data == b'{"t": 21.5}'
    assert r.input_name == "in1"
    assert r.message_id == "m-1" and r.correlation_id == "c-1"
    assert r.content_type == "application/json" and r.content_encoding == "utf-8"
    assert r.custom_properties == {"unit": "celsius", "odd key": "a b/c&d=e%f", "n": "3", "none": None}
    assert r.connection_device_id == hub.device_id and r.connection_module_id == "sender"
    assert threads == {"edgemodule-dispatcher"}


def test_per_input_handlers_and_fallback(make_client):
    recv = make_client("receiver")
    in1, other = queue.Queue(), queue.Queue()
    recv.set_input_message_handler("in1", lambda m: in1.put(m.data))
    recv.on_message_received = lambda m: other.put((m.input_name, m.data))
    recv.connect()
    send = make_client("sender")
    send.connect()
    send.send_message_to_output("to in1", "out")
    send.send_message_to_output(b"to in2", "other")
    assert get(in1) == b"to in1"
    assert get(other) == ("in2", b"to in2")
    recv.set_input_message_handler("in1", None)  # removed: in1 falls back too
    send.send_message_to_output(bytearray(b"again"), "out")
    assert get(other) == ("in1", b"again")


def test_batch_send_and_ordering(make_client):
    recv = make_client("receiver")
    got = queue.Queue()
    recv.on_message_received = lambda m: got.put(m.data)
    recv.connect()
    send = make_client("sender")
    send.connect()
    results = send.send_messages_to_output([Message(f"b{i}".encode()) for i in range(300)], "out")
    assert results == [None] * 300
    bodies = [get(got) for _ in range(300)]
    assert bodies == [f"b{i}".encode() for i in range(300)]


def test_telemetry_reaches_upstream(make_client, hub):
    send = make_client("sender")
    send.connect()
    mid = f"tele-{uuid.uuid4()}"
    send.send_message(Message("hello upstream", message_id=mid))
    found = hub.wait_upstream(lambda m: m.get("messageId") == mid)
    assert len(found) == 1 and found[0]["body"] == "hello upstream"
    assert found[0].get("output") is None


def test_coroutine_handler_in_sync_client(make_client, hub):
    recv = make_client("receiver")
    got = queue.Queue()

    async def handler(m):
        got.put(m.data)

    recv.on_message_received = handler
    recv.connect()
    hub.inject("receiver", "in1", b"injected", {"k": "v"})
    assert get(got) == b"injected"


def test_message_acked_after_handler_returns(make_client, hub):
    """Ack after the handler: a message the handler is still processing is not acked."""
    recv = make_client("receiver")
    started, release, seen = threading.Event(), threading.Event(), []

    def slow(m):
        seen.append(edgemodule._native.is_pending_ack(m))
        started.set()
        release.wait(10)

    recv.on_message_received = slow
    recv.connect()
    hub.inject("receiver", "in1", b"x")
    assert started.wait(10)
    assert seen == [True]
    release.set()


def test_twin_get_patch_and_desired_updates(make_client, hub):
    c = make_client("twinmod")
    patches = queue.Queue()
    c.on_twin_desired_properties_patch_received = patches.put
    c.connect()
    twin = c.get_twin()
    assert isinstance(twin, Twin) and isinstance(twin, dict)
    assert twin["desired"]["threshold"] == 42 and twin.desired["mode"] == "eco"
    assert isinstance(twin.desired_version, int)
    v = c.patch_twin_reported_properties({"fw": "1.2", "nested": {"a": [1, 2.5, True, None]}})
    assert v is None or isinstance(v, int)
    reported = hub.twin("twinmod")["properties"]["reported"]
    assert reported["fw"] == "1.2" and reported["nested"] == {"a": [1, 2.5, True, None]}
    hub.patch_desired("twinmod", {"threshold": 50})
    p = get(patches, what="desired patch")
    assert p["threshold"] == 50 and isinstance(p["$version"], int)
    c.patch_twin_reported_properties({"fw": None})
    assert "fw" not in hub.twin("twinmod")["properties"]["reported"]


def test_methods_per_name_generic_and_unknown(make_client, hub):
    c = make_client("methmod")
    c.set_method_handler("reset", lambda r: MethodResponse.create_from_method_request(r, 200, {"was": r.payload}))

    def generic(req: MethodRequest):
        c.send_method_response(MethodResponse(req.request_id, 201, {"generic": req.name}))  # a client call inside a handler

    c.on_method_request_received = generic
    c.connect()
    assert hub.invoke("methmod", "reset", {"x": 1}) == (200, {"status": 200, "payload": {"was": {"x": 1}}})
    assert hub.invoke("methmod", "other") == (200, {"status": 201, "payload": {"generic": "other"}})
    c.on_method_request_received = None
    status, body = hub.invoke("methmod", "nothing")
    assert body["status"] == 404


def test_method_handler_that_raises_answers_500(make_client, hub, caplog):
    c = make_client("methmod")

    def boom(req):
        raise RuntimeError("boom")

    c.set_method_handler("boom", boom)
    c.connect()
    with caplog.at_level(logging.ERROR, logger="edgemodule"):
        status, body = hub.invoke("methmod", "boom")
    assert body["status"] == 500
    assert any("boom" in r.getMessage() or (r.exc_info and "boom" in str(r.exc_info[1])) for r in caplog.records)
    # still alive
    c.set_method_handler("ok", lambda r: MethodResponse(r.request_id, 200, None))
    assert hub.invoke("methmod", "ok")[1]["status"] == 200


def test_invoke_method_module_to_module(make_client):
    target = make_client("methmod")
    target.set_method_handler("echo", lambda r: MethodResponse(r.request_id, 200, {"echo": r.payload}))
    target.connect()
    caller = make_client("caller")
    caller.connect()
    r = caller.invoke_method({"methodName": "echo", "payload": {"a": [1, "b"]}, "responseTimeoutInSeconds": 10},
                             caller.device_id, "methmod")
    assert r == {"status": 200, "payload": {"echo": {"a": [1, "b"]}}}
    with pytest.raises(edgemodule.EdgeModuleError) as e:
        caller.invoke_method({"methodName": "echo", "responseTimeoutInSeconds": 5}, caller.device_id, "nobody")
    assert isinstance(e.value, (edgemodule.NotFoundError, edgemodule.HubError))


def test_connection_state_handler_both_styles(make_client, hub):
    c = make_client("receiver")
    states, plain = queue.Queue(), queue.Queue()
    c.on_connection_state_change = lambda status, reason: states.put((status, reason))
    c.connect()
    assert get(states) == (ConnectionStatus.CONNECTED, StatusReason.CONNECTION_OK)
    hub.fault("drop-connections")
    st, reason = get(states)
    assert st is ConnectionStatus.DISCONNECTED_RETRYING
    assert get(states)[0] is ConnectionStatus.CONNECTED
    c.on_connection_state_change = lambda: plain.put(c.connected)  # azure-iot-device style
    hub.fault("drop-connections")
    get(plain)


def test_context_manager_and_shutdown_stops_handlers(hub):
    got = []
    with edgemodule.ModuleClient.create_from_connection_string(hub.connection_string("receiver"), **hub.options()) as c:
        c.on_message_received = got.append
        c.connect()
    assert not c.connected
    with pytest.raises(edgemodule.ClientClosedError):
        c.send_message("late")


def test_create_from_edge_environment(hub, monkeypatch):
    for k, v in hub.env("sender").items():
        monkeypatch.setenv(k, v)
    c = edgemodule.ModuleClient.create_from_edge_environment()
    try:
        c.connect()
        assert c.module_id == "sender"
        c.send_message_to_output("via env", "out")
    finally:
        c.shutdown()


def test_core_logs_reach_python_logging(hub, caplog):
    with caplog.at_level(logging.DEBUG, logger="edgemodule"):
        c = edgemodule.ModuleClient.create_from_connection_string(hub.connection_string("misuse"), **hub.options())
        c.connect()
        c.shutdown()
    edgemodule.refresh_log_level()
    names = {r.name for r in caplog.records}
    assert any(n.startswith("edgemodule") for n in names), names
