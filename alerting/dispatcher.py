"""From a decision to its level's action: a warning, a call-centre task or a responder at the door (core/levels.py)."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from alerting import keys
from alerting.audit import publish_change
from alerting.cases import Case, CaseStore
from alerting.decision import Decision
from alerting.holds import HoldStore
from alerting.metrics import ACTIONS_REPEATED, ALERTS, IN_CALL_ACTIONS, TASKS
from alerting.outbox import stage_outbox
from alerting.responders import ResponderRegistry
from alerting.tasks import build_task, idempotency_key, stage_task
from core.clock import SYSTEM_CLOCK, Clock
from core.errors import InvalidDecision
from core.levels import REPEATED_ACTIONS, Action, level, level_numbers
from core.settings import Settings

log = logging.getLogger(__name__)

WARNINGS_MAXLEN = 100_000  # the SMS sender consumes warnings promptly; this only bounds a stalled one


def validate_decision(d: Decision) -> None:
    """Raise InvalidDecision unless the decision has a level of the table, a score in [0, 1] and a subscriber."""
    if isinstance(d.level, bool) or d.level not in level_numbers():
        raise InvalidDecision(f"level must be one of {list(level_numbers())}, got {d.level!r}")
    if not (isinstance(d.score, int | float) and math.isfinite(d.score) and 0.0 <= d.score <= 1.0):
        raise InvalidDecision(f"score must be within [0, 1], got {d.score!r}")
    if not d.subscriber or d.ts_ms < 0:
        raise InvalidDecision("a decision needs a subscriber and a non-negative ts_ms")
    if d.hold is not None and not (d.hold.event_id and d.hold.amount > 0 and d.hold.ts_ms >= 0):
        raise InvalidDecision("a hold needs the transfer's event id, a positive amount and a non-negative ts_ms")


def _stage_warning(pipe: Pipeline, case: Case, d: Decision, occasion: str | None) -> None:
    """Queue a warning record (for the SMS/in-app sender) inside the case's MULTI; ``occasion``: the new call or
    transfer a repeated warning is for."""
    record = {
        "case_key": case.case_key,
        "subscriber": d.subscriber,  # the sender must know whom to warn
        "level": d.level,
        "score": d.score,
        "reasons": list(d.reasons),
        "created_ms": d.ts_ms,
        "model_version": d.model_version,
        "idempotency_key": idempotency_key(case.case_key, d.level, occasion),
        # On the line now: the sender interrupts (an in-app alert over the call) instead of a plain SMS.
        "in_call": d.in_call,
    }
    pipe.xadd(keys.WARNINGS, {"warning": orjson.dumps(record)}, maxlen=WARNINGS_MAXLEN, approximate=True)
    pipe.hset(keys.case(case.case_key), f"warning:L{d.level}", "1")
    pipe.hincrby(keys.STATS, "warnings", 1)


class Dispatcher:
    """Turns decisions into at most one action per case and level, written atomically with the outbox."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        registry: ResponderRegistry | None = None,
        unit_hint: Callable[[Decision], str | None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._clock = clock
        self.registry = registry or ResponderRegistry(redis, stale_s=settings.responder_stale_s, clock=clock)
        self.cases = CaseStore(
            redis,
            settings.episode_ms,
            settings.pseudonym_key.get_secret_value().encode(),
            repeats_per_case=settings.repeats_per_case,
        )
        self._unit_hint = unit_hint
        self.holds = HoldStore(redis, settings, clock=clock)

    async def handle(self, decision: Decision) -> dict[str, Any] | None:
        """Act on one decision; the new task.v1 dict, or None (warning only, or the case already had it).

        A decision on a transfer at the hold threshold (``decision.hold``) also holds the transfer, once.
        """
        validate_decision(decision)
        ALERTS.labels(level=str(decision.level)).inc()
        action = self.action_of(decision.level)
        if action == "none":
            return None
        task_id = uuid.uuid4().hex  # fixed across optimistic-lock retries
        claimed: dict[str, Any] | None = None
        claim_tried = False
        created: dict[str, Any] | None = None

        async def on_escalation(case: Case, pipe: Pipeline, occasion: str | None) -> None:
            nonlocal claimed, claim_tried, created
            created = None  # a retried transaction must not report the previous attempt's task
            if action == "warning":
                _stage_warning(pipe, case, decision, occasion)
                return
            if action == "face_to_face" and not claim_tried:
                # The claim cannot join the MULTI (it searches and locks other keys), so it happens first
                # and is kept across retries; it is released below if no task ends up using it.
                claim_tried = True
                claimed = await self._claim(decision, case)
            responder = claimed["responder_id"] if claimed else None
            new_task = build_task(case, decision, responder, task_id, occasion=occasion, action=action)
            body = orjson.dumps(new_task)
            now_s = self._clock.now_s()
            stage_task(pipe, new_task, body, now_ms=int(now_s * 1000), occasion=occasion)
            # Latency starts at the scoring decision when known (it crossed a topic to get here).
            enqueued_at = decision.decided_at_s if decision.decided_at_s is not None else now_s
            stage_outbox(pipe, new_task, body, enqueued_at=enqueued_at)
            created = new_task

        outcome = None
        try:
            outcome = await self.cases.record(decision, on_escalation, may_repeat=action in REPEATED_ACTIONS)
        finally:
            # Only the committed attempt counts: if it did not act, the hook did not run in it and
            # ``created`` is left over from an attempt that lost its race.
            acted = outcome is not None and (outcome.escalated or outcome.repeated)
            task = created if acted else None
            if claimed is not None and (task is None or task["responder_id"] != claimed["responder_id"]):
                await self.registry.release(claimed["responder_id"])
        if decision.hold is not None and outcome is not None:
            # After the case commit, in a transaction of its own keyed by the transfer: a failure here retries
            # the whole decision, whose case update is then a repeat and whose hold is made at most once.
            await self.holds.issue(outcome.case.case_key, decision)
        if acted:
            lv = str(decision.level)
            if outcome is not None and outcome.repeated:
                ACTIONS_REPEATED.labels(level=lv).inc()
            if decision.in_call:
                IN_CALL_ACTIONS.labels(level=lv).inc()
        if task is None:
            return None
        TASKS.labels(level=str(decision.level)).inc()
        if action == "face_to_face" and task["responder_id"] is None:
            log.warning("task %s: no responder available, sent to the dispatch queue", task["task_id"])
        # After the commit and never raising: live consoles re-read on the notice; ids only, no phone number.
        await publish_change(
            self._redis,
            {
                "type": "task",
                "task_id": task["task_id"],
                "case_key": task["case_key"],
                "level": task["level"],
                "state": "assigned" if task["responder_id"] else "created",
                "responder_id": task["responder_id"],
                "at_ms": self._clock.now_ms(),
            },
        )
        return task

    async def issue_hold(self, decision: Decision, earlier: Sequence[Decision] = ()) -> dict[str, Any] | None:
        """Issue a decision's hold before the decision is handled (explained, its case recorded); the hold.v1 dict,
        or None (no hold here, or the transfer has one already).

        Why: the bank waits for the hold, and neither SHAP reasons nor the case's task are needed to send it. The
        hold names the case the decision will join once ``earlier`` (the same subscriber's decisions to be handled
        before it) are recorded; it goes out without reasons (they are not worded yet: the case carries them). A
        decision that :meth:`handle` would not record (no action at its level, invalid) issues nothing here either.
        :meth:`handle` then finds the hold and stages nothing, or moves it should the case differ after all.
        """
        if decision.hold is None or not self._records(decision):
            return None
        before = [d.ts_ms for d in earlier if d.subscriber == decision.subscriber and self._records(d)]
        case_key = await self.cases.planned_key(decision.subscriber, before, decision.ts_ms)
        return await self.holds.issue(case_key, decision, early=True)

    def _records(self, d: Decision) -> bool:
        """Whether :meth:`handle` records this decision in a case (valid, and its level acts)."""
        try:
            validate_decision(d)
        except InvalidDecision:
            return False
        return self.action_of(d.level) != "none"

    def action_of(self, level_number: int) -> Action:
        """What a decision of this level does: the operator's FW_LEVEL_ACTIONS, else the level table's."""
        return self._settings.level_actions.get(level_number, level(level_number).action)

    async def _claim(self, d: Decision, case: Case) -> dict[str, Any] | None:
        lat, lon = (d.lat, d.lon) if d.lat is not None and d.lon is not None else (case.lat, case.lon)
        if lat is None or lon is None:
            return None  # nowhere to search from: the dispatch desk assigns someone by hand
        # Prefer the victim's own grid: its workers know the family and the street.
        hint = self._unit_hint(d) if self._unit_hint else await self.registry.home_unit(lat, lon)
        return await self.registry.claim_nearest(lat, lon, hint, self._settings.responder_search_radii_km)

    async def stats(self) -> dict[str, Any]:
        """Counts of cases, warnings, tasks by level, deliveries and what waits in the outbox."""
        raw = await self._redis.hgetall(keys.STATS)
        counts = {keys.text(k) or "": int(v) for k, v in raw.items()}
        by_level = {name.removeprefix("tasks:L"): n for name, n in sorted(counts.items()) if name.startswith("tasks:L")}
        pipe = self._redis.pipeline(transaction=False)
        pipe.xlen(keys.OUTBOX)
        pipe.xlen(keys.OUTBOX_DEAD)
        outbox_len, dead_len = await pipe.execute()
        return {
            "cases": counts.get("cases", 0),
            "warnings": counts.get("warnings", 0),
            "tasks": sum(by_level.values()),
            "tasks_by_level": by_level,
            "delivered": counts.get("delivered", 0),
            "delivery_failed": counts.get("delivery_failed", 0),
            "outbox": int(outbox_len),
            "dead": int(dead_len),
            "holds": counts.get("holds", 0),
            "holds_delivered": counts.get("holds_delivered", 0),
        }
