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


def idempotency_key(case_key: str, level: int) -> str:
    """The deterministic key of the one task a case may have at a level: replays and retries reuse it."""
    return f"{case_key}:L{level}"


def build_task(case: Case, d: Decision, responder_id: str | None, task_id: str | None = None) -> dict[str, Any]:
    """A task.v1 dict for the decision that escalated ``case``; ``subscriber`` is the clear phone number."""
    task: dict[str, Any] = {
        "task_id": task_id or uuid.uuid4().hex,
        "case_key": case.case_key,
        # Clear number on purpose: the police app has to call or visit this subscriber.
        "subscriber": d.subscriber,
        "level": d.level,
        "score": max(case.score, d.score),
        # This decision's reasons first (why now), then the case's earlier ones (the story so far).
        "reasons": list(merge_reasons(d.reasons, case.reasons, MAX_TASK_REASONS)),
        "responder_id": responder_id,
        "created_ms": d.ts_ms,  # event time, so a replay builds the same task
        "model_version": d.model_version,
        "idempotency_key": idempotency_key(case.case_key, d.level),
    }
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


def stage_task(pipe: Pipeline, task: dict[str, Any], body: bytes, now_ms: int) -> None:
    """Queue the writes that create a task at ``now_ms`` (inside the caller's MULTI): the task, its first event,
    state, indexes."""
    task_id, level = task["task_id"], task["level"]
    now = now_ms
    rid = task.get("responder_id")
    pipe.set(keys.task(task_id), body)
    # A responder claimed at dispatch is named in this first entry: created and assigned happen in one commit.
    pipe.rpush(keys.task_events(task_id), task_event(CREATED, now, actor=DISPATCH_ACTOR, responder_id=rid))
    pipe.hset(keys.case(task["case_key"]), f"task:L{level}", task_id)
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
