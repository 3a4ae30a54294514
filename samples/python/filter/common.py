"""What both filter styles share: the reading format, the alert, and number formatting."""

from __future__ import annotations

import json
from typing import Any, Optional

from edgemodule import Message

INPUT = "input1"
OUTPUT = "output1"
DEFAULT_THRESHOLD = 25.0


def machine_temperature(body: bytes) -> Optional[float]:
    """``machine.temperature`` of a sensor reading, or None if the body is not one."""
    try:
        v = json.loads(body)
        t = v["machine"]["temperature"]
    except (ValueError, KeyError, TypeError):
        return None
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def threshold_in(section: Any) -> Optional[float]:
    """The ``TemperatureThreshold`` of a desired section or patch, if it is a number."""
    if not isinstance(section, dict):
        return None
    t = section.get("TemperatureThreshold")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def number(x: float) -> Any:
    """25.0 as 25, 25.5 as 25.5: what a person would write in the twin."""
    return int(x) if float(x).is_integer() else x


def alert(reading: Message) -> Message:
    """The reading forwarded as an alert: same body and properties plus MessageType=Alert."""
    out = Message(reading.data, content_type=reading.content_type, content_encoding=reading.content_encoding,
                  custom_properties=reading.custom_properties)
    out.creation_time_utc = reading.creation_time_utc
    out.custom_properties["MessageType"] = "Alert"
    return out
