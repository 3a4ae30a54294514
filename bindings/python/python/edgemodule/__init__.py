"""edgemodule: an Azure IoT Edge module client for Python on a Rust core.

``edgemodule.ModuleClient`` is the blocking client (handlers on one dispatcher thread);
``edgemodule.aio.ModuleClient`` is the asyncio client (handlers on your loop). The API follows
azure-iot-device's ``IoTHubModuleClient`` so existing modules switch with few edits::

    from edgemodule import ModuleClient, Message

    client = ModuleClient.create_from_edge_environment()
    client.on_message_received = lambda m: client.send_message_to_output(m, "output1")
    client.connect()

Core log records go to the :mod:`logging` logger ``edgemodule``.
"""

from __future__ import annotations

import atexit as _atexit
import os as _os

from . import _logging, _native, exceptions, models
from ._logging import refresh_log_level
from ._sync import ModuleClient, _shutdown_all
from .exceptions import (
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    ConnectionFailedError,
    EdgeModuleError,
    HubError,
    InternalError,
    InvalidArgumentError,
    IoError,
    MessageTooLargeError,
    NotFoundError,
    OperationTimeoutError,
    ProtocolError,
    QueueFullError,
    ThrottledError,
    TlsError,
    WorkloadError,
)
from .models import (
    ConnectionStatus,
    MethodRequest,
    MethodResponse,
    StatusReason,
    TopicMessage,
    Twin,
)

from ._native import Message
__version__: str = _native.__version__

__all__ = [
    "ModuleClient",
    "Message",
    *models.__all__,
    "refresh_log_level",
    *exceptions.__all__,
]

_logging._init()


def _at_exit() -> None:
    # Close clients, then forbid the core's threads to take the GIL (the interpreter is going).
    try:
        _shutdown_all()
    finally:
        _native._finalizing()


_atexit.register(_at_exit)
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_native._after_fork_in_child)
