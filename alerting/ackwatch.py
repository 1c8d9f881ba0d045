"""The acknowledgement deadline: reassign tasks nobody acknowledged in time and tell the unit supervisor."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from redis.exceptions import RedisError

from alerting import keys
from alerting.audit import SYSTEM, Actor, publish_change
from alerting.lifecycle import TaskLifecycle
from alerting.metrics import ESCALATION_POST_FAILURES, ESCALATIONS
from alerting.tasks import ASSIGNED, TaskStore
from core.clock import sleep_or_stop
from core.errors import InvalidTransition, NoResponderAvailable, TransitionContention, UnknownTask

log = logging.getLogger(__name__)

WATCHER = Actor("ack-watcher", SYSTEM)
ESCALATION_TYPE = "ack_deadline_missed"


class AckWatcher:
    """Finds assigned tasks older than ``ack_deadline_s`` without acknowledgement; safe to run in many processes.

    Its clock is the lifecycle's: a deadline is measured on the clock that stamped the assignment.
    """

    def __init__(
        self,
        lifecycle: TaskLifecycle,
        *,
        client: httpx.AsyncClient | None = None,
        batch: int = 100,
    ) -> None:
        self._lifecycle = lifecycle
        self._clock = lifecycle.clock
        self._settings = lifecycle.settings
        self._redis = lifecycle.redis
        self._tasks = TaskStore(self._redis)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=self._settings.supervisor_timeout_s)
        self._batch = batch

    async def aclose(self) -> None:
        """Close the HTTP client if this watcher created it."""
        if self._owns_client:
            await self._client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``ack_check_interval_s`` until ``stop`` is set; errors are logged, never fatal."""
        while not stop.is_set():
            try:
                await self.check_once()
            except RedisError as exc:
                log.warning("ack watcher: redis unavailable: %s", exc)
            except Exception:
                log.exception("ack watcher: unexpected error")
            await sleep_or_stop(self._clock, self._settings.ack_check_interval_s, stop)

    async def check_once(self) -> list[dict[str, Any]]:
        """Escalate every overdue assignment now; returns the escalation records made."""
        now = self._clock.now_ms()
        cutoff = now - int(self._settings.ack_deadline_s * 1000)
        due = await self._redis.zrangebyscore(keys.TASKS_AWAITING_ACK, "-inf", cutoff, start=0, num=self._batch)
        made: list[dict[str, Any]] = []
        for raw_id in due:
            task_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            try:
                escalation = await self._escalate(task_id, now, cutoff)
            except UnknownTask:
                await self._redis.zrem(keys.TASKS_AWAITING_ACK, task_id)
                continue
            except TransitionContention as exc:  # busy task: the next round sees it again
                log.warning("ack watcher: %s", exc)
                continue
            if escalation is not None:
                made.append(escalation)
        return made

    async def _escalate(self, task_id: str, now: int, cutoff: int) -> dict[str, Any] | None:
        st = await self._lifecycle.get(task_id)
        if st.state != ASSIGNED:
            await self._redis.zrem(keys.TASKS_AWAITING_ACK, task_id)  # acknowledged or resolved meanwhile
            return None
        if st.assigned_ms is None or st.assigned_ms > cutoff:
            return None  # reassigned meanwhile: a new deadline runs
        previous = st.responder_id
        registry = self._lifecycle.registry
        prev_info = await registry.get(previous) if previous else None
        unit = prev_info.get("unit") if prev_info else None
        task = await self._tasks.get(task_id)
        lat, lon = (task or {}).get("lat"), (task or {}).get("lon")

        new_id: str | None = None
        if lat is not None and lon is not None:
            exclude = {*st.tried, *([previous] if previous else [])}
            # Same unit first: its supervisor is the one being told, and its people know the area.
            found = await registry.claim_nearest(
                float(lat), float(lon), unit, self._settings.responder_search_radii_km, exclude=exclude, now_ms=now
            )
            if found is not None:
                new_id = str(found["responder_id"])
                try:
                    await self._lifecycle.assign(
                        task_id,
                        new_id,
                        WATCHER,
                        now_ms=now,
                        already_claimed=True,
                        expect_assigned_ms=st.assigned_ms,
                        reason="ack_deadline",
                    )
                except (InvalidTransition, NoResponderAvailable):
                    return None  # acknowledged or reassigned meanwhile; assign() released our claim
        if new_id is None and not await self._lifecycle.mark_overdue(task_id, WATCHER, now, st.assigned_ms):
            return None

        escalation = {
            "type": ESCALATION_TYPE,
            "task_id": task_id,
            "case_key": st.case_key,
            "level": st.level,
            "unit": unit,
            "previous_responder_id": previous,
            "new_responder_id": new_id,
            "assigned_ms": st.assigned_ms,
            "deadline_s": self._settings.ack_deadline_s,
            "overdue_s": round((now - st.assigned_ms) / 1000, 1),
            "escalated_ms": now,
        }
        ESCALATIONS.inc()
        log.warning(
            "task %s: not acknowledged by %s within %.0f s; %s",
            task_id,
            previous,
            self._settings.ack_deadline_s,
            f"reassigned to {new_id}" if new_id else "nobody else available",
        )
        if new_id is None:  # a reassignment already told the consoles through the lifecycle
            await publish_change(self._redis, {"type": "escalation", "task_id": task_id, "at_ms": now})
        await self._post(escalation)
        return escalation

    async def _post(self, escalation: dict[str, Any]) -> None:
        url = self._settings.supervisor_url
        if not url:
            return
        try:
            # One key per missed assignment: a supervisor that dedupes on it sees each escalation once.
            key = f"escalation:{escalation['task_id']}:{escalation['assigned_ms']}"
            response = await self._client.post(
                url, json=escalation, headers={"Idempotency-Key": key}, timeout=self._settings.supervisor_timeout_s
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            # The reassignment already happened; a missed notice is logged and counted, not retried.
            ESCALATION_POST_FAILURES.inc()
            log.warning("task %s: escalation POST to the supervisor failed: %s", escalation["task_id"], exc)
