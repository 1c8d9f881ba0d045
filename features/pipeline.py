"""Offline feature computation over a replayed history, through the same steps the agents run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from features.state import CallerState, SubscriberState
from features.vector import FeatureRow, available_at, caller_step, subscriber_step
from streams.events import CallEvent, Event


def in_arrival_order(events: Iterable[Event]) -> list[Event]:
    """Events sorted the way a live stream delivers them: by when each becomes known."""
    return sorted(events, key=available_at)


class FeatureEngine:
    """Holds every key's state in memory and turns events into feature rows, one at a time."""

    def __init__(self) -> None:
        self.callers: dict[str, CallerState] = {}
        self.subscribers: dict[str, SubscriberState] = {}

    def process(self, event: Event) -> FeatureRow | None:
        """Update state with one event; its feature row, or None for a duplicate."""
        snap = None
        if isinstance(event, CallEvent):
            caller = self.callers.get(event.caller)
            if caller is None:
                caller = self.callers[event.caller] = CallerState()
            snap = caller_step(caller, event)
            if snap is None:
                return None
        sub = self.subscribers.get(event.subscriber)
        if sub is None:
            sub = self.subscribers[event.subscriber] = SubscriberState()
        return subscriber_step(sub, event, snap)

    def run(self, events: Iterable[Event]) -> Iterator[FeatureRow]:
        """Feature rows of the events, processed in arrival order."""
        for event in in_arrival_order(events):
            row = self.process(event)
            if row is not None:
                yield row
