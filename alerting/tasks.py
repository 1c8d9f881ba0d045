"""task.v1: building a dissuasion task, storing it and recording its state transitions."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from alerting import keys
from alerting.cases import Case, merge_reasons
from alerting.decision import Decision

CREATED, DELIVERED, DELIVERY_FAILED = "created", "delivered", "delivery_failed"
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


def task_event(state: str, at_ms: int | None = None, **detail: Any) -> bytes:
    """One entry of ``fw:task-events:{id}``: the state and the wall time it was reached."""
    return orjson.dumps({"state": state, "at_ms": at_ms if at_ms is not None else int(time.time() * 1000), **detail})


def stage_task(pipe: Pipeline, task: dict[str, Any], body: bytes) -> None:
    """Queue the writes that create a task (inside the caller's MULTI): the task, its first event, indexes."""
    task_id, level = task["task_id"], task["level"]
    pipe.set(keys.task(task_id), body)
    pipe.rpush(keys.task_events(task_id), task_event(CREATED))
    pipe.hset(keys.case(task["case_key"]), f"task:L{level}", task_id)
    pipe.hincrby(keys.STATS, f"tasks:L{level}", 1)


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
