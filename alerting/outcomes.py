"""The outcomes responders recorded, newest first: what the worker's followed thresholds learn from."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from alerting import keys

__all__ = ["NOT_FALSE_OUTCOMES", "recent_outcomes"]

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
