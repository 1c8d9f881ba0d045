"""The one order of the feature steps, for the offline engine and the stream agents alike.

Per event: (1) the key stage updates the calling number (a call) or the receiving account (a transfer) and
hands over a snapshot; (2) the subscriber stage updates the subscriber and builds the feature row, and for
a transfer says what feedback it raises; (3) each feedback is applied to the caller or payee state it names.
Stages 1 and 3 run on the key's partition (the caller table), stage 2 on the subscriber's.
"""

from __future__ import annotations

from typing import TypeAlias

from core.events import CallEvent, Event, TransferEvent
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
from features.vector import FeatureRow, apply_feedback, caller_step, payee_step, subscriber_step, transfer_feedback

__all__ = [
    "KeySnapshot",
    "KeyState",
    "feedback_stage",
    "is_payee_key",
    "key_of",
    "key_stage",
    "key_state_type",
    "new_key_state",
    "snapshot_type",
    "subscriber_stage",
]

KeyState: TypeAlias = CallerState | PayeeState
KeySnapshot: TypeAlias = CallerSnapshot | PayeeSnapshot


def key_of(event: Event) -> str:
    """The key-stage table key of an event: a call's calling number, a transfer's payee key."""
    if isinstance(event, CallEvent):
        return event.caller
    return payee_key(event.payee_account)


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
    return CallerSnapshot if isinstance(event, CallEvent) else PayeeSnapshot


def key_stage(state: KeyState, event: Event) -> KeySnapshot | None:
    """Stage 1: update the event's key state (``state`` is the one for ``key_of(event)``); None for a duplicate."""
    if isinstance(event, CallEvent):
        assert isinstance(state, CallerState)
        return caller_step(state, event)
    assert isinstance(state, PayeeState)
    return payee_step(state, event)


def subscriber_stage(
    state: SubscriberState, event: Event, snapshot: KeySnapshot | None
) -> tuple[FeatureRow, list[Feedback]] | None:
    """Stage 2: the event's feature row and the feedback it raises (for stage 3); None for a duplicate."""
    if isinstance(event, CallEvent):
        row = subscriber_step(state, event, snapshot if isinstance(snapshot, CallerSnapshot) else None)
        return None if row is None else (row, [])
    row = subscriber_step(state, event, None, snapshot if isinstance(snapshot, PayeeSnapshot) else None)
    if row is None:
        return None
    assert isinstance(event, TransferEvent)
    return row, transfer_feedback(state, event, row)


def feedback_stage(state: KeyState, fb: Feedback) -> bool:
    """Stage 3: queue feedback on the state of ``fb.key``; False for a repeat (same transfer, same key)."""
    return apply_feedback(state, fb)
