"""The alerting side of a worker: a Redis client, the dispatcher and a background outbox deliverer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis

from alerting.decision import Decision
from alerting.delivery import Deliverer
from alerting.dispatcher import Dispatcher
from alerting.errors import ConfigurationError
from fraudwatch.settings import Settings

log = logging.getLogger(__name__)


class AlertingRuntime:
    """Owns the alerting resources of one worker process; :meth:`handle` is the scoring path's sink."""

    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url:
            raise ConfigurationError("alerting needs FW_REDIS_URL")
        self.settings = settings
        self.redis: Redis = Redis.from_url(settings.redis_url)
        self.dispatcher = Dispatcher(self.redis, settings)
        self.deliverer = Deliverer(self.redis, settings)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start delivering the outbox in the background (pending entries of a crashed worker included)."""
        self._task = asyncio.create_task(self.deliverer.run(self._stop), name="outbox-deliverer")

    async def handle(self, decision: Decision) -> dict[str, Any] | None:
        """Open or update the case of a decision; a new task goes to the outbox atomically."""
        return await self.dispatcher.handle(decision)

    async def stop(self) -> None:
        """Stop delivery and close connections."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)
        await self.deliverer.aclose()
        await self.redis.aclose()
