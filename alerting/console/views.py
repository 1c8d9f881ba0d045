"""What the console shows: open cases with their tasks, and the responders, read from Redis per request."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from alerting import keys
from alerting.cases import Case
from alerting.console.auth import RESPONDER, Principal
from alerting.holds import HoldStore
from alerting.lifecycle import TaskLifecycle
from alerting.responders import ResponderRegistry

MAX_OPEN_TASKS = 2000  # a console lists a city's open work, not its history; bounds one request's cost


async def open_cases(
    redis: Redis, lifecycle: TaskLifecycle, who: Principal, now_ms: int, holds: HoldStore | None = None
) -> list[dict[str, Any]]:
    """Cases with at least one unresolved task, highest level first, then oldest first; ages as of ``now_ms``.

    Dispatchers and admins see the subscriber's number and, with ``holds``, each case's payment holds; a
    responder sees only its own tasks' cases, pseudonymised, and no holds (a bank matter, not a visit's).
    """
    now = now_ms
    raw_ids = await redis.zrange(keys.TASKS_OPEN, 0, MAX_OPEN_TASKS - 1)
    task_ids = [t.decode() if isinstance(t, bytes) else str(t) for t in raw_ids]
    states = await lifecycle.get_many(task_ids)
    if who.role == RESPONDER:
        states = {tid: st for tid, st in states.items() if st.responder_id == who.responder_id}
    ordered = [tid for tid in task_ids if tid in states]
    pipe = redis.pipeline(transaction=False)
    for tid in ordered:
        pipe.get(keys.task(tid))
    bodies = await pipe.execute()
    tasks = {tid: orjson.loads(b) for tid, b in zip(ordered, bodies, strict=True) if b is not None}
    case_keys = list(dict.fromkeys(states[tid].case_key for tid in tasks))
    pipe = redis.pipeline(transaction=False)
    for ck in case_keys:
        pipe.hgetall(keys.case(ck))
    raw_cases = await pipe.execute()
    cases = {ck: Case.from_fields(raw) for ck, raw in zip(case_keys, raw_cases, strict=True) if raw}

    out: dict[str, dict[str, Any]] = {}
    for tid, task in tasks.items():
        st = states[tid]
        case = cases.get(st.case_key)
        entry = out.get(st.case_key)
        if entry is None:
            lat = case.lat if case and case.lat is not None else task.get("lat")
            lon = case.lon if case and case.lon is not None else task.get("lon")
            entry = out[st.case_key] = {
                "case_key": st.case_key,
                "level": case.level if case else st.level,
                "score": case.score if case else task.get("score"),
                "reasons": list(case.reasons) if case else list(task.get("reasons", [])),
                # Responders get the keyed pseudonym: enough to tell cases apart, useless outside the service.
                "subscriber": (case.subscriber if case else "") if who.role == RESPONDER else task["subscriber"],
                "start_ms": case.start_ms if case else task.get("created_ms"),
                "opened_ms": st.opened_ms,
                "lat": lat,
                "lon": lon,
                "tasks": [],
            }
        entry["opened_ms"] = min(entry["opened_ms"], st.opened_ms)
        entry["level"] = max(entry["level"], st.level)
        entry["tasks"].append({**st.as_dict(), "model_version": task.get("model_version")})
    if holds is not None and who.role != RESPONDER:
        by_case = await holds.for_cases(list(out))
        for ck, entry in out.items():
            entry["holds"] = [h.as_dict() for h in by_case.get(ck, [])]
    result = sorted(out.values(), key=lambda c: (-int(c["level"]), c["opened_ms"]))
    for c in result:
        c["age_s"] = round(max(0, now - c["opened_ms"]) / 1000, 1)
        c["tasks"].sort(key=lambda t: -int(t["level"]))
    return result


async def responders(redis: Redis, registry: ResponderRegistry, now_ms: int) -> list[dict[str, Any]]:
    """Every registered responder with its status, position and whether it is stale at ``now_ms``."""
    now = now_ms
    ids = sorted(keys.text(r) or "" for r in await redis.smembers(keys.RESPONDER_IDS))
    pipe = redis.pipeline(transaction=False)
    for rid in ids:
        pipe.hgetall(keys.responder(rid))
    rows = await pipe.execute()
    out = []
    for raw in rows:
        if not raw:
            continue
        r = {keys.text(k): keys.text(v) for k, v in raw.items()}
        seen_raw = r.get("seen_ms")
        seen = int(seen_raw) if seen_raw else None
        item: dict[str, Any] = {
            "responder_id": r.get("responder_id"),
            "kind": r.get("kind"),
            "unit": r.get("unit"),
            "lat": float(r.get("lat") or "nan"),
            "lon": float(r.get("lon") or "nan"),
            "status": r.get("status"),
            "seen_ms": seen,
        }
        item["stale"] = registry.is_stale(item, now)
        out.append(item)
    return out


async def case_timeline(redis: Redis, case_key: str, holds: HoldStore) -> dict[str, Any] | None:
    """A case's story: each scored event that reached a level (event time), each task's transitions with who
    made them, and its payment holds (wall time); None for an unknown case."""
    raw = await redis.hgetall(keys.case(case_key))
    if not raw:
        return None
    case = Case.from_fields(raw)
    scored = [orjson.loads(e) for e in await redis.lrange(keys.case_decisions(case_key), 0, -1)]
    task_ids = sorted(
        {keys.text(v) or "" for f, v in raw.items() if (keys.text(f) or "").startswith(("task:L", "repeat:L"))}
    )
    pipe = redis.pipeline(transaction=False)
    for tid in task_ids:
        pipe.lrange(keys.task_events(tid), 0, -1)
    histories = await pipe.execute() if task_ids else []
    actions: list[dict[str, Any]] = []
    for tid, history in zip(task_ids, histories, strict=True):
        for entry in history:
            event = orjson.loads(entry)
            actions.append({"task_id": tid, **event})
    for record in await holds.for_case(case_key):
        view = record.as_dict()
        actions.append({"hold_id": view["hold_id"], "state": f"hold {view['state']}", "at_ms": view["created_ms"]})
    actions.sort(key=lambda a: int(a.get("at_ms") or 0))
    return {
        "case_key": case_key,
        "level": case.level,
        "start_ms": case.start_ms,
        "decisions": case.decisions,
        "scored": scored,
        "actions": actions,
    }


MAX_CLOSED_SCANNED = 5000  # one search reads at most this many resolved tasks (newest first) from its window
MAX_CLOSED_SHOWN = 200


async def closed_tasks(
    redis: Redis,
    lifecycle: TaskLifecycle,
    *,
    from_ms: int,
    to_ms: int,
    case_key: str = "",
    responder_id: str = "",
    number: str = "",
) -> list[dict[str, Any]]:
    """Resolved tasks in ``[from_ms, to_ms]`` (wall time of resolution), newest first, filtered by case key (a
    prefix), responder and the person's number; each with its outcome and who resolved it."""
    raw_ids: list[Any] = await redis.zrevrangebyscore(
        keys.TASKS_CLOSED, to_ms, from_ms, start=0, num=MAX_CLOSED_SCANNED, withscores=True
    )
    found = [(keys.text(t) or "", int(score)) for t, score in raw_ids]
    states = await lifecycle.get_many([t for t, _ in found])
    keep = [
        (tid, at)
        for tid, at in found
        if tid in states
        and (not case_key or states[tid].case_key.startswith(case_key))
        and (not responder_id or states[tid].responder_id == responder_id)
    ]
    pipe = redis.pipeline(transaction=False)
    for tid, _ in keep:
        pipe.get(keys.task(tid))
    bodies = await pipe.execute() if keep else []
    out: list[dict[str, Any]] = []
    for (tid, at), body in zip(keep, bodies, strict=True):
        task = orjson.loads(body) if body else {}
        if number and task.get("subscriber") != number:
            continue
        st = states[tid]
        out.append(
            {
                "task_id": tid,
                "case_key": st.case_key,
                "level": st.level,
                "outcome": st.outcome,
                "responder_id": st.responder_id,
                "resolved_ms": at,
                "subscriber": task.get("subscriber"),
                "reasons": task.get("reasons", [])[:2],
            }
        )
        if len(out) >= MAX_CLOSED_SHOWN:
            break
    return out
