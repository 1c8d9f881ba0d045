"""The latency floor of one broker hop without Faust: plain aiokafka produce -> consume on the embedded Tansu.

    python scripts/broker_hop_latency.py [RATE] [FETCH_MAX_WAIT_MS] [SECONDS] [LINGER_MS]

Produces RATE small messages per second to a fresh 4-partition topic, consumes them in a consumer group and
prints one JSON object with the p50/p99 age of a message on arrival. Compare it with the per-hop figures of
``fraudwatch benchmark`` (``pack_arrival_p50_p99_ms``) to see what the stream framework adds to each hop.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sandbox.services import start_tansu

TOPIC = "hop-latency"


def _quantile(sorted_s: list[float], q: float) -> float:
    return round(sorted_s[int(q * (len(sorted_s) - 1))] * 1000, 2)


async def measure(rate: int, fetch_wait_ms: int, seconds: float, linger_ms: int) -> dict[str, Any]:
    """Ages (ms) of ``rate * seconds`` messages on arrival, sent at a steady ``rate``."""
    broker = start_tansu(log_path=Path(tempfile.mkdtemp()) / "tansu.log")
    host = broker.url.split("//", 1)[1]
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=host)
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, 4, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=host, linger_ms=linger_ms)
        consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=host,
            group_id="hop-latency",
            fetch_max_wait_ms=fetch_wait_ms,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        await producer.start()
        await consumer.start()
        while not consumer.assignment():  # the group join takes a few seconds on Tansu
            await consumer.getmany(timeout_ms=200)
        n = int(rate * seconds)
        ages: list[float] = []

        async def consume() -> None:
            while len(ages) < n:
                batch = await consumer.getmany(timeout_ms=1000)
                now = time.time()
                ages.extend(now - float(r.value) for records in batch.values() for r in records if r.value)

        receiving = asyncio.create_task(consume())
        start = time.perf_counter()
        for i in range(n):
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await producer.send(TOPIC, str(time.time()).encode(), key=str(i).encode())
        await asyncio.wait_for(receiving, 60)
        await producer.stop()
        await consumer.stop()
        ages.sort()
        return {
            "rate": rate,
            "fetch_max_wait_ms": fetch_wait_ms,
            "linger_ms": linger_ms,
            "messages": len(ages),
            "p50_ms": _quantile(ages, 0.5),
            "p99_ms": _quantile(ages, 0.99),
        }
    finally:
        broker.stop()


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:]] + [1000, 20, 8, 2][len(sys.argv) - 1 :]
    print(json.dumps(asyncio.run(measure(int(args[0]), int(args[1]), args[2], int(args[3])))))
