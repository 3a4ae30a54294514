"""Exceptions raised by edgemodule.

Every error is an :class:`EdgeModuleError`; each error kind of the core has one subclass with a
stable numeric ``code`` (the same numbers as the C, Node, Java and C# bindings). Some subclasses
also derive from the matching built-in exception (``ValueError``, ``TimeoutError``,
``ConnectionError``, ``OSError``) so generic ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "EdgeModuleError",
    "InvalidArgumentError",
    "ConfigurationError",
    "ConnectionFailedError",
    "AuthenticationError",
    "OperationTimeoutError",
    "MessageTooLargeError",
    "QueueFullError",
    "ClientClosedError",
    "ProtocolError",
    "HubError",
    "WorkloadError",
    "TlsError",
    "IoError",
    "InternalError",
    "ThrottledError",
    "NotFoundError",
]


class EdgeModuleError(Exception):
    """Base class of every edgemodule error.

    Attributes:
        kind: the stable kind name (``"Timeout"``).
        code: the stable numeric code (``5``).
        status: the HTTP/MQTT status the hub or the Workload API answered, when there is one.
        message: the human-readable message (never contains keys or tokens).
    """

    kind: str = "Unknown"
    code: int = 0

    def __init__(self, message: str = "", *, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        if self.status is not None:
            return f"{self.kind} (status {self.status}): {self.message}"
        return f"{self.kind}: {self.message}"

    def __reduce__(self) -> Tuple[Any, ...]:  # keep pickling (multiprocessing) working with the keyword argument
        return (_rebuild, (type(self), self.message, self.status))


def _rebuild(cls: Type[EdgeModuleError], message: str, status: Optional[int]) -> EdgeModuleError:
    return cls(message, status=status)


class InvalidArgumentError(EdgeModuleError, ValueError):
    """An argument was malformed (topic, property, JSON, name, size)."""

    kind, code = "InvalidArgument", 1


class ConfigurationError(EdgeModuleError):
    """Environment variables or a connection string are missing or malformed."""

    kind, code = "Configuration", 2


class ConnectionFailedError(EdgeModuleError, ConnectionError):
    """The network connection failed or was lost."""

    kind, code = "Connection", 3


class AuthenticationError(EdgeModuleError):
    """The hub refused the credentials (bad key, expired token, not authorized)."""

    kind, code = "Authentication", 4


class OperationTimeoutError(EdgeModuleError, TimeoutError):
    """An operation did not complete in time."""

    kind, code = "Timeout", 5


class MessageTooLargeError(InvalidArgumentError):
    """A message is larger than the hub accepts (256 KB, body plus properties)."""

    kind, code = "MessageTooLarge", 6


class QueueFullError(EdgeModuleError):
    """The offline queue is full (see the ``offline_queue_limit`` option)."""

    kind, code = "QueueFull", 7


class ClientClosedError(EdgeModuleError):
    """The client was shut down (or is being shut down)."""

    kind, code = "Closed", 8


class ProtocolError(EdgeModuleError):
    """The peer violated the protocol or sent something that cannot be parsed."""

    kind, code = "Protocol", 9


class HubError(EdgeModuleError):
    """The hub answered a request with an error status (see ``status``)."""

    kind, code = "HubError", 10


class WorkloadError(EdgeModuleError):
    """The IoT Edge Workload API failed (see ``status``)."""

    kind, code = "Workload", 11


class TlsError(EdgeModuleError):
    """TLS setup or handshake failed (bad trust bundle, host name mismatch)."""

    kind, code = "Tls", 12


class IoError(EdgeModuleError, OSError):
    """A local I/O error (files, sockets)."""

    kind, code = "Io", 13

    def __init__(self, message: str = "", *, status: Optional[int] = None) -> None:
        EdgeModuleError.__init__(self, message, status=status)


class InternalError(EdgeModuleError):
    """A bug or an unexpected state inside the library, or a client used after ``os.fork()``."""

    kind, code = "Internal", 14


class ThrottledError(EdgeModuleError):
    """The hub throttled the request (status 429); retry later."""

    kind, code = "Throttled", 15


class NotFoundError(EdgeModuleError):
    """The target of a method invocation was not found or is not connected (404)."""

    kind, code = "NotFound", 16


_BY_CODE: Dict[int, Type[EdgeModuleError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        ConfigurationError,
        ConnectionFailedError,
        AuthenticationError,
        OperationTimeoutError,
        MessageTooLargeError,
        QueueFullError,
        ClientClosedError,
        ProtocolError,
        HubError,
        WorkloadError,
        TlsError,
        IoError,
        InternalError,
        ThrottledError,
        NotFoundError,
    )
}
