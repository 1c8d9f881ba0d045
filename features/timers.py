"""Timers in event time: an open call is re-scored when it has lasted each of ``CALL_TICK_MARKS_S``.

The one firing rule, offline and serving alike: a tick due at D fires when the event time of the stream (the
offline engine) or of the subscriber's partition (a worker) first reaches D, i.e. before the first event
available at or after D. Its row reads only its subscriber's state, and that subscriber's events before D are
exactly those processed before it on both paths, so both compute the same row. Which marks have fired is kept
in the state (``OpenCall.ticks``), so a restarted worker rebuilds its index from the table and fires no mark twice.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from features.params import CALL_TICK_MARKS_S, OPEN_CALL_TIMEOUT_MS
from features.state import OpenCall, SubscriberState
from features.vector import TICK_SCHEMA, FeatureRow, tick_row

__all__ = ["TICK_SCHEMA", "TickIndex", "due_ticks", "fire_tick", "tick_call_id", "tick_id"]

if list(CALL_TICK_MARKS_S) != sorted(set(CALL_TICK_MARKS_S)) or CALL_TICK_MARKS_S[-1] * 1000 >= OPEN_CALL_TIMEOUT_MS:
    raise RuntimeError("CALL_TICK_MARKS_S must ascend and end before OPEN_CALL_TIMEOUT_MS")

_SEP = "+"


def tick_id(join_id: str, mark: int) -> str:
    """The event id of a call's tick at mark index ``mark``: the same on every path and retry."""
    return f"{join_id}{_SEP}{CALL_TICK_MARKS_S[mark]}s"


def tick_call_id(event_id: str) -> str:
    """The join id of the call a tick's event id names (the suffix never holds the separator)."""
    return event_id.rpartition(_SEP)[0]


def _next_due(call: OpenCall) -> int | None:
    return call.start_ms + CALL_TICK_MARKS_S[call.ticks] * 1000 if call.ticks < len(CALL_TICK_MARKS_S) else None


def due_ticks(state: SubscriberState, until_ms: int) -> list[tuple[int, str, int]]:
    """The ticks of this state due at or before ``until_ms``, as (due, join id, mark index), in due order."""
    out = [
        (call.start_ms + CALL_TICK_MARKS_S[mark] * 1000, join_id, mark)
        for join_id, call in state.open_calls.items()
        for mark in range(call.ticks, len(CALL_TICK_MARKS_S))
    ]
    return sorted(t for t in out if t[0] <= until_ms)


def fire_tick(state: SubscriberState, subscriber: str, join_id: str, mark: int) -> FeatureRow | None:
    """Fire a call's tick: mark it fired and build its row; None (state untouched) if closed or already fired."""
    call = state.open_calls.get(join_id)
    if call is None or call.ticks != mark:
        return None
    due = call.start_ms + CALL_TICK_MARKS_S[mark] * 1000
    state.expire_open_calls(due)  # as every row does at its time; never this call (marks end before the timeout)
    call.ticks = mark + 1
    return tick_row(state, subscriber, tick_id(join_id, mark), call, due)


class TickIndex:
    """The due ticks of a set of subscribers (offline: all; a worker: one partition's), soonest first.

    Entries are hints checked against the state when they come due, so a stale one (call closed, mark fired
    elsewhere) fires nothing; ``schedule`` after each change of a state keeps every open call's next mark in.
    """

    __slots__ = ("_heap", "_queued")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str, int]] = []  # (due, subscriber, join id, mark)
        self._queued: set[tuple[str, str, int]] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, subscriber: str, state: SubscriberState) -> None:
        """Queue the next mark of each of the state's open calls (once)."""
        for join_id, call in state.open_calls.items():
            due = _next_due(call)
            if due is not None and (entry := (subscriber, join_id, call.ticks)) not in self._queued:
                self._queued.add(entry)
                heapq.heappush(self._heap, (due, subscriber, join_id, call.ticks))

    def rebuild(self, states: Iterable[tuple[str, SubscriberState]]) -> None:
        """Queue the ticks of stored states (a worker after a start or an assignment)."""
        for subscriber, state in states:
            if state.open_calls:
                self.schedule(subscriber, state)

    def next_due(self) -> int | None:
        """When the soonest queued tick is due (it may turn out stale)."""
        return self._heap[0][0] if self._heap else None

    def fire_own(self, subscriber: str, state: SubscriberState, until_ms: int) -> list[FeatureRow]:
        """Fire one subscriber's ticks due at or before ``until_ms`` (before its own event of that time), in due
        order; their queued hints turn stale and fire nothing later."""
        rows = []
        for _, join_id, mark in due_ticks(state, until_ms):
            row = fire_tick(state, subscriber, join_id, mark)
            if row is not None:
                rows.append(row)
        if rows:
            self.schedule(subscriber, state)
        return rows

    def fire_due(
        self, until_ms: int, state_of: Callable[[str], SubscriberState | None]
    ) -> list[tuple[FeatureRow, SubscriberState]]:
        """Fire every tick due at or before ``until_ms``, in due order; each row with the state it changed."""
        out: list[tuple[FeatureRow, SubscriberState]] = []
        heap = self._heap
        while heap and heap[0][0] <= until_ms:
            _, subscriber, join_id, mark = heapq.heappop(heap)
            self._queued.discard((subscriber, join_id, mark))
            state = state_of(subscriber)
            if state is None:
                continue
            row = fire_tick(state, subscriber, join_id, mark)
            if row is not None:
                out.append((row, state))
                self.schedule(subscriber, state)
        return out
