"""The blocking ``edgemodule.ModuleClient``: every call waits with the GIL released; handlers
run on one dispatcher thread per client (coroutine handlers on that thread's own event loop)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from typing import Any, Dict, Iterable, List, Optional

from . import _native
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
from .models import MethodResponse, Twin

_live: "weakref.WeakSet[ModuleClient]" = weakref.WeakSet()


class ModuleClient(_ClientBase):
    """A blocking IoT Edge module client (azure-iot-device's ``IoTHubModuleClient`` shape).

    Create it with :meth:`create_from_edge_environment` or
    :meth:`create_from_connection_string`, set handlers, :meth:`connect`, and
    :meth:`shutdown` at the end (or use it as a context manager). Every method may be called
    from any thread, including from inside a handler.
    """

    def __init__(self, native: "_native.NativeClient") -> None:
        super().__init__(native)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        _live.add(self)

    # ----- lifecycle -----
    def connect(self) -> None:
        """Connect to the hub; returns once connected (transient failures are retried within
        ``connect_timeout``; refused credentials fail at once). After that the client
        reconnects by itself whenever the link drops."""
        self._start_dispatcher()
        self._native.connect()

    def shutdown(self) -> None:
        """Close the connection for good and stop the dispatcher. Pending operations fail with
        :class:`ClientClosedError`. When this returns no handler runs any more (called from
        inside a handler, only that handler is still finishing). Idempotent."""
        with self._lock:
            self._closing = True
            thread = self._thread
        try:
            self._native.close()
        finally:
            self._closed = True
            if thread is not None and thread is not threading.current_thread():
                thread.join()

    def disconnect(self) -> None:
        """Same as :meth:`shutdown` (the core has no reconnectable disconnect: create a new
        client to connect again)."""
        self.shutdown()

    def __enter__(self) -> "ModuleClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def _check_open(self) -> None:
        if self._closing:
            raise ClientClosedError("the client is shut down")

    # ----- messages -----
    def send_message_to_output(self, message: MessageLike, output_name: str) -> None:
        """Send ``message`` (a :class:`Message`, or bytes/str as its body) to the module output
        ``output_name``; returns when the hub has accepted it. While offline it waits in the
        offline queue (``offline_queue_limit`` / ``offline_queue_max_age``)."""
        _check_message(message)
        _check_str(output_name, "output_name")
        self._native.send_to_output(output_name, message)

    def send_message(self, message: MessageLike) -> None:
        """Send telemetry (no output name): routes see it as ``/messages/modules/<id>/*``."""
        _check_message(message)
        self._native.send(message)

    def send_messages_to_output(
        self, messages: Iterable[MessageLike], output_name: str
    ) -> List[Optional[EdgeModuleError]]:
        """Send many messages to one output, all in flight at once (much faster than one by
        one). Returns one entry per message, in order: None if it was sent, else the error."""
        ms = _check_messages(messages)
        _check_str(output_name, "output_name")
        return self._native.send_batch(output_name, ms)

    # ----- twin -----
    def get_twin(self) -> Twin:
        """The module twin: ``{"desired": {...}, "reported": {...}}``."""
        desired, reported = self._native.get_twin()
        return Twin(desired=desired, reported=reported)

    def patch_twin_reported_properties(self, reported_properties_patch: Dict[str, Any]) -> Optional[int]:
        """Merge ``reported_properties_patch`` into the reported properties (None deletes a
        member). Returns the new reported version when the hub gives one."""
        return self._native.patch_reported(_check_reported_patch(reported_properties_patch))

    # ----- methods -----
    def send_method_response(self, method_response: MethodResponse) -> None:
        """Answer a direct method request."""
        self._native.respond_method(*_method_response_args(method_response))

    def invoke_method(
        self, method_params: Dict[str, Any], device_id: str, module_id: Optional[str] = None
    ) -> Dict[str, Any]:
        """Invoke a direct method on another module (or a leaf device when ``module_id`` is
        None) through the edge hub. ``method_params``: ``{"methodName": ..., "payload": ...,
        "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0}``. Returns
        ``{"status": int, "payload": ...}``."""
        status, answer = self._native.invoke_method(*_invoke_args(method_params, device_id, module_id))
        return {"status": status, "payload": answer}

    # ----- broker mode -----
    def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        """Broker mode: publish ``payload`` (bytes or str) on ``topic`` with QoS 0 or 1."""
        _check_str(topic, "topic")
        self._native.publish(topic, payload, _check_qos(qos))

    def subscribe(self, topic_filter: str, qos: int = 1, handler: Optional[Handler] = None) -> None:
        """Broker mode: subscribe to ``topic_filter`` (``+``/``#`` wildcards), kept across
        reconnects. Messages go to ``handler(TopicMessage)`` if given, else to
        :attr:`on_topic_message_received`."""
        _check_str(topic_filter, "topic_filter")
        _check_handler(handler, "handler")
        self._start_dispatcher()
        self._native.subscribe(topic_filter, _check_qos(qos))
        if handler is not None:
            self._topic_handlers[topic_filter] = handler

    def unsubscribe(self, topic_filter: str) -> None:
        """Broker mode: remove a subscription (and its handler)."""
        _check_str(topic_filter, "topic_filter")
        self._native.unsubscribe(topic_filter)
        self._topic_handlers.pop(topic_filter, None)

    # ----- dispatcher -----
    def _start_dispatcher(self) -> None:
        with self._lock:
            self._check_open()
            if self._thread is None:
                t = threading.Thread(target=self._run, name="edgemodule-dispatcher", daemon=True)
                self._thread = t
                t.start()

    def _run(self) -> None:
        loop: Optional[asyncio.AbstractEventLoop] = None
        native = self._native
        try:
            while not self._closing:
                try:
                    events = native.next_events(None, BATCH)
                except EdgeModuleError:
                    break
                if events is None:
                    break
                for ev in events:
                    if self._closing:
                        break  # no handler after shutdown; unacked messages get redelivered
                    loop = self._dispatch(ev, loop)
        finally:
            if loop is not None:
                loop.close()

    def _call(self, handler: Handler, args: tuple, loop: Optional[asyncio.AbstractEventLoop]):
        r = handler(*args)
        if inspect.isawaitable(r):
            if loop is None:
                loop = asyncio.new_event_loop()
            r = loop.run_until_complete(r)
        return r, loop

    def _dispatch(self, ev: tuple, loop: Optional[asyncio.AbstractEventLoop]):
        tag = ev[0]
        if tag == _INPUT:
            msg = ev[2]
            h = self._input_handler(ev[1])
            if h is None:
                self._unhandled_input(ev[1])
                return loop
            try:
                _, loop = self._call(h, (msg,), loop)
            except Exception:
                self._log_handler_error(f"input {ev[1]!r}")
            _native.ack(msg)
        elif tag == _METHOD:
            req = self._method_request(ev)
            h = self._method_handler(req.name)
            if h is None:
                resp: Optional[MethodResponse] = self._not_found(req)
            else:
                try:
                    r, loop = self._call(h, (req,), loop)
                    resp = self._method_result(req, r)
                except Exception:
                    self._log_handler_error(f"method {req.name!r}")
                    resp = self._error_response(req)
            if resp is not None and not self._closing:
                try:
                    self.send_method_response(resp)
                except EdgeModuleError as e:
                    self._log_send_error(e)
        elif tag == _PATCH:
            h = self._on_patch
            if h is not None:
                try:
                    _, loop = self._call(h, (self._patch_arg(ev[1], ev[2]),), loop)
                except Exception:
                    self._log_handler_error("desired properties patch")
        elif tag == _STATUS_EV:
            hs = self._status_event(ev[1], ev[2])
            if hs is not None:
                try:
                    _, loop = self._call(hs[0], hs[1], loop)
                except Exception:
                    self._log_handler_error("connection state")
        elif tag == _TOPIC:
            tm = self._topic_message(ev)
            h = self._topic_handler(tm.topic)
            if h is not None:
                try:
                    _, loop = self._call(h, (tm,), loop)
                except Exception:
                    self._log_handler_error(f"topic {tm.topic!r}")
        return loop


def _shutdown_all() -> None:
    """atexit: close live clients so no dispatcher thread is left waiting for the GIL."""
    for c in list(_live):
        try:
            c._closing = True
            c._native.close()
        except Exception:
            pass
    for c in list(_live):
        t = c._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2)
