from . import _native
from ._base import Handler, MessageLike, _ClientBase
from ._native import Message as Message
from .exceptions import EdgeModuleError
from .models import ConnectionStatus as ConnectionStatus, MethodRequest as MethodRequest, MethodResponse as MethodResponse, StatusReason as StatusReason, TopicMessage as TopicMessage, Twin as Twin
from typing import Any, Iterable

__all__ = ['ModuleClient', 'Message', 'MethodRequest', 'MethodResponse', 'Twin', 'ConnectionStatus', 'StatusReason', 'TopicMessage']

class ModuleClient(_ClientBase):
    """An asyncio IoT Edge module client (azure-iot-device's ``aio.IoTHubModuleClient`` shape).

    Create it with :meth:`create_from_edge_environment` or
    :meth:`create_from_connection_string` (plain classmethods), set handlers,
    ``await client.connect()``, and ``await client.shutdown()`` at the end — or
    ``async with client:``.
    """
    def __init__(self, native: _native.NativeClient) -> None: ...
    async def connect(self) -> None:
        """Connect to the hub (see the sync client's :meth:`edgemodule.ModuleClient.connect`);
        starts dispatching events to handlers on the running loop."""
    async def shutdown(self) -> None:
        """Close for good; waits until no handler runs any more (except the caller, when called
        from inside a handler). Idempotent."""
    async def disconnect(self) -> None:
        """Same as :meth:`shutdown` (create a new client to connect again)."""
    async def __aenter__(self) -> ModuleClient: ...
    async def __aexit__(self, *exc: Any) -> None: ...
    async def send_message_to_output(self, message: MessageLike, output_name: str) -> None:
        """Send ``message`` to the output ``output_name``; completes when the hub accepted it.
        Many concurrent sends (``asyncio.gather``) are pipelined."""
    async def send_message(self, message: MessageLike) -> None:
        """Send telemetry (no output name)."""
    async def send_messages_to_output(self, messages: Iterable[MessageLike], output_name: str) -> list[EdgeModuleError | None]:
        """Send many messages to one output, all in flight at once; one entry per message:
        None if sent, else the error."""
    async def get_twin(self) -> Twin:
        '''The module twin: ``{"desired": {...}, "reported": {...}}``.'''
    async def patch_twin_reported_properties(self, reported_properties_patch: dict[str, Any]) -> int | None:
        """Merge a patch into the reported properties; returns the new reported version."""
    async def send_method_response(self, method_response: MethodResponse) -> None:
        """Answer a direct method request."""
    async def invoke_method(self, method_params: dict[str, Any], device_id: str, module_id: str | None = None) -> dict[str, Any]:
        '''Invoke a direct method on another module; returns ``{"status", "payload"}``.'''
    async def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        """Broker mode: publish on a user topic."""
    async def subscribe(self, topic_filter: str, qos: int = 1, handler: Handler | None = None) -> None:
        """Broker mode: subscribe; messages go to ``handler`` or ``on_topic_message_received``."""
    async def unsubscribe(self, topic_filter: str) -> None:
        """Broker mode: remove a subscription (and its handler)."""
