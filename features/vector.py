"""The feature vector: names, and the single function that builds a row from state and event.

Training (``features.pipeline``) and serving (``streams.agents``) both call :func:`caller_step` and
:func:`subscriber_step`; nothing else computes features.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import orjson

from features.clock import WINDOW_NAMES, local_hour
from features.state import (
    CHANNEL_CODES,
    KIND_CODES,
    S_AMOUNT,
    S_CALLS,
    S_LONG_STRANGER,
    S_NEW_PAYEE,
    S_NEW_PAYEE_AMOUNT,
    S_STRANGER,
    S_STRANGER_TALK,
    S_SUSP_KIND,
    S_SUSP_TALK,
    S_TALK,
    S_TRANSFERS,
    SUSPICIOUS_KINDS,
    CallerSnapshot,
    CallerState,
    SubscriberState,
)
from streams.events import CallEvent, Event, TransferEvent

NAN = float("nan")
SUSPICIOUS_FOLLOW_MS = 30 * 60_000

_EVENT_FEATURES = ["is_call", "local_hour", "is_night"]
_CALL_FEATURES = [
    "call_duration_s",
    "call_answered",
    "call_kind",
    "call_kind_suspicious",
    "caller_is_stranger",
    "caller_known_for_s",
    "caller_calls_with_sub",
    "caller_talk_with_sub_s",
]
CALLER_FEATURES = [
    "caller_fanout_1h",
    "caller_fanout_24h",
    "caller_fanout_7d",
    "caller_calls_24h",
    "caller_short_ratio_24h",
    "caller_unanswered_ratio_24h",
    "caller_long_calls_24h",
    "caller_age_s",
]
_TRANSFER_FEATURES = [
    "amount",
    "amount_log",
    "amount_z",
    "amount_vs_usual",
    "payee_new",
    "channel",
    "prior_transfers",
    "transfer_after_suspicious_call",
]
_WINDOW_CHANNELS = [
    ("calls", S_CALLS),
    ("suspicious_kind_calls", S_SUSP_KIND),
    ("stranger_calls", S_STRANGER),
    ("stranger_talk_s", S_STRANGER_TALK),
    ("suspicious_kind_talk_s", S_SUSP_TALK),
    ("long_stranger_calls", S_LONG_STRANGER),
    ("transfers", S_TRANSFERS),
    ("amount", S_AMOUNT),
    ("new_payees", S_NEW_PAYEE),
    ("new_payee_amount", S_NEW_PAYEE_AMOUNT),
]
_WINDOW_FEATURES = [f"sub_{name}_{w}" for w in WINDOW_NAMES for name, _ in _WINDOW_CHANNELS]
_SUB_FEATURES = [
    "sub_longest_stranger_call_24h_s",
    "sub_stranger_talk_share_24h",
    "since_suspicious_call_s",
    "suspicious_caller_calls",
    "suspicious_caller_talk_s",
    "suspicious_caller_fanout_24h",
    "suspicious_caller_kind",
]

FEATURE_NAMES: tuple[str, ...] = tuple(
    _EVENT_FEATURES + _CALL_FEATURES + CALLER_FEATURES + _TRANSFER_FEATURES + _WINDOW_FEATURES + _SUB_FEATURES
)
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
FEATURES_HASH = hashlib.sha256(",".join(FEATURE_NAMES).encode()).hexdigest()[:16]
CATEGORICAL_FEATURES = ("call_kind", "channel", "suspicious_caller_kind")


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One scored point: the event it came from and its feature values in ``FEATURE_NAMES`` order."""

    event_id: str
    subscriber: str
    avail_ms: int  # when the event became known: a call's end, a transfer's initiation
    is_call: bool
    values: tuple[float, ...]
    lat: float | None
    lon: float | None


def encode_row(row: FeatureRow) -> bytes:
    """JSON of a feature row (NaN as null), for audits and training-serving comparisons."""
    values = [None if v != v else v for v in row.values]
    return orjson.dumps(
        {"event_id": row.event_id, "subscriber": row.subscriber, "avail_ms": row.avail_ms, "values": values}
    )


def available_at(event: Event) -> int:
    """The event time at which an event can be known: calls are reported when they end."""
    if isinstance(event, CallEvent):
        return event.ts_ms + int(event.duration_s * 1000)
    return event.ts_ms


def caller_step(state: CallerState, call: CallEvent) -> CallerSnapshot | None:
    """Update the calling number's state with a call; its snapshot, or None for a duplicate."""
    if not state.update(call, available_at(call)):
        return None
    return state.snapshot()


def _common(state: SubscriberState, at_ms: int, is_call: bool) -> list[float]:
    hour = local_hour(at_ms)
    return [1.0 if is_call else 0.0, float(hour), 1.0 if hour < 6 else 0.0]


def _subscriber_tail(state: SubscriberState, at_ms: int) -> list[float]:
    w = state.windows
    out: list[float] = []
    for i in range(len(WINDOW_NAMES)):
        sums = w.sums(i)
        for name, channel in _WINDOW_CHANNELS:
            value = sums[channel]
            out.append(value / 100 if "amount" in name else float(value))
    day = w.sums(2)
    out.append(float(w.maximum(2)))
    out.append(day[S_STRANGER_TALK] / day[S_TALK] if day[S_TALK] else 0.0)
    last = state.last_suspicious
    if last is None:
        out += [NAN, 0.0, 0.0, 0.0, NAN]
    else:
        out += [
            max(0.0, (at_ms - last.end_ms) / 1000),
            float(last.calls_with_sub),
            float(last.talk_with_sub_s),
            float(last.caller_fanout_24h),
            float(last.kind_code),
        ]
    return out


def subscriber_step(state: SubscriberState, event: Event, caller: CallerSnapshot | None = None) -> FeatureRow | None:
    """Update the subscriber's state with an event and build its feature row; None for a duplicate."""
    at_ms = available_at(event)
    if isinstance(event, CallEvent):
        snap = caller if caller is not None else CallerSnapshot(0, 0, 0, 0, 0.0, 0.0, 0, 0.0)
        stranger = state.update_call(event, at_ms, snap)
        if stranger is None:
            return None
        contact = state.contacts[event.caller]
        values = _common(state, at_ms, True)
        values += [
            event.duration_s,
            1.0 if event.answered else 0.0,
            float(KIND_CODES[event.caller_kind]),
            1.0 if event.caller_kind in SUSPICIOUS_KINDS else 0.0,
            1.0 if stranger else 0.0,
            (at_ms - contact[0]) / 1000,
            float(contact[2]),
            float(contact[3]),
        ]
        values += snap.to_list()
        values += [NAN] * len(_TRANSFER_FEATURES)
        lat, lon = event.callee_lat, event.callee_lon
    else:
        assert isinstance(event, TransferEvent)
        first, new_payee, (n, mean, m2) = state.update_transfer(event)
        if not first:
            return None
        values = _common(state, at_ms, False)
        values += [NAN] * len(_CALL_FEATURES)
        values += [NAN] * len(CALLER_FEATURES)
        log_amount = math.log1p(event.amount)
        std = math.sqrt(m2 / (n - 1)) if n > 1 else NAN
        last = state.last_suspicious
        values += [
            event.amount,
            log_amount,
            (log_amount - mean) / std if n > 1 and std > 0 else NAN,
            log_amount - mean if n > 0 else NAN,
            1.0 if new_payee else 0.0,
            float(CHANNEL_CODES[event.channel]),
            n,
            1.0 if last is not None and 0 <= at_ms - last.end_ms <= SUSPICIOUS_FOLLOW_MS else 0.0,
        ]
        lat, lon = event.lat, event.lon
    values += _subscriber_tail(state, at_ms)
    return FeatureRow(
        event_id=event.event_id,
        subscriber=event.subscriber,
        avail_ms=at_ms,
        is_call=isinstance(event, CallEvent),
        values=tuple(values),
        lat=lat,
        lon=lon,
    )
