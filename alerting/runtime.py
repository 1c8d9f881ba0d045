"""The alerting side of a worker: a Redis client, the dispatcher and a background outbox deliverer.

Redis away: a decision whose case write fails with a Redis error waits in a bounded in-memory queue and is
retried with backoff until Redis answers again, so scoring goes on and no task is lost to a short outage.
While anything waits there, newer decisions queue behind it (one FIFO), so one subscriber's decisions
still reach Redis in the order they were scored. The queue lives in the worker's memory: the events behind
it are already acknowledged, so a crash or stop while Redis is away loses what waits (logged and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerting.backoff import backoff_delay
from alerting.decision import Decision
from alerting.delivery import Deliverer
from alerting.dispatcher import Dispatcher
from alerting.errors import AlertingError, ConfigurationError
from alerting.metrics import DECISIONS_DROPPED, RETRY_QUEUE
from fraudwatch.settings import Settings

log = logging.getLogger(__name__)

RETRY_QUEUE_MAX = 50_000  # decisions (~1 KB each): minutes of alerts at the busiest hour, bounded memory
RETRY_BACKOFF_BASE_S = 0.2
RETRY_BACKOFF_MAX_S = 5.0
_REDIS_DOWN = (RedisError, OSError)  # OSError: a socket error redis-py did not wrap


class RetryQueueFull(AlertingError):
    """Redis has been away so long that the decision retry queue is full; this decision is dropped."""


class AlertingRuntime:
    """Owns the alerting resources of one worker process; :meth:`handle` is the scoring path's sink."""

    def __init__(self, settings: Settings, *, retry_max: int = RETRY_QUEUE_MAX) -> None:
        if not settings.redis_url:
            raise ConfigurationError("alerting needs FW_REDIS_URL")
        self.settings = settings
        self.redis: Redis = Redis.from_url(settings.redis_url)
        self.dispatcher = Dispatcher(self.redis, settings)
        self.deliverer = Deliverer(self.redis, settings)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry: deque[Decision] = deque()
        self._retry_max = retry_max
        self._retry_wake = asyncio.Event()
        self._retry_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start delivering the outbox in the background (pending entries of a crashed worker included)."""
        self._task = asyncio.create_task(self.deliverer.run(self._stop), name="outbox-deliverer")
        self._retry_task = asyncio.create_task(self._retry_loop(), name="decision-retry")

    @property
    def retrying(self) -> int:
        """Decisions waiting for Redis."""
        return len(self._retry)

    async def handle(self, decision: Decision) -> dict[str, Any] | None:
        """Open or update the case of a decision; a new task goes to the outbox atomically.

        Returns the new task, or None (no task, or the decision waits for Redis and is handled later).
        """
        if self._retry:  # behind earlier decisions that wait for Redis: keep the order
            self._enqueue(decision)
            return None
        try:
            return await self.dispatcher.handle(decision)
        except _REDIS_DOWN as exc:
            log.warning("redis unavailable, decision queued for retry: %s", exc, extra={"event_id": decision.event_id})
            self._enqueue(decision)
            return None

    def _enqueue(self, decision: Decision) -> None:
        if len(self._retry) >= self._retry_max:
            DECISIONS_DROPPED.labels(reason="retry_queue_full").inc()
            raise RetryQueueFull(f"{len(self._retry)} decisions already wait for Redis")
        self._retry.append(decision)
        RETRY_QUEUE.set(len(self._retry))
        self._retry_wake.set()

    async def _retry_loop(self) -> None:
        """Hand waiting decisions to the dispatcher, oldest first, backing off while Redis stays away."""
        failures = 0
        while not self._stop.is_set():
            if not self._retry:
                self._retry_wake.clear()
                await self._wait(None, self._retry_wake)
                continue
            decision = self._retry[0]
            try:
                await self.dispatcher.handle(decision)
            except _REDIS_DOWN as exc:
                failures += 1
                delay = max(0.05, backoff_delay(failures, RETRY_BACKOFF_BASE_S, RETRY_BACKOFF_MAX_S))
                if failures == 1 or failures % 20 == 0:
                    log.warning("redis still unavailable (%d decisions wait): %s", len(self._retry), exc)
                await self._wait(delay)
                continue
            except Exception:
                # Not an outage (an invalid decision, lock contention): retrying would not help.
                DECISIONS_DROPPED.labels(reason="error").inc()
                log.exception("queued decision failed", extra={"event_id": decision.event_id})
            if failures:
                log.info("redis is back: %d decisions still wait", len(self._retry) - 1)
            failures = 0
            self._retry.popleft()
            RETRY_QUEUE.set(len(self._retry))

    async def _wait(self, timeout: float | None, wake: asyncio.Event | None = None) -> None:
        """Sleep up to ``timeout`` (None: no limit), ending early on stop or on ``wake``."""
        waiters = [asyncio.ensure_future(self._stop.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def stop(self) -> None:
        """Stop delivery and retries and close connections."""
        self._stop.set()
        for task in (self._task, self._retry_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
        if self._retry:
            DECISIONS_DROPPED.labels(reason="stopped").inc(len(self._retry))
            log.error("stopping with %d decisions still waiting for redis: they are lost", len(self._retry))
        await self.deliverer.aclose()
        await self.redis.aclose()
