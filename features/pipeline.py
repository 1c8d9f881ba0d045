"""Offline feature computation over a replayed history, through the same steps the agents run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from core.events import Event
from features.state import PAYEE_PREFIX, CallerState, PayeeState, SubscriberState
from features.steps import KeyState, feedback_stage, steps_for
from features.vector import FeatureRow, available_at

__all__ = ["FeatureEngine", "in_arrival_order"]


def in_arrival_order(events: Iterable[Event]) -> list[Event]:
    """Events sorted the way a live stream delivers them: by when each becomes known."""
    return sorted(events, key=available_at)


class FeatureEngine:
    """Holds every key's state in memory and turns events into feature rows, one at a time.

    The order per event is ``features.steps``' (the agents' order): key stage, subscriber stage, then the
    transfer's feedback applied to the callers and payee it names. The stream applies feedback a hop later;
    since feedback only counts from ``FEEDBACK_DELAY_MS`` of event time on, that makes no difference while
    the hop is faster than the delay (see ``features.params``).
    """

    def __init__(self) -> None:
        self.callers: dict[str, CallerState] = {}
        self.payees: dict[str, PayeeState] = {}  # by account (the key-stage key without its prefix)
        self.subscribers: dict[str, SubscriberState] = {}

    def key_states(self) -> dict[str, KeyState]:
        """Every key-stage state under its table key: calling numbers, and payees under ``payee:<account>``."""
        out: dict[str, KeyState] = dict(self.callers)
        out.update((PAYEE_PREFIX + account, state) for account, state in self.payees.items())
        return out

    def _key_state(self, key: str) -> KeyState:
        if key.startswith(PAYEE_PREFIX):
            account = key[len(PAYEE_PREFIX) :]
            payee = self.payees.get(account)
            if payee is None:
                payee = self.payees[account] = PayeeState()
            return payee
        caller = self.callers.get(key)
        if caller is None:
            caller = self.callers[key] = CallerState()
        return caller

    def process(self, event: Event) -> FeatureRow | None:
        """Update state with one event; its feature row, or None for a duplicate or a kind without features."""
        steps = steps_for(event)
        if steps is None:
            return None  # a kind the features do not use
        snap = steps.key_stage(self._key_state(steps.key_of(event)), event)
        if snap is None:
            return None
        sub = self.subscribers.get(event.subscriber)
        if sub is None:
            sub = self.subscribers[event.subscriber] = SubscriberState()
        out = steps.subscriber_stage(sub, event, snap)
        if out is None:
            return None
        row, feedback = out
        for fb in feedback:
            feedback_stage(self._key_state(fb.key), fb)
        return row

    def run(self, events: Iterable[Event]) -> Iterator[FeatureRow]:
        """Feature rows of the events, processed in arrival order."""
        for event in in_arrival_order(events):
            row = self.process(event)
            if row is not None:
                yield row
