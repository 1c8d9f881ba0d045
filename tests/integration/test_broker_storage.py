"""The embedded broker with durable storage: Tansu on S3 (a local S3-compatible server) survives kill -9.

Tansu's default memory storage loses every topic, offset and changelog when the process ends, which is why
the worker-level broker-restart test in ``test_reliability.py`` restarts the broker before its replay. The
bundled Tansu 0.6.0 has no PostgreSQL engine (``FeatureNotEnabled { feature: "postgres" }``); its S3 engine
works. What is proven here, with plain Kafka clients: records acknowledged before a SIGKILL, a consumer
group's committed offsets and the topic layout are all there when a new broker process starts on the same
port and storage, and producers and consumers that were connected carry on by themselves.

Not used for the worker tests: through Tansu's S3 engine every produce, fetch and offset commit is several
object-store requests, and a Faust worker scores ~6 events/s on it (against the ~250/s the reliability
replay needs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sandbox.services import (
    MEMORY_STORAGE,
    BrokerStorage,
    RunningService,
    ServiceError,
    free_port,
    s3_storage,
    start_s3,
    start_tansu,
)

pytestmark = pytest.mark.integration

TOPIC, PARTITIONS, GROUP = "durable.v1", 2, "durable-group"


@pytest.fixture(scope="module")
def s3() -> Iterator[RunningService]:
    service = start_s3()
    yield service
    service.stop()


async def _consume(bootstrap: str, n: int, timeout_s: float = 30.0) -> list[bytes]:
    """Read ``n`` records as group ``GROUP`` from its committed offsets (or the start), committing them."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=n - len(out))).values():
                out.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
    finally:
        await consumer.stop()
    return out


def test_unsupported_storage_is_refused_with_the_reason() -> None:
    with pytest.raises(ServiceError, match="no 'postgres' storage engine"):
        start_tansu(storage=BrokerStorage("postgres://postgres@127.0.0.1:5432/tansu"))
    assert not MEMORY_STORAGE.durable


async def test_broker_killed_and_restarted_on_s3_keeps_records_and_committed_offsets(
    s3: RunningService, tmp_path: Path
) -> None:
    storage = s3_storage(s3, "durable")
    assert storage.durable
    port = free_port()
    broker = start_tansu(port=port, log_path=tmp_path / "tansu.log", storage=storage)
    bootstrap = f"127.0.0.1:{port}"
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
        await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5, request_timeout_ms=60_000)
        await producer.start()
        try:
            first = [f"a{i}".encode() for i in range(200)]
            await asyncio.gather(*[await producer.send(TOPIC, v, key=v) for v in first])
            consumed_before = await _consume(bootstrap, 120)  # commits offsets for 120 of 200

            broker.kill()  # SIGKILL: nothing is flushed on the way out
            killed = time.monotonic()
            # Sent while the broker is away: the producer buffers and retries them once it is back.
            second = [f"b{i}".encode() for i in range(50)]
            pending = [await producer.send(TOPIC, v, key=v) for v in second]
            await asyncio.sleep(3)
            broker = start_tansu(port=port, log_path=tmp_path / "tansu.log", storage=storage)
            restarted = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*pending), 60)  # the same producer, reconnected by itself
            acked_after_s = time.monotonic() - restarted
        finally:
            await producer.stop()

        consumed_after = await _consume(bootstrap, 130)
        print(
            f"\nbroker down {restarted - killed:.1f} s; buffered records acknowledged {acked_after_s:.1f} s "
            f"after the restart; consumed {len(consumed_before)} before, {len(consumed_after)} after",
            flush=True,
        )
        # The group resumes at its committed offsets: every record exactly once across the restart
        # (the 50 were sent to a dead broker and acknowledged by the new one: none can be a duplicate here).
        everything = consumed_before + consumed_after
        assert sorted(everything) == sorted(first + second), (len(consumed_before), len(consumed_after))
    finally:
        broker.stop()
