"""The label publisher: outcome labels from the ``fw:labels`` stream to the labels topic, at least once.

A resolved task's label is written to ``fw:labels`` in the same MULTI as the resolution (so it exists exactly
once); this loop copies it to Kafka. It reads as one member of a Redis consumer group, so any number of dispatch
replicas share the work without sending a label twice in the normal course, and a label read by a replica that
died before acknowledging it is claimed by another after ``label_claim_idle_s``. The one window for a second copy
is a crash between the broker's ack and the XACK: consumers key labels by ``task_id`` (``fraudwatch train`` keeps
one per task).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from alerting import keys
from alerting.backoff import backoff_delay
from alerting.metrics import LABEL_BACKLOG, LABEL_PUBLISH_FAILURES, LABELS_PUBLISHED
from core.clock import SYSTEM_CLOCK, Clock, sleep_or_stop
from core.errors import LabelPublishFailed
from core.settings import Settings

__all__ = ["LABEL_GROUP", "LabelPublisher", "LabelSink"]

log = logging.getLogger(__name__)

LABEL_GROUP = "label-publisher"
_BATCH = 100
# Publishes one label on the labels topic: (key, value) -> anything; raises if the broker did not take it.
LabelSink = Callable[[bytes, bytes], Awaitable[object]]


class LabelPublisher:
    """Drains ``fw:labels`` into ``sink`` (the labels topic) as one consumer of :data:`LABEL_GROUP`."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        sink: LabelSink,
        *,
        consumer: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._redis = redis
        self._sink = sink
        self._clock = clock
        self._claim_idle_ms = int(settings.label_claim_idle_s * 1000)
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.published = 0

    async def ensure_group(self) -> None:
        """Create the group at the stream's start (labels written before the first publisher ran go out too)."""
        try:
            await self._redis.xgroup_create(keys.LABELS, LABEL_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop``; Redis or broker away: wait with backoff and go on, never give up."""
        failures = 0
        grouped = False
        while not stop.is_set():
            try:
                if not grouped:  # once, and again after any Redis error (a flushed or replaced Redis lost it)
                    await self.ensure_group()
                    grouped = True
                sent = await self.publish_once(block_ms=1000)
                failures = 0
                if not sent:
                    await self._report_backlog()
            except (RedisError, OSError) as exc:
                grouped = False
                failures += 1
                log.warning("label publisher: redis unavailable: %s", exc)
                await sleep_or_stop(self._clock, backoff_delay(failures, 0.2, 5.0), stop)
            except LabelPublishFailed as exc:
                failures += 1
                LABEL_PUBLISH_FAILURES.inc()
                log.warning("label publisher: %s; will retry", exc)
                await sleep_or_stop(self._clock, backoff_delay(failures, 0.2, 5.0), stop)

    async def publish_once(self, *, block_ms: int | None = None) -> int:
        """One round: this consumer's own unacknowledged labels, then stale ones of dead replicas, then new ones."""
        sent = await self._send(await self._read("0"))
        claimed = await self._redis.xautoclaim(
            keys.LABELS, LABEL_GROUP, self.consumer, self._claim_idle_ms, "0-0", count=_BATCH
        )
        sent += await self._send(claimed[1] if claimed else [])
        sent += await self._send(await self._read(">", block_ms))
        return sent

    async def _read(self, start: str, block_ms: int | None = None) -> list[Any]:
        got: Any = await self._redis.xreadgroup(
            LABEL_GROUP, self.consumer, {keys.LABELS: start}, count=_BATCH, block=block_ms
        )
        return list(got[0][1]) if got else []

    async def _send(self, entries: list[Any]) -> int:
        sent = 0
        for entry_id, fields in entries:
            if not fields:  # trimmed away while pending: nothing left to publish
                await self._redis.xack(keys.LABELS, LABEL_GROUP, entry_id)
                continue
            value: bytes = fields[b"label"]
            try:
                await self._sink(_subscriber_key(value), value)
            except Exception as exc:
                raise LabelPublishFailed(f"the labels topic refused label {entry_id!r}: {exc}") from exc
            await self._redis.xack(keys.LABELS, LABEL_GROUP, entry_id)
            LABELS_PUBLISHED.inc()
            self.published += 1
            sent += 1
        return sent

    async def _report_backlog(self) -> None:
        info = await self._redis.xinfo_groups(keys.LABELS)
        for group in info:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == LABEL_GROUP:
                lag = group.get("lag") or 0
                LABEL_BACKLOG.set(int(lag) + int(group.get("pending") or 0))


def _subscriber_key(value: bytes) -> bytes:
    """The topic's key: the subscriber, so one person's labels stay in order on one partition."""
    return str(orjson.loads(value).get("subscriber", "")).encode()
