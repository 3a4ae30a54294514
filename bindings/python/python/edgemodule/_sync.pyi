from . import _native
from ._base import BATCH as BATCH, Handler as Handler, MessageLike as MessageLike, _ClientBase
from .exceptions import ClientClosedError as ClientClosedError, EdgeModuleError as EdgeModuleError
from .models import MethodResponse as MethodResponse, Twin as Twin
from typing import Any, Iterable

class ModuleClient(_ClientBase):
    """A blocking IoT Edge module client (azure-iot-device's ``IoTHubModuleClient`` shape).

    Create it with :meth:`create_from_edge_environment` or
    :meth:`create_from_connection_string`, set handlers, :meth:`connect`, and
    :meth:`shutdown` at the end (or use it as a context manager). Every method may be called
    from any thread, including from inside a handler.
    """
    def __init__(self, native: _native.NativeClient) -> None: ...
    def connect(self) -> None:
        """Connect to the hub; returns once connected (transient failures are retried within
        ``connect_timeout``; refused credentials fail at once). After that the client
        reconnects by itself whenever the link drops."""
    def shutdown(self) -> None:
        """Close the connection for good and stop the dispatcher. Pending operations fail with
        :class:`ClientClosedError`. When this returns no handler runs any more (called from
        inside a handler, only that handler is still finishing). Idempotent."""
    def disconnect(self) -> None:
        """Same as :meth:`shutdown` (the core has no reconnectable disconnect: create a new
        client to connect again)."""
    def __enter__(self) -> ModuleClient: ...
    def __exit__(self, *exc: Any) -> None: ...
    def send_message_to_output(self, message: MessageLike, output_name: str) -> None:
        """Send ``message`` (a :class:`Message`, or bytes/str as its body) to the module output
        ``output_name``; returns when the hub has accepted it. While offline it waits in the
        offline queue (``offline_queue_limit`` / ``offline_queue_max_age``)."""
    def send_message(self, message: MessageLike) -> None:
        """Send telemetry (no output name): routes see it as ``/messages/modules/<id>/*``."""
    def send_messages_to_output(self, messages: Iterable[MessageLike], output_name: str) -> list[EdgeModuleError | None]:
        """Send many messages to one output, all in flight at once (much faster than one by
        one). Returns one entry per message, in order: None if it was sent, else the error."""
    def get_twin(self) -> Twin:
        '''The module twin: ``{"desired": {...}, "reported": {...}}``.'''
    def patch_twin_reported_properties(self, reported_properties_patch: dict[str, Any]) -> int | None:
        """Merge ``reported_properties_patch`` into the reported properties (None deletes a
        member). Returns the new reported version when the hub gives one."""
    def send_method_response(self, method_response: MethodResponse) -> None:
        """Answer a direct method request."""
    def invoke_method(self, method_params: dict[str, Any], device_id: str, module_id: str | None = None) -> dict[str, Any]:
        '''Invoke a direct method on another module (or a leaf device when ``module_id`` is
        None) through the edge hub. ``method_params``: ``{"methodName": ..., "payload": ...,
        "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0}``. Returns
        ``{"status": int, "payload": ...}``.'''
    def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        """Broker mode: publish ``payload`` (bytes or str) on ``topic`` with QoS 0 or 1."""
    def subscribe(self, topic_filter: str, qos: int = 1, handler: Handler | None = None) -> None:
        """Broker mode: subscribe to ``topic_filter`` (``+``/``#`` wildcards), kept across
        reconnects. Messages go to ``handler(TopicMessage)`` if given, else to
        :attr:`on_topic_message_received`."""
    def unsubscribe(self, topic_filter: str) -> None:
        """Broker mode: remove a subscription (and its handler)."""
