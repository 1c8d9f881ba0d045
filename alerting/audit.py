"""Who viewed or changed what (stream ``fw:audit``), and live change notices for consoles (``fw:console``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from alerting import keys

log = logging.getLogger(__name__)

AUDIT_MAXLEN = 1_000_000  # bounds a runaway console; far more than months of real dispatch work
SYSTEM = "system"  # the role of automatic actors (dispatch, the acknowledgement watcher)


@dataclass(frozen=True, slots=True)
class Actor:
    """Whoever acts: a console user (dispatcher, responder, admin) or an automatic part of the service."""

    name: str
    role: str


def audit_fields(
    actor: Actor,
    action: str,
    *,
    at_ms: int,
    case_key: str | None = None,
    task_id: str | None = None,
    **detail: Any,
) -> dict[Any, Any]:
    """The fields of one ``fw:audit`` entry at ``at_ms`` (the caller's clock); ``detail`` goes in as one JSON field."""
    fields: dict[Any, Any] = {
        "actor": actor.name,
        "role": actor.role,
        "action": action,
        "case_key": case_key or "",
        "task_id": task_id or "",
        "at_ms": str(at_ms),
    }
    if detail:
        fields["detail"] = orjson.dumps(detail)
    return fields


def stage_audit(pipe: Pipeline, actor: Actor, action: str, **kw: Any) -> None:
    """Queue an audit entry inside the caller's MULTI, so the change and its record commit together."""
    pipe.xadd(keys.AUDIT, audit_fields(actor, action, **kw), maxlen=AUDIT_MAXLEN, approximate=True)


async def record_audit(redis: Redis, actor: Actor, action: str, **kw: Any) -> None:
    """Append one audit entry now (for views, which change nothing else)."""
    await redis.xadd(keys.AUDIT, audit_fields(actor, action, **kw), maxlen=AUDIT_MAXLEN, approximate=True)


async def publish_change(redis: Redis, change: Mapping[str, Any]) -> None:
    """Tell live consoles about a change; never fails the caller, since consoles re-read state on any notice.

    Changes carry ids, states and responder positions only, never a subscriber's number.
    """
    try:
        await redis.publish(keys.CONSOLE_CHANNEL, orjson.dumps(change))
    except RedisError as exc:
        log.warning("console change notice not published: %s", exc)
