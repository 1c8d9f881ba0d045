"""Produce a batch of keyed messages with one accumulator call per partition, packed for internal hops.

Faust's ``topic.send`` costs several layers of coroutines, futures and sensor calls per message; an
agent that forwards every event it reads pays that on each hop. This builds one aiokafka record batch
per partition instead and hands it to the same producer Faust uses, so Faust's commit (which flushes
that producer before committing offsets) still covers these messages: at-least-once is unchanged.
Partitions are chosen exactly as the default partitioner does (murmur2 of the key bytes), the rule the
tables (``use_partitioner=True``) and every other producer of these topics follow.

Consuming costs Faust about as much per message as producing, so on the internal topics (ours on both
ends) the values bound for one partition are also *packed*: one record holds a JSON array of many
values (:func:`pack`), every one of whose keys maps to that record's partition, so the table writes
they cause still land in the changelog partition of the partition that carried them. Readers take
both forms (:func:`unpack`), so a worker that still sends one value per record can be upgraded live.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from streams.faust_internals import aiokafka_producer, topic_partitions
from streams.metrics import PRODUCE_ERRORS

__all__ = [
    "EXIT_DELIVERY_FAILED",
    "MAX_PACK_BYTES",
    "BatchSender",
    "exit_before_commit",
    "pack",
    "partition_of",
    "unpack",
]

log = logging.getLogger(__name__)


# Well under the producer's request limit and the broker's message limit (both 1 MB by default).
MAX_PACK_BYTES = 256 * 1024


def partition_of(key: bytes, partitions: list[int]) -> int:
    """The default (Java-compatible) partitioner's choice for a key."""
    return partitions[_positive_murmur2(key) % len(partitions)]


@functools.lru_cache(maxsize=1 << 17)
def _positive_murmur2(key: bytes) -> int:
    # aiokafka's murmur2 is pure Python (~4 % of the worker's time); live keys repeat, so cache them.
    return murmur2(key) & 0x7FFFFFFF


def pack(items: list[tuple[bytes, bytes]], max_bytes: int = MAX_PACK_BYTES) -> list[tuple[bytes, bytes]]:
    """Join JSON values into records of at most ``max_bytes`` (or one value) each, keyed by their first key."""
    records: list[tuple[bytes, bytes]] = []
    chunk: list[bytes] = []
    size = 0
    first_key = b""
    for key, value in items:
        if chunk and size + len(value) + 1 > max_bytes:
            records.append((first_key, b"[" + b",".join(chunk) + b"]"))
            chunk, size = [], 0
        if not chunk:
            first_key = key
        chunk.append(value)
        size += len(value) + 1
    if chunk:
        records.append((first_key, b"[" + b",".join(chunk) + b"]"))
    return records


def unpack(value: bytes) -> list[Any]:
    """The JSON values a record holds: the elements of a packed array, or the one object of an unpacked one."""
    loaded = orjson.loads(value)
    return loaded if isinstance(loaded, list) else [loaded]


EXIT_DELIVERY_FAILED = 75  # EX_TEMPFAIL: restart me


def exit_before_commit(exc: BaseException) -> None:
    """Stop the process at once, committing nothing (the default reaction to a failed delivery)."""
    logging.shutdown()
    os._exit(EXIT_DELIVERY_FAILED)


class BatchSender:
    """Send ``(key, value)`` pairs to one topic, grouped into one record batch per partition.

    With ``packed`` the values must be JSON objects; each partition's values go out as :func:`pack` records.

    A batch that cannot be delivered (the producer gave up after ``producer_request_timeout``, or the broker
    refused it) carries events whose input offsets would otherwise be committed: Faust's commit waits for
    the producer's batches but not for their success, and an agent that raised still acknowledges its
    batch. So a failed delivery ends the process before any commit (``on_failure``), and its successor
    re-reads from the last committed offset: a crash loses no event, a swallowed error would.
    """

    def __init__(
        self,
        app: Any,
        topic: str,
        *,
        packed: bool = False,
        on_failure: Callable[[BaseException], None] = exit_before_commit,
    ) -> None:
        self.app = app
        self.topic = topic
        self.packed = packed
        self._partitions: list[int] = []
        self._on_failure = on_failure

    def _on_delivered(self, fut: asyncio.Future[Any]) -> None:
        # Runs before the commit's flush sees the batch done (callbacks run in the order they were added).
        if not fut.cancelled() and (exc := fut.exception()) is not None:
            PRODUCE_ERRORS.labels(topic=self.topic).inc()
            log.critical(
                "batch delivery failed: stopping before any offset past it is committed",
                extra={"topic": self.topic, "error": repr(exc)},
            )
            self._on_failure(exc)

    async def send_many(self, messages: list[tuple[bytes, bytes]]) -> list[asyncio.Future[Any]]:
        """Queue every message for delivery (order kept per partition); the batches' delivery futures.

        Returns once all are queued; await the futures where a later write must not overtake them.
        """
        if not messages:
            return []
        sent: list[asyncio.Future[Any]] = []
        producer = aiokafka_producer(self.app)
        if not self._partitions:
            self._partitions = await topic_partitions(producer, self.topic)
        partitions = self._partitions
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in messages:
            by_partition.setdefault(partition_of(key, partitions), []).append((key, value))
        for partition, items in by_partition.items():
            if self.packed:
                items = pack(items)
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send, start another
                    sent.append(await producer.send_batch(batch, self.topic, partition=partition))
                    sent[-1].add_done_callback(self._on_delivered)
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"message of {len(value)} bytes exceeds the producer's batch size")
            sent.append(await producer.send_batch(batch, self.topic, partition=partition))
            sent[-1].add_done_callback(self._on_delivered)
        return sent
