"""Offline twin of the alerting rule "one task per subscriber episode", used by training and evaluation."""

from __future__ import annotations

from collections.abc import Iterable


def count_tasks(alerts: Iterable[tuple[str, int]], episode_ms: int) -> list[tuple[str, int]]:
    """Tasks opened by task-level alerts ``(subscriber, time)`` taken in time order: the first per episode."""
    open_until: dict[str, int] = {}
    tasks = []
    for subscriber, at_ms in sorted(alerts, key=lambda a: a[1]):
        if at_ms < open_until.get(subscriber, -1):
            continue
        open_until[subscriber] = at_ms + episode_ms
        tasks.append((subscriber, at_ms))
    return tasks
