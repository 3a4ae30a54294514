from . import _native
from ._native import Message as Message
from .models import ConnectionStatus as ConnectionStatus, MethodRequest as MethodRequest, MethodResponse as MethodResponse, StatusReason as StatusReason, TopicMessage as TopicMessage
from _typeshed import Incomplete
from typing import Any, Callable

logger: Incomplete
Handler = Callable[..., Any]
MessageLike: Incomplete
BATCH: int

class _ClientBase:
    """Handler registration and event routing shared by both clients."""
    def __init__(self, native: _native.NativeClient) -> None: ...
    @classmethod
    def create_from_edge_environment(cls, **options: Any) -> Any:
        """A client for the module this process runs as, from the IoT Edge environment
        (``IOTEDGE_*`` variables and the Workload API), else from ``EdgeHubConnectionString``
        plus ``EdgeModuleCACertificateFile`` (what ``devhub env`` prints).

        ``EDGEMODULE_MQTT_PORT`` / ``EDGEMODULE_HTTPS_PORT`` override the default ports 8883 and
        443 (a local devhub on ephemeral ports). Options: ``mqtt_port``, ``https_port``,
        ``websockets``, ``server_verification_cert`` (PEM), ``product_info``, ``model_id``,
        ``keep_alive``, ``sas_token_ttl``, ``operation_timeout``, ``connect_timeout``,
        ``offline_queue_max_age`` (seconds), ``offline_queue_limit``, ``inflight``.
        """
    @classmethod
    def create_from_connection_string(cls, connection_string: str, **options: Any) -> Any:
        """A client from a module connection string (``HostName=..;DeviceId=..;ModuleId=..;
        SharedAccessKey=..[;GatewayHostName=..]``). TLS roots: ``server_verification_cert``
        (PEM text), else the file named by ``EdgeModuleCACertificateFile``. Same options as
        :meth:`create_from_edge_environment`."""
    @classmethod
    def create_from_broker(cls, host: str, port: int = 1883, client_id: str = '', *, username: str | None = None, password: str | None = None, ca_pem: str | None = None, **options: Any) -> Any:
        """A client of a plain MQTT 3.1.1 broker (broker mode: :meth:`publish`,
        :meth:`subscribe`, ``on_topic_message_received``). ``ca_pem`` enables TLS."""
    @property
    def connected(self) -> bool:
        """Whether the client is connected to the hub right now."""
    @property
    def connection_status(self) -> ConnectionStatus:
        """The current :class:`ConnectionStatus`."""
    @property
    def module_id(self) -> str | None:
        """This module's id (None for a broker client)."""
    @property
    def device_id(self) -> str | None:
        """The edge device id (None for a broker client)."""
    @property
    def offline_queue(self) -> tuple[int, float | None]:
        """``(depth, oldest_age_seconds)`` of the queue of sends waiting for a connection."""
    @property
    def on_message_received(self) -> Handler | None:
        """Handler ``(message) -> None`` for input messages without a per-input handler. The
        message is acknowledged to the hub when the handler returns (or raises: the error is
        logged and the message is still acknowledged, so a failing message is not redelivered
        forever). Messages that arrive with no handler at all are not acknowledged: the hub
        redelivers them later."""
    @on_message_received.setter
    def on_message_received(self, handler: Handler | None) -> None: ...
    @property
    def on_twin_desired_properties_patch_received(self) -> Handler | None:
        """Handler ``(patch: dict) -> None`` for desired-property changes (``$version`` in the
        patch). After a reconnect that missed changes, the patch is the whole desired section."""
    @on_twin_desired_properties_patch_received.setter
    def on_twin_desired_properties_patch_received(self, handler: Handler | None) -> None: ...
    @property
    def on_method_request_received(self) -> Handler | None:
        """Handler ``(request: MethodRequest)`` for direct methods without a per-method handler.
        Return a :class:`MethodResponse` (sent for you) or None after calling
        :meth:`send_method_response` yourself. A handler that raises answers status 500;
        a method with no handler answers 404."""
    @on_method_request_received.setter
    def on_method_request_received(self, handler: Handler | None) -> None: ...
    @property
    def on_connection_state_change(self) -> Handler | None:
        """Handler ``(status: ConnectionStatus, reason: StatusReason)``, or with no parameters
        (azure-iot-device style; read :attr:`connected`)."""
    @on_connection_state_change.setter
    def on_connection_state_change(self, handler: Handler | None) -> None: ...
    @property
    def on_topic_message_received(self) -> Handler | None:
        """Broker mode: handler ``(message: TopicMessage)`` for topics without a handler of
        their own (see :meth:`subscribe`)."""
    @on_topic_message_received.setter
    def on_topic_message_received(self, handler: Handler | None) -> None: ...
    def set_input_message_handler(self, input_name: str, handler: Handler | None) -> None:
        """Handle messages of one input with ``handler(message)`` (None removes it); other
        inputs go to :attr:`on_message_received`."""
    def set_method_handler(self, method_name: str, handler: Handler | None) -> None:
        """Handle one direct method with ``handler(request) -> MethodResponse | None``
        (None removes it); other methods go to :attr:`on_method_request_received`."""
