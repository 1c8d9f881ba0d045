"""The outcomes responders recorded, newest first: what the worker's followed thresholds learn from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from alerting import keys
from alerting.audit import SYSTEM, Actor
from alerting.lifecycle import RESOLVED, TaskLifecycle
from core.errors import InvalidTransition
from core.settings import Settings

__all__ = ["NOT_FALSE_OUTCOMES", "recent_outcomes", "record_history_labels", "resolve_open_tasks"]

# Outcomes that say the subscriber was a victim (the visit was not a false alarm); ``unreachable`` says neither.
NOT_FALSE_OUTCOMES = frozenset({"dissuaded", "money_lost"})


async def recent_outcomes(redis: Redis, count: int) -> list[tuple[str, bool]]:
    """The ``count`` newest labels as (subscriber, was a false alarm), newest first; unreachable ones left out."""
    entries = await redis.xrevrange(keys.LABELS, count=count) or []
    out: list[tuple[str, bool]] = []
    for _, fields in entries:
        raw = (fields or {}).get(b"label") or (fields or {}).get("label")
        if not raw:
            continue
        label = orjson.loads(raw)
        outcome = label.get("outcome")
        if outcome == "false_alarm" or outcome in NOT_FALSE_OUTCOMES:
            out.append((str(label["subscriber"]), outcome == "false_alarm"))
    return out


async def record_history_labels(redis: Redis, labels: list[dict[str, Any]]) -> int:
    """Append outcome labels of visits made before this deployment's Redis existed (a seeded history), oldest
    first, where the thresholds read outcomes; how many."""
    if not labels:
        return 0
    pipe = redis.pipeline(transaction=False)
    for label in labels:
        pipe.xadd(keys.LABELS, {"label": orjson.dumps(label)})
    await pipe.execute()
    return len(labels)


async def resolve_open_tasks(
    redis: Redis,
    settings: Settings,
    outcome_of: Callable[[str], str],
    actor: str,
    created_before_ms: int | None = None,
) -> int:
    """Resolve every open task with ``outcome_of(subscriber)`` as ``actor`` (labels and all, as a responder's
    resolution): the stand-in for responders who record their outcomes, in the demo. Returns how many.

    ``created_before_ms``: only tasks whose decision's event time is earlier (a visit takes hours to resolve).
    """
    lifecycle = TaskLifecycle(redis, settings)
    who = Actor(actor, SYSTEM)
    resolved = 0
    open_ids: list[Any] = await redis.zrange(keys.TASKS_OPEN, 0, -1)
    for raw_id in open_ids:
        task_id = keys.text(raw_id) or ""
        raw = await redis.get(keys.task(task_id))
        if not raw:
            continue
        task = orjson.loads(raw)
        if created_before_ms is not None and int(task.get("created_ms", 0)) >= created_before_ms:
            continue
        subscriber = str(task["subscriber"])
        try:
            await lifecycle.transition(task_id, RESOLVED, who, outcome=outcome_of(subscriber))
        except InvalidTransition:
            continue  # resolved meanwhile
        resolved += 1
    return resolved
