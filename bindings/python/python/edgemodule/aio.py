"""``edgemodule.aio``: the asyncio ``ModuleClient``.

Every operation is a coroutine that completes on the running loop (the I/O happens on the
core's threads; the loop is never blocked). Handlers — plain functions or coroutine functions —
run on the loop the client was connected from: input messages, twin patches and status changes
one at a time in arrival order; each method request in a task of its own (so a method handler
may call methods of other modules).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

from . import _native, models
from ._base import (
    _INPUT,
    _METHOD,
    _PATCH,
    _STATUS_EV,
    _TOPIC,
    BATCH,
    Handler,
    MessageLike,
    _check_handler,
    _check_message,
    _check_messages,
    _check_qos,
    _check_reported_patch,
    _check_str,
    _ClientBase,
    _invoke_args,
    _method_response_args,
)
from .exceptions import ClientClosedError, EdgeModuleError
from .models import (
    ConnectionStatus,
    MethodRequest,
    MethodResponse,
    StatusReason,
    TopicMessage,
    Twin,
)

from ._native import Message

__all__ = ["ModuleClient", "Message", *models.__all__]


def _resolve(fut: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    if fut.done():  # cancelled by the caller
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _complete(loop: asyncio.AbstractEventLoop, fut: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    # Called by a core thread (with the GIL): hand the result to the loop's thread.
    try:
        loop.call_soon_threadsafe(_resolve, fut, ok, value)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more


class ModuleClient(_ClientBase):
    """An asyncio IoT Edge module client (azure-iot-device's ``aio.IoTHubModuleClient`` shape).

    Create it with :meth:`create_from_edge_environment` or
    :meth:`create_from_connection_string` (plain classmethods), set handlers,
    ``await client.connect()``, and ``await client.shutdown()`` at the end — or
    ``async with client:``.
    """

    def __init__(self, native: "_native.NativeClient") -> None:
        super().__init__(native)
        self._task: Optional["asyncio.Task[None]"] = None
        self._method_tasks: Set["asyncio.Task[None]"] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    async def _call(self, fn: Callable[..., None], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fn(*args, functools.partial(_complete, loop, fut))
        return await fut

    # ----- lifecycle -----
    async def connect(self) -> None:
        """Connect to the hub (see the sync client's :meth:`edgemodule.ModuleClient.connect`);
        starts dispatching events to handlers on the running loop."""
        self._start_dispatcher()
        await self._call(self._native.connect_async)

    async def shutdown(self) -> None:
        """Close for good; waits until no handler runs any more (except the caller, when called
        from inside a handler). Idempotent."""
        self._closing = True
        await self._call(self._native.close_async)
        current = asyncio.current_task()
        waits = [t for t in (self._task, *self._method_tasks) if t is not None and t is not current and not t.done()]
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)

    async def disconnect(self) -> None:
        """Same as :meth:`shutdown` (create a new client to connect again)."""
        await self.shutdown()

    async def __aenter__(self) -> "ModuleClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.shutdown()

    # ----- messages -----
    async def send_message_to_output(self, message: MessageLike, output_name: str) -> None:
        """Send ``message`` to the output ``output_name``; completes when the hub accepted it.
        Many concurrent sends (``asyncio.gather``) are pipelined."""
        _check_message(message)
        _check_str(output_name, "output_name")
        await self._call(self._native.send_to_output_async, output_name, message)

    async def send_message(self, message: MessageLike) -> None:
        """Send telemetry (no output name)."""
        _check_message(message)
        await self._call(self._native.send_async, message)

    async def send_messages_to_output(
        self, messages: Iterable[MessageLike], output_name: str
    ) -> List[Optional[EdgeModuleError]]:
        """Send many messages to one output, all in flight at once; one entry per message:
        None if sent, else the error."""
        ms = _check_messages(messages)
        _check_str(output_name, "output_name")
        return await self._call(self._native.send_batch_async, output_name, ms)

    # ----- twin -----
    async def get_twin(self) -> Twin:
        """The module twin: ``{"desired": {...}, "reported": {...}}``."""
        desired, reported = await self._call(self._native.get_twin_async)
        return Twin(desired=desired, reported=reported)

    async def patch_twin_reported_properties(self, reported_properties_patch: Dict[str, Any]) -> Optional[int]:
        """Merge a patch into the reported properties; returns the new reported version."""
        return await self._call(self._native.patch_reported_async, _check_reported_patch(reported_properties_patch))

    # ----- methods -----
    async def send_method_response(self, method_response: MethodResponse) -> None:
        """Answer a direct method request."""
        await self._call(self._native.respond_method_async, *_method_response_args(method_response))

    async def invoke_method(
        self, method_params: Dict[str, Any], device_id: str, module_id: Optional[str] = None
    ) -> Dict[str, Any]:
        """Invoke a direct method on another module; returns ``{"status", "payload"}``."""
        status, answer = await self._call(
            self._native.invoke_method_async, *_invoke_args(method_params, device_id, module_id)
        )
        return {"status": status, "payload": answer}

    # ----- broker mode -----
    async def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        """Broker mode: publish on a user topic."""
        _check_str(topic, "topic")
        await self._call(self._native.publish_async, topic, payload, _check_qos(qos))

    async def subscribe(self, topic_filter: str, qos: int = 1, handler: Optional[Handler] = None) -> None:
        """Broker mode: subscribe; messages go to ``handler`` or ``on_topic_message_received``."""
        _check_str(topic_filter, "topic_filter")
        _check_handler(handler, "handler")
        self._start_dispatcher()
        await self._call(self._native.subscribe_async, topic_filter, _check_qos(qos))
        if handler is not None:
            self._topic_handlers[topic_filter] = handler

    async def unsubscribe(self, topic_filter: str) -> None:
        """Broker mode: remove a subscription (and its handler)."""
        _check_str(topic_filter, "topic_filter")
        await self._call(self._native.unsubscribe_async, topic_filter)
        self._topic_handlers.pop(topic_filter, None)

    # ----- dispatcher -----
    def _start_dispatcher(self) -> None:
        if self._closing:
            raise ClientClosedError("the client is shut down")
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="edgemodule-dispatcher")

    async def _run(self) -> None:
        while not self._closing:
            try:
                events = await self._call(self._native.next_events_async, BATCH)
            except EdgeModuleError:
                break
            if events is None:
                break
            for ev in events:
                if self._closing:
                    break
                await self._dispatch(ev)

    @staticmethod
    async def _invoke(handler: Handler, *args: Any) -> Any:
        r = handler(*args)
        if inspect.isawaitable(r):
            r = await r
        return r

    async def _dispatch(self, ev: tuple) -> None:
        tag = ev[0]
        if tag == _INPUT:
            msg = ev[2]
            h = self._input_handler(ev[1])
            if h is None:
                self._unhandled_input(ev[1])
                return
            try:
                await self._invoke(h, msg)
            except Exception:
                self._log_handler_error(f"input {ev[1]!r}")
            _native.ack(msg)
        elif tag == _METHOD:
            t = asyncio.get_running_loop().create_task(self._method(self._method_request(ev)))
            self._method_tasks.add(t)
            t.add_done_callback(self._method_tasks.discard)
        elif tag == _PATCH:
            h = self._on_patch
            if h is not None:
                try:
                    await self._invoke(h, self._patch_arg(ev[1], ev[2]))
                except Exception:
                    self._log_handler_error("desired properties patch")
        elif tag == _STATUS_EV:
            hs = self._status_event(ev[1], ev[2])
            if hs is not None:
                try:
                    await self._invoke(hs[0], *hs[1])
                except Exception:
                    self._log_handler_error("connection state")
        elif tag == _TOPIC:
            tm = self._topic_message(ev)
            h = self._topic_handler(tm.topic)
            if h is not None:
                try:
                    await self._invoke(h, tm)
                except Exception:
                    self._log_handler_error(f"topic {tm.topic!r}")

    async def _method(self, req: MethodRequest) -> None:
        if self._closing:
            return
        h = self._method_handler(req.name)
        resp: Optional[MethodResponse]
        if h is None:
            resp = self._not_found(req)
        else:
            try:
                resp = self._method_result(req, await self._invoke(h, req))
            except Exception:
                self._log_handler_error(f"method {req.name!r}")
                resp = self._error_response(req)
        if resp is not None and not self._closing:
            try:
                await self.send_method_response(resp)
            except EdgeModuleError as e:
                self._log_send_error(e)
