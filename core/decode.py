"""Decoding raw event bytes into contract events, and encoding them back."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from core.errors import InvalidEvent
from core.events import Event
from core.kinds import validate_obj

__all__ = ["MAX_EVENT_BYTES", "decode", "decode_obj", "encode"]

MAX_EVENT_BYTES = 16_384


def decode_obj(obj: Any) -> Event:
    """Validate an already-parsed JSON value as a contract event of a registered kind."""
    if type(obj) is not dict:
        raise InvalidEvent("not_an_object")
    return validate_obj(obj)


def decode(raw: bytes | str, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Parse and validate one raw event; raises :class:`InvalidEvent` with a reason code."""
    if len(raw) > max_bytes:
        raise InvalidEvent("oversized", f"{len(raw)} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # also covers invalid UTF-8
        raise InvalidEvent("malformed_json", str(exc)[:80]) from None
    return decode_obj(obj)


def encode(event: Any) -> bytes:
    """The contract JSON of an event (optional fields left out when unknown)."""
    return orjson.dumps({k: v for k, v in asdict(event).items() if v is not None})
