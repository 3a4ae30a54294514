"""What the sync and asyncio clients share: construction, argument checks, handler
registration, and turning native event tuples into handler calls."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from . import _logging, _native
from .models import (
    _STATUS,
    ConnectionStatus,
    MethodRequest,
    MethodResponse,
    StatusReason,
    TopicMessage,
)

from ._native import Message
logger = logging.getLogger("edgemodule")

Handler = Callable[..., Any]
MessageLike = Union["_native.Message", bytes, bytearray, str]

_OPTION_NAMES = frozenset(
    {
        "mqtt_port",
        "https_port",
        "websockets",
        "server_verification_cert",
        "product_info",
        "model_id",
        "keep_alive",
        "sas_token_ttl",
        "operation_timeout",
        "connect_timeout",
        "offline_queue_max_age",
        "offline_queue_limit",
        "inflight",
    }
)
# azure-iot-device options that mean nothing here (always retried; desired patches after a
# reconnect are delivered anyway): accepted so that code switches with few edits.
_IGNORED_OPTIONS = frozenset({"connection_retry", "connection_retry_interval", "ensure_desired_properties", "auto_connect"})

# Event tuple tags (see the native layer).
_INPUT, _PATCH, _METHOD, _STATUS_EV, _TOPIC = 0, 1, 2, 3, 4
BATCH = 256


def _options(kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    opts: Dict[str, Any] = {}
    for k, v in kwargs.items():
        if k in _IGNORED_OPTIONS:
            continue
        if k not in _OPTION_NAMES:
            raise TypeError(f"unexpected client option {k!r} (known: {', '.join(sorted(_OPTION_NAMES))})")
        opts[k] = v
    return opts


def _check_str(value: Any, what: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not allow_empty and not value:
        raise ValueError(f"{what} must not be empty")
    return value


def _check_handler(handler: Any, what: str) -> Optional[Handler]:
    if handler is not None and not callable(handler):
        raise TypeError(f"{what} must be a callable (function or coroutine function) or None, not {type(handler).__name__}")
    return handler


def _check_qos(qos: Any) -> int:
    if not isinstance(qos, int) or isinstance(qos, bool):
        raise TypeError(f"qos must be an int, not {type(qos).__name__}")
    if qos not in (0, 1):
        raise ValueError(f"qos must be 0 or 1 (the hub closes connections that use QoS 2), not {qos}")
    return qos


def _wants_args(handler: Handler) -> bool:
    """Whether a status handler takes (status, reason) or, azure-iot-device style, nothing."""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return True
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL,) or (
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ):
            return True
    return False


def _topic_matches(filt: str, topic: str) -> bool:
    f, t = filt.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


def _method_params(method_params: Any) -> Tuple[str, Any, float, float]:
    if not isinstance(method_params, Mapping):
        raise TypeError(
            "method_params must be a dict like {'methodName': 'reset', 'payload': {...}, "
            f"'responseTimeoutInSeconds': 30}}, not {type(method_params).__name__}"
        )
    name = method_params.get("methodName")
    if not isinstance(name, str) or not name:
        raise ValueError("method_params['methodName'] must be a non-empty str")
    rt = method_params.get("responseTimeoutInSeconds", 30)
    ct = method_params.get("connectTimeoutInSeconds", 0)
    for label, v in (("responseTimeoutInSeconds", rt), ("connectTimeoutInSeconds", ct)):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeError(f"method_params[{label!r}] must be a number of seconds")
    return name, method_params.get("payload"), float(rt), float(ct)


def _check_reported_patch(reported_properties_patch: Any) -> Dict[str, Any]:
    if not isinstance(reported_properties_patch, dict):
        raise TypeError(
            f"reported_properties_patch must be a dict, not {type(reported_properties_patch).__name__}"
        )
    return reported_properties_patch


def _method_response_args(method_response: Any) -> Tuple[str, int, Any]:
    """``(request_id, status, payload)`` of a :class:`MethodResponse`, for the native call."""
    if not isinstance(method_response, MethodResponse):
        raise TypeError(
            f"method_response must be a MethodResponse, not {type(method_response).__name__}"
        )
    return method_response.request_id, method_response.status, method_response.payload


def _invoke_args(
    method_params: Any, device_id: Any, module_id: Any
) -> Tuple[str, str, str, Any, float, float]:
    """``(device_id, module_id or "", name, payload, response_timeout, connect_timeout)``,
    checked, for the native invoke call."""
    name, payload, rt, ct = _method_params(method_params)
    _check_str(device_id, "device_id")
    if module_id is not None:
        _check_str(module_id, "module_id")
    return device_id, module_id or "", name, payload, rt, ct


class _ClientBase:
    """Handler registration and event routing shared by both clients."""

    _native: "_native.NativeClient"

    def __init__(self, native: "_native.NativeClient") -> None:
        self._native = native
        self._on_message: Optional[Handler] = None
        self._on_patch: Optional[Handler] = None
        self._on_method: Optional[Handler] = None
        self._on_status: Optional[Handler] = None
        self._status_args = True
        self._on_topic: Optional[Handler] = None
        self._input_handlers: Dict[str, Handler] = {}
        self._method_handlers: Dict[str, Handler] = {}
        self._topic_handlers: Dict[str, Handler] = {}
        self._closing = False
        self._connection = ConnectionStatus.DISCONNECTED

    # ----- construction -----
    @classmethod
    def _from_native(cls, native: "_native.NativeClient") -> Any:
        return cls(native)

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
        opts = _options(options)
        _logging.refresh_log_level()
        return cls._from_native(_native.NativeClient.from_environment(dict(os.environ), opts))

    @classmethod
    def create_from_connection_string(cls, connection_string: str, **options: Any) -> Any:
        """A client from a module connection string (``HostName=..;DeviceId=..;ModuleId=..;
        SharedAccessKey=..[;GatewayHostName=..]``). TLS roots: ``server_verification_cert``
        (PEM text), else the file named by ``EdgeModuleCACertificateFile``. Same options as
        :meth:`create_from_edge_environment`."""
        _check_str(connection_string, "connection_string")
        opts = _options(options)
        _logging.refresh_log_level()
        return cls._from_native(_native.NativeClient.from_connection_string(connection_string, opts))

    @classmethod
    def create_from_broker(
        cls,
        host: str,
        port: int = 1883,
        client_id: str = "",
        *,
        username: Optional[str] = None,
        password: Optional[str] = None,
        ca_pem: Optional[str] = None,
        **options: Any,
    ) -> Any:
        """A client of a plain MQTT 3.1.1 broker (broker mode: :meth:`publish`,
        :meth:`subscribe`, ``on_topic_message_received``). ``ca_pem`` enables TLS."""
        _check_str(host, "host")
        _check_str(client_id, "client_id")
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be 1-65535, not {port}")
        opts = _options(options)
        _logging.refresh_log_level()
        return cls._from_native(
            _native.NativeClient.from_broker(host, port, client_id, username, password, ca_pem, opts)
        )

    # ----- state -----
    @property
    def connected(self) -> bool:
        """Whether the client is connected to the hub right now."""
        return self.connection_status is ConnectionStatus.CONNECTED

    @property
    def connection_status(self) -> ConnectionStatus:
        """The current :class:`ConnectionStatus`."""
        try:
            code, _attempt, _delay = self._native.status()
        except Exception:
            return ConnectionStatus.DISCONNECTED
        return _STATUS[code]

    @property
    def module_id(self) -> Optional[str]:
        """This module's id (None for a broker client)."""
        ident = self._native.identity()
        return ident[1] if ident else None

    @property
    def device_id(self) -> Optional[str]:
        """The edge device id (None for a broker client)."""
        ident = self._native.identity()
        return ident[0] if ident else None

    @property
    def offline_queue(self) -> Tuple[int, Optional[float]]:
        """``(depth, oldest_age_seconds)`` of the queue of sends waiting for a connection."""
        return self._native.queue_stats()

    # ----- handlers -----
    @property
    def on_message_received(self) -> Optional[Handler]:
        """Handler ``(message) -> None`` for input messages without a per-input handler. The
        message is acknowledged to the hub when the handler returns (or raises: the error is
        logged and the message is still acknowledged, so a failing message is not redelivered
        forever). Messages that arrive with no handler at all are not acknowledged: the hub
        redelivers them later."""
        return self._on_message

    @on_message_received.setter
    def on_message_received(self, handler: Optional[Handler]) -> None:
        self._on_message = _check_handler(handler, "on_message_received")

    @property
    def on_twin_desired_properties_patch_received(self) -> Optional[Handler]:
        """Handler ``(patch: dict) -> None`` for desired-property changes (``$version`` in the
        patch). After a reconnect that missed changes, the patch is the whole desired section."""
        return self._on_patch

    @on_twin_desired_properties_patch_received.setter
    def on_twin_desired_properties_patch_received(self, handler: Optional[Handler]) -> None:
        self._on_patch = _check_handler(handler, "on_twin_desired_properties_patch_received")

    @property
    def on_method_request_received(self) -> Optional[Handler]:
        """Handler ``(request: MethodRequest)`` for direct methods without a per-method handler.
        Return a :class:`MethodResponse` (sent for you) or None after calling
        :meth:`send_method_response` yourself. A handler that raises answers status 500;
        a method with no handler answers 404."""
        return self._on_method

    @on_method_request_received.setter
    def on_method_request_received(self, handler: Optional[Handler]) -> None:
        self._on_method = _check_handler(handler, "on_method_request_received")

    @property
    def on_connection_state_change(self) -> Optional[Handler]:
        """Handler ``(status: ConnectionStatus, reason: StatusReason)``, or with no parameters
        (azure-iot-device style; read :attr:`connected`)."""
        return self._on_status

    @on_connection_state_change.setter
    def on_connection_state_change(self, handler: Optional[Handler]) -> None:
        self._on_status = _check_handler(handler, "on_connection_state_change")
        self._status_args = handler is not None and _wants_args(handler)

    @property
    def on_topic_message_received(self) -> Optional[Handler]:
        """Broker mode: handler ``(message: TopicMessage)`` for topics without a handler of
        their own (see :meth:`subscribe`)."""
        return self._on_topic

    @on_topic_message_received.setter
    def on_topic_message_received(self, handler: Optional[Handler]) -> None:
        self._on_topic = _check_handler(handler, "on_topic_message_received")

    def set_input_message_handler(self, input_name: str, handler: Optional[Handler]) -> None:
        """Handle messages of one input with ``handler(message)`` (None removes it); other
        inputs go to :attr:`on_message_received`."""
        _check_str(input_name, "input_name")
        if _check_handler(handler, "handler") is None:
            self._input_handlers.pop(input_name, None)
        else:
            self._input_handlers[input_name] = handler  # type: ignore[assignment]

    def set_method_handler(self, method_name: str, handler: Optional[Handler]) -> None:
        """Handle one direct method with ``handler(request) -> MethodResponse | None``
        (None removes it); other methods go to :attr:`on_method_request_received`."""
        _check_str(method_name, "method_name")
        if _check_handler(handler, "handler") is None:
            self._method_handlers.pop(method_name, None)
        else:
            self._method_handlers[method_name] = handler  # type: ignore[assignment]

    # ----- routing: event tuple -> (handler, args) -----
    def _input_handler(self, input_name: str) -> Optional[Handler]:
        return self._input_handlers.get(input_name) or self._on_message

    def _method_handler(self, name: str) -> Optional[Handler]:
        return self._method_handlers.get(name) or self._on_method

    def _topic_handler(self, topic: str) -> Optional[Handler]:
        for f, h in self._topic_handlers.items():
            if _topic_matches(f, topic):
                return h
        return self._on_topic

    @staticmethod
    def _patch_arg(patch: Any, version: Optional[int]) -> Any:
        if isinstance(patch, dict) and version is not None and "$version" not in patch:
            patch["$version"] = version
        return patch

    def _status_event(self, st: Tuple[int, int, float], reason: int) -> Optional[Tuple[Handler, tuple]]:
        status = _STATUS[st[0]]
        self._connection = status
        h = self._on_status
        if h is None:
            return None
        args = (status, StatusReason(reason)) if self._status_args else ()
        return h, args

    @staticmethod
    def _unhandled_input(input_name: str) -> None:
        logger.warning(
            "edgemodule: a message on input %r has no handler (set on_message_received or "
            "set_input_message_handler); not acknowledged, the hub will redeliver it",
            input_name,
        )

    @staticmethod
    def _log_handler_error(what: str) -> None:
        logger.exception("edgemodule: the %s handler raised; the client goes on", what)

    @staticmethod
    def _log_send_error(e: Exception) -> None:
        logger.warning("edgemodule: sending the method response failed: %s", e)

    @staticmethod
    def _method_result(request: MethodRequest, result: Any) -> Optional[MethodResponse]:
        if result is None:
            return None
        if isinstance(result, MethodResponse):
            return result
        raise TypeError(
            f"a method handler must return a MethodResponse or None, not {type(result).__name__}"
        )

    @staticmethod
    def _error_response(request: MethodRequest) -> MethodResponse:
        return MethodResponse(request.request_id, 500, {"message": f"method {request.name!r} failed in the module"})

    @staticmethod
    def _not_found(request: MethodRequest) -> MethodResponse:
        return MethodResponse(request.request_id, 404, {"message": f"method {request.name!r} is not implemented"})

    @staticmethod
    def _method_request(ev: tuple) -> MethodRequest:
        return MethodRequest(ev[1], ev[2], ev[3])

    @staticmethod
    def _topic_message(ev: tuple) -> TopicMessage:
        return TopicMessage(ev[1], ev[2], ev[3])


def _check_message(message: Any) -> None:
    if not isinstance(message, (_native.Message, bytes, bytearray, str)):
        raise TypeError(
            f"message must be an edgemodule.Message, bytes or str, not {type(message).__name__}"
        )


def _check_messages(messages: Any) -> List[Any]:
    if isinstance(messages, (str, bytes, bytearray, _native.Message)) or not hasattr(messages, "__iter__"):
        raise TypeError(f"messages must be a list of Message, not {type(messages).__name__}")
    out = list(messages)
    for m in out:
        _check_message(m)
    return out
