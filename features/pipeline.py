"""Offline feature computation over a replayed history, through the same steps the agents run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from core.events import Event
from features.state import PAYEE_PREFIX, CallerState, PayeeState, SubscriberState
from features.steps import KeyState, feedback_of, feedback_stage, steps_for
from features.timers import TickIndex
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
    the hop is faster than the delay (see ``features.params``). Open calls' timers (``features.timers``) fire
    in :meth:`step` and :meth:`run`, as the stream's event time reaches them; :meth:`process` fires none.
    """

    def __init__(self) -> None:
        self.callers: dict[str, CallerState] = {}
        self.payees: dict[str, PayeeState] = {}  # by account (the key-stage key without its prefix)
        self.subscribers: dict[str, SubscriberState] = {}
        self.ticks = TickIndex()
        self.watermark_ms = 0  # the newest event time seen: ticks due by it have fired

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
        told = feedback_of(event)
        if told is not None:  # a police report: its numbers' states learn it, as the caller-keyed hop does
            for fb in told:
                feedback_stage(self._key_state(fb.key), fb)
            return None
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
        if sub.open_calls:
            self.ticks.schedule(event.subscriber, sub)
        return row

    def fire_ticks(self, until_ms: int) -> list[FeatureRow]:
        """Advance event time to ``until_ms`` (never back) and the rows of the ticks due by then."""
        self.watermark_ms = max(self.watermark_ms, until_ms)
        return [row for row, _ in self.ticks.fire_due(self.watermark_ms, self.subscribers.get)]

    def step(self, event: Event) -> list[FeatureRow]:
        """The rows one event brings: the ticks due by its time first, then its own (if any)."""
        if feedback_of(event) is not None:
            self.process(event)  # it never reaches a subscriber's partition, so it moves no timer there
            return []
        rows = self.fire_ticks(available_at(event))
        row = self.process(event)
        if row is not None:
            rows.append(row)
        return rows

    def run(self, events: Iterable[Event]) -> Iterator[FeatureRow]:
        """Feature rows of the events and of the ticks their event time reaches, in arrival order."""
        for event in in_arrival_order(events):
            yield from self.step(event)
