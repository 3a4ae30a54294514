import enum
from _typeshed import Incomplete
from typing import Any, NamedTuple

__all__ = ['MethodRequest', 'MethodResponse', 'Twin', 'ConnectionStatus', 'StatusReason', 'TopicMessage']

JSON = Any

class MethodRequest:
    """A direct method call received by the module.

    Attributes:
        request_id: the id to answer with (see :meth:`MethodResponse.create_from_method_request`).
        name: the method name.
        payload: the JSON payload, decoded (None when empty; a str when it was not JSON).
    """
    request_id: Incomplete
    name: Incomplete
    payload: Incomplete
    def __init__(self, request_id: str, name: str, payload: JSON = None) -> None: ...

class MethodResponse:
    """The answer to a :class:`MethodRequest`: an HTTP-like ``status`` and a JSON ``payload``."""
    request_id: Incomplete
    status: Incomplete
    payload: Incomplete
    def __init__(self, request_id: str, status: int, payload: JSON = None) -> None: ...
    @classmethod
    def create_from_method_request(cls, method_request: MethodRequest, status: int, payload: JSON = None) -> MethodResponse:
        """The response to ``method_request`` (azure-iot-device's spelling)."""

class Twin(dict[str, Any]):
    '''The module twin: a dict ``{"desired": {...}, "reported": {...}}`` (as azure-iot-device
    returns it) with attribute access and the section versions.'''
    @property
    def desired(self) -> dict[str, Any]:
        """Desired properties (``$version`` included)."""
    @property
    def reported(self) -> dict[str, Any]:
        """Reported properties (``$version`` included)."""
    @property
    def desired_version(self) -> int | None:
        """``$version`` of the desired section, if the hub gave one."""
    @property
    def reported_version(self) -> int | None:
        """``$version`` of the reported section, if the hub gave one."""

class ConnectionStatus(enum.Enum):
    """Connection state passed to ``on_connection_state_change``."""
    CONNECTED = 'connected'
    DISCONNECTED = 'disconnected'
    DISCONNECTED_RETRYING = 'disconnected_retrying'

class StatusReason(enum.IntEnum):
    """Why the connection status changed (the core's stable codes)."""
    CONNECTION_OK = 0
    EXPIRED_SAS_TOKEN = 1
    BAD_CREDENTIAL = 2
    NO_NETWORK = 3
    COMMUNICATION_ERROR = 4
    RETRY_EXPIRED = 5
    CLIENT_CLOSE = 6

class TopicMessage(NamedTuple):
    """A message received on a user topic (broker mode)."""
    topic: str
    payload: bytes
    qos: int
