"""The asyncio client against devhub: the same features, handlers on the running loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

import pytest

import edgemodule
from edgemodule.aio import (
    ConnectionStatus,
    Message,
    MethodRequest,
    MethodResponse,
    ModuleClient,
    StatusReason,
    Twin,
)


async def get(q: asyncio.Queue, timeout=15, what="item"):
    try:
        return await asyncio.wait_for(q.get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {what} within {timeout} s") from None


async def test_route_and_handlers_run_on_the_loop(make_aclient, hub):
    recv = make_aclient("areceiver")
    got: asyncio.Queue = asyncio.Queue()
    loop_thread = threading.current_thread()
    threads = []

    async def on_in1(m):
        threads.append(threading.current_thread())
        await got.put(("in1", m))

    def fallback(m):  # a plain function works too
        threads.append(threading.current_thread())
        got.put_nowait((m.input_name, m))

    recv.set_input_message_handler("in1", on_in1)
    recv.on_message_received = fallback
    await recv.connect()
    send = make_aclient("asender")
    await send.connect()
    assert send.connected
    await send.send_message_to_output(Message(b"hi", message_id="a-1", custom_properties={"p": "q"}), "out")
    await send.send_message_to_output("second", "other")
    name, m = await get(got)
    assert name == "in1" and m.data == b"hi" and m.message_id == "a-1" and m.custom_properties == {"p": "q"}
    name, m = await get(got)
    assert name == "in2" and m.data == b"second"
    assert threads and all(t is loop_thread for t in threads)


async def test_concurrent_sends_and_batch(make_aclient):
    recv = make_aclient("areceiver")
    got: asyncio.Queue = asyncio.Queue()
    recv.on_message_received = lambda m: got.put_nowait(m.data)
    await recv.connect()
    send = make_aclient("asender")
    await send.connect()
    await asyncio.gather(*(send.send_message_to_output(f"c{i}", "out") for i in range(200)))
    assert await send.send_messages_to_output([f"b{i}" for i in range(200)], "out") == [None] * 200
    bodies = [await get(got) for _ in range(400)]
    assert sorted(bodies) == sorted([f"c{i}".encode() for i in range(200)] + [f"b{i}".encode() for i in range(200)])
    assert bodies[200:] == [f"b{i}".encode() for i in range(200)]


async def test_telemetry(make_aclient, hub):
    send = make_aclient("asender")
    await send.connect()
    mid = f"atele-{uuid.uuid4()}"
    await send.send_message(Message("up", message_id=mid))
    found = await asyncio.to_thread(hub.wait_upstream, lambda m: m.get("messageId") == mid)
    assert len(found) == 1


async def test_twin(make_aclient, hub):
    c = make_aclient("atwinmod")
    patches: asyncio.Queue = asyncio.Queue()

    async def on_patch(p):
        await patches.put(p)

    c.on_twin_desired_properties_patch_received = on_patch
    await c.connect()
    twin = await c.get_twin()
    assert isinstance(twin, Twin) and twin.desired["threshold"] == 7
    await c.patch_twin_reported_properties({"state": "ok"})
    rep = (await asyncio.to_thread(hub.twin, "atwinmod"))["properties"]["reported"]
    assert rep["state"] == "ok"
    await asyncio.to_thread(hub.patch_desired, "atwinmod", {"threshold": 8})
    p = await get(patches)
    assert p["threshold"] == 8 and "$version" in p


async def test_methods_coroutine_handlers_and_invoke(make_aclient, hub):
    target = make_aclient("amethmod")

    async def reset(req: MethodRequest):
        await asyncio.sleep(0.01)
        return MethodResponse.create_from_method_request(req, 200, {"reset": True, "payload": req.payload})

    async def generic(req):
        await target.send_method_response(MethodResponse(req.request_id, 202, req.name))

    target.set_method_handler("reset", reset)
    target.on_method_request_received = generic
    await target.connect()
    s, body = await asyncio.to_thread(hub.invoke, "amethmod", "reset", [1, 2])
    assert body == {"status": 200, "payload": {"reset": True, "payload": [1, 2]}}
    s, body = await asyncio.to_thread(hub.invoke, "amethmod", "xyz")
    assert body == {"status": 202, "payload": "xyz"}

    caller = make_aclient("caller")
    await caller.connect()
    r = await caller.invoke_method({"methodName": "reset", "payload": None}, caller.device_id, "amethmod")
    assert r == {"status": 200, "payload": {"reset": True, "payload": None}}


async def test_method_handler_may_invoke_another_module(make_aclient, hub):
    """Method handlers run in tasks of their own: one may await another module's method."""
    a = make_aclient("amethmod")
    b = make_aclient("methmod")
    b.set_method_handler("inner", lambda r: MethodResponse(r.request_id, 200, "inner-ok"))

    async def outer(req):
        r = await a.invoke_method({"methodName": "inner"}, a.device_id, "methmod")
        return MethodResponse(req.request_id, 200, r["payload"])

    a.set_method_handler("outer", outer)
    await b.connect()
    await a.connect()
    s, body = await asyncio.to_thread(hub.invoke, "amethmod", "outer")
    assert body == {"status": 200, "payload": "inner-ok"}


async def test_connection_state(make_aclient, hub):
    c = make_aclient("areceiver")
    states: asyncio.Queue = asyncio.Queue()
    c.on_connection_state_change = lambda s, r: states.put_nowait((s, r))
    await c.connect()
    assert await get(states) == (ConnectionStatus.CONNECTED, StatusReason.CONNECTION_OK)
    await asyncio.to_thread(hub.fault, "drop-connections")
    assert (await get(states))[0] is ConnectionStatus.DISCONNECTED_RETRYING
    assert (await get(states))[0] is ConnectionStatus.CONNECTED


async def test_async_context_manager(hub):
    async with ModuleClient.create_from_connection_string(hub.connection_string("areceiver"), **hub.options()) as c:
        await c.connect()
        assert c.connected
    assert not c.connected
    with pytest.raises(edgemodule.ClientClosedError):
        await c.send_message("late")


async def test_edge_environment(hub, monkeypatch):
    for k, v in hub.env("asender").items():
        monkeypatch.setenv(k, v)
    async with ModuleClient.create_from_edge_environment() as c:
        await c.connect()
        assert c.module_id == "asender"


async def test_cancelled_call_does_not_break_the_client(make_aclient):
    c = make_aclient("asender")
    await c.connect()
    t = asyncio.ensure_future(c.get_twin())
    await asyncio.sleep(0)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert isinstance(await c.get_twin(), Twin)
