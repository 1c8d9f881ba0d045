"""task.v1: building a dissuasion task, storing it and recording its state transitions."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from alerting import keys
from alerting.audit import SYSTEM, Actor, stage_audit
from alerting.cases import Case, merge_reasons
from alerting.decision import Decision

CREATED, DELIVERED, DELIVERY_FAILED = "created", "delivered", "delivery_failed"
ASSIGNED = "assigned"
DISPATCH_ACTOR = "dispatcher"  # the automatic dispatch path, as named in task history and audit
MAX_TASK_REASONS = 10  # what a responder can read on a phone before knocking on a door


# What a task made while the person is on the line says first: the call is the emergency, not the case.
IN_CALL_REASONS = {
    "call_centre": "call this person now: they are on a call with a suspected fraud line",
    "face_to_face": "they were on a call with a suspected fraud line when this was sent",
}


def idempotency_key(case_key: str, level: int, occasion: str | None = None) -> str:
    """The deterministic key of a case's task at a level (and, for a repeat, the occasion that repeated it):
    replays and retries reuse it."""
    return f"{case_key}:L{level}" if occasion is None else f"{case_key}:L{level}:{occasion}"


def case_task_field(level: int, occasion: str | None = None) -> str:
    """The case's hash field naming its task at ``level`` (a repeat's own field, so the first stays found)."""
    return f"task:L{level}" if occasion is None else f"repeat:L{level}:{occasion}"


def build_task(
    case: Case,
    d: Decision,
    responder_id: str | None,
    task_id: str | None = None,
    *,
    occasion: str | None = None,
    action: str = "",
) -> dict[str, Any]:
    """A task.v1 dict for the decision that escalated ``case`` (or repeated its level for ``occasion``);
    ``subscriber`` is the clear phone number."""
    reasons = merge_reasons(d.reasons, case.reasons, MAX_TASK_REASONS)
    if d.in_call and action in IN_CALL_REASONS:
        reasons = merge_reasons((IN_CALL_REASONS[action],), reasons, MAX_TASK_REASONS)
    task: dict[str, Any] = {
        "task_id": task_id or uuid.uuid4().hex,
        "case_key": case.case_key,
        # Clear number on purpose: the police app has to call or visit this subscriber.
        "subscriber": d.subscriber,
        "level": d.level,
        "score": max(case.score, d.score),
        # This decision's reasons first (why now), then the case's earlier ones (the story so far).
        "reasons": list(reasons),
        "responder_id": responder_id,
        "created_ms": d.ts_ms,  # event time, so a replay builds the same task
        "model_version": d.model_version,
        "idempotency_key": idempotency_key(case.case_key, d.level, occasion),
    }
    if d.threshold is not None:  # an optional field of task.v1: what the score was measured against
        task["threshold"] = d.threshold
    lat, lon = (d.lat, d.lon) if d.lat is not None and d.lon is not None else (case.lat, case.lon)
    if lat is not None and lon is not None:  # the schema wants numbers or nothing, never null
        task["lat"], task["lon"] = lat, lon
    return task


def task_event(state: str, at_ms: int, **detail: Any) -> bytes:
    """One entry of ``fw:task-events:{id}``: the state and the wall time (ms) it was reached."""
    return orjson.dumps({"state": state, "at_ms": at_ms, **detail})


def initial_state(task: dict[str, Any], now_ms: int) -> dict[Any, str]:
    """The lifecycle hash of a new task: ``assigned`` when dispatch claimed a responder, else ``created``."""
    rid = task.get("responder_id")
    fields: dict[Any, str] = {
        "state": ASSIGNED if rid else CREATED,
        "responder_id": rid or "",
        "since_ms": str(now_ms),
        "opened_ms": str(now_ms),
        "tried": orjson.dumps([rid] if rid else []).decode(),
        "level": str(task["level"]),
        "case_key": str(task["case_key"]),
    }
    if rid:
        fields["assigned_ms"] = str(now_ms)
    return fields


def stage_task(pipe: Pipeline, task: dict[str, Any], body: bytes, now_ms: int, *, occasion: str | None = None) -> None:
    """Queue the writes that create a task at ``now_ms`` (inside the caller's MULTI): the task, its first event,
    state, indexes; ``occasion``: the new call or transfer a repeated task is for."""
    task_id, level = task["task_id"], task["level"]
    now = now_ms
    rid = task.get("responder_id")
    pipe.set(keys.task(task_id), body)
    # A responder claimed at dispatch is named in this first entry: created and assigned happen in one commit.
    pipe.rpush(keys.task_events(task_id), task_event(CREATED, now, actor=DISPATCH_ACTOR, responder_id=rid))
    pipe.hset(keys.case(task["case_key"]), case_task_field(level, occasion), task_id)
    pipe.hincrby(keys.STATS, f"tasks:L{level}", 1)
    pipe.hset(keys.task_state(task_id), mapping=initial_state(task, now))
    pipe.zadd(keys.TASKS_OPEN, {task_id: now})
    if rid:
        pipe.zadd(keys.TASKS_AWAITING_ACK, {task_id: now})
    stage_audit(
        pipe,
        Actor(DISPATCH_ACTOR, SYSTEM),
        "create",
        case_key=task["case_key"],
        task_id=task_id,
        at_ms=now,
        level=level,
        responder_id=rid,
    )


class TaskStore:
    """Read access to stored tasks and their history."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, task_id: str) -> dict[str, Any] | None:
        """The task.v1 dict, or None."""
        raw = await self._redis.get(keys.task(task_id))
        return orjson.loads(raw) if raw is not None else None

    async def events(self, task_id: str) -> list[dict[str, Any]]:
        """The task's state transitions, oldest first."""
        raw = await self._redis.lrange(keys.task_events(task_id), 0, -1)
        return [orjson.loads(e) for e in raw]

    async def state(self, task_id: str) -> str | None:
        """The task's latest state, or None for an unknown task."""
        last = await self._redis.lindex(keys.task_events(task_id), -1)
        return orjson.loads(last)["state"] if last is not None else None

    async def for_case(self, case_key: str) -> dict[int, str]:
        """Task ids of a case by level."""
        raw = await self._redis.hgetall(keys.case(case_key))
        out: dict[int, str] = {}
        for k, v in raw.items():
            name = keys.text(k) or ""
            if name.startswith("task:L"):
                out[int(name[6:])] = keys.text(v) or ""
        return out
