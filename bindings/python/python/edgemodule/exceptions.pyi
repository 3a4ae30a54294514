from _typeshed import Incomplete
from typing import Any

__all__ = ['EdgeModuleError', 'InvalidArgumentError', 'ConfigurationError', 'ConnectionFailedError', 'AuthenticationError', 'OperationTimeoutError', 'MessageTooLargeError', 'QueueFullError', 'ClientClosedError', 'ProtocolError', 'HubError', 'WorkloadError', 'TlsError', 'IoError', 'InternalError', 'ThrottledError', 'NotFoundError']

class EdgeModuleError(Exception):
    '''Base class of every edgemodule error.

    Attributes:
        kind: the stable kind name (``"Timeout"``).
        code: the stable numeric code (``5``).
        status: the HTTP/MQTT status the hub or the Workload API answered, when there is one.
        message: the human-readable message (never contains keys or tokens).
    '''
    kind: str
    code: int
    message: Incomplete
    status: Incomplete
    def __init__(self, message: str = '', *, status: int | None = None) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

class InvalidArgumentError(EdgeModuleError, ValueError):
    """An argument was malformed (topic, property, JSON, name, size)."""
    kind: Incomplete
    code: Incomplete

class ConfigurationError(EdgeModuleError):
    """Environment variables or a connection string are missing or malformed."""
    kind: Incomplete
    code: Incomplete

class ConnectionFailedError(EdgeModuleError, ConnectionError):
    """The network connection failed or was lost."""
    kind: Incomplete
    code: Incomplete

class AuthenticationError(EdgeModuleError):
    """The hub refused the credentials (bad key, expired token, not authorized)."""
    kind: Incomplete
    code: Incomplete

class OperationTimeoutError(EdgeModuleError, TimeoutError):
    """An operation did not complete in time."""
    kind: Incomplete
    code: Incomplete

class MessageTooLargeError(InvalidArgumentError):
    """A message is larger than the hub accepts (256 KB, body plus properties)."""
    kind: Incomplete
    code: Incomplete

class QueueFullError(EdgeModuleError):
    """The offline queue is full (see the ``offline_queue_limit`` option)."""
    kind: Incomplete
    code: Incomplete

class ClientClosedError(EdgeModuleError):
    """The client was shut down (or is being shut down)."""
    kind: Incomplete
    code: Incomplete

class ProtocolError(EdgeModuleError):
    """The peer violated the protocol or sent something that cannot be parsed."""
    kind: Incomplete
    code: Incomplete

class HubError(EdgeModuleError):
    """The hub answered a request with an error status (see ``status``)."""
    kind: Incomplete
    code: Incomplete

class WorkloadError(EdgeModuleError):
    """The IoT Edge Workload API failed (see ``status``)."""
    kind: Incomplete
    code: Incomplete

class TlsError(EdgeModuleError):
    """TLS setup or handshake failed (bad trust bundle, host name mismatch)."""
    kind: Incomplete
    code: Incomplete

class IoError(EdgeModuleError, OSError):
    """A local I/O error (files, sockets)."""
    kind: Incomplete
    code: Incomplete
    def __init__(self, message: str = '', *, status: int | None = None) -> None: ...

class InternalError(EdgeModuleError):
    """A bug or an unexpected state inside the library, or a client used after ``os.fork()``."""
    kind: Incomplete
    code: Incomplete

class ThrottledError(EdgeModuleError):
    """The hub throttled the request (status 429); retry later."""
    kind: Incomplete
    code: Incomplete

class NotFoundError(EdgeModuleError):
    """The target of a method invocation was not found or is not connected (404)."""
    kind: Incomplete
    code: Incomplete
