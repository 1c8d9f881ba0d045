"""Write feature state built offline into the tables' changelogs, so a worker starts with it.

Why: a service that has run for a week holds a week of callers', payees' and subscribers' history. Replaying
that week through a worker costs minutes to tens of minutes on 2 cores; the offline engine builds the same
state (the steps are one code path, see ``features.steps``) in seconds. The records are exactly the ones the
worker writes (key bytes, the state's stored bytes, the partition of the key's murmur2), so a worker started next
recovers them as its own state. A seed goes only into empty changelogs: written over a running deployment's
state it would replace newer states with older ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.errors import StateNotEmpty
from core.settings import Settings
from streams.codecs import encode_state
from streams.produce import partition_of
from streams.topics import CALLER_TABLE, SUBSCRIBER_TABLE, bootstrap, changelog_topic, create_topics

__all__ = ["SeedStats", "seed_tables"]


@dataclass(frozen=True)
class SeedStats:
    """What a seed wrote: records per table."""

    caller_records: int
    subscriber_records: int


async def seed_tables(
    settings: Settings, key_states: Mapping[str, Any], subscriber_states: Mapping[str, Any]
) -> SeedStats:
    """Write ``key_states`` (caller-table keys: numbers and ``payee:`` keys) and ``subscriber_states`` into the
    changelogs; raise StateNotEmpty if either already holds a record."""
    assert settings.broker_url, "broker_url must be set"
    server = bootstrap(settings.broker_url)
    plan = (
        (changelog_topic(settings, CALLER_TABLE), key_states),
        (changelog_topic(settings, SUBSCRIBER_TABLE), subscriber_states),
    )
    # Faust would create them at its start with the same settings; made here first so the partitions match.
    await create_topics(server, [topic for topic, _ in plan], settings.partitions)
    await _refuse_unless_empty(server, [topic for topic, _ in plan], settings.partitions)
    partitions = list(range(settings.partitions))
    producer = AIOKafkaProducer(bootstrap_servers=server, linger_ms=20, max_batch_size=1 << 20, acks="all")
    await producer.start()
    counts: list[int] = []
    try:
        for topic, states in plan:
            counts.append(await _send_all(producer, topic, partitions, _records(states.items())))
        await producer.flush()
    finally:
        await producer.stop()
    return SeedStats(*counts)


def _records(items: Iterable[tuple[str, Any]]) -> Iterable[tuple[bytes, bytes]]:
    for key, state in items:
        yield key.encode(), state if isinstance(state, bytes) else encode_state(state)


async def _send_all(
    producer: AIOKafkaProducer, topic: str, partitions: list[int], records: Iterable[tuple[bytes, bytes]]
) -> int:
    futures = []
    for key, value in records:
        futures.append(await producer.send(topic, value=value, key=key, partition=partition_of(key, partitions)))
    for future in futures:
        await future  # every record acknowledged before the worker is started on them
    return len(futures)


async def _refuse_unless_empty(server: str, topics: list[str], partitions: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=server, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        full = sorted({tp.topic for tp, end in ends.items() if end > 0})
        if full:
            raise StateNotEmpty(
                f"{', '.join(full)} already hold feature state: a seed goes only into a new deployment's "
                "empty changelogs (stop the workers and delete those topics to start over)"
            )
    finally:
        await consumer.stop()
