"""The feature vector: the single function that builds a row from state and event, block by block.

Training (``features.pipeline``) and serving (``streams.app``) both run these steps through
``features.steps``, which holds their order; nothing else computes features. The names, blocks and hash
of the vector are declared in ``features.registry``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from core.events import CallEvent, CallStartEvent, Event, TransferEvent
from features.clock import local_hour
from features.params import (
    FEEDBACK_DELAY_MS,
    FLAG_STRANGER_TALK_1H_S,
    MAX_FEEDBACK_CALLERS,
    NIGHT_BEFORE_HOUR,
    PAID_AFTER_CALL_MS,
    PAID_MIN_TALK_S,
    STRANGER_MS,
    SUSPICIOUS_FOLLOW_MS,
    WINDOW_NAMES,
)
from features.registry import (
    BLOCK_NAMES,
    BLOCKS,
    CATEGORICAL_FEATURES,
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURES_HASH,
    WINDOW_CHANNELS,
)
from features.state import (
    CHANNEL_CODES,
    S_STRANGER_TALK,
    S_TALK,
    CallerSnapshot,
    CallerState,
    Feedback,
    OpenCall,
    PayeeSnapshot,
    PayeeState,
    SubscriberState,
    payee_key,
)

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURES_HASH",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "TICK_SCHEMA",
    "FeatureRow",
    "apply_feedback",
    "available_at",
    "call_row",
    "call_start_row",
    "caller_start_step",
    "caller_step",
    "encode_row",
    "json_values",
    "payee_step",
    "subscriber_step",
    "tick_row",
    "transfer_feedback",
    "transfer_row",
]

NAN = float("nan")
# The ``schema`` of a row that no event made: an open call re-scored by its timer (``features.timers``).
TICK_SCHEMA = "tick"

# ``subscriber_step`` appends the blocks in this order; the registry must declare them so.
_ROW_ORDER = (
    "event",
    "call",
    "caller",
    "call_vs_caller",
    "transfer",
    "payee",
    "windows",
    "subscriber",
    "suspicious",
    "on_call",
)
if tuple(b.name for b in BLOCKS) != _ROW_ORDER:
    raise RuntimeError(f"features.registry declares blocks {[b.name for b in BLOCKS]}, the step builds {_ROW_ORDER}")
# The padding of a block an event does not fill (a call's transfer fields, a transfer's call fields).
_NAN_CALL = (NAN,) * len(BLOCK_NAMES["call"])
_NAN_CALLER = (NAN,) * (len(BLOCK_NAMES["caller"]) + len(BLOCK_NAMES["call_vs_caller"]))
_NAN_TRANSFER = (NAN,) * len(BLOCK_NAMES["transfer"])
_NAN_PAYEE = (NAN,) * len(BLOCK_NAMES["payee"])
_NO_SUSPICIOUS = (NAN, 0.0, 0.0, 0.0, NAN, 0.0, 0.0)  # no suspicious call yet: no time since, no share, zeros
if len(_NO_SUSPICIOUS) != len(BLOCK_NAMES["suspicious"]):
    raise RuntimeError("the suspicious block's padding does not match the registry")
_NO_OPEN_CALL = (0.0, NAN, NAN, NAN, NAN, NAN, 0.0)  # not on a new number's call; nothing known of a line
if 2 + len(_NO_OPEN_CALL) != len(BLOCK_NAMES["on_call"]):
    raise RuntimeError("the on_call block's padding does not match the registry")
# (state channel, kept in cents) per window feature of one window, read once per window per row.
_WINDOW_READ = tuple((ch.channel, ch.cents) for ch in WINDOW_CHANNELS)
_N_WINDOWS = len(WINDOW_NAMES)
_DAY = WINDOW_NAMES.index("24h")
_ZERO_CALLER = CallerSnapshot(0, 0, 0, 0, 0.0, 0.0, 0, 0.0)
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
    schema: str = ""  # the event's kind ("" in a record written before signalling)


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
    """The event time at which an event can be known (the contract's: calls are reported when they end)."""
    return event.available_ms


def caller_step(state: CallerState, call: CallEvent) -> CallerSnapshot | None:
    """Update the calling number's state with a call; its snapshot, or None for a duplicate."""
    if not state.update(call, available_at(call)):
        return None
    return state.snapshot()


def caller_start_step(state: CallerState, start: CallStartEvent) -> CallerSnapshot:
    """The calling number as it is when a call connects; the call changes its state only once it ends."""
    return state.snapshot(available_at(start))


def payee_step(state: PayeeState, transfer: TransferEvent) -> PayeeSnapshot | None:
    """Update the receiving account's state with a transfer; its snapshot, or None for a duplicate."""
    if not state.update(transfer):
        return None
    return state.snapshot()


def transfer_feedback(state: SubscriberState, transfer: TransferEvent, row: FeatureRow) -> list[Feedback]:
    """What a (first-time) transfer tells other keys, from the subscriber's state right after its row.

    To callers: each recent stranger this subscriber talked with, when the transfer goes to a new payee
    ("a callee of yours paid a new payee within a day", via that payee). To the payee: when the payer had a
    suspicious call or a long stranger talk just before paying (via the most recent of those strangers).
    Feedback keys are table keys (a payee's is prefixed).
    """
    ts = transfer.ts_ms
    effective = ts + FEEDBACK_DELAY_MS
    new_payee = row.values[_PAYEE_NEW] == 1.0
    flagged = row.values[_AFTER_SUSPICIOUS] == 1.0 or row.values[_STRANGER_TALK_1H] >= FLAG_STRANGER_TALK_1H_S
    if not (new_payee or flagged):
        return []
    recent = _recent_strangers(state, ts)
    out: list[Feedback] = []
    if new_payee:
        out += [
            Feedback(caller, transfer.event_id, transfer.subscriber, effective, transfer.payee_account)
            for caller in recent[:MAX_FEEDBACK_CALLERS]
        ]
    if flagged:
        # Only flagged payers, as before: an older worker counts every payee feedback as a flag (it has no other).
        via = recent[0] if recent else ""
        out.append(Feedback(payee_key(transfer.payee_account), transfer.event_id, transfer.subscriber, effective, via))
    return out


def _recent_strangers(state: SubscriberState, ts: int) -> list[str]:
    """Callers this subscriber talked with in the day before ``ts``, strangers then; the most recent first."""
    recent = [
        (contact[1], caller)
        for caller, contact in state.contacts.items()
        if ts - PAID_AFTER_CALL_MS <= contact[1] <= ts
        and contact[0] > contact[1] - STRANGER_MS
        and contact[3] >= PAID_MIN_TALK_S
    ]
    recent.sort(reverse=True)
    return [caller for _, caller in recent]


def apply_feedback(state: CallerState | PayeeState, fb: Feedback) -> bool:
    """Queue feedback on the caller or payee state it names; False for a repeat (same transfer, same key)."""
    return state.feedback(fb)


def _event_block(at_ms: int, is_call: bool) -> list[float]:
    hour = local_hour(at_ms)
    return [1.0 if is_call else 0.0, float(hour), 1.0 if hour < NIGHT_BEFORE_HOUR else 0.0]


def _windows_block(state: SubscriberState, out: list[float]) -> None:
    w = state.windows
    for i in range(_N_WINDOWS):
        sums = w.sums(i)
        for channel, cents in _WINDOW_READ:
            value = sums[channel]
            out.append(value / 100 if cents else float(value))


def _subscriber_block(state: SubscriberState, out: list[float]) -> None:
    w = state.windows
    day = w.sums(_DAY)
    out.append(float(w.maximum(_DAY)))
    out.append(day[S_STRANGER_TALK] / day[S_TALK] if day[S_TALK] else 0.0)


def _suspicious_block(state: SubscriberState, at_ms: int, out: list[float]) -> None:
    last = state.last_suspicious
    if last is None:
        out += _NO_SUSPICIOUS
    else:
        out += [
            max(0.0, (at_ms - last.end_ms) / 1000),
            float(last.calls_with_sub),
            float(last.talk_with_sub_s),
            float(last.caller_fanout_24h),
            float(last.caller_short_share_24h),
            float(last.caller_paid_callees_7d),
            float(last.caller_reported),
        ]


def _on_call_block(state: SubscriberState, at_ms: int, is_start: bool, out: list[float]) -> None:
    calls = state.open_calls
    out.append(1.0 if is_start else 0.0)
    out.append(float(len(calls)))
    if not calls:
        out += _NO_OPEN_CALL
        return
    # The call the officer would ask about: a new number's, the longest first (dict order is connect order).
    shown: OpenCall = min(calls.values(), key=lambda c: (not c.stranger, c.start_ms))
    out += [
        1.0 if shown.stranger else 0.0,
        max(0.0, (at_ms - shown.start_ms) / 1000),
        float(shown.caller_fanout_24h),
        float(shown.caller_short_share_24h),
        float(shown.caller_paid_callees_7d),
        float(shown.caller_age_s),
        1.0 if any(c.caller_reported for c in calls.values()) else 0.0,  # any line now, not only the one shown
    ]


def call_start_row(
    state: SubscriberState, start: CallStartEvent, caller: CallerSnapshot | None = None
) -> FeatureRow | None:
    """Put a connected call on the subscriber's line and build its row; None for a duplicate.

    What is known is the caller and this person's history with it: no duration, and the call counts in the
    windows only once its record comes.
    """
    at_ms = available_at(start)
    snap = caller if caller is not None else _ZERO_CALLER
    stranger = state.open_call(start, snap)
    if stranger is None:
        return None
    contact = state.contacts.get(start.caller)
    values = _event_block(at_ms, True)
    values += [  # call
        NAN,
        1.0,
        1.0 if stranger else 0.0,
        (at_ms - contact[0]) / 1000 if contact else 0.0,
        float(contact[2]) if contact else 0.0,
        float(contact[3]) if contact else 0.0,
    ]
    values += snap.to_list()  # caller
    values.append(NAN)  # call_vs_caller: no length yet
    values += _NAN_TRANSFER
    values += _NAN_PAYEE
    return _finish(state, start, at_ms, values, True, start.callee_lat, start.callee_lon)


def call_row(state: SubscriberState, call: CallEvent, caller: CallerSnapshot | None = None) -> FeatureRow | None:
    """Update the subscriber's state with a call and build its feature row; None for a duplicate."""
    at_ms = available_at(call)
    # Blocks in registry order (``_ROW_ORDER``): event, call, caller, call_vs_caller, transfer, payee, windows,
    # subscriber, suspicious. A block the event does not fill is NaN.
    snap = caller if caller is not None else _ZERO_CALLER
    stranger = state.update_call(call, at_ms, snap)
    if stranger is None:
        return None
    contact = state.contacts[call.caller]
    values = _event_block(at_ms, True)
    values += [  # call
        call.duration_s,
        1.0 if call.answered else 0.0,
        1.0 if stranger else 0.0,
        (at_ms - contact[0]) / 1000,
        float(contact[2]),
        float(contact[3]),
    ]
    values += snap.to_list()  # caller
    values.append(snap.usual_talk_ratio(call.duration_s) if call.answered else NAN)  # call_vs_caller
    values += _NAN_TRANSFER
    values += _NAN_PAYEE
    return _finish(state, call, at_ms, values, True, call.callee_lat, call.callee_lon)


def transfer_row(
    state: SubscriberState, transfer: TransferEvent, payee: PayeeSnapshot | None = None
) -> FeatureRow | None:
    """Update the subscriber's state with a transfer and build its feature row; None for a duplicate."""
    at_ms = available_at(transfer)
    first, new_payee, (n, mean, m2) = state.update_transfer(transfer)
    if not first:
        return None
    values = _event_block(at_ms, False)
    values += _NAN_CALL
    values += _NAN_CALLER
    log_amount = math.log1p(transfer.amount)
    std = math.sqrt(m2 / (n - 1)) if n > 1 else NAN
    last = state.last_suspicious
    values += [  # transfer
        transfer.amount,
        log_amount,
        (log_amount - mean) / std if n > 1 and std > 0 else NAN,
        log_amount - mean if n > 0 else NAN,
        1.0 if new_payee else 0.0,
        float(CHANNEL_CODES[transfer.channel]),
        n,
        1.0 if last is not None and 0 <= at_ms - last.end_ms <= SUSPICIOUS_FOLLOW_MS else 0.0,
    ]
    values += payee.to_list() if payee is not None else _NAN_PAYEE
    return _finish(state, transfer, at_ms, values, False, transfer.lat, transfer.lon)


def _finish(
    state: SubscriberState,
    event: Event,
    at_ms: int,
    values: list[float],
    is_call: bool,
    lat: float | None,
    lon: float | None,
) -> FeatureRow:
    """The blocks every kind shares (windows, subscriber, suspicious, on_call), and the row."""
    is_start = type(event) is CallStartEvent
    return _shared_blocks(
        state, event.event_id, event.subscriber, event.schema, at_ms, values, is_call, is_start, lat, lon
    )


def _shared_blocks(
    state: SubscriberState,
    event_id: str,
    subscriber: str,
    schema: str,
    at_ms: int,
    values: list[float],
    is_call: bool,
    is_start: bool,
    lat: float | None,
    lon: float | None,
) -> FeatureRow:
    _windows_block(state, values)
    _subscriber_block(state, values)
    _suspicious_block(state, at_ms, values)
    _on_call_block(state, at_ms, is_start, values)
    return FeatureRow(
        event_id=event_id,
        subscriber=subscriber,
        avail_ms=at_ms,
        is_call=is_call,
        values=tuple(values),
        lat=lat,
        lon=lon,
        schema=schema,
    )


def tick_row(state: SubscriberState, subscriber: str, event_id: str, call: OpenCall, at_ms: int) -> FeatureRow:
    """The row of an open call re-scored at ``at_ms`` (a timer, see ``features.timers``); changes no state.

    Like its ``call_start.v1`` row, with what is known at ``at_ms``: no length yet, and no caller snapshot (the
    ``on_call`` block carries what was kept of it).
    """
    contact = state.contacts.get(call.caller)
    values = _event_block(at_ms, True)
    values += [  # call
        NAN,
        1.0,
        1.0 if call.stranger else 0.0,
        (at_ms - contact[0]) / 1000 if contact else 0.0,
        float(contact[2]) if contact else 0.0,
        float(contact[3]) if contact else 0.0,
    ]
    values += _NAN_CALLER
    values += _NAN_TRANSFER
    values += _NAN_PAYEE
    return _shared_blocks(state, event_id, subscriber, TICK_SCHEMA, at_ms, values, True, False, call.lat, call.lon)


def subscriber_step(
    state: SubscriberState,
    event: Event,
    caller: CallerSnapshot | None = None,
    payee: PayeeSnapshot | None = None,
) -> FeatureRow | None:
    """:func:`call_row`, :func:`call_start_row` or :func:`transfer_row`, by the event's kind."""
    if type(event) is CallEvent:
        return call_row(state, event, caller)
    if type(event) is CallStartEvent:
        return call_start_row(state, event, caller)
    assert type(event) is TransferEvent, f"no feature row for {event.schema}"
    return transfer_row(state, event, payee)
