"""Fast decoding and validation of raw event bytes against the contract's schemas.

Hand-written rather than a JSON-Schema validator: this is the hot path, and each failure must carry a
short machine-readable reason for the dead-letter topic.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from core.errors import InvalidEvent
from core.events import CALLER_KINDS, CHANNELS, CallEvent, Event, TransferEvent

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CALLER_KINDS = frozenset(CALLER_KINDS)
_CHANNELS = frozenset(CHANNELS)
# Far-future timestamps are absurd: a clock that is years ahead is a bug upstream, not an event.
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
_MAX_AMOUNT = 1e12
MAX_EVENT_BYTES = 16_384


def _str(obj: dict[str, Any], name: str, max_len: int = 128) -> str:
    value = obj.get(name)
    if value is None:
        raise InvalidEvent("missing_field", name)
    if type(value) is not str:
        raise InvalidEvent("wrong_type", f"{name} must be a string")
    if not value or len(value) > max_len:
        raise InvalidEvent("bad_value", f"{name} length {len(value)}")
    return value


def _phone(obj: dict[str, Any], name: str) -> str:
    value = _str(obj, name, 16)
    if _E164.fullmatch(value) is None:
        raise InvalidEvent("bad_phone", f"{name} is not E.164")
    return value


def _ts(obj: dict[str, Any]) -> int:
    value = obj.get("ts_ms")
    if value is None:
        raise InvalidEvent("missing_field", "ts_ms")
    if type(value) is not int:
        raise InvalidEvent("wrong_type", "ts_ms must be an integer")
    if value < 0 or value > _MAX_TS_MS:
        raise InvalidEvent("bad_value", "ts_ms out of range")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    value = obj.get(name)
    if value is None:
        raise InvalidEvent("missing_field", name)
    if type(value) not in (int, float):  # bool is excluded on purpose
        raise InvalidEvent("wrong_type", f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range (decode_obj gets Python ints of any size)
        raise InvalidEvent("bad_value", f"{name} out of range") from None
    if not math.isfinite(number):
        raise InvalidEvent("bad_value", f"{name} not finite")
    return number


def _coord(obj: dict[str, Any], name: str, limit: float) -> float | None:
    if obj.get(name) is None:
        return None
    value = _number(obj, name)
    if not -limit <= value <= limit:
        raise InvalidEvent("bad_value", f"{name} out of range")
    return value


def _call(obj: dict[str, Any]) -> CallEvent:
    answered = obj.get("answered")
    if answered is None:
        raise InvalidEvent("missing_field", "answered")
    if type(answered) is not bool:
        raise InvalidEvent("wrong_type", "answered must be a boolean")
    duration = _number(obj, "duration_s")
    if not 0 <= duration <= 86_400:
        raise InvalidEvent("bad_value", "duration_s out of range")
    kind = obj.get("caller_kind")
    if kind is None:
        raise InvalidEvent("missing_field", "caller_kind")
    if type(kind) is not str:  # an unhashable list/object would make the set lookup raise TypeError
        raise InvalidEvent("wrong_type", "caller_kind must be a string")
    if kind not in _CALLER_KINDS:
        raise InvalidEvent("bad_value", "caller_kind unknown")
    return CallEvent(
        event_id=_str(obj, "event_id"),
        ts_ms=_ts(obj),
        caller=_phone(obj, "caller"),
        callee=_phone(obj, "callee"),
        answered=answered,
        duration_s=duration,
        caller_kind=kind,
        callee_lat=_coord(obj, "callee_lat", 90.0),
        callee_lon=_coord(obj, "callee_lon", 180.0),
    )


def _transfer(obj: dict[str, Any]) -> TransferEvent:
    amount = _number(obj, "amount")
    if not 0 < amount <= _MAX_AMOUNT:
        raise InvalidEvent("bad_value", "amount must be positive and sane")
    currency = _str(obj, "currency", 3)
    if _CURRENCY.fullmatch(currency) is None:
        raise InvalidEvent("bad_value", "currency is not ISO 4217")
    channel = obj.get("channel")
    if channel is None:
        raise InvalidEvent("missing_field", "channel")
    if type(channel) is not str:  # an unhashable list/object would make the set lookup raise TypeError
        raise InvalidEvent("wrong_type", "channel must be a string")
    if channel not in _CHANNELS:
        raise InvalidEvent("bad_value", "channel unknown")
    return TransferEvent(
        event_id=_str(obj, "event_id"),
        ts_ms=_ts(obj),
        subscriber=_phone(obj, "subscriber"),
        payer_account=_str(obj, "payer_account", 64),
        payee_account=_str(obj, "payee_account", 64),
        amount=amount,
        currency=currency,
        channel=channel,
        lat=_coord(obj, "lat", 90.0),
        lon=_coord(obj, "lon", 180.0),
    )


def decode_obj(obj: Any) -> Event:
    """Validate an already-parsed JSON value as a contract event."""
    if type(obj) is not dict:
        raise InvalidEvent("not_an_object")
    schema = obj.get("schema")
    if schema == "call.v1":
        return _call(obj)
    if schema == "transfer.v1":
        return _transfer(obj)
    if schema is None:
        raise InvalidEvent("missing_field", "schema")
    raise InvalidEvent("unknown_schema", str(schema)[:40])


def decode(raw: bytes | str, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Parse and validate one raw event; raises :class:`InvalidEvent` with a reason code."""
    if len(raw) > max_bytes:
        raise InvalidEvent("oversized", f"{len(raw)} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # also covers invalid UTF-8
        raise InvalidEvent("malformed_json", str(exc)[:80]) from None
    return decode_obj(obj)


def encode(event: Event) -> bytes:
    """The contract JSON of an event (optional fields left out when unknown)."""
    from dataclasses import asdict

    return orjson.dumps({k: v for k, v in asdict(event).items() if v is not None})
