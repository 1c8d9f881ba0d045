"""The task lifecycle: created → assigned → acknowledged → en_route → on_scene → resolved(outcome).

Every transition is checked against :data:`ALLOWED`, stored with its time and actor in ``fw:task-events:{id}``,
mirrored in the state hash ``fw:task-state:{id}`` and audited, all in one MULTI. Resolving releases the
responder and emits an outcome label to ``fw:labels`` (``alerting.labels`` publishes it on Kafka); an
outcome that ends payment holds (``alerting.holds``) releases or cancels the case's held ones in the same MULTI.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from alerting import keys
from alerting.audit import Actor, publish_change, stage_audit
from alerting.holds import ENDING_OF_OUTCOME, HoldRecord, count_ending, stage_ending, watch_held
from alerting.metrics import ACK_SECONDS, TASK_TRANSITIONS
from alerting.responders import ResponderRegistry
from alerting.tasks import ASSIGNED, CREATED, initial_state, task_event
from core.clock import SYSTEM_CLOCK, Clock
from core.errors import InvalidTransition, TransitionContention, UnknownTask
from core.levels import level
from core.outcomes import OUTCOME_TARGET
from core.settings import Settings

log = logging.getLogger(__name__)

ACKNOWLEDGED, EN_ROUTE, ON_SCENE, RESOLVED = "acknowledged", "en_route", "on_scene", "resolved"
STATES = (CREATED, ASSIGNED, ACKNOWLEDGED, EN_ROUTE, ON_SCENE, RESOLVED)
OUTCOMES = ("dissuaded", "money_lost", "false_alarm", "unreachable")
ACK_OVERDUE = "ack_overdue"  # a history entry (not a state): the deadline passed and nobody else could be sent

# Forward along the visit, plus: (re)assignment until the responder is at the door (a breakdown, a missed
# deadline), and resolving early (a dispatcher closes a false alarm, a responder reaches the subscriber by phone).
ALLOWED: Mapping[str, frozenset[str]] = {
    CREATED: frozenset({ASSIGNED, RESOLVED}),
    ASSIGNED: frozenset({ASSIGNED, ACKNOWLEDGED, RESOLVED}),
    ACKNOWLEDGED: frozenset({ASSIGNED, EN_ROUTE, RESOLVED}),
    EN_ROUTE: frozenset({ASSIGNED, ON_SCENE, RESOLVED}),
    ON_SCENE: frozenset({RESOLVED}),
    RESOLVED: frozenset(),
}

LABELS_MAXLEN = 1_000_000  # labels are training data: trimmed only as a guard against a runaway writer


@dataclass(frozen=True, slots=True)
class TaskState:
    """A task's place in its lifecycle, as stored in ``fw:task-state:{task_id}``."""

    task_id: str
    state: str
    responder_id: str | None
    since_ms: int  # wall time the current state was reached
    opened_ms: int  # wall time the task was created
    assigned_ms: int | None  # wall time of the latest (re)assignment
    tried: tuple[str, ...]  # every responder the task was ever given to, in order
    level: int
    case_key: str
    outcome: str | None = None

    def to_fields(self) -> dict[Any, str]:
        """The Redis hash fields."""
        fields: dict[Any, str] = {
            "state": self.state,
            "responder_id": self.responder_id or "",
            "since_ms": str(self.since_ms),
            "opened_ms": str(self.opened_ms),
            "tried": orjson.dumps(list(self.tried)).decode(),
            "level": str(self.level),
            "case_key": self.case_key,
        }
        if self.assigned_ms is not None:
            fields["assigned_ms"] = str(self.assigned_ms)
        if self.outcome is not None:
            fields["outcome"] = self.outcome
        return fields

    @classmethod
    def from_fields(cls, task_id: str, raw: Mapping[Any, Any]) -> TaskState:
        """Parse a Redis hash (bytes or str replies)."""
        f = {keys.text(k): keys.text(v) or "" for k, v in raw.items()}
        return cls(
            task_id=task_id,
            state=f["state"],
            responder_id=f.get("responder_id") or None,
            since_ms=int(f["since_ms"]),
            opened_ms=int(f.get("opened_ms") or f["since_ms"]),
            assigned_ms=int(f["assigned_ms"]) if f.get("assigned_ms") else None,
            tried=tuple(orjson.loads(f.get("tried") or "[]")),
            level=int(f.get("level") or 0),
            case_key=f.get("case_key", ""),
            outcome=f.get("outcome") or None,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "task_id": self.task_id,
            "state": self.state,
            "responder_id": self.responder_id,
            "since_ms": self.since_ms,
            "opened_ms": self.opened_ms,
            "assigned_ms": self.assigned_ms,
            "tried": list(self.tried),
            "level": self.level,
            "case_key": self.case_key,
            "outcome": self.outcome,
        }


def check_transition(current: str, wanted: str) -> None:
    """Raise InvalidTransition unless the lifecycle allows ``current`` -> ``wanted``."""
    if wanted not in STATES:
        raise InvalidTransition(f"unknown state {wanted!r}; one of {', '.join(STATES)}")
    if wanted not in ALLOWED.get(current, frozenset()):
        raise InvalidTransition(f"{current} -> {wanted} is not allowed")


LABEL_FORMAT = "label.v1"


def label_record(
    task: Mapping[str, Any], case: Mapping[Any, Any], outcome: str, resolved_ms: int, action: str
) -> dict[str, Any]:
    """The outcome label of a resolved task (README, "Outcome labels"); the subscriber in clear, as in task.v1,
    so training can join the episode's events (``episode_start_ms`` to ``episode_end_ms``, event time)."""
    start = case.get(b"start_ms") or case.get("start_ms")
    end = case.get(b"last_ts_ms") or case.get("last_ts_ms")
    created = int(task.get("created_ms") or 0)
    return {
        "format": LABEL_FORMAT,
        "case_key": task["case_key"],
        "subscriber": task["subscriber"],
        "task_id": task["task_id"],
        "level": task["level"],
        "action": action,
        "score": task.get("score"),
        "threshold": task.get("threshold"),
        "outcome": outcome,
        "target": OUTCOME_TARGET.get(outcome),
        # A visit that stopped the payment changed what the events would have shown: training may weigh it.
        "intervened": outcome == "dissuaded",
        "task_created_ms": created,
        "episode_start_ms": int(start) if start is not None else created,
        "episode_end_ms": int(end) if end is not None else created,
        "resolved_ms": resolved_ms,
        "model_version": task.get("model_version", ""),
    }


@dataclass(frozen=True, slots=True)
class _Committed:
    before: TaskState
    after: TaskState
    label: bytes | None
    subscriber: str | None
    holds_ended: tuple[str, int] = ("", 0)  # (action, how many holds it ended)


class TaskLifecycle:
    """Moves tasks through their states atomically (WATCH/MULTI on the task's state hash)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        registry: ResponderRegistry | None = None,
        max_retries: int = 50,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.clock = clock
        self.registry = registry or ResponderRegistry(redis, stale_s=settings.responder_stale_s, clock=clock)
        self._max_retries = max_retries

    async def get(self, task_id: str) -> TaskState:
        """The task's lifecycle state, or UnknownTask."""
        return await self._read(self.redis, task_id)

    async def get_many(self, task_ids: list[str]) -> dict[str, TaskState]:
        """States of many tasks in one round trip; unknown ids are left out."""
        pipe = self.redis.pipeline(transaction=False)
        for tid in task_ids:
            pipe.hgetall(keys.task_state(tid))
        rows = await pipe.execute()
        out: dict[str, TaskState] = {}
        for tid, raw in zip(task_ids, rows, strict=True):
            if raw:
                out[tid] = TaskState.from_fields(tid, raw)
            else:
                try:
                    out[tid] = await self.get(tid)  # a task created before lifecycle state existed
                except UnknownTask:
                    continue
        return out

    async def transition(
        self, task_id: str, state: str, actor: Actor, *, outcome: str | None = None, note: str | None = None
    ) -> TaskState:
        """Move a task to acknowledged, en_route, on_scene or resolved (which needs an outcome); ``note``, the
        responder's words, goes into the task's history."""
        if state == ASSIGNED:
            raise InvalidTransition("use assign() to (re)assign a task to a responder")
        if state not in STATES:
            raise InvalidTransition(f"unknown state {state!r}; one of {', '.join(STATES)}")
        if state == RESOLVED and outcome not in OUTCOMES:
            raise InvalidTransition(f"resolving needs an outcome, one of {', '.join(OUTCOMES)}")
        if state != RESOLVED and outcome is not None:
            raise InvalidTransition("only resolved takes an outcome")
        now = self.clock.now_ms()
        done = await self._commit(task_id, state, actor, now, outcome=outcome, note=note)
        await self._after(done, actor, now)
        return done.after

    async def assign(
        self,
        task_id: str,
        responder_id: str,
        actor: Actor,
        *,
        now_ms: int | None = None,
        already_claimed: bool = False,
        expect_assigned_ms: int | None = None,
        reason: str | None = None,
    ) -> TaskState:
        """(Re)assign a task: claim the responder (available -> busy), record, release the previous one.

        ``expect_assigned_ms`` makes the commit conditional on no (re)assignment or acknowledgement meanwhile.
        """
        now = now_ms if now_ms is not None else self.clock.now_ms()
        current = await self.get(task_id)
        check_transition(current.state, ASSIGNED)
        if current.responder_id == responder_id:
            raise InvalidTransition(f"task {task_id} is already assigned to {responder_id}")
        if not already_claimed:
            await self.registry.claim(responder_id)  # UnknownResponder / NoResponderAvailable
        try:
            done = await self._commit(
                task_id,
                ASSIGNED,
                actor,
                now,
                new_responder=responder_id,
                expect_assigned_ms=expect_assigned_ms,
                reason=reason,
            )
        except BaseException:
            await self.registry.release(responder_id)  # the claim is ours and no task uses it
            raise
        await self._after(done, actor, now)
        return done.after

    async def mark_overdue(self, task_id: str, actor: Actor, now_ms: int, expect_assigned_ms: int | None) -> bool:
        """Record that an assignment missed its deadline with nobody to reassign; False if it changed meanwhile."""
        state_key = keys.task_state(task_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(self._max_retries):
                try:
                    await pipe.watch(state_key)
                    st = await self._read(pipe, task_id)
                    if st.state != ASSIGNED or st.assigned_ms != expect_assigned_ms:
                        return False
                    pipe.multi()
                    pipe.hset(state_key, mapping={**st.to_fields(), "overdue_ms": str(now_ms)})
                    pipe.zrem(keys.TASKS_AWAITING_ACK, task_id)
                    pipe.rpush(
                        keys.task_events(task_id),
                        task_event(
                            ACK_OVERDUE, now_ms, actor=actor.name, role=actor.role, responder_id=st.responder_id
                        ),
                    )
                    stage_audit(pipe, actor, ACK_OVERDUE, case_key=st.case_key, task_id=task_id, at_ms=now_ms)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue
        raise TransitionContention(f"task {task_id}: overdue mark lost {self._max_retries} races")

    async def _read(self, conn: Redis | Pipeline, task_id: str) -> TaskState:
        raw = await conn.hgetall(keys.task_state(task_id))
        if raw:
            return TaskState.from_fields(task_id, raw)
        # A task stored before lifecycle state existed: derive its state from the task and its first event.
        body = await conn.get(keys.task(task_id))
        if body is None:
            raise UnknownTask(task_id)
        first = await conn.lindex(keys.task_events(task_id), 0)
        at_ms = int(orjson.loads(first).get("at_ms", 0)) if first is not None else self.clock.now_ms()
        return TaskState.from_fields(task_id, initial_state(orjson.loads(body), at_ms))

    async def _commit(
        self,
        task_id: str,
        to: str,
        actor: Actor,
        now: int,
        *,
        outcome: str | None = None,
        new_responder: str | None = None,
        expect_assigned_ms: int | None = None,
        reason: str | None = None,
        note: str | None = None,
    ) -> _Committed:
        state_key = keys.task_state(task_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(self._max_retries):
                try:
                    # Optimistic lock on the state hash: two actors racing on one task cannot both move it.
                    await pipe.watch(state_key)
                    before = await self._read(pipe, task_id)
                    check_transition(before.state, to)
                    if expect_assigned_ms is not None and before.assigned_ms != expect_assigned_ms:
                        raise InvalidTransition(f"task {task_id} changed meanwhile")
                    after = _advance(before, to, now, outcome, new_responder)
                    label: bytes | None = None
                    subscriber: str | None = None
                    ending = ENDING_OF_OUTCOME.get(outcome or "") if to == RESOLVED else None
                    # Read (and watched) before the MULTI: a hold issued or ended meanwhile makes this commit retry.
                    held: list[HoldRecord] = await watch_held(pipe, before.case_key) if ending else []
                    if to == RESOLVED:
                        raw_task = await pipe.get(keys.task(task_id))
                        if raw_task is None:
                            raise UnknownTask(task_id)
                        task = orjson.loads(raw_task)
                        case = await pipe.hgetall(keys.case(before.case_key))
                        assert outcome is not None  # checked by transition()
                        taken = self.settings.level_actions.get(before.level, level(before.level).action)
                        label = orjson.dumps(label_record(task, case, outcome, now, taken))
                        subscriber = str(task["subscriber"])
                    detail: dict[str, Any] = {"actor": actor.name, "role": actor.role}
                    if to == ASSIGNED:
                        detail.update(responder_id=new_responder, previous_responder_id=before.responder_id)
                    if outcome is not None:
                        detail["outcome"] = outcome
                    if reason is not None:
                        detail["reason"] = reason
                    if note:
                        detail["note"] = note

                    pipe.multi()
                    pipe.hset(state_key, mapping=after.to_fields())
                    pipe.hdel(state_key, "overdue_ms")
                    pipe.rpush(keys.task_events(task_id), task_event(to, now, **detail))
                    if to == ASSIGNED:
                        pipe.zadd(keys.TASKS_AWAITING_ACK, {task_id: now})
                    else:
                        pipe.zrem(keys.TASKS_AWAITING_ACK, task_id)
                    if label is not None:
                        pipe.zrem(keys.TASKS_OPEN, task_id)
                        pipe.zadd(keys.TASKS_CLOSED, {task_id: now})
                        pipe.xadd(keys.LABELS, {"label": label}, maxlen=LABELS_MAXLEN, approximate=True)
                    for record in held:
                        assert ending is not None
                        stage_ending(pipe, record, ending, actor, now, now / 1000)
                    action = "assign" if to == ASSIGNED else f"transition:{to}"
                    audit_detail = {k: v for k, v in detail.items() if k not in ("actor", "role")}
                    stage_audit(
                        pipe, actor, action, case_key=after.case_key, task_id=task_id, at_ms=now, **audit_detail
                    )
                    await pipe.execute()
                    return _Committed(before, after, label, subscriber, (ending or "", len(held)))
                except WatchError:
                    continue
        raise TransitionContention(f"task {task_id}: transition to {to} lost {self._max_retries} races")

    async def _after(self, done: _Committed, actor: Actor, now: int) -> None:
        """Side effects of a committed transition; none of them may undo or fail it."""
        before, after = done.before, done.after
        TASK_TRANSITIONS.labels(state=after.state).inc()
        action, ended = done.holds_ended
        for _ in range(ended):
            count_ending(action)
        if after.state == ACKNOWLEDGED and before.assigned_ms is not None:
            ACK_SECONDS.observe(max(0.0, (now - before.assigned_ms) / 1000))
        to_release = None
        if after.state == ASSIGNED and before.responder_id and before.responder_id != after.responder_id:
            to_release = before.responder_id
        elif after.state == RESOLVED and after.responder_id:
            to_release = after.responder_id
        if to_release is not None:
            try:
                await self.registry.release(to_release)
            except RedisError as exc:  # committed already: the responder stays busy until someone frees it
                log.error("task %s: could not release responder %s: %s", after.task_id, to_release, exc)
        await publish_change(
            self.redis,
            {
                "type": "task",
                "task_id": after.task_id,
                "case_key": after.case_key,
                "level": after.level,
                "state": after.state,
                "responder_id": after.responder_id,
                "previous_responder_id": before.responder_id,
                "at_ms": now,
            },
        )


def _advance(before: TaskState, to: str, now: int, outcome: str | None, new_responder: str | None) -> TaskState:
    """The state after a checked transition (pure)."""
    if to == ASSIGNED:
        assert new_responder is not None
        tried = before.tried if new_responder in before.tried else (*before.tried, new_responder)
        return replace(before, state=to, since_ms=now, responder_id=new_responder, assigned_ms=now, tried=tried)
    return replace(before, state=to, since_ms=now, outcome=outcome)
