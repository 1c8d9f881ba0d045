"""One Redis subscription to ``fw:console`` per console process, fanned out to every open SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from alerting import keys

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # a stream further behind than this drops notices; the page re-reads state on the next one


class ChangeHub:
    """Relays change notices to subscriber queues; ``None`` in a queue means the hub is closing."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queues: set[asyncio.Queue[bytes | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[bytes | None]:
        """A new queue that receives every notice from now on."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        """Stop feeding ``queue``."""
        self._queues.discard(queue)

    async def start(self) -> None:
        """Subscribe and start relaying in the background."""
        self._task = asyncio.create_task(self._pump(), name="console-change-hub")

    async def close(self) -> None:
        """Stop relaying and tell every open stream to end."""
        self._closing.set()
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self) -> None:
        while not self._closing.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.CONSOLE_CHANNEL)
                while not self._closing.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._fan_out(message["data"])
            except RedisError as exc:
                # Redis gone for a moment: consoles keep their last view and resync on the next notice.
                log.warning("console change hub: %s; resubscribing", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), 1.0)
            finally:
                with contextlib.suppress(RedisError):
                    await pubsub.aclose()

    def _fan_out(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(raw)
