"""The one order of the feature steps, for the offline engine and the stream agents alike, per event kind.

Per event: (1) the key stage updates the calling number (a call) or the receiving account (a transfer) and
hands over a snapshot; (2) the subscriber stage updates the subscriber and builds the feature row, and for
a transfer says what feedback it raises; (3) each feedback is applied to the caller or payee state it names.
Stages 1 and 3 run on the key's partition (the caller table), stage 2 on the subscriber's.

What a kind does at each stage is one :class:`KindSteps` entry in ``STEPS``. A kind without an entry (say, a
new signalling kind before its features exist) has no steps: :func:`steps_for` gives None and both the
offline engine and the agents pass over it, so adding a kind to ``core.kinds`` breaks nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from core.events import CallEvent, CallStartEvent, Event, ReportEvent, TransferEvent
from core.kinds import Handlers
from features.params import FEEDBACK_DELAY_MS
from features.state import (
    PAYEE_PREFIX,
    CallerSnapshot,
    CallerState,
    Feedback,
    PayeeSnapshot,
    PayeeState,
    SubscriberState,
    payee_key,
)
from features.vector import (
    FeatureRow,
    apply_feedback,
    call_row,
    call_start_row,
    caller_start_step,
    caller_step,
    payee_step,
    transfer_feedback,
    transfer_row,
)

__all__ = [
    "STEPS",
    "KeySnapshot",
    "KeyState",
    "KindSteps",
    "feedback_of",
    "feedback_stage",
    "is_payee_key",
    "key_of",
    "key_stage",
    "key_state_type",
    "new_key_state",
    "report_feedback",
    "snapshot_type",
    "steps_for",
    "subscriber_stage",
]

KeyState: TypeAlias = CallerState | PayeeState
KeySnapshot: TypeAlias = CallerSnapshot | PayeeSnapshot
SubscriberOut: TypeAlias = tuple[FeatureRow, list[Feedback]] | None


@dataclass(frozen=True)
class KindSteps:
    """What one event kind does at each stage."""

    key_of: Callable[[Any], str]  # its key-stage table key
    key_stage: Callable[[Any, Any], Any]  # (key state, event) -> snapshot, or None for a duplicate
    snapshot_type: type[CallerSnapshot] | type[PayeeSnapshot]  # reads the snapshot's wire form (``from_list``)
    subscriber_stage: Callable[[SubscriberState, Any, Any], SubscriberOut]  # (state, event, snapshot)
    # False when the key stage only reads the key's state: serving then spares it a changelog write.
    writes_key_state: bool = True


def _call_subscriber(state: SubscriberState, call: CallEvent, snap: CallerSnapshot | None) -> SubscriberOut:
    row = call_row(state, call, snap)
    return None if row is None else (row, [])


def _call_start_subscriber(state: SubscriberState, start: CallStartEvent, snap: CallerSnapshot | None) -> SubscriberOut:
    row = call_start_row(state, start, snap)
    return None if row is None else (row, [])


def _transfer_subscriber(state: SubscriberState, transfer: TransferEvent, snap: PayeeSnapshot | None) -> SubscriberOut:
    row = transfer_row(state, transfer, snap)
    return None if row is None else (row, transfer_feedback(state, transfer, row))


STEPS: Handlers[KindSteps] = Handlers(
    {
        CallEvent: KindSteps(lambda call: call.caller, caller_step, CallerSnapshot, _call_subscriber),
        TransferEvent: KindSteps(
            lambda transfer: payee_key(transfer.payee_account), payee_step, PayeeSnapshot, _transfer_subscriber
        ),
        # Signalling reads the calling number (keyed as its call will be) and opens the call on the line.
        CallStartEvent: KindSteps(
            lambda start: start.caller,
            caller_start_step,
            CallerSnapshot,
            _call_start_subscriber,
            writes_key_state=False,
        ),
    }
)


def steps_for(event: Any) -> KindSteps | None:
    """The event kind's steps; None for a kind the features do not use (it is passed over)."""
    return STEPS.get(event)


def _steps(event: Event) -> KindSteps:
    steps = STEPS.get(event)
    if steps is None:
        raise TypeError(f"no feature steps for {event.schema}")
    return steps


def key_of(event: Event) -> str:
    """The key-stage table key of an event: a call's calling number, a transfer's payee key."""
    return _steps(event).key_of(event)


def is_payee_key(key: str) -> bool:
    """True for a payee account's key (payees share the key-stage table with calling numbers)."""
    return key.startswith(PAYEE_PREFIX)


def key_state_type(key: str) -> type[CallerState] | type[PayeeState]:
    """The key-stage state class of a table key (from ``key_of`` or ``Feedback.key``); calling it makes one."""
    return PayeeState if is_payee_key(key) else CallerState


def new_key_state(key: str) -> KeyState:
    """The empty key-stage state for a table key (from ``key_of`` or ``Feedback.key``)."""
    return key_state_type(key)()


def snapshot_type(event: Event) -> type[CallerSnapshot] | type[PayeeSnapshot]:
    """The class of the snapshot the key stage hands over for this event (``from_list`` reads its wire form)."""
    return _steps(event).snapshot_type


def key_stage(state: KeyState, event: Event) -> KeySnapshot | None:
    """Stage 1: update the event's key state (``state`` is the one for ``key_of(event)``); None for a duplicate."""
    snapshot: KeySnapshot | None = _steps(event).key_stage(state, event)
    return snapshot


def subscriber_stage(state: SubscriberState, event: Event, snapshot: KeySnapshot | None) -> SubscriberOut:
    """Stage 2: the event's feature row and the feedback it raises (for stage 3); None for a duplicate."""
    return _steps(event).subscriber_stage(state, event, snapshot)


def feedback_stage(state: KeyState, fb: Feedback) -> bool:
    """Stage 3: queue feedback on the state of ``fb.key``; False for a repeat (same transfer, same key)."""
    return apply_feedback(state, fb)


def report_feedback(report: ReportEvent) -> list[Feedback]:
    """A police report as feedback to each number it names: reported from the report's time plus the hop's delay
    (``FEEDBACK_DELAY_MS``, as for a transfer's feedback, so serving counts it at the same event time as offline)."""
    at = report.ts_ms + FEEDBACK_DELAY_MS
    return [Feedback(number, report.event_id, report.victim, at, reported=True) for number in report.fraud_numbers]


# Kinds that make no feature row and only tell key states something: ingest sends their feedback on the
# caller-keyed hop (one message per key), the offline engine applies it in arrival order.
_FEEDBACK_ONLY: Handlers[Callable[[Any], list[Feedback]]] = Handlers({ReportEvent: report_feedback})


def feedback_of(event: Any) -> list[Feedback] | None:
    """The feedback of a feedback-only kind's event (a police report); None for any other kind."""
    handler = _FEEDBACK_ONLY.get(event)
    return None if handler is None else handler(event)
