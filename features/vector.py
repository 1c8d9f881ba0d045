"""The feature vector: names, and the single function that builds a row from state and event.

Training (``features.pipeline``) and serving (``streams.app``) both call :func:`caller_step`,
:func:`payee_step`, :func:`subscriber_step`, :func:`transfer_feedback` and :func:`apply_feedback`; nothing else
computes features. Per event, in this order: the caller (calls) or payee (transfers) step, the subscriber step,
then for a transfer the feedback it raises is applied to the callers and the payee it names.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import orjson

from core.events import CallEvent, Event, TransferEvent
from features.clock import DAY_MS, WINDOW_NAMES, local_hour
from features.state import (
    CHANNEL_CODES,
    FEEDBACK_DELAY_MS,
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
    Feedback,
    PayeeSnapshot,
    PayeeState,
    SubscriberState,
    payee_key,
)

NAN = float("nan")
SUSPICIOUS_FOLLOW_MS = 30 * 60_000
# Feedback to a caller: a callee paid a new payee within this long after its last call with the caller,
# the caller was a stranger at that call (first seen less than a day before it) and they talked this long.
PAID_AFTER_CALL_MS = DAY_MS
PAID_MIN_TALK_S = 60
MAX_FEEDBACK_CALLERS = 4
# Feedback to a payee: the payer had this much stranger talk in the last hour, or a suspicious call within
# ``SUSPICIOUS_FOLLOW_MS``, before paying.
FLAG_STRANGER_TALK_1H_S = 120

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
    "caller_paid_callees_24h",
    "caller_paid_callees_7d",
    "caller_paid_share_7d",
    "caller_calls_7d",
    "caller_short_ratio_7d",
    "caller_answered_7d",
    "caller_mean_talk_7d_s",
    "caller_answered_short_share_7d",
    "caller_answered_short_share_24h",
    "call_vs_caller_usual_talk",
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
PAYEE_FEATURES = [
    "payee_payers_24h",
    "payee_payers_7d",
    "payee_new_payers_24h",
    "payee_new_payers_7d",
    "payee_amount_24h",
    "payee_age_s",
    "payee_flagged_payers_7d",
    "payee_flagged_share_7d",
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
    "suspicious_caller_paid_callees_7d",
]

FEATURE_NAMES: tuple[str, ...] = tuple(
    _EVENT_FEATURES
    + _CALL_FEATURES
    + CALLER_FEATURES
    + _TRANSFER_FEATURES
    + PAYEE_FEATURES
    + _WINDOW_FEATURES
    + _SUB_FEATURES
)
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
FEATURES_HASH = hashlib.sha256(",".join(FEATURE_NAMES).encode()).hexdigest()[:16]
CATEGORICAL_FEATURES = ("call_kind", "channel", "suspicious_caller_kind")
_PAYEE_NEW = FEATURE_INDEX["payee_new"]
_AFTER_SUSPICIOUS = FEATURE_INDEX["transfer_after_suspicious_call"]
_STRANGER_TALK_1H = FEATURE_INDEX["sub_stranger_talk_s_1h"]


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


def json_values(values: tuple[float, ...]) -> list[float | None]:
    """Feature values for JSON, which has no NaN: a missing value becomes null."""
    return [None if v != v else v for v in values]


def encode_row(row: FeatureRow) -> bytes:
    """JSON of a feature row (NaN as null), for audits and training-serving comparisons."""
    values = json_values(row.values)
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


def payee_step(state: PayeeState, transfer: TransferEvent) -> PayeeSnapshot | None:
    """Update the receiving account's state with a transfer; its snapshot, or None for a duplicate."""
    if not state.update(transfer):
        return None
    return state.snapshot()


def transfer_feedback(state: SubscriberState, transfer: TransferEvent, row: FeatureRow) -> list[Feedback]:
    """What a (first-time) transfer tells other keys, from the subscriber's state right after its row.

    To callers: each recent stranger this subscriber talked with, when the transfer goes to a new payee
    ("a callee of yours paid a new payee within a day"). To the payee: when the payer had a suspicious call
    or a long stranger talk just before paying. Feedback keys are table keys (a payee's is prefixed).
    """
    ts = transfer.ts_ms
    effective = ts + FEEDBACK_DELAY_MS
    out: list[Feedback] = []
    if row.values[_PAYEE_NEW] == 1.0:
        recent = [
            (contact[1], caller)
            for caller, contact in state.contacts.items()
            if ts - PAID_AFTER_CALL_MS <= contact[1] <= ts
            and contact[0] > contact[1] - DAY_MS
            and contact[3] >= PAID_MIN_TALK_S
        ]
        recent.sort(reverse=True)
        out += [
            Feedback(caller, transfer.event_id, transfer.subscriber, effective)
            for _, caller in recent[:MAX_FEEDBACK_CALLERS]
        ]
    if row.values[_AFTER_SUSPICIOUS] == 1.0 or row.values[_STRANGER_TALK_1H] >= FLAG_STRANGER_TALK_1H_S:
        out.append(Feedback(payee_key(transfer.payee_account), transfer.event_id, transfer.subscriber, effective))
    return out


def apply_feedback(state: CallerState | PayeeState, fb: Feedback) -> bool:
    """Queue feedback on the caller or payee state it names; False for a repeat (same transfer, same key)."""
    return state.feedback(fb)


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
        out += [NAN, 0.0, 0.0, 0.0, NAN, 0.0]
    else:
        out += [
            max(0.0, (at_ms - last.end_ms) / 1000),
            float(last.calls_with_sub),
            float(last.talk_with_sub_s),
            float(last.caller_fanout_24h),
            float(last.kind_code),
            float(last.caller_paid_callees_7d),
        ]
    return out


def subscriber_step(
    state: SubscriberState,
    event: Event,
    caller: CallerSnapshot | None = None,
    payee: PayeeSnapshot | None = None,
) -> FeatureRow | None:
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
        values.append(snap.usual_talk_ratio(event.duration_s) if event.answered else NAN)
        values += [NAN] * len(_TRANSFER_FEATURES)
        values += [NAN] * len(PAYEE_FEATURES)
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
        values += payee.to_list() if payee is not None else [NAN] * len(PAYEE_FEATURES)
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
