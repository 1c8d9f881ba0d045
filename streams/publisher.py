"""A producer of its own for messages sent from outside the agents (the holds topic).

Faust's producer belongs to the agents: its buffer is flushed at commit and its send futures are awaited by the
agents' batches. A hold's outbox deliverer is a plain asyncio task that must wait for the broker's ack before it
acknowledges the outbox entry, and while the broker is away it waits and retries. Sharing Faust's producer for that
put a second, long-blocked caller on the agents' producer (a broker restart under load once left the worker
silent); a producer of its own keeps the outbox's retries out of the agents' way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from streams.topics import bootstrap

__all__ = ["TopicPublisher"]

log = logging.getLogger(__name__)


class TopicPublisher:
    """Publishes (key, value) on one topic and waits for the ack; started on first use, restarted after a failure."""

    def __init__(self, broker_url: str, topic: str, *, request_timeout_ms: int = 10_000) -> None:
        self.topic = topic
        self._bootstrap = bootstrap(broker_url)
        self._request_timeout_ms = request_timeout_ms
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def __call__(self, key: bytes, value: bytes) -> object:
        """Send one message and return its record metadata once the broker has it; raise if it does not."""
        producer = await self._started()
        try:
            return await producer.send_and_wait(self.topic, value=value, key=key)
        except Exception:
            # A producer that lost its broker may hold stale metadata: the next attempt starts a fresh one.
            await self._discard(producer)
            raise

    async def stop(self) -> None:
        """Flush and close the producer, if one was started."""
        if self._producer is not None:
            await self._discard(self._producer)

    async def _started(self) -> Any:
        async with self._lock:
            if self._producer is None:
                from aiokafka import AIOKafkaProducer

                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    linger_ms=0,  # a bank waits for each hold: no batching delay
                    request_timeout_ms=self._request_timeout_ms,
                )
                try:
                    await producer.start()
                except Exception:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _discard(self, producer: Any) -> None:
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        try:
            await producer.stop()
        except Exception as exc:  # closing a producer whose broker is gone: nothing more to do with it
            log.debug("holds producer stop failed: %s", exc)
