"""Value types of the public API: method requests and responses, the twin, connection status."""

from __future__ import annotations

import enum
from typing import Any, Dict, NamedTuple, Optional

__all__ = [
    "MethodRequest",
    "MethodResponse",
    "Twin",
    "ConnectionStatus",
    "StatusReason",
    "TopicMessage",
]

JSON = Any
"""Any JSON-compatible value: dict (str keys), list, str, int, float, bool or None."""


class MethodRequest:
    """A direct method call received by the module.

    Attributes:
        request_id: the id to answer with (see :meth:`MethodResponse.create_from_method_request`).
        name: the method name.
        payload: the JSON payload, decoded (None when empty; a str when it was not JSON).
    """

    __slots__ = ("request_id", "name", "payload")

    def __init__(self, request_id: str, name: str, payload: JSON = None) -> None:
        self.request_id = request_id
        self.name = name
        self.payload = payload

    def __repr__(self) -> str:
        return f"MethodRequest(request_id={self.request_id!r}, name={self.name!r}, payload={self.payload!r})"


class MethodResponse:
    """The answer to a :class:`MethodRequest`: an HTTP-like ``status`` and a JSON ``payload``."""

    __slots__ = ("request_id", "status", "payload")

    def __init__(self, request_id: str, status: int, payload: JSON = None) -> None:
        if not isinstance(request_id, str):
            raise TypeError(f"request_id must be a str, not {type(request_id).__name__}")
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(f"status must be an int, not {type(status).__name__}")
        self.request_id = request_id
        self.status = status
        self.payload = payload

    @classmethod
    def create_from_method_request(
        cls, method_request: MethodRequest, status: int, payload: JSON = None
    ) -> "MethodResponse":
        """The response to ``method_request`` (azure-iot-device's spelling)."""
        if not isinstance(method_request, MethodRequest):
            raise TypeError(
                f"method_request must be a MethodRequest, not {type(method_request).__name__}"
            )
        return cls(method_request.request_id, status, payload)

    def __repr__(self) -> str:
        return f"MethodResponse(request_id={self.request_id!r}, status={self.status!r}, payload={self.payload!r})"


class Twin(Dict[str, Any]):
    """The module twin: a dict ``{"desired": {...}, "reported": {...}}`` (as azure-iot-device
    returns it) with attribute access and the section versions."""

    @property
    def desired(self) -> Dict[str, Any]:
        """Desired properties (``$version`` included)."""
        return self["desired"]

    @property
    def reported(self) -> Dict[str, Any]:
        """Reported properties (``$version`` included)."""
        return self["reported"]

    @property
    def desired_version(self) -> Optional[int]:
        """``$version`` of the desired section, if the hub gave one."""
        v = self["desired"].get("$version") if isinstance(self["desired"], dict) else None
        return v if isinstance(v, int) else None

    @property
    def reported_version(self) -> Optional[int]:
        """``$version`` of the reported section, if the hub gave one."""
        v = self["reported"].get("$version") if isinstance(self["reported"], dict) else None
        return v if isinstance(v, int) else None


class ConnectionStatus(enum.Enum):
    """Connection state passed to ``on_connection_state_change``."""

    CONNECTED = "connected"
    """Connected to the hub."""
    DISCONNECTED = "disconnected"
    """Not connected and not retrying (closed, or refused credentials)."""
    DISCONNECTED_RETRYING = "disconnected_retrying"
    """The link dropped; the client reconnects by itself (queued sends wait)."""


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


_STATUS = (
    ConnectionStatus.CONNECTED,
    ConnectionStatus.DISCONNECTED,
    ConnectionStatus.DISCONNECTED_RETRYING,
)
