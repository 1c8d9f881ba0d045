"""Validation of parsed JSON objects against the contract's schemas, one function per event kind.

Hand-written rather than a JSON-Schema validator: this is the hot path, and each failure must carry a
short machine-readable reason for the dead-letter topic. The helpers (``text``, ``phone``, ``ts``, ``number``,
``coord``) are public so that a new kind's validator is a few lines.
"""

from __future__ import annotations

import math
import re
from typing import Any

from core.errors import InvalidEvent
from core.events import CALLER_KINDS, CHANNELS, CallEvent, CallStartEvent, ReportEvent, TransferEvent

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CALLER_KINDS = frozenset(CALLER_KINDS)
_CHANNELS = frozenset(CHANNELS)
# Far-future timestamps are absurd: a clock that is years ahead is a bug upstream, not an event.
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
_MAX_AMOUNT = 1e12
_MAX_REPORTED_NUMBERS = 64  # a ring's lines named in one report; more is a bulk list, not a victim's report

__all__ = [
    "call_start_v1",
    "call_v1",
    "caller_kind",
    "case_report_v1",
    "coord",
    "number",
    "optional_text",
    "phone",
    "text",
    "transfer_v1",
    "ts",
]


def text(obj: dict[str, Any], name: str, max_len: int = 128) -> str:
    """A required non-empty string field of at most ``max_len`` characters."""
    value = obj.get(name)
    if value is None:
        raise InvalidEvent("missing_field", name)
    if type(value) is not str:
        raise InvalidEvent("wrong_type", f"{name} must be a string")
    if not value or len(value) > max_len:
        raise InvalidEvent("bad_value", f"{name} length {len(value)}")
    return value


def phone(obj: dict[str, Any], name: str) -> str:
    """A required E.164 phone number field."""
    value = text(obj, name, 16)
    if _E164.fullmatch(value) is None:
        raise InvalidEvent("bad_phone", f"{name} is not E.164")
    return value


def ts(obj: dict[str, Any], name: str = "ts_ms") -> int:
    """A required time field (``ts_ms`` unless named): integer milliseconds since the epoch, before 2100."""
    value = obj.get(name)
    if value is None:
        raise InvalidEvent("missing_field", name)
    if type(value) is not int:
        raise InvalidEvent("wrong_type", f"{name} must be an integer")
    if value < 0 or value > _MAX_TS_MS:
        raise InvalidEvent("bad_value", f"{name} out of range")
    return value


def number(obj: dict[str, Any], name: str) -> float:
    """A required finite number field (a boolean is not a number here)."""
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


def coord(obj: dict[str, Any], name: str, limit: float) -> float | None:
    """An optional coordinate within ``[-limit, limit]``; None when absent."""
    if obj.get(name) is None:
        return None
    value = number(obj, name)
    if not -limit <= value <= limit:
        raise InvalidEvent("bad_value", f"{name} out of range")
    return value


def optional_text(obj: dict[str, Any], name: str, max_len: int = 128) -> str | None:
    """An optional non-empty string field; None when absent or null."""
    return None if obj.get(name) is None else text(obj, name, max_len)


def caller_kind(obj: dict[str, Any]) -> str:
    """The required ``caller_kind`` field: one of the contract's number range classes."""
    kind = obj.get("caller_kind")
    if kind is None:
        raise InvalidEvent("missing_field", "caller_kind")
    if type(kind) is not str:  # an unhashable list/object would make the set lookup raise TypeError
        raise InvalidEvent("wrong_type", "caller_kind must be a string")
    if kind not in _CALLER_KINDS:
        raise InvalidEvent("bad_value", "caller_kind unknown")
    return kind


def call_v1(obj: dict[str, Any]) -> CallEvent:
    """Validate a parsed ``call.v1`` object."""
    answered = obj.get("answered")
    if answered is None:
        raise InvalidEvent("missing_field", "answered")
    if type(answered) is not bool:
        raise InvalidEvent("wrong_type", "answered must be a boolean")
    duration = number(obj, "duration_s")
    if not 0 <= duration <= 86_400:
        raise InvalidEvent("bad_value", "duration_s out of range")
    kind = caller_kind(obj)
    return CallEvent(
        event_id=text(obj, "event_id"),
        ts_ms=ts(obj),
        caller=phone(obj, "caller"),
        callee=phone(obj, "callee"),
        answered=answered,
        duration_s=duration,
        caller_kind=kind,
        callee_lat=coord(obj, "callee_lat", 90.0),
        callee_lon=coord(obj, "callee_lon", 180.0),
        call_id=optional_text(obj, "call_id"),
    )


def call_start_v1(obj: dict[str, Any]) -> CallStartEvent:
    """Validate a parsed ``call_start.v1`` object."""
    return CallStartEvent(
        event_id=text(obj, "event_id"),
        call_id=text(obj, "call_id"),
        ts_ms=ts(obj),
        caller=phone(obj, "caller"),
        callee=phone(obj, "callee"),
        caller_kind=caller_kind(obj),
        callee_lat=coord(obj, "callee_lat", 90.0),
        callee_lon=coord(obj, "callee_lon", 180.0),
    )


def transfer_v1(obj: dict[str, Any]) -> TransferEvent:
    """Validate a parsed ``transfer.v1`` object."""
    amount = number(obj, "amount")
    if not 0 < amount <= _MAX_AMOUNT:
        raise InvalidEvent("bad_value", "amount must be positive and sane")
    currency = text(obj, "currency", 3)
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
        event_id=text(obj, "event_id"),
        ts_ms=ts(obj),
        subscriber=phone(obj, "subscriber"),
        payer_account=text(obj, "payer_account", 64),
        payee_account=text(obj, "payee_account", 64),
        amount=amount,
        currency=currency,
        channel=channel,
        lat=coord(obj, "lat", 90.0),
        lon=coord(obj, "lon", 180.0),
    )


def case_report_v1(obj: dict[str, Any]) -> ReportEvent:
    """Validate a police report: a ``case.v1`` object with the ``reported_ms`` the reports topic requires."""
    numbers = obj.get("fraud_numbers")
    if numbers is None:
        raise InvalidEvent("missing_field", "fraud_numbers")
    if type(numbers) is not list:
        raise InvalidEvent("wrong_type", "fraud_numbers must be a list")
    if len(numbers) > _MAX_REPORTED_NUMBERS:
        raise InvalidEvent("bad_value", f"fraud_numbers has {len(numbers)} numbers")
    checked = tuple(dict.fromkeys(phone({"n": n}, "n") for n in numbers))  # each E.164, repeats once
    case_id = text(obj, "case_id")
    return ReportEvent(
        event_id="report:" + case_id,
        ts_ms=ts(obj, "reported_ms"),
        case_id=case_id,
        victim=phone(obj, "victim"),
        fraud_numbers=checked,
    )
