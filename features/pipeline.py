"""Offline feature computation over a replayed history, through the same steps the agents run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from core.events import CallEvent, Event, TransferEvent
from features.state import PAYEE_PREFIX, CallerState, PayeeState, SubscriberState
from features.vector import (
    FeatureRow,
    apply_feedback,
    available_at,
    caller_step,
    payee_step,
    subscriber_step,
    transfer_feedback,
)


def in_arrival_order(events: Iterable[Event]) -> list[Event]:
    """Events sorted the way a live stream delivers them: by when each becomes known."""
    return sorted(events, key=available_at)


class FeatureEngine:
    """Holds every key's state in memory and turns events into feature rows, one at a time.

    The order per event is the agents' order: caller step (calls) or payee step (transfers), subscriber step,
    then a transfer's feedback applied to the callers and payee it names. The stream applies feedback a hop
    later; since feedback only counts from ``FEEDBACK_DELAY_MS`` of event time on, that makes no difference
    while the hop is faster than the delay (see ``features.state``).
    """

    def __init__(self) -> None:
        self.callers: dict[str, CallerState] = {}
        self.payees: dict[str, PayeeState] = {}
        self.subscribers: dict[str, SubscriberState] = {}

    def _caller(self, number: str) -> CallerState:
        caller = self.callers.get(number)
        if caller is None:
            caller = self.callers[number] = CallerState()
        return caller

    def _payee(self, key: str) -> PayeeState:
        payee = self.payees.get(key)
        if payee is None:
            payee = self.payees[key] = PayeeState()
        return payee

    def process(self, event: Event) -> FeatureRow | None:
        """Update state with one event; its feature row, or None for a duplicate."""
        snap = payee_snap = None
        if isinstance(event, CallEvent):
            snap = caller_step(self._caller(event.caller), event)
            if snap is None:
                return None
        else:
            payee_snap = payee_step(self._payee(event.payee_account), event)
            if payee_snap is None:
                return None
        sub = self.subscribers.get(event.subscriber)
        if sub is None:
            sub = self.subscribers[event.subscriber] = SubscriberState()
        row = subscriber_step(sub, event, snap, payee_snap)
        if row is not None and isinstance(event, TransferEvent):
            for fb in transfer_feedback(sub, event, row):
                if fb.key.startswith(PAYEE_PREFIX):
                    apply_feedback(self._payee(fb.key[len(PAYEE_PREFIX) :]), fb)
                else:
                    apply_feedback(self._caller(fb.key), fb)
        return row

    def run(self, events: Iterable[Event]) -> Iterator[FeatureRow]:
        """Feature rows of the events, processed in arrival order."""
        for event in in_arrival_order(events):
            row = self.process(event)
            if row is not None:
                yield row
