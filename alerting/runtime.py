"""The alerting side of a worker: a Redis client, the dispatcher and a background outbox deliverer.

Redis away: :meth:`AlertingRuntime.handle` keeps retrying the decision in hand, with backoff, until Redis
answers again. It keeps no queue of its own: the decisions behind it wait where they already are durable,
unacknowledged on the broker's pending-alerts hop, so scoring goes on (the ``score`` agent only appends to
that hop), one subscriber's decisions still reach Redis in the order they were scored, and a worker that
crashes or stops meanwhile loses nothing: its successor reads them again from the committed offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerting.backoff import backoff_delay
from alerting.decision import Decision
from alerting.delivery import Deliverer
from alerting.dispatcher import Dispatcher
from alerting.holds import HoldDeliverer, HoldSink
from alerting.metrics import RETRY_QUEUE
from core.clock import SYSTEM_CLOCK, Clock, sleep_or_stop
from core.errors import AlertingStopped, ConfigurationError
from core.settings import Settings

log = logging.getLogger(__name__)

RETRY_BACKOFF_BASE_S = 0.2
RETRY_BACKOFF_MAX_S = 5.0
_REDIS_DOWN = (RedisError, OSError)  # OSError: a socket error redis-py did not wrap


class AlertingRuntime:
    """Owns the alerting resources of one worker process; :meth:`handle` is the scoring path's sink."""

    def __init__(self, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, hold_sink: HoldSink | None = None) -> None:
        """``hold_sink`` publishes hold.v1 messages on the holds topic (the worker passes its producer's)."""
        if not settings.redis_url:
            raise ConfigurationError("alerting needs FW_REDIS_URL")
        self.settings = settings
        self.clock = clock
        self.redis: Redis = Redis.from_url(settings.redis_url)
        self.dispatcher = Dispatcher(self.redis, settings, clock=clock)
        self.deliverer = Deliverer(self.redis, settings, clock=clock)
        self.hold_deliverer = HoldDeliverer(self.redis, settings, publish=hold_sink, clock=clock)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting = False

    async def start(self) -> None:
        """Start delivering the outboxes in the background (pending entries of a crashed worker included) and
        sweeping lapsed holds."""
        self._task = asyncio.create_task(self.deliverer.run(self._stop), name="outbox-deliverer")
        self._tasks = [
            self._task,
            asyncio.create_task(self.hold_deliverer.run(self._stop), name="holds-deliverer"),
            asyncio.create_task(self._sweep_holds(), name="holds-lapse-sweep"),
        ]

    async def _sweep_holds(self) -> None:
        """Mark holds past their ``expires_ms`` lapsed, every ``FW_HOLD_SWEEP_S`` of the clock; any worker may."""
        while not await sleep_or_stop(self.clock, self.settings.hold_sweep_s, self._stop):
            try:
                lapsed = await self.dispatcher.holds.lapse_due()
            except _REDIS_DOWN as exc:
                log.warning("hold lapse sweep failed: %s", exc)
                continue
            except Exception:
                log.exception("hold lapse sweep failed")  # a bug must not end the sweep for good
                continue
            if lapsed:
                log.info("holds lapsed", extra={"holds": lapsed})

    @property
    def retrying(self) -> int:
        """Decisions in hand waiting for Redis (0 or 1: the rest wait on the broker)."""
        return int(self._waiting)

    async def handle(self, decision: Decision) -> dict[str, Any] | None:
        """Open or update the case of a decision; a new task goes to the outbox atomically.

        Returns the new task, or None (no task for this decision). While Redis is away it waits and retries;
        raises :class:`AlertingStopped` if the worker stops first.
        """
        failures = 0
        try:
            while True:
                try:
                    return await self.dispatcher.handle(decision)
                except _REDIS_DOWN as exc:
                    failures += 1
                    if failures == 1:
                        self._waiting = True
                        RETRY_QUEUE.set(1)
                    if failures == 1 or failures % 20 == 0:
                        log.warning(
                            "redis unavailable, retrying the decision (%d attempts): %s",
                            failures,
                            exc,
                            extra={"event_id": decision.event_id},
                        )
                    if self._stop.is_set():
                        raise AlertingStopped(f"stopped while decision {decision.event_id} waited for redis") from exc
                    pause = max(0.05, backoff_delay(failures, RETRY_BACKOFF_BASE_S, RETRY_BACKOFF_MAX_S))
                    await sleep_or_stop(self.clock, pause, self._stop)
        finally:
            if failures:
                self._waiting = False
                RETRY_QUEUE.set(0)
                log.info("redis answered again after %d failed attempts", failures)

    async def issue_hold(self, decision: Decision, earlier: Sequence[Decision] = ()) -> dict[str, Any] | None:
        """Issue a decision's hold ahead of its handling (``Dispatcher.issue_hold``); never raises, never retries.

        One try: when it fails (Redis away, a lost race), :meth:`handle` issues the hold after the case as before,
        retrying until Redis answers, so a hold is never lost by skipping this.
        """
        try:
            return await self.dispatcher.issue_hold(decision, earlier)
        except Exception as exc:  # Redis away, a lost race, a bug: handle() covers each
            log.warning(
                "early hold failed; issued with its case instead: %s", exc, extra={"event_id": decision.event_id}
            )
            return None

    async def stop(self) -> None:
        """Stop delivery and retries and close connections."""
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        await self.deliverer.aclose()
        await self.hold_deliverer.aclose()
        await self.redis.aclose()
