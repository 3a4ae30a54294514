"""Bridge of the Rust core's log records to :mod:`logging`.

Records go to the logger ``edgemodule`` (core targets below it, e.g. ``edgemodule.session``).
The core only hands over records at or above the effective level the ``edgemodule`` logger had
when the last client was created or :func:`edgemodule.refresh_log_level` was called.
"""

from __future__ import annotations

import logging
from typing import Dict

from . import _native

logger = logging.getLogger("edgemodule")
_loggers: Dict[str, logging.Logger] = {}


def _logger_for(target: str) -> logging.Logger:
    lg = _loggers.get(target)
    if lg is None:
        parts = [p for p in target.split("::") if p]
        if parts and parts[0] == "edgemodule":
            parts = parts[1:]
        name = ".".join(["edgemodule", *parts])
        lg = logging.getLogger(name)
        _loggers[target] = lg
    return lg


def _forward(level: int, target: str, message: str) -> None:
    lg = _logger_for(target)
    if lg.isEnabledFor(level):
        lg.log(level, "%s", message)


def refresh_log_level() -> None:
    """Tell the core the current effective level of the ``edgemodule`` logger.

    Called whenever a client is created; call it yourself after changing the level of a
    running process (e.g. ``logging.getLogger("edgemodule").setLevel(logging.DEBUG)``).
    """
    _native._set_log_level(logger.getEffectiveLevel())


def _init() -> None:
    _native._init_logging(_forward, logger.getEffectiveLevel())
